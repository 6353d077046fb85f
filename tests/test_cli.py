"""The command line: exit statuses, one-line errors without tracebacks, the JSON contract, and that
nothing in a formula file ever runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

CASES = Path(__file__).parent / "cases"
ROOT = Path(__file__).parent.parent


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "verify", *args], capture_output=True, text=True, cwd=cwd)


def test_check_correct_file_exits_0():
    """A verified derivation exits 0 and says so in the summary line."""
    r = run("check", "derivations/tanh.deriv", "--oracle", "exact", "--oracle", "fd")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 verified" in r.stdout


def test_check_wrong_file_exits_1_and_names_the_gradient():
    """A wrong gradient exits 1 and the report names it with its diagnosis: one line, at the statement's
    own line, with the kind of mistake and the verified fix."""
    r = run("check", str(CASES / "wrong_missing_mean.deriv"), "--oracle", "exact")
    assert r.returncode == 1
    assert "wrong_missing_mean.deriv:6: dx is wrong [scale]: is N times the true gradient" in r.stdout
    assert "did you mean: dx[n, k] = " in r.stdout


@pytest.mark.parametrize("name", ["bad_syntax", "bad_import", "bad_lambda", "bad_string", "bad_attribute"])
def test_malformed_file_exits_2_with_one_line(name):
    """Malformed input: exit 2, exactly one line `file:line:col: message` on stderr, no traceback."""
    r = run("check", str(CASES / f"{name}.deriv"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr + r.stdout
    assert lines[0].startswith(str(CASES / f"{name}.deriv") + ":3:")


def test_unreadable_file_exits_2():
    """A missing file is an invalid input, reported in one line."""
    r = run("check", "no/such/file.deriv")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("no/such/file.deriv:0:0: cannot read file")


def test_bad_arguments_exit_2():
    """Unknown oracles or commands are usage errors: exit 2, one line."""
    r = run("check", "derivations/tanh.deriv", "--oracle", "nope")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_nothing_in_a_formula_runs(tmp_path):
    """Text that would run code if evaluated is rejected before anything runs: no marker file appears."""
    marker = tmp_path / "ran"
    attempts = [
        f"y[n,i] = __import__('os').system('touch {marker}')",
        f"y[n,i] = exec(\"open('{marker}','w')\")",
        f"y[n,i] = eval(\"open('{marker}','w')\")",
        "y[n,i] = (lambda: 1)()",
        f"y[n,i] = x[n,i].__class__('{marker}')",
    ]
    for line in attempts:
        path = tmp_path / "evil.deriv"
        path.write_text(f"[forward]\n{line}\n[gradients]\ndx[n,i] = dy[n,i]\n")
        r = run("check", str(path))
        assert r.returncode == 2, line
        assert "Traceback" not in r.stderr
    assert not marker.exists()


def test_json_contract(tmp_path):
    """--json writes the keys and meanings of DESIGN section 4."""
    out = tmp_path / "r.json"
    r = run(
        "check", "derivations/linear.deriv", str(CASES / "wrong_sign.deriv"), str(CASES / "bad_free_index.deriv"),
        "--oracle", "exact", "--oracle", "fd", "--json", str(out),
    )  # fmt: skip
    assert r.returncode == 2
    data = json.loads(out.read_text())
    good, wrong, invalid = data["derivations"]
    assert (
        good["status"] == "verified"
        and good["name"] == "linear"
        and good["file"] == "derivations/linear.deriv"
    )
    grad = good["gradients"][0]
    assert set(grad) >= {"name", "status", "oracles"}
    assert set(grad["oracles"]["exact"]) >= {"status", "max_abs_err", "max_rel_err", "worst_index"}
    assert wrong["status"] == "wrong" and "diagnosis" in wrong["gradients"][0]
    assert invalid["status"] == "invalid"
    assert invalid["error"] == {
        "line": 3,
        "column": 38,
        "message": "free index k on the right is not on the left",
    }


def test_skipped_framework_is_visible(monkeypatch):
    """An oracle that cannot run is a skip with its reason, never a pass."""
    import verify
    from verify.oracles import base

    monkeypatch.setattr(base.importlib.util, "find_spec", lambda name: None)
    rep = verify.check("derivations/tanh.deriv", oracles=("exact", "jax")).derivations[0]
    jax = rep.gradients[0].oracles["jax"]
    assert jax.status == "skip" and "not installed" in jax.reason
    assert rep.gradients[0].oracles["exact"].status == "pass"


def test_list_and_show():
    """`list` names every catalogue file; `show` prints the parsed derivation back in the language."""
    r = run("list")
    assert r.returncode == 0 and "batchnorm" in r.stdout
    r = run("show", "batchnorm")
    assert r.returncode == 0
    assert "dx[n, j] = " in r.stdout and "sum(" in r.stdout


def test_assert_verified_helper():
    """verify.testing.assert_verified passes quietly on a right formula and fails with the table."""
    from verify.testing import NotVerified, assert_verified

    assert_verified(ROOT / "derivations" / "tanh.deriv", oracles=("exact",))
    with pytest.raises(NotVerified, match="has the wrong sign"):
        assert_verified(str(CASES / "wrong_sign.deriv"), oracles=("exact",))


def test_internal_error_is_one_line_exit_4(monkeypatch, capsys):
    """A bug of the tool (here: sampling raising) is exit 4 and one line naming the stage and the
    exception, never exit 1 (a verdict) and never a traceback; --debug adds the traceback."""
    from verify import cli, sampling

    def broken(*args, **kwargs):
        raise KeyError("planted")

    monkeypatch.setattr(sampling, "samples", broken)
    assert cli.main(["check", "derivations/tanh.deriv", "--oracle", "exact"]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "internal error in checking: KeyError: 'planted'" in err and "--debug" in err
    assert cli.main(["check", "derivations/tanh.deriv", "--oracle", "exact", "--debug"]) == 4
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("python -m verify check: internal")


def test_closed_pipe_ends_quietly():
    """`python -m verify list | head -1`: the reader goes away; the program ends with status 0 and says
    nothing on stderr (no BrokenPipeError traceback)."""
    r = subprocess.run(
        f"'{sys.executable}' -m verify list | head -1; exit ${{PIPESTATUS[0]}}",
        shell=True, executable="/bin/bash", capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0 and r.stderr == "" and len(r.stdout.splitlines()) == 1


def _statement(rhs: str) -> str:
    return f"[forward]\ny[i] = {rhs}\n[gradients]\ndx[i] = dy[i]\n"


HUGE = {
    "3000-term sum": _statement(" + ".join(["x[i]"] * 3000)),
    "600-term sum": _statement(" + ".join(["x[i]"] * 600)),
    "5000 unary minus": _statement("-" * 5000 + "x[i]"),
    "3000 nested **2": _statement("x[i]" + "**2" * 3000),
    "power tower": _statement("x[i] ** 2**2**2**2**2**2"),
    "2000 statements": "[forward]\n"
    + "".join(f"h{k}[i] = x[i] * {k}\n" for k in range(2000))
    + "y[i] = x[i]\n[gradients]\ndx[i] = dy[i]\n",
    "sums nested 20 deep": "[forward]\ny[i] = "
    + "".join(f"sum(w[a{k}] * " for k in range(20))
    + "x[i]"
    + "".join(f", a{k})" for k in reversed(range(20)))
    + "\n[gradients]\ndx[i] = dy[i]\n",
    "sums nested 12 deep": "[forward]\ny[i] = "
    + "".join(f"sum(w[a{k}] * " for k in range(12))
    + "x[i]"
    + "".join(f", a{k})" for k in reversed(range(12)))
    + "\n[gradients]\ndx[i] = dy[i]\n",
    "size 10**12": _statement("x[i]") + "[sizes]\nI = 1000000000000\n",
}


@pytest.mark.parametrize("name", HUGE)
def test_inputs_beyond_the_limits_exit_2_with_a_position(tmp_path, name):
    """Issue 11's hangs, recursion and memory errors: each is refused at once, exit 2, one line
    `file:line:col: message` with a real position, no traceback."""
    path = tmp_path / "huge.deriv"
    path.write_text(HUGE[name])
    r = run("check", str(path), "--oracle", "exact")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    line = r.stderr.strip().splitlines()[-1]
    where = line[len(str(path)) + 1 :].split(":")
    assert line.startswith(str(path) + ":") and int(where[0]) >= 1 and int(where[1]) >= 1, line


def test_output_that_reads_no_checked_input():
    """Found by the fuzzer: when the output does not depend on the input whose gradient is checked,
    torch.autograd.grad refused the output ("does not require grad") and the torch oracle raised; every
    oracle finds the gradient zero instead."""
    import verify

    text = (
        "[forward]\nh[n] = w[n] * 2\ny = 1e-5 * 0.5 + where(a < 0.5, a, 0)\n[gradients]\ndw[n] = 0 * w[n]\n"
    )
    report = verify.check(text, oracles=("exact", "fd", "jax", "torch"))
    assert report.exit_code == 0, report.table()


def test_codegen_of_a_division_by_zero_through_a_helper_is_a_positioned_error(tmp_path):
    """Found by the fuzzer (case 6629): (g3[k] - w3[k])**-1 with the helper g3 = w3 divides by zero only
    once the lowering puts g3 in; the printer met SymPy's complex infinity and codegen failed with an
    internal error (exit 4). It is the statement's error, with its line, exit 2."""
    path = tmp_path / "zero.deriv"
    path.write_text(
        "[forward]\ny[k] = w[k] * 2\n[gradients]\ng[k] = w[k]\ndw[k] = max(2 * dy[k], (g[k] - w[k])**-1)\n",
        encoding="utf-8",
    )
    done = run("codegen", str(path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"{path}:5:1: dw divides by zero once the helpers it reads are put in: no code computes it"
    )


def test_values_past_float64_give_strict_json_and_finite_errors(tmp_path):
    """exp(1000 x) in 50 digits passes the exact oracle with values past 1e308: its relative error is
    computed before the conversion to float64 (a number, not nan), an absolute one float64 cannot hold is
    null (NaN and Infinity are no JSON), and no NumPy warning reaches stderr."""
    path = tmp_path / "big.deriv"
    path.write_text(
        "[forward]\ny[n,j] = exp(1000 * x[n,j])\n[gradients]\ndx[n,j] = 1000 * dy[n,j] * y[n,j]\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "verify", "check", str(path), "--json", "-"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip

    def refuse(constant):
        raise AssertionError(f"{constant} in the JSON")

    report = json.loads(r.stdout, parse_constant=refuse)
    exact = report["derivations"][0]["gradients"][0]["oracles"]["exact"]
    assert exact["status"] == "pass" and 0 <= exact["max_rel_err"] < 1e-30, exact
    assert exact["max_abs_err"] is None and "Warning" not in r.stderr, r.stderr


def test_python_check_arguments():
    """verify.check(path, oracles="exact") runs that one oracle (not the letters e, x, a, ...); an empty
    oracle list or a seed that is no whole number is an error that says so."""
    import verify

    report = verify.check(str(ROOT / "derivations" / "relu.deriv"), oracles="exact")
    assert set(report.derivations[0].gradients[0].oracles) == {"exact"}
    with pytest.raises(ValueError, match="no oracle to run"):
        verify.check(str(ROOT / "derivations" / "relu.deriv"), oracles=())
    with pytest.raises(TypeError, match="seed must be a whole number"):
        verify.check(str(ROOT / "derivations" / "relu.deriv"), seed="a")


def test_new_in_a_missing_folder_exits_2(tmp_path):
    """`new nodir/x` is a bad argument (exit 2, one line), not an internal error."""
    r = run("new", "nodir/x", cwd=tmp_path)
    assert r.returncode == 2 and "no folder nodir" in r.stderr and "Traceback" not in r.stderr
