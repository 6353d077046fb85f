"""What a newcomer tripped on (issue 17): oracle names after one flag, a catalogue name that does not
exist, code generated from a wrong derivation, an invalid file's message, the table's columns."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "cases"


def run(*args):
    return subprocess.run([sys.executable, "-m", "verify", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize(
    "flags",
    [
        ["--oracle", "exact", "fd"],
        ["--oracle", "exact", "--oracle", "fd"],
        ["--oracle", "exact", "fd", "--oracle", "exact"],
    ],
)
def test_several_oracles_after_one_flag_or_repeated(flags):
    """`--oracle exact fd`, the flag repeated, or both select those oracles, each once."""
    r = run("check", "derivations/tanh.deriv", *flags)
    assert r.returncode == 0, r.stderr
    header = r.stdout.splitlines()[0].split()
    assert header.count("exact") == 1 and header.count("fd") == 1
    assert not {"numpy", "jax", "torch"} & set(header)


def test_a_file_read_as_an_oracle_name_says_how_to_write_it():
    """`check --oracle exact f.deriv` takes the file for an oracle name: the usage error says to put the
    files first or to end the names with --, and that form works."""
    r = run("check", "--oracle", "exact", "derivations/tanh.deriv")
    assert r.returncode == 2 and "put the files before --oracle, or end its names with --" in r.stderr
    assert run("check", "--oracle", "exact", "--", "derivations/tanh.deriv").returncode == 0


def test_an_unknown_name_points_to_the_catalogue_list():
    """`show nosuchname` is neither a file nor a catalogue derivation: the message says so and names
    `gradverify list` (not a bare 'cannot read file'); a missing path still says the file is missing."""
    r = run("show", "nosuchname")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "no catalogue derivation or file of this name" in r.stderr and "gradverify list" in r.stderr
    assert "cannot read file" in run("show", "no/such.deriv").stderr


def test_codegen_warns_when_the_exact_oracle_finds_a_gradient_wrong():
    """codegen still prints the code of a wrong derivation, but warns on stderr with the diagnosis and
    exits 1; a verified one prints its code silently with status 0."""
    wrong = run("codegen", str(CASES / "wrong_sign.deriv"))
    assert wrong.returncode == 1 and "def backward" in wrong.stdout
    assert "warning: wrong_sign: dx is wrong (exact oracle)" in wrong.stderr
    right = run("codegen", "tanh")
    assert right.returncode == 0 and right.stderr == "" and "def backward" in right.stdout


def test_a_copy_of_a_catalogue_file_is_checked_as_the_catalogue_entry(tmp_path):
    """A byte-identical copy of a catalogue file (a checkout's derivations/ beside an installed package)
    gets the catalogue's hand-written module and library ops; a copy that differs is the user's own
    formula and gets neither."""
    import verify

    text = (ROOT / "derivations" / "relu.deriv").read_text(encoding="utf-8")
    same, edited = tmp_path / "same" / "relu.deriv", tmp_path / "edited" / "relu.deriv"
    for path, body in ((same, text), (edited, text + "\n# my note\n")):
        path.parent.mkdir()
        path.write_text(body, encoding="utf-8")
    numpy = {
        p: verify.check(str(p), oracles=("numpy",)).derivations[0].gradients[0].oracles["numpy"]
        for p in (same, edited)
    }
    assert numpy[same].status == "pass"
    assert numpy[edited].status == "skip" and "not a catalogue derivation" in numpy[edited].reason


def test_an_invalid_files_message_is_printed_once():
    """The file:line:col message of an invalid file is on stderr, once; the table marks the file INVALID
    without repeating it."""
    r = run("check", str(CASES / "bad_syntax.deriv"), "derivations/tanh.deriv", "--oracle", "exact")
    assert r.returncode == 2
    assert r.stderr.count("bad_syntax.deriv:3:") == 1 and "bad_syntax.deriv:3:" not in r.stdout
    assert "INVALID" in r.stdout


def test_the_table_says_what_its_numbers_are_and_each_oracles_tolerance():
    """Below the table: the cells are the largest normwise relative error, and each oracle's largest
    bound on that scale, as computed (the JSON's rel_bound), for the oracles that ran."""
    import verify

    report = verify.check("derivations/tanh.deriv", oracles=("exact", "fd"))
    text = " ".join(report.table().split())
    assert "the largest normwise relative error, max|written - reference| / max|reference|" in text
    bounds = {name: r.rel_bound for name, r in report.derivations[0].gradients[0].oracles.items()}
    assert 0 < bounds["exact"] < bounds["fd"] < 1e-3
    assert f"exact {bounds['exact']:.0e}, fd {bounds['fd']:.0e}" in text
    assert "torch" not in text
