"""The edit-check loop: `check --watch`, JAX's persistent cache in the tool's own processes only, and the
framework oracles in worker processes giving the same verdicts as in-process."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import verify
from verify import runtime

ROOT = Path(__file__).resolve().parent.parent
BATCHNORM = (ROOT / "derivations" / "batchnorm.deriv").read_text(encoding="utf-8")
DBETA = "dbeta[j]   = sum(dy[n,j], n)"


def cli(*args, env=None, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "verify", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def until_checked(process) -> list[str]:
    """stdout lines up to the next 'checked in' line of a watching process."""
    lines = []
    while not lines or not lines[-1].startswith("checked in"):
        line = process.stdout.readline()
        assert line, "the watcher ended early: " + process.stderr.read()
        lines.append(line)
    return lines


def test_watch_rechecks_each_save_keeps_watching_after_an_invalid_one_and_stops_on_ctrl_c(tmp_path):
    """A save that breaks a gradient prints the wrong verdict; a half-written save prints its one-line
    error and watching goes on; the fixed file verifies again; Ctrl-C ends it with status 0 and no
    traceback, its worker processes gone."""
    assert DBETA in BATCHNORM
    path = tmp_path / "bn.deriv"
    path.write_text(BATCHNORM, encoding="utf-8")
    # Ctrl-C as a terminal delivers it: a test run in the background (`pytest &` in a script, as CI may run
    # it) hands its children SIGINT ignored, and the watcher would never see the signal that stops it.
    watcher = cli(
        "check", str(path), "--watch", "--oracle", "exact", "--oracle", "torch",
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        assert "1 verified" in "".join(until_checked(watcher))
        path.write_text(BATCHNORM.replace(DBETA, DBETA.replace("= sum", "= 2*sum")), encoding="utf-8")
        changed = "".join(until_checked(watcher))
        assert "bn.deriv changed" in changed and "1 wrong" in changed
        path.write_text(BATCHNORM.replace("dx[n,j]", "dx[n,j"), encoding="utf-8")
        assert "1 invalid" in "".join(until_checked(watcher))
        path.write_text(BATCHNORM, encoding="utf-8")
        assert "1 verified" in "".join(until_checked(watcher))
    finally:
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0
    assert "stopped watching" in out and "Traceback" not in err
    # the invalid save's error, once, as file:line:col: message
    assert err.count(f"{path}:") == 1 and err.strip().startswith(f"{path}:")


def test_watch_refuses_json():
    """--watch prints each check to the terminal; with --json it is a usage error (exit 2)."""
    done = cli("check", "derivations/tanh.deriv", "--watch", "--json", "-")
    out, err = done.communicate(timeout=120)
    assert done.returncode == 2 and "--watch" in err


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, Path.home() / ".cache" / "gradverify" / "jax"),
        ({"XDG_CACHE_HOME": "/srv/cache"}, Path("/srv/cache/gradverify/jax")),
        ({"XDG_CACHE_HOME": "relative/ignored"}, Path.home() / ".cache" / "gradverify" / "jax"),
        ({"XDG_CACHE_HOME": "/srv/cache", runtime.NO_CACHE_VARIABLE: "1"}, None),
        ({runtime.NO_CACHE_VARIABLE: "0"}, Path.home() / ".cache" / "gradverify" / "jax"),
    ],
)
def test_jax_cache_folder(environ, expected):
    """The cache is in the user's cache folder (XDG_CACHE_HOME when absolute, as the XDG specification
    says, else ~/.cache); GRADVERIFY_NO_JAX_CACHE=1 turns it off."""
    assert runtime.jax_cache_dir(environ) == expected


def test_configure_sets_the_cache_and_fast_compiles_once_and_keeps_the_users_cache():
    """configure writes JAX's cache settings and the fast-compile XLA flags into the environment it is
    given, once however often it runs; a JAX_COMPILATION_CACHE_DIR the user set wins; opted out, no cache."""
    environ = {"XDG_CACHE_HOME": "/srv/cache", "XLA_FLAGS": "--mine"}
    runtime.configure(environ)
    runtime.configure(environ)
    assert environ["JAX_COMPILATION_CACHE_DIR"] == "/srv/cache/gradverify/jax"
    assert environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    assert environ["XLA_FLAGS"].startswith("--mine ") and environ["XLA_FLAGS"].count("--xla_backend") == 1
    users = {"JAX_COMPILATION_CACHE_DIR": "/mine"}
    runtime.configure(users)
    assert users["JAX_COMPILATION_CACHE_DIR"] == "/mine"
    opted_out = {runtime.NO_CACHE_VARIABLE: "1"}
    runtime.configure(opted_out)
    assert "JAX_COMPILATION_CACHE_DIR" not in opted_out


def test_the_command_line_fills_the_cache_and_the_opt_out_leaves_none(tmp_path):
    """`check` with the jax oracle writes compiled programs under $XDG_CACHE_HOME/gradverify/jax; a
    second cold run reads them and gives the same verdict; with GRADVERIFY_NO_JAX_CACHE=1 nothing is
    written."""
    args = ("check", "derivations/tanh.deriv", "--oracle", "jax")
    cached = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = cli(*args, env=cached)
    first_out, _ = first.communicate(timeout=300)
    entries = list((tmp_path / "cache" / "gradverify" / "jax").iterdir())
    assert first.returncode == 0 and entries
    second = cli(*args, env=cached)
    assert second.communicate(timeout=300)[0] == first_out and second.returncode == 0
    off = cli(*args, env={"XDG_CACHE_HOME": str(tmp_path / "off"), runtime.NO_CACHE_VARIABLE: "1"})
    off.communicate(timeout=300)
    assert off.returncode == 0 and not (tmp_path / "off").exists()


def test_the_library_leaves_the_callers_environment_alone():
    """verify.check() as a library sets neither JAX's cache nor XLA flags in the caller's process (jax is
    imported first: importing it sets variables of its own)."""
    pytest.importorskip("jax")
    before = dict(os.environ)
    verify.check("derivations/tanh.deriv", oracles=("jax", "exact"))
    assert dict(os.environ) == before


def run_script(code: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def statuses(report) -> dict:
    return {
        f"{d['name']} {g['name']} {oracle}": result["status"]
        for d in report["derivations"]
        for g in d["gradients"]
        for oracle, result in g["oracles"].items()
    }


def test_workers_give_the_in_process_verdicts_and_a_dead_worker_hands_its_oracle_back():
    """In a fresh process (no framework imported, one thread) the jax and torch oracles run in forked
    workers; every oracle's status per gradient is what an in-process check gives. When a worker dies,
    its oracle runs in the calling process instead, with the same statuses."""
    files = ["derivations/softmax.deriv", "derivations/batchnorm.deriv", "tests/cases/wrong_sign.deriv"]
    report = run_script(
        f"""
        import json
        from verify.check import check
        from verify.parallel import Workers
        workers = Workers.start(("jax", "torch"))
        assert workers is not None and "jax" in workers and "torch" in workers
        with workers:
            first = check({files!r}, workers=workers).to_json()
            workers._processes["torch"].kill()
            second = check({files!r}, workers=workers).to_json()
        print(json.dumps([first, second]))
        """
    )
    in_process = statuses(verify.check(files).to_json())
    assert statuses(report[0]) == statuses(report[1]) == in_process
    assert "fail" in in_process.values()  # wrong_sign is caught by every oracle, workers included


def test_no_workers_where_forking_is_unsafe():
    """A process that has imported a framework is never forked from: Workers.start declines."""
    import torch  # noqa: F401  (imported here on purpose: the test process now holds torch)

    from verify.parallel import Workers

    assert Workers.start(("torch",)) is None
