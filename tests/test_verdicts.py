"""The verdict model (DESIGN section 3): pass only for a comparison that ran, fail only beyond the
oracle's own error bound, inconclusive with its reason, an oracle's exception an error and never a
verdict; and the named cases from the issue that used to get false verdicts."""

import contextlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import verify
from verify import codegen, domains, sampling
from verify.catalogue import folder, load
from verify.check import run_oracle
from verify.oracles import ORACLE_CLASSES
from verify.oracles.finite_differences import FiniteDifferences
from verify.sweep import add

ROOT = Path(__file__).parent.parent
CATALOGUE = folder()


def run(*args):
    return subprocess.run([sys.executable, "-m", "verify", *args], capture_output=True, text=True, cwd=ROOT)


def text_of(name: str) -> str:
    return (CATALOGUE / f"{name}.deriv").read_text()


@pytest.mark.parametrize("seed", [55, 69])
def test_batchnorm_seeds_that_fd_called_wrong(seed):
    """fd called batch norm's correct dvar wrong under these seeds (N = 2 or 3, a fixed step of 2^-17 and
    a fixed tolerance); with its error estimated per element it passes or says it cannot resolve."""
    rep = verify.check("batchnorm", oracles=("exact", "fd"), seed=seed).derivations[0]
    assert rep.status == "verified", rep
    for g in rep.gradients:
        assert g.oracles["fd"].status in ("pass", "inconclusive"), (g.name, g.oracles["fd"])


def test_oracle_exception_is_an_error_not_a_verdict(monkeypatch):
    """An oracle that raises reports `error` with the stage and the exception; the formula is not called
    wrong, the others still decide, and the exit status is 4 (the tool failed)."""

    def broken(self, sample):
        raise ZeroDivisionError("a bug in the oracle")

    monkeypatch.setattr(FiniteDifferences, "gradients", broken)
    report = verify.check("tanh", oracles=("exact", "fd"))
    g = report.derivations[0].gradients[0]
    assert g.oracles["fd"].status == "error"
    assert "ZeroDivisionError" in g.oracles["fd"].reason and "computing gradients" in g.oracles["fd"].reason
    assert g.status == "verified" and report.derivations[0].status == "verified"
    assert report.exit_code == 4
    assert "ERROR" in report.table() and "a bug in the oracle" in report.table()


def test_every_oracle_skipping_is_inconclusive_with_the_reasons():
    """A gradient no oracle compared is inconclusive (exit 3), never verified, and says why."""
    report = verify.check(str(ROOT / "tests/cases/wrong_sign.deriv"), oracles=("numpy",))
    g = report.derivations[0].gradients[0]
    assert g.status == "inconclusive" and "numpy skip" in g.reason
    assert report.exit_code == 3
    assert "not a catalogue derivation" in report.table()


def test_a_module_that_computes_no_such_gradient_skips_it():
    """The hand-written batch norm computes no dvar: the numpy oracle says skip, with why, not pass."""
    g = next(
        g for g in verify.check("batchnorm", oracles=("numpy",)).derivations[0].gradients if g.name == "dvar"
    )
    assert g.oracles["numpy"].status == "skip" and "does not compute it" in g.oracles["numpy"].reason


def test_json_to_stdout_is_only_json():
    """`--json -` writes the JSON document alone on standard output (the table is left out), so that it
    pipes into a JSON tool."""
    r = run("check", "derivations/identity.deriv", "--oracle", "exact", "--json", "-")
    assert r.returncode == 0
    assert json.loads(r.stdout)["derivations"][0]["status"] == "verified"


def test_reasons_show_in_table_and_json():
    """Every skip, inconclusive and error carries a one-line reason, shown below the table and in the
    JSON."""
    report = verify.check("layernorm", oracles=("exact", "numpy"))
    assert "numpy skip for dxhat: " in report.table()
    dxhat = next(g for g in report.to_json()["derivations"][0]["gradients"] if g["name"] == "dxhat")
    assert dxhat["oracles"]["numpy"]["status"] == "skip" and dxhat["oracles"]["numpy"]["reason"]


