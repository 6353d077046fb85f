"""Tests generated from the catalogue: one per derivation x gradient x oracle (ids like
`batchnorm-dx-exact`), and one per derivation x framework for the forward against the library op.
Adding a .deriv file to derivations/ adds its tests; nothing here names a derivation."""

import functools

import pytest

import verify
from verify.catalogue import load
from verify.catalogue import paths as catalogue
from verify.oracles import ORACLES

CATALOGUE = catalogue()


@functools.cache
def report(path):
    return verify.check(str(path)).derivations[0]


def shares_report(path):
    """The tests reading one entry's report are one xdist_group (pyproject.toml runs --dist loadgroup):
    it is checked in one worker only."""
    return pytest.mark.xdist_group(f"report-{path.stem}")


def gradient_cases():
    for path in CATALOGUE:
        d = load(path)
        for g in d.checked:
            for oracle in ORACLES:
                yield pytest.param(
                    path, g.target, oracle, id=f"{d.name}-{g.target}-{oracle}", marks=shares_report(path)
                )


@pytest.mark.parametrize("path,gradient,oracle", list(gradient_cases()))
def test_gradient(path, gradient, oracle):
    rep = report(path)
    assert rep.status != "invalid", str(rep.error)
    result = next(g for g in rep.gradients if g.name == gradient).oracles[oracle]
    if result.status == "skip":
        pytest.skip(f"{oracle}: {result.reason}")
    assert result.status == "pass", f"{gradient} by {oracle}: {result}"


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem, marks=shares_report(p)) for p in CATALOGUE])
@pytest.mark.parametrize("oracle", ["jax", "torch", "numpy"])
def test_forward_matches_reference(path, oracle):
    """The generated forward equals the library op (jax, torch) or the hand-written module (numpy)."""
    rep = report(path)
    checks = [f for f in rep.forward if f.oracle == oracle]
    skipped = {g.oracles[oracle].reason for g in rep.gradients if g.oracles[oracle].status == "skip"}
    if not checks and skipped:
        pytest.skip(f"{oracle}: {skipped.pop()}")
    assert checks, f"no {oracle} forward reference for {path.stem}: add it to verify/library.py"
    for f in checks:
        assert f.result.status == "pass", f"forward against {f.against}: {f.result}"


def test_catalogue_holds_the_course_formulas():
    """REFERENCE.md lists the formulas the catalogue must hold; each is a file in derivations/."""
    names = {p.stem for p in CATALOGUE}
    required = {
        "linear", "linear_column", "linear_cmu", "identity", "relu", "leaky_relu", "elu", "sigmoid", "tanh",
        "softmax", "cross_entropy", "softmax_cross_entropy", "softmax_cross_entropy_mean", "batchnorm",
        "layernorm", "mlp",
    }  # fmt: skip
    assert required <= names, required - names


@pytest.mark.parametrize("path", CATALOGUE, ids=[p.stem for p in CATALOGUE])
def test_catalogue_entry_has_title_and_source(path):
    """Every catalogue file says what it is and where the formula comes from."""
    header = load(path).header
    assert header.get("title") and header.get("source")


def test_leaky_relu_slope_zero():
    """Slope 0 (plain ReLU) is a legal leaky-ReLU slope and its formula still verifies."""
    text = (CATALOGUE[0].parent / "leaky_relu.deriv").read_text()
    assert "a: uniform(0.01, 0.5)" in text
    report = verify.check(text.replace("a: uniform(0.01, 0.5)", "a = 0"), oracles=("exact", "fd", "torch"))
    assert report.exit_code == 0, report.table()
