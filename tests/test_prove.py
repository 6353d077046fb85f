"""The prover (`verify.prove`, `python -m verify prove`, `check --prove`).

Generated: every catalogue claim is proved for all sizes, and every condition a proof states is a true
statement at the check's samples; in tests/cases nothing the sampled check calls wrong is proved; of the
hand-made wrong mutants of the catalogue none is proved, neither by the whole prover nor by its algebra
alone (without the sample that lets it stop early). Hand-written tests pin the rest: one per condition
kind, equivalent rewrites proved, the time limit, the worker leaving the caller alone, the self-check
catching a prover bug, and the wiring into the report, the JSON, the CLI and the LaTeX.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import sympy as sp

import verify
from verify import sampling
from verify.catalogue import folder, load
from verify.catalogue import paths as catalogue
from verify.cli import main
from verify.exacteval import size_values
from verify.model import DerivationError, constant
from verify.prove import ConditionKind, ProofRun, ProofStatus, prove
from verify.prove.algebra import Algebra, Bound
from verify.prove.search import DerivationProver

CATALOGUE = catalogue()
CASES = sorted((Path(__file__).parent / "cases").glob("*.deriv"))


# Each batch below is computed once per pytest-xdist worker; the tests that read it are one xdist_group
# (pyproject.toml runs --dist loadgroup), so that it is computed in one worker only.


@functools.cache
def catalogue_proofs() -> dict[str, dict]:
    """Every catalogue derivation proved in one run (one worker process)."""
    return {p.stem: found for p, found in zip(CATALOGUE, prove([str(p) for p in CATALOGUE]), strict=True)}


def holds_at_samples(d, condition) -> bool:
    return all(
        condition.holds(sample.forward, size_values(d, sample.sizes)) for sample in sampling.samples(d, 0)
    )


def catalogue_claims():
    for path in CATALOGUE:
        d = load(path)
        for st in d.claims:
            yield pytest.param(path.stem, st.target, id=f"{d.name}-{st.label}")


@pytest.mark.xdist_group("prove-catalogue")
@pytest.mark.parametrize("name,target", list(catalogue_claims()))
def test_catalogue_claim_proved(name, target):
    proof = catalogue_proofs()[name][target]
    assert proof.status is ProofStatus.PROVED, proof.summary()
    assert proof.sizes and proof.summary().startswith("proved for all ")


@pytest.mark.xdist_group("prove-catalogue")
@pytest.mark.parametrize("name,target", list(catalogue_claims()))
def test_catalogue_conditions_are_true(name, target):
    """Each condition a proof states (denominators, kinks, domain rules; those marked always true too)
    holds for the inputs the derivation declares: at every sample the check draws."""
    d = load(name)
    for condition in catalogue_proofs()[name][target].conditions:
        assert holds_at_samples(d, condition), condition.text


# -- one test per condition kind: what it states is true, wherever it comes from --------------------------

BESIDE_THE_CATALOGUE = {
    # a denominator that may vanish, square roots in a numerator and a denominator, a log's argument:
    # nonzero, nonnegative and positive
    "reciprocal_root_log": """