def test_ill_conditioned_comparison_is_inconclusive_with_its_reason():
    """Batch norm with eps 1e-8 at N = 2: xhat is +-1 whatever x is, so the true dx is tiny beside the
    terms it is computed from. fd cannot resolve it in float64 and says so with the numbers; the
    gradient still rests on the oracles that could decide."""
    text = add(text_of("batchnorm").replace("eps = 1e-5", "eps = 1e-8"), "sizes", "N = 2")
    rep = verify.check(text, oracles=("exact", "fd"), seed=0).derivations[0]
    dx = next(g for g in rep.gradients if g.name == "dx")
    assert dx.status == "verified"
    assert dx.oracles["fd"].status == "inconclusive"
    assert "cannot resolve it here: its error bound" in dx.oracles["fd"].reason
    assert "of the largest true dx" in dx.oracles["fd"].reason


def test_gradient_that_is_zero_compares_absolutely():
    """Softmax over one class: every gradient is zero mathematically. The exact oracle passes it (zero
    to within its own rounding) instead of calling 1e-51 against 1e-46 unresolvable."""
    text = add(text_of("softmax"), "sizes", "K = 1")
    rep = verify.check(text, oracles=("exact",)).derivations[0]
    assert rep.gradients[-1].oracles["exact"].status == "pass"


def test_log_of_undeclared_input_is_drawn_positive_and_says_so():
    """A log of an input with no declared domain: the input is drawn positive, `show` and the report say
    it was inferred and from where."""
    path = ROOT / "tests/cases/log_of_undeclared_input.deriv"
    d = load(str(path))
    assert domains.of(d, "x").kind == "positive"
    assert "positive (inferred: log(x[n, k]) needs x[n, k] > 0)" in domains.describe(d, "x")
    r = run("show", str(path))
    assert "positive (inferred: log(x[n, k]) needs x[n, k] > 0)" in r.stdout
    rep = verify.check(str(path), oracles=("exact", "fd")).derivations[0]
    assert rep.status == "verified"
    assert rep.to_json()["domains"]["x"] == {
        "domain": "positive",
        "inferred": "log(x[n, k]) needs x[n, k] > 0",
    }


def test_forward_that_is_never_real_is_invalid_with_the_value():
    """A forward real at no draw (the log of a negative number) is invalid with the value that is not
    real, never a traceback and never a verdict."""
    text = "[forward]\ny[n,i] = log(-x[n,i]*x[n,i] - 1)\n[gradients]\ndx[n,i] = dy[n,i]\n"
    rep = verify.check(text, oracles=("exact",)).derivations[0]
    assert rep.status == "invalid"
    assert "not real and finite" in rep.error.message and "y[0, 0] = nan" in rep.error.message


def test_uppercase_scalar_that_is_no_size_is_warned_about():
    """`/ M` where the sizes are I and K: M is an input drawn at random, and the report says so."""
    text = (
        "[forward]\nmu[k] = sum(x[i,k], i) / M\ny[i,k] = x[i,k] - mu[k]\n"
        "[gradients]\ndx[i,k] = dy[i,k] - sum(dy[m,k], m) / M\n"
    )
    rep = verify.check(text, oracles=("exact",)).derivations[0]
    assert any("M is an input drawn from uniform(1/2, 2), not a size; the sizes here are I and K" in w
               for w in rep.warnings)  # fmt: skip
    assert "warning: M is an input" in verify.check(text, oracles=("exact",)).table()


def test_size_fixed_to_one_is_warned_about():
    """N = 1 cannot see a missing 1/N: a cross-entropy gradient without it passes, with the warning."""
    text = add(text_of("cross_entropy").replace("/ (N * x[n,k])", "/ x[n,k]"), "sizes", "N = 1")
    rep = verify.check(text, oracles=("exact",)).derivations[0]
    assert rep.status == "verified"
    assert any("N = 1 cannot see a missing or extra 1/N" in w for w in rep.warnings)


def test_equal_fixed_sizes_are_warned_about():
    """Two sizes fixed to one value cannot see a transpose."""
    text = add(text_of("linear"), "sizes", "I = 3", "J = 3")
    rep = verify.check(text, oracles=("exact",)).derivations[0]
    assert any("I = J = 3 cannot see a transpose" in w for w in rep.warnings)


