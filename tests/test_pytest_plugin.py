"""The pytest plugin (entry point pytest11): .deriv files collect as one item per gradient and oracle."""

import shutil
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from verify.catalogue import load, paths

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "cases"
# Installed, gradverify registers the plugin itself (entry point pytest11); from a bare checkout, name it.
LOAD = (
    []
    if any(e.name == "gradverify" for e in entry_points(group="pytest11"))
    else ["-p", "verify.pytest_plugin"]
)


@pytest.fixture
def pytester(pytester):
    """pytester whose runs load the plugin however gradverify is installed."""
    run = pytester.runpytest
    pytester.runpytest = lambda *args: run(*LOAD, *args)
    return pytester


def test_catalogue_collects_an_item_per_gradient_and_oracle(pytester):
    """`pytest derivations/` runs one passing item per catalogue gradient and oracle, named as the
    generated tests name them."""
    folder = pytester.mkdir("derivations")
    for path in paths():
        shutil.copy(path, folder)
    result = pytester.runpytest(
        "derivations", "--gradverify-oracle", "exact", "--gradverify-oracle", "fd", "-v"
    )
    expected = sum(len(load(p).checked) for p in paths()) * 2
    result.assert_outcomes(passed=expected)
    result.stdout.fnmatch_lines(["*batchnorm.deriv::batchnorm-dx-exact PASSED*"])


def test_wrong_gradient_fails_with_its_diagnosis(pytester):
    """A wrong formula's items fail, and the failure message is the diagnosis."""
    shutil.copy(CASES / "wrong_sign.deriv", pytester.path)
    result = pytester.runpytest("wrong_sign.deriv", "--gradverify-oracle", "exact")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*dx (line 5) by exact: fail*", "*has the wrong sign*"])


def test_invalid_file_fails_with_its_location(pytester):
    """A file that does not parse is one failing item whose message is file:line:col: message."""
    shutil.copy(CASES / "bad_caret.deriv", pytester.path)
    result = pytester.runpytest("bad_caret.deriv")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["bad_caret.deriv:3:10: '^' is not a power: use ??"])


def test_oracle_that_cannot_run_skips_with_its_reason(pytester):
    """A user's file has no hand-written module: the numpy item is a skip that says so."""
    shutil.copy(ROOT / "derivations" / "relu.deriv", pytester.path / "my_relu.deriv")
    result = pytester.runpytest("my_relu.deriv", "--gradverify-oracle", "numpy", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*not a catalogue derivation*"])


@pytest.mark.parametrize("seed", [0, 3])
def test_seed_option_reaches_the_check(pytester, seed):
    """--gradverify-seed is the seed of the sampled check (the same verdict, other draws)."""
    shutil.copy(ROOT / "derivations" / "linear.deriv", pytester.path)
    result = pytester.runpytest("linear.deriv", "--gradverify-oracle", "exact", f"--gradverify-seed={seed}")
    result.assert_outcomes(passed=3)