[forward]
y[n,i] = 1 / x[n,i] + z[n,i]**(3/2) + sqrt(z[n,i]) * log(z[n,i])
[gradients]
dx[n,i] = -dy[n,i] / x[n,i]**2
dz[n,i] = dy[n,i] * (3/2 * sqrt(z[n,i]) + (log(z[n,i]) + 2) / (2 * sqrt(z[n,i])))
[inputs]
z: positive
""",
    # the one-hot entries' square: the idempotent domain rule
    "onehot_square": (folder() / "cross_entropy.deriv")
    .read_text()
    .replace("dx[n,k] = -t[n,k] / (N * x[n,k])", "dx[n,k] = -t[n,k]**2 / (N * x[n,k])"),
}


@functools.cache
def beside_proofs() -> dict[str, dict]:
    texts = list(BESIDE_THE_CATALOGUE.values())
    return dict(zip(BESIDE_THE_CATALOGUE, prove(texts), strict=True))


def all_conditions():
    for name, found in catalogue_proofs().items():
        for proof in found.values():
            yield load(name), proof
    for name, found in beside_proofs().items():
        for proof in found.values():
            yield load(BESIDE_THE_CATALOGUE[name]), proof


@pytest.mark.xdist_group("prove-catalogue")
@pytest.mark.parametrize("kind", list(ConditionKind))
def test_condition_kind_is_a_true_statement(kind):
    """Every condition of this kind that any proof states holds at the samples (and some proof states
    one, so that the test checks something)."""
    found = [(d, c) for d, proof in all_conditions() for c in proof.conditions if c.kind is kind]
    assert found, f"no proof states a {kind} condition"
    for d, condition in found:
        assert holds_at_samples(d, condition), f"{d.name}: {condition.text}"


@pytest.mark.xdist_group("prove-catalogue")
def test_beside_the_catalogue_proved():
    """The derivations the condition kinds come from are proved, each with what it needs."""
    found = beside_proofs()
    texts = {n: [c.text for c in p.conditions] for n, proofs in found.items() for p in proofs.values()}
    assert all(p.status is ProofStatus.PROVED for proofs in found.values() for p in proofs.values()), texts
    assert "x[n, i] != 0" in [c.text for c in found["reciprocal_root_log"]["dx"].stated]
    assert any("**2 = t[n, k]" in c.text for c in found["onehot_square"]["dx"].conditions)


@pytest.mark.xdist_group("prove-catalogue")
def test_domain_rule_is_needed():
    """The softmax cross-entropy shortcut rests on one-hot rows summing to 1: the proof says so, and with
    t declared normal the same gradient is neither proved nor right."""
    proof = catalogue_proofs()["softmax_cross_entropy_mean"]["dx"]
    assert [c.text for c in proof.stated] == ["sum(t[n, k], k) = 1 (t is one-hot)"]
    text = (folder() / "softmax_cross_entropy_mean.deriv").read_text().replace("t: onehot(k)", "")
    assert verify.check(text, oracles=("exact",)).derivations[0].status == "wrong"
    assert prove(text)[0]["dx"].status is ProofStatus.NOT_PROVED


@pytest.mark.xdist_group("prove-catalogue")
def test_kink_is_stated_for_relu():
    """A proof through max or where holds away from the kink, and says where the kink is."""
    assert [c.text for c in catalogue_proofs()["relu"]["dx"].stated] == ["x[n, i] != 0 (away from the kink)"]


# -- tests/cases: nothing the check calls wrong is proved -----------------------------------------------


def parsed_cases():
    out = []
    for path in CASES:
        try:
            out.append(load(path))
        except DerivationError:
            continue
    return out


@functools.cache
def case_results():
    ds = parsed_cases()
    reports = verify.check(ds, oracles=("exact",), prove=True, diagnose=False).derivations
    return {d.name: r for d, r in zip(ds, reports, strict=True)}


@pytest.mark.xdist_group("prove-cases")
@pytest.mark.parametrize("name", [d.name for d in parsed_cases()])
def test_case_wrong_claims_not_proved(name):
    report = case_results()[name]
    for g in report.gradients:
        assert g.proof is not None
        if g.status == "wrong":
            assert g.proof.status is not ProofStatus.PROVED, f"{g.name}: {g.proof.summary()}"


@pytest.mark.xdist_group("prove-cases")
def test_jacobians_and_chain_steps_proved():
    """A Jacobian statement is proved as the full Jacobian (zero off its block, by a case split on the
    block's delta), and each step of a chain on its own."""
    named = case_results()["jacobian_named_softmax"]
    assert [g.proof.status for g in named.gradients] == [ProofStatus.PROVED] * 2
    assert case_results()["jacobian_not_block_diagonal"].gradients[0].proof.status is ProofStatus.NOT_PROVED
    chain = {g.name: g.proof.status for g in case_results()["chain_wrong_step"].gradients}
    assert chain["dW step 2/3"] is ProofStatus.NOT_PROVED
    assert chain["dW step 1/3"] is chain["dW step 3/3"] is ProofStatus.PROVED


# -- mutants of the catalogue ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str
    old: str
    new: str

    @property
    def text(self) -> str:
        text = (folder() / f"{self.name}.deriv").read_text()
        assert self.old in text, f"{self.name}: {self.old!r} is not in the file any more"
        return text.replace(self.old, self.new)


WRONG = [
    Mutant("batchnorm", "sign", "- sum(dxhat[m,j], m)", "+ sum(dxhat[m,j], m)"),
    Mutant("batchnorm", "exponent off", "(var[j] + eps)**(-3/2)", "(var[j] + eps)**(-1/2)"),
    Mutant("batchnorm", "eps dropped", "/ (N * sqrt(var[j] + eps))", "/ (N * sqrt(var[j]))"),
    Mutant("batchnorm", "wrong sum index", "sum(dxhat[m,j] * xhat[m,j], m)", "sum(dxhat[m,j] * xhat[n,j], m)"),
    Mutant("batchnorm", "dropped term", "- xhat[n,j] * sum(dxhat[m,j] * xhat[m,j], m)", ""),
    Mutant("layernorm", "wrong size", "/ (J * sqrt(var[n] + eps))", "/ (N * sqrt(var[n] + eps))"),
    Mutant("layernorm", "eps dropped", "/ (J * sqrt(var[n] + eps))", "/ (J * sqrt(var[n]))"),
    Mutant("softmax_cross_entropy_mean", "1/N dropped", "(p[n,k] - t[n,k]) / N", "p[n,k] - t[n,k]"),
    Mutant("cross_entropy", "1/N dropped", "-t[n,k] / (N * x[n,k])", "-t[n,k] / x[n,k]"),
    Mutant("softmax", "wrong index", "y[n,k] * (delta(k, m) - y[n,m])", "y[n,k] * (delta(k, m) - y[n,k])"),
    Mutant("linear", "wrong sum index", "dW[j,i] = sum(dy[n,j] * x[n,i], n)", "dW[j,i] = sum(dy[m,j] * x[n,i], n, m)"),
    Mutant("mlp", "dropped mask", "dh2[n,k] = where(h2[n,k] > 0, da2[n,k], 0)", "dh2[n,k] = da2[n,k]"),
    Mutant("mlp", "1/N twice", "dz[n,c]  = (p[n,c] - t[n,c]) / N", "dz[n,c]  = (p[n,c] - t[n,c]) / N**2"),
    Mutant("softmax", "sign", "delta(k, m) - y[n,m]", "delta(k, m) + y[n,m]"),
    Mutant("elu", "dropped term", "dy[n,i] * (y[n,i] + 1)", "dy[n,i] * y[n,i]"),
    Mutant("tanh", "exponent off", "1 - y[n,i]**2", "1 - y[n,i]**3"),
    Mutant("sigmoid", "sign", "(1 - y[n,i])", "(1 + y[n,i])"),
    Mutant("leaky_relu", "sign", "a * dy[n,i]", "-a * dy[n,i]"),
    Mutant("relu", "wrong branch", "x[n,i] > 0", "x[n,i] < 0"),
    Mutant("linear_column", "extra factor", "dW[j,i] = dy[j] * x[i]", "dW[j,i] = dy[j] * x[i] * x[i]"),
    Mutant("conv2d", "kernel not flipped", "K[o,c, h + P - S*i, w + P - S*j]", "K[o,c, KH - 1 - h - P + S*i, KW - 1 - w - P + S*j]"),
    Mutant("conv2d", "padding off by one", "K[o,c, h + P - S*i, w + P - S*j]", "K[o,c, h + P - 1 - S*i, w + P - S*j]"),
    Mutant("conv1d", "stride dropped in dK", "dK[o,c,kl] = sum(dy[n,o,i] * x[n,c, S*i + kl - P]", "dK[o,c,kl] = sum(dy[n,o,i] * x[n,c, i + kl - P]"),
    Mutant("conv1d", "padding dropped in dx", "K[o,c, l + P - S*i]", "K[o,c, l - S*i]"),
    Mutant("conv2d_flipped", "kernel read as in a cross-correlation", "dK[a,b] = sum(dY[i,j] * X[i-a+2, j-b+2], i, j)", "dK[a,b] = sum(dY[i,j] * X[i+a-1, j+b-1], i, j)"),
    Mutant("maxpool2d", "gradient to every window entry", "where(x[n,c,h,w] == y[n,c,i,j], dy[n,c,i,j], 0)", "dy[n,c,i,j]"),
    Mutant("avgpool2d", "1/size missing", " / (KH*KW)\n\n[inputs]", "\n\n[inputs]"),
]  # fmt: skip

# A transposed weight gradient only parses for a square weight (tests/cases/wrong_transpose.deriv); the
# softmax Jacobian is symmetric, so its transpose is an equivalent rewrite, proved by a case split.
EQUIVALENT = [
    Mutant("softmax", "transposed Jacobian", "sum(dy[n,k] * J[n,k,m], k)", "sum(dy[n,k] * J[n,m,k], k)"),
    Mutant("softmax", "symmetric form", "y[n,k] * (delta(k, m) - y[n,m])", "y[n,m] * (delta(k, m) - y[n,k])"),
    Mutant("batchnorm", "zero term dropped", " - 2 * dvar[j] * sum(x[n,j] - mu[j], n) / N", ""),
    Mutant("sigmoid", "through exp", "dy[n,i] * y[n,i] * (1 - y[n,i])", "dy[n,i] * exp(-x[n,i]) / (1 + exp(-x[n,i]))**2"),
    Mutant("tanh", "through exp", "dy[n,i] * (1 - y[n,i]**2)", "dy[n,i] * 4 / (exp(x[n,i]) + exp(-x[n,i]))**2"),
    Mutant("relu", "mask as a factor", "where(x[n,i] > 0, dy[n,i], 0)", "dy[n,i] * where(x[n,i] >= 0, 1, 0)"),
    Mutant("leaky_relu", "branches swapped", "where(x[n,i] > 0, dy[n,i], a * dy[n,i])", "where(x[n,i] < 0, a * dy[n,i], dy[n,i])"),
    Mutant("softmax_cross_entropy_mean", "softmax written out", "(p[n,k] - t[n,k]) / N", "(exp(x[n,k]) / sum(exp(x[n,m]), m) - t[n,k]) / N"),
    Mutant("conv2d", "dx through the kernel's deltas", "dx[n,c,h,w]   = sum(dy[n,o,i,j] * K[o,c, h + P - S*i, w + P - S*j], o, i, j)", "dx[n,c,h,w] = sum(dy[n,o,i,j] * K[o,c,kh,kw] * delta(h, S*i + kh - P) * delta(w, S*j + kw - P), o, i, j, kh, kw)"),
    Mutant("maxpool2d", "comparison turned round", "x[n,c,h,w] == y[n,c,i,j]", "y[n,c,i,j] == x[n,c,h,w]"),
    Mutant("layernorm", "xhat written out", "xhat[n,j] * sum(dxhat[n,k] * xhat[n,k], k)", "(x[n,j] - mu[n]) * sum(dxhat[n,k] * (x[n,k] - mu[n]), k) / (var[n] + eps)"),
]  # fmt: skip


def mutant_id(m: Mutant) -> str:
    return f"{m.name}-{m.kind.replace(' ', '_')}"


@functools.cache
def mutant_reports(equivalent: bool):
    mutants = EQUIVALENT if equivalent else WRONG
    return verify.check([m.text for m in mutants], oracles=("exact",), prove=True, diagnose=False).derivations


@pytest.mark.xdist_group("prove-wrong-mutants")
@pytest.mark.parametrize("k", range(len(WRONG)), ids=[mutant_id(m) for m in WRONG])
def test_wrong_mutant_not_proved(k):
    report = mutant_reports(False)[k]
    wrong = [g for g in report.gradients if g.status == "wrong"]
    assert wrong, "the mutant is not wrong: it tests nothing here"
    for g in wrong:
        assert g.proof.status is not ProofStatus.PROVED, f"{g.name}: {g.proof.summary()}"


@pytest.mark.xdist_group("prove-wrong-mutants")
@pytest.mark.parametrize("k", range(len(WRONG)), ids=[mutant_id(m) for m in WRONG])
def test_wrong_mutant_not_proved_by_the_algebra(k):
    """Without the sample that lets the prover stop after one stage, every stage down to the inputs is
    tried on the mutant's first wrong claim: its normal forms still do not cancel."""
    report = mutant_reports(False)[k]
    first = next(g for g in report.gradients if g.status == "wrong")
    d = load(WRONG[k].text)
    prover = DerivationProver(d, shortcut=False)
    for st in d.claims:
        outcome = prover.prove(st)
        if st.target == first.target:
            assert not outcome.closed and "self-check" not in outcome.reason, outcome.reason
            return


@pytest.mark.xdist_group("prove-equivalent")
@pytest.mark.parametrize("k", range(len(EQUIVALENT)), ids=[mutant_id(m) for m in EQUIVALENT])
def test_equivalent_rewrite_proved(k):
    report = mutant_reports(True)[k]
    for g in report.gradients:
        assert g.status == "verified", g.diagnosis
        assert g.proof.status is ProofStatus.PROVED, f"{g.name}: {g.proof.summary()}"


# -- the mutation suite (verify.mutate, issue 12): one mutant per derivation and kind of mistake ----------


def generated_mutants():
    try:
        from verify.mutate import mutants
    except ImportError:  # the mutation generator is not there yet: the parameter set is empty (a skip)
        return []
    out = []
    for path in CATALOGUE:
        d = load(path)
        claims = {st.target for st in d.claims}
        seen = set()
        for m in mutants(d, path.read_text()):
            if m.kind in seen or m.statement not in claims:
                continue
            try:
                load(m.text)
            except DerivationError:
                continue  # a mutant the parser rejects is caught without the prover
            seen.add(m.kind)
            out.append(pytest.param(m, id=f"{d.name}-{m.statement}-{m.kind}"))
    return out


GENERATED = generated_mutants()


@functools.cache
def generated_proofs():
    return prove([p.values[0].text for p in GENERATED])


@pytest.mark.xdist_group("prove-generated")
@pytest.mark.parametrize("k", range(len(GENERATED)), ids=[p.id for p in GENERATED])
def test_generated_mutant_not_proved(k):
    """The statement a generated mutant changes is a mistake (the generator keeps only those that differ
    from the original at samples): the prover must not prove it."""
    m = GENERATED[k].values[0]
    proof = generated_proofs()[k][m.statement]
    assert proof.status is not ProofStatus.PROVED, f"{m.kind}: {m.line}: {proof.summary()}"


# -- the time limit, the worker, the self-check ----------------------------------------------------------


def test_time_limit_gives_up_and_goes_on():
    """With a limit no step can meet, every gradient gives up, saying so, and the call returns: the
    worker is killed at each deadline and a new one takes the next gradient."""
    found = prove(["batchnorm"], time_limit=0.001)[0]
    assert len(found) == len(load("batchnorm").claims)
    for proof in found.values():
        assert proof.status is ProofStatus.GAVE_UP
        assert "time limit of 0.001 s passed" in proof.reason


def test_prover_leaves_the_caller_process_alone():
    """The worker is a separate interpreter: the caller's environment, signal handlers and threads are
    as they were, and the worker has exited when the results are in."""
    env = dict(os.environ)
    signals = {
        s: signal.getsignal(s) for s in (signal.SIGALRM, signal.SIGCHLD, signal.SIGINT, signal.SIGTERM)
    }
    threads = threading.active_count()
    run = ProofRun([load("relu")])
    assert run.results()[0]["dx"].status is ProofStatus.PROVED
    assert run._worker.running is None
    assert dict(os.environ) == env
    assert {s: signal.getsignal(s) for s in signals} == signals
    assert threading.active_count() == threads


def test_self_check_catches_a_prover_bug(monkeypatch):
    """A bug that breaks both sides alike (a sum of a term free of its index losing its size factor)
    still cancels, but the normal form no longer matches the exact oracle: batchnorm's dmu is not
    proved, and the reason names the self-check."""
    original = Algebra.sum

    def forgetful(self, body, k, lo, hi):
        terms = sp.Add.make_args(body)
        free = [t for t in terms if k not in self.deps(t)]
        return original(self, body, k, lo, hi) - sum(free) * hi  # size hi + 1 becomes 1

    monkeypatch.setattr(Algebra, "sum", forgetful)
    d = load("batchnorm")
    prover = DerivationProver(d)
    outcomes = {st.target: prover.prove(st) for st in d.claims}
    assert not outcomes["dmu"].closed
    assert "self-check failed" in outcomes["dmu"].reason


def test_self_check_catches_a_padding_bug(monkeypatch):
    """A bug that drops the padding P from every read (x[n, c, S*i + kh - P] read at S*i + kh) breaks
    both sides of the convolution's dK alike, so they still cancel; the self-check sees the normal form
    differ from the exact oracle, and dK is not proved."""
    original = Algebra.tensor
    P = constant("P")

    def unpadded(self, e):
        return original(self, sp.Indexed(e.base, *(i.xreplace({P: 0}) for i in e.indices)))

    monkeypatch.setattr(Algebra, "tensor", unpadded)
    d = load("conv2d")
    outcome = DerivationProver(d).prove(d.statement("dK"))
    assert not outcome.closed
    assert "self-check failed" in outcome.reason


def test_affine_subscript_is_zero_padded():
    """A read x[n, i + 1] may fall outside its axis (zero padding): its normal form is the element times
    the indicator [I - 2 - i >= 0] that it lies inside; the other one, [i + 1 >= 0], is 1 for every i of
    its range and is left out."""
    d = load("relu")
    x = sp.IndexedBase("x", real=True)
    n, i = sp.symbols("n i", integer=True)
    N, I = d.sizes["N"], d.sizes["I"]
    algebra = Algebra(d, {n: N, i: I})
    assert algebra.restore(algebra.norm(x[n, i + 1])) == x[n, i + 1] * Bound(I - 2 - i)


@pytest.mark.xdist_group("prove-catalogue")
def test_one_maximum_fails_at_ties():
    """Max pooling's condition can be false: where every entry of x (so every window maximum) is 1,
    each window has several maxima and the condition the proof states does not hold."""
    import mpmath
    import numpy as np

    d = load("maxpool2d")
    (condition,) = [
        c for c in catalogue_proofs()["maxpool2d"]["dx"].stated if c.kind is ConditionKind.ONE_MAXIMUM
    ]
    sample = sampling.samples(d, 0)[0]
    assert condition.holds(sample.forward, size_values(d, sample.sizes))
    ties = {name: np.full(v.shape, mpmath.mpf(1), dtype=object) for name, v in sample.forward.items()}
    assert not condition.holds(ties, size_values(d, sample.sizes))


def test_where_on_equal_values_is_not_proved():
    """where(a == b, ...) on values holds on a set the samples never reach: not proved, with why."""
    text = (
        "[forward]\ny[n,i] = x[n,i]**2\n[gradients]\ndx[n,i] = where(x[n,i] == 1, 2, 2 * x[n,i]) * dy[n,i]\n"
    )
    proof = prove(text)[0]["dx"]
    assert proof.status is ProofStatus.NOT_PROVED
    assert "where(a == b)" in proof.reason


def test_delta_between_free_indices_split():
    """A diagonal weight W[j,j]: dW is delta(j,k) times a sum written at k, equal to the true one only
    by the case split j = k or not."""
    text = """
[forward]
y[n] = sum(W[j,j] * x[n,j], j)
[gradients]
dW[j,k] = delta(j,k) * sum(dy[n] * x[n,k], n)
"""
    assert prove(text)[0]["dW"].status is ProofStatus.PROVED


# -- the report, the JSON, the CLI, the LaTeX ------------------------------------------------------------


def test_check_prove_keeps_the_exit_status():
    """--prove adds the proof column, the notes and the JSON key; the verdicts and exit status stay."""
    path = str(Path(__file__).parent / "cases" / "wrong_sign.deriv")
    plain = verify.check(path, oracles=("exact",))
    with_proof = verify.check(path, oracles=("exact",), prove=True)
    assert with_proof.exit_code == plain.exit_code == 1
    g = with_proof.derivations[0].gradients[0]
    assert g.status == "wrong" and g.proof.status is ProofStatus.NOT_PROVED and g.proof.residue
    assert "proof" in with_proof.table().splitlines()[0] and "proof" not in plain.table().splitlines()[0]
    assert "dx: not proved" in with_proof.table()
    out = with_proof.to_json()["derivations"][0]["gradients"][0]["proof"]
    assert out["status"] == "not-proved" and {"conditions", "residue", "seconds"} <= set(out)


def test_cli_prove(tmp_path, capsys):
    out = tmp_path / "proofs.json"
    assert main(["prove", "relu", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "proved" in printed and "x[n, i] != 0 (away from the kink)" in printed
    proof = json.loads(out.read_text())["derivations"][0]["gradients"][0]["proof"]
    assert proof["status"] == "proved" and proof["conditions"] == ["x[n, i] != 0 (away from the kink)"]


def test_latex_and_notebook_state_the_proofs():
    """The LaTeX document says "proved for all N, I" with the conditions; a notebook's table has the proof
    column, the conditions on hover."""
    from verify.latex import document

    d = load("elu")
    report = verify.check([d], oracles=("exact",), prove=True)
    tex = document([d], report)
    assert "proved for all $N, I$" in tex and "away from the kink" in tex
    html = report._repr_html_()
    assert "<th>proof</th>" in html and "away from the kink" in html


def test_right_but_not_proved_keeps_its_verdict():
    """A right gradient the prover cannot close (it knows no inequality: where(x**2 > 0, 1, 0) is 1 away
    from the kink, which it cannot see) is `not proved` with its residue, verified by the sampled check."""
    text = (folder() / "relu.deriv").read_text()
    text = text.replace(
        "where(x[n,i] > 0, dy[n,i], 0)", "where(x[n,i] > 0, dy[n,i], 0) * where(x[n,i]**2 > 0, 1, 0)"
    )
    report = verify.check(text, oracles=("exact",), prove=True)
    g = report.derivations[0].gradients[0]
    assert report.exit_code == 0 and g.status == "verified"
    assert g.proof.status is ProofStatus.NOT_PROVED
    assert "where(x[n, i]**2 > 0, 1, 0)" in g.proof.residue


@pytest.mark.parametrize("limit", ["0", "-1", "nan", "inf", "soon"])
def test_cli_time_limit_must_be_positive(limit, capsys):
    """A time limit that is not a positive number of seconds is bad input: exit 2, one line."""
    assert main(["prove", "relu", "--time-limit", limit]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a positive number of seconds" in err[0]


def test_a_proof_at_a_size_the_file_fixes_says_so_in_the_text():
    """With N = 1 fixed, dy - dy/N is proved only at N = 1 (where it is the true gradient of centering):
    the table's notes and its summary say so, as the JSON and the LaTeX do, rather than "proved for all
    sizes" alone."""
    text = "[forward]\ny[n,j] = x[n,j] - sum(x[m,j], m) / N\n[gradients]\ndx[n,j] = dy[n,j] - dy[n,j] / N\n[sizes]\nN = 1\n"
    table = verify.check(text, oracles=("exact",), prove=True).table()
    assert "dx: proved for all J (N = 1 as stated)" in table, table
    assert "1 proved for all sizes (1 at the sizes their file fixes)" in table, table