def test_drawn_sizes_avoid_fixed_ones():
    """A drawn size never equals a fixed one, so fixing one size cannot make two coincide."""
    d = load(add(text_of("linear"), "sizes", "I = 3"))
    for sample in sampling.samples(d, 0) + sampling.samples(d, 1):
        assert sample.sizes["I"] == 3 and 3 not in (sample.sizes["N"], sample.sizes["J"])


def test_near_draw_places_kinks_on_both_sides():
    """Besides the far draws, a ReLU check has a draw with inputs 1/1024 above and below the kink."""
    d = load("relu")
    draws = sampling.samples(d, 0)
    near = [s for s in draws if s.near]
    assert len(near) == 1
    x = np.array(near[0].values["x"]).ravel()
    assert (np.abs(x - float(sampling.NEAR)) < 1e-9).any() and (np.abs(x + float(sampling.NEAR)) < 1e-9).any()


@pytest.mark.parametrize("backend", ["numpy", "jax", "torch"])
@pytest.mark.parametrize("name", ["softmax", "softmax_cross_entropy", "softmax_cross_entropy_mean"])
def test_generated_forward_survives_large_logits(name, backend):
    """Logits near 950 in float64 and near 100 in float32: the generated forward (shifted by the maximum)
    stays finite and equals the float64 forward of the same logits less their maximum."""
    pytest.importorskip(backend)
    d = load(name)
    gen = codegen.compile_derivation(d, backend)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5))
    t = np.eye(5)[rng.integers(5, size=3)]
    for base, dtype in ((950.0, np.float64), (100.0, np.float32)):
        values = {"x": (x + base).astype(dtype), "t": t.astype(dtype)}
        with _float64(backend, dtype):
            out = _numpy(gen.forward(**_to(backend, values)))
        expected = _numpy(codegen.compile_derivation(d, "numpy").forward(x=x, t=t))  # softmax is shift-free
        for key, value in out.items():
            assert np.isfinite(value).all(), (key, dtype)
            assert np.allclose(value, expected[key], rtol=1e-4 if dtype == np.float32 else 1e-9), key


def _float64(backend, dtype):
    """JAX computes in float32 unless asked: float64 for the float64 half of the test."""
    if backend == "jax" and dtype == np.float64:
        import jax

        return jax.enable_x64(True)
    return contextlib.nullcontext()


def _to(backend, values):
    if backend == "torch":
        import torch

        return {k: torch.tensor(v) for k, v in values.items()}
    if backend == "jax":
        import jax.numpy as jnp

        return {k: jnp.asarray(v) for k, v in values.items()}
    return values


def _numpy(out):
    return {
        k: np.asarray(v.detach() if hasattr(v, "detach") else v, dtype=np.float64) for k, v in out.items()
    }


def test_exported_layer_survives_large_logits():
    """A layer exported from the softmax derivation (torch.autograd.Function) runs at logits near 950."""
    torch = pytest.importorskip("torch")
    from verify.export import torch_function

    layer = torch_function("softmax")
    x = (torch.randn(3, 5, dtype=torch.float64) + 950).requires_grad_(True)
    y = layer.apply(x)
    y.backward(torch.randn(3, 5, dtype=torch.float64))
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert torch.allclose(y, torch.softmax(x.detach(), dim=1))


def test_every_oracle_judges_the_catalogue_at_large_logits():
    """The catalogue's softmax and softmax cross-entropies with logits near 950: every oracle that runs
    passes (none sees NaN from an overflowing forward)."""
    for name in ("softmax", "softmax_cross_entropy", "softmax_cross_entropy_mean"):
        text = add(text_of(name), "inputs", "x: uniform(949, 951)")
        rep = verify.check(text).derivations[0]
        for g in rep.gradients:
            for oracle, r in g.oracles.items():
                assert r.status in ("pass", "skip"), (name, g.name, oracle, r)


@pytest.mark.parametrize("oracle", sorted(ORACLE_CLASSES))
def test_no_oracle_reports_a_gradient_it_never_compared(oracle):
    """An oracle's pass always comes from a comparison: every result is pass, fail, inconclusive, skip or
    error, and a pass carries the errors it measured."""
    d = load("batchnorm")
    run = run_oracle(oracle, d, sampling.samples(d, 0))
    for g, r in run.results.items():
        assert r.status in ("pass", "fail", "inconclusive", "skip", "error"), (g, r)
        if r.status == "pass":
            assert r.max_abs_err is not None and r.bound is not None, (g, r)


