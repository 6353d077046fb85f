"""The diagnosis of a wrong gradient (verify.diagnose), beyond the hand-written cases in tests/cases/:
every documented kind has such a case, a failing diagnosis never changes a verdict, values computed by
other code (float64) are diagnosed through the same entry point, and the catalogue's mutation suite gets
kinds named and fixes verified at the rates issue 13 asks for."""

import functools
import importlib
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import verify
import verify.diagnose as diagnosis
from verify import mutate, sampling
from verify.catalogue import load
from verify.catalogue import paths as catalogue
from verify.diagnose import Kind
from verify.diagnose.fixes import truth

HERE = Path(__file__).parent
PINNED = re.compile(r"^# expect: wrong \S+(?: \(line \d+\))?(?: step \d+/\d+)? kind ([\w-]+)", re.M)


def test_every_kind_has_a_hand_written_case():
    """Each kind of verify.diagnose.Kind (the list the README and docs/diagnosis.md document) is pinned
    by at least one case in tests/cases/ (`# expect: wrong dx kind sign: ...`), and no case pins a kind
    that is not in the list."""
    pinned = set()
    for path in (HERE / "cases").glob("*.deriv"):
        pinned |= set(PINNED.findall(path.read_text()))
    assert pinned == {str(k) for k in Kind}


def test_a_failing_diagnosis_leaves_the_verdict(monkeypatch):
    """When the diagnosis itself raises, the gradient is still wrong (exit 1, not the tool's error, 4),
    its kind is unknown and its message says the diagnosis is unavailable and why."""

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the diagnosis")

    monkeypatch.setattr(diagnosis, "_diagnose", broken)
    report = verify.check(str(HERE / "cases" / "wrong_sign.deriv"), oracles=("exact",))
    (g,) = report.derivations[0].gradients
    assert g.status == "wrong" and report.exit_code == 1
    assert g.mistake.kind == Kind.UNKNOWN
    assert "no diagnosis available (it failed: RuntimeError: a bug in the diagnosis)" in g.diagnosis
    assert report.to_json()["derivations"][0]["gradients"][0]["mistake"]["kind"] == "unknown"


def test_diagnoses_stop_at_their_deadline(monkeypatch):
    """The diagnoses of one derivation's wrong gradients share one CPU deadline
    (verify.diagnose.ALL_DIAGNOSES_SECONDS): each re-evaluates the chain rule for every cause and
    candidate fix, so a derivation with several wrong gradients took minutes (fuzz case 3545: 58 s).
    With the deadline at 0, a cause found from the numbers alone is still named but the fix search
    says it stopped; a diagnosis that needs the chain rule says the gradient was not diagnosed and
    why. The verdicts stay wrong."""
    checking = importlib.import_module("verify.check")  # `verify.check` is also the function's name
    monkeypatch.setattr(checking, "ALL_DIAGNOSES_SECONDS", 0.0)
    stopped = "stopped after 0 s of CPU"
    report = verify.check(str(HERE / "cases" / "wrong_sign.deriv"), oracles=("exact",))
    (g,) = report.derivations[0].gradients
    assert g.status == "wrong" and report.exit_code == 1
    assert g.mistake.kind == Kind.SIGN and g.mistake.fix is None and stopped in g.mistake.note
    report = verify.check(str(HERE / "cases" / "wrong_batch_mixing.deriv"), oracles=("exact",))
    (g,) = [g for g in report.derivations[0].gradients if g.status == "wrong"]
    assert g.mistake.kind == Kind.UNKNOWN
    assert f"not diagnosed: the diagnosis of this derivation's wrong gradients {stopped}" in g.diagnosis


def test_float_values_from_other_code():
    """The entry point other code uses (issue 16's check of a user's backward): a batch-norm dx computed
    by torch.autograd with the variance detached, in float64, is named as treating var as a constant,
    with the worst entry and both values; no fix is searched (there is no statement to edit)."""
    torch = pytest.importorskip("torch")
    d = load(Path(verify.__file__).parent.parent / "derivations" / "batchnorm.deriv")
    sample = sampling.samples(d, 0)[0]
    x, gamma, beta, dy = (
        torch.tensor(np.asarray(sample.values[k], dtype=float)) for k in ("x", "gamma", "beta", "dy")
    )
    x.requires_grad_(True)
    mu = x.mean(0)
    var = ((x - mu) ** 2).mean(0).detach()
    y = gamma * (x - mu) / torch.sqrt(var + float(d.fixed_values["eps"])) + beta
    (y * dy).sum().backward()
    true = truth(d, sample)["x"]
    m = diagnosis.diagnose(d, "dx", x.grad.numpy(), true, sample)
    assert m.kind == Kind.MISSING_PATH and "dx treats var as a constant" in m.message, m
    assert m.fix is None and m.worst is not None
    assert m.worst.written == pytest.approx(float(x.grad.numpy()[m.worst.index]))


# -- the catalogue's mutation suite ---------------------------------------------------------------------

# A representative subset, to keep the suite fast: every kind of mutant on the normalisations, the
# softmaxes, the activations with kinks and a linear layer, two mutants per statement. The full suite
# (every catalogue file, 12 per statement) is measured by `python -m verify.sweep mutants --oracle exact`
# (BENCHMARKS.md has its figures).
SUBSET = ("batchnorm", "layernorm", "softmax", "softmax_cross_entropy", "leaky_relu", "mlp", "linear_cmu")
PER_STATEMENT = 2
NAMED, FIXED = 0.90, 0.70  # issue 13's acceptance: kinds other than unknown, verified fixes


@functools.cache
def diagnoses() -> Counter:
    counts = Counter()
    for path in [p for p in catalogue() if p.stem in SUBSET]:
        d = load(path)
        users = {
            st.target: sorted(u.target for u in d.gradients if st.target in u.reads) for st in d.gradients
        }
        for m in mutate.mutants(d, path.read_text(), PER_STATEMENT):
            report = verify.check(m.text, oracles=("exact",)).derivations[0]
            wrong = {g.name: g for g in report.gradients if g.status == "wrong"}
            g = next((wrong[n] for n in [m.statement, *users[m.statement]] if n in wrong), None)
            if g is None:
                continue  # invalid, or caught elsewhere: tests/test_sweeps.py pins that every mutant is caught
            counts["wrong"] += 1
            counts[f"kind {g.mistake.kind}"] += 1
            counts["named"] += g.mistake.kind != Kind.UNKNOWN
            counts["fixed"] += g.mistake.fix is not None
    return counts


@pytest.mark.xdist_group("diagnose-mutants")  # diagnoses() once, in one worker
def test_mutation_suite_kinds_are_named():
    """At least 90% of the wrong mutants' gradients carry a kind other than unknown."""
    counts = diagnoses()
    assert counts["wrong"] >= 30, counts
    assert counts["named"] >= NAMED * counts["wrong"], counts


@pytest.mark.xdist_group("diagnose-mutants")
def test_mutation_suite_fixes_are_verified():
    """At least 70% of the wrong mutants' gradients carry a fix (every fix offered was verified by the
    exact oracle before it was: verify.diagnose.fixes)."""
    counts = diagnoses()
    assert counts["fixed"] >= FIXED * counts["wrong"], counts
