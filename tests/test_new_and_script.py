"""`gradverify` is the same program as `python -m verify`; `new NAME` writes a template that checks."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import verify

ROOT = Path(__file__).resolve().parent.parent


def run(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "verify", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def test_new_writes_a_template_that_verifies(tmp_path):
    """The template is a commented, correct derivation under the given name: checking it passes."""
    r = run("new", "my_layer", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    path = tmp_path / "my_layer.deriv"
    assert path.read_text().startswith("title: my_layer:")
    assert verify.check(str(path), oracles=("exact", "fd")).exit_code == 0


def test_new_never_overwrites(tmp_path):
    """An existing file is left alone: exit 2 and one line saying so."""
    (tmp_path / "mine.deriv").write_text("keep")
    r = run("new", "mine", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "exists" in r.stderr
    assert (tmp_path / "mine.deriv").read_text() == "keep"


def test_new_rejects_a_name_that_is_no_identifier(tmp_path):
    """A derivation name is letters, digits and underscores (it names the generated module's functions)."""
    r = run("new", "my-layer", cwd=tmp_path)
    assert r.returncode == 2 and not list(tmp_path.iterdir())


@pytest.mark.skipif(
    shutil.which("gradverify") is None, reason="the package is not installed with its scripts"
)
def test_console_script_is_the_cli():
    """`gradverify --help` and `python -m verify --help` print the same commands (the usage line
    above them wraps by the program name's length, so it is left out)."""
    script = subprocess.run(["gradverify", "--help"], capture_output=True, text=True)
    module = run("--help", cwd=ROOT)
    assert script.returncode == module.returncode == 0
    assert script.stdout.split("\n\n", 1)[1] == module.stdout.split("\n\n", 1)[1]