def test_power_with_a_value_exponent_is_verified():
    """x ** a with the exponent an input: x is drawn positive (inferred), and the bounds carry the
    exponent's rounding (a - 1 is not exact in float64) instead of giving up as unbounded."""
    text = "[forward]\ny[i] = x[i] ** a\n[gradients]\ndx[i] = dy[i] * a * x[i] ** (a - 1)\n"
    rep = verify.check(text, oracles=("exact", "fd", "torch")).derivations[0]
    assert rep.status == "verified", rep
    assert rep.domains["x"] == {"domain": "positive", "inferred": "x[i]**a needs x[i] > 0"}
    assert all(r.status == "pass" for r in rep.gradients[0].oracles.values())


def test_huge_whole_power_keeps_its_fifty_digits():
    """A whole power of more than 256 bits (a literal 1e300 in a forward) is exp(n log|b|) in the exact
    evaluator, as mpmath's squaring took 15 ms an element (479 s for fuzz seed 52057): the same 50 digits,
    the sign of an odd power of a negative base, and reciprocals for a negative exponent."""
    import mpmath
    import sympy as sp

    from verify.exacteval import power

    with mpmath.workdps(50):
        for base in ("0.7312", "-0.7312", "1.0000001", "-3.5", "1e-300", "-1e300"):
            for n in (10**300, 10**300 + 1, -(10**300) - 1, 2**257 + 1):
                b = mpmath.mpf(base)
                want, got = b**n, power(b, sp.Integer(n))
                assert got == want or abs(got - want) <= abs(want) * mpmath.mpf("1e-49"), (base, n)
                assert mpmath.sign(got) == mpmath.sign(want), (base, n)


@pytest.mark.parametrize("name", ["relu_output_mask", "mlp_output_masks"])
def test_masks_written_through_outputs_are_decided_by_every_oracle(name):
    """where(a > 0, ...) with a = max(h, 0): float64 computes a as exactly 0 wherever h < 0, so every
    float oracle decides the mask as the exact one does and passes (none says inconclusive)."""
    rep = verify.check(str(ROOT / f"tests/cases/{name}.deriv"), oracles=("exact", "fd", "torch")).derivations[
        0
    ]
    for g in rep.gradients:
        for oracle, r in g.oracles.items():
            assert r.status == "pass", (g.name, oracle, r.reason)


def test_near_draw_stops_placing_at_its_budget(monkeypatch, tmp_path):
    """The near draw evaluates the forward again for every step of its search for each kink site
    (fuzz case 200: a `min` over a 32-term sum took 184 evaluations, 6 s): it spends at most
    verify.limits.MAX_PLACING steps of forward evaluation, and a smaller budget places fewer kinks
    (here none, so no near draw) instead of running on."""
    path = tmp_path / "kinked_sum.deriv"
    path.write_text(
        "[forward]\n"
        "y[i, k] = min(gamma[k] / N, softplus(sum(w[i] * g[m], m)))\n"
        "[gradients]\n"
        "dgamma[k] = sum(where(gamma[k] / N < softplus(sum(w[i] * g[m], m)), dy[i, k] / N, 0), i)\n"
        "[sizes]\nM = 32\n"
    )
    d = load(path)
    evaluations = []
    real = sampling._forward_kinks

    def counted(d, sizes, exact):
        evaluations.append(sampling._forward_steps(d, sizes))
        return real(d, sizes, exact)

    monkeypatch.setattr(sampling, "_forward_kinks", counted)
    assert sampling.near(d, 3) is not None
    assert 0 < sum(evaluations) <= verify.limits.MAX_PLACING
    evaluations.clear()
    monkeypatch.setattr(verify.limits, "MAX_PLACING", 0)
    assert sampling.near(d, 3) is None and not evaluations


RELU_THEN_MAXPOOL = """[forward]
h[n,c,a,b] = max(x[n,c,a,b], 0)
y[n,c,i,j] = max(h[n,c, S*i + kh, S*j + kw], kh, kw)
[gradients]
dh[n,c,a,b] = sum(where(h[n,c,a,b] == y[n,c,i,j], dy[n,c,i,j], 0) * delta(a, S*i + kh) * delta(b, S*j + kw),
                  i, j, kh, kw)
dx[n,c,a,b] = where(x[n,c,a,b] > 0, dh[n,c,a,b], 0)
[inputs]
x: (N, C, A, B)
[sizes]
I = (A - KH) / S + 1
J = (B - KW) / S + 1
KH = 2
KW = 2
S = 2
"""


def test_draws_that_cannot_keep_kinks_clear_are_inconclusive_not_invalid():
    """A max pool of ReLU outputs ties zeros in some window at nearly every draw, so no draw keeps every
    kink clear: the file is correct, nothing was compared, and each gradient is inconclusive with that
    reason (exit 3), where the file was once called invalid (exit 2)."""
    report = verify.check(RELU_THEN_MAXPOOL, oracles=("exact",))
    d = report.derivations[0]
    assert d.status == "inconclusive" and d.error is None, d.status
    assert {g.name: g.status for g in d.gradients} == {"dh": "inconclusive", "dx": "inconclusive"}
    assert all("no draw of" in g.reason and "no oracle compared anything" in g.reason for g in d.gradients)
    assert report.exit_code == 3


def test_a_condition_that_never_changes_side_is_a_warning():
    """A written gradient's where(x > 4, ...) is never true at the draws (normal values): what it does
    there was never compared, and the report says so rather than let the verdict look complete."""
    text = "[forward]\ny[n,i] = max(x[n,i], 0)\n[gradients]\ndx[n,i] = where(x[n,i] > 0, where(x[n,i] > 4, 2*dy[n,i], dy[n,i]), 0)\n"
    d = verify.check(text, oracles=("exact",)).derivations[0]
    assert any("x[n, i] > 4 (dx, line 4) kept one side of its threshold" in w for w in d.warnings), d.warnings
    assert not any("x[n, i] > 0" in w for w in d.warnings), d.warnings


OVERFLOWING = """\
[forward]
y[n, k] = exp(400 * x[n, k])**2
[gradients]
dx[n, k] = 800 * exp(400 * x[n, k])**2 * dy[n, k]
"""


def test_an_overflow_is_judged_not_announced():
    """A formula whose float64 values overflow (exp(400 x)**2 past 1e308 at x near 1) is judged by every
    oracle from the values it gives: no RuntimeWarning reaches the caller (run under warnings-as-errors),
    no oracle errors, and the gradient is not called wrong. The warnings are silenced once, in
    `check.run_oracle`, around every oracle's forward and gradients."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rep = verify.check(OVERFLOWING, seed=0, diagnose=False).derivations[0]
    for g in rep.gradients:
        for name, result in g.oracles.items():
            assert result.status in ("pass", "inconclusive", "skip"), (name, result)
    assert rep.status != "wrong", rep


@pytest.mark.parametrize("name", ["fd", "torch"])
def test_a_reference_without_a_bound_gives_its_own_oracles_reason(name, monkeypatch):
    """A reference that is not finite where its bound is not either leaves the gradient inconclusive,
    with the reason of the oracle that gave it: fd's (no step converges clear of the kinks), and for a
    framework its overflow. The reason used to blame fd's steps for every oracle."""
    if name == "torch":
        pytest.importorskip("torch")
    oracle = ORACLE_CLASSES[name]

    def unbounded(self, sample):
        g = self.d.claims[0]
        written = np.zeros(np.shape(sample.values["x"]))
        yield g.target, written, np.full(written.shape, np.nan), np.full(written.shape, np.inf, dtype=object)

    monkeypatch.setattr(oracle, "gradients", unbounded)
    d = load("tanh")
    result = run_oracle(name, d, sampling.samples(d, 0, 1)).results["dx"]
    assert result.status == "inconclusive" and "no reference value it can bound" in result.reason
    assert ("no step" in result.reason) == (name == "fd"), result.reason
    assert ("overflow" in result.reason) == (name == "torch"), result.reason
