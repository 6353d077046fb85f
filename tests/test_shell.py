"""Shell-friendly output: colour only on a terminal and never with NO_COLOR, progress on stderr for `all`
and `latex` only when stderr is a terminal, and nothing but the table and summary on stdout."""

import os
import pty
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


RED_WRONG = "\x1b[31mwrong\x1b[0m"


def run_on_terminal(*args, env=None) -> str:
    """What `python -m verify ARGS` shows with stdout and stderr on a pseudo-terminal."""
    leader, follower = pty.openpty()
    try:
        subprocess.run(
            [sys.executable, "-m", "verify", *args],
            cwd=ROOT,
            stdout=follower,
            stderr=follower,
            env={**os.environ, **(env or {})},
            timeout=600,
        )
        os.close(follower)
        return _drain(leader).replace("\r\n", "\n")
    finally:
        os.close(leader)


def _drain(leader: int) -> str:
    received = b""
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:  # the terminal is closed and drained
            break
        if not chunk:
            break
        received += chunk
    return received.decode()


def test_verdicts_are_coloured_on_a_terminal_only_and_never_with_no_color():
    """On a terminal the verdict words and FAIL cells are coloured, the columns still aligned; with
    NO_COLOR set, or with stdout a pipe, the same table has no escape codes."""
    args = ("check", "tests/cases/wrong_sign.deriv", "derivations/tanh.deriv", "--oracle", "exact")
    coloured = run_on_terminal(*args, env={"TERM": "xterm"})
    assert (
        RED_WRONG in coloured and "\x1b[32mverified\x1b[0m" in coloured and "\x1b[31mFAIL\x1b[0m" in coloured
    )
    plain = run_on_terminal(*args, env={"TERM": "xterm", "NO_COLOR": "1"})
    assert "\x1b[" not in plain
    assert coloured.replace("\x1b[31m", "").replace("\x1b[32m", "").replace("\x1b[0m", "") == plain
    piped = subprocess.run([sys.executable, "-m", "verify", *args], cwd=ROOT, capture_output=True, text=True)
    assert "\x1b[" not in piped.stdout and piped.stdout.strip() in plain


def run_with_terminal_stderr(*args) -> tuple[subprocess.CompletedProcess, str]:
    """`python -m verify ARGS` with stderr a pseudo-terminal (stdout a pipe): the result and what the
    terminal received."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "verify", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=600,
        )
        os.close(follower)
        received = _drain(leader)
    finally:
        os.close(leader)
    return done, received


def test_all_counts_the_derivations_on_a_terminal_and_blanks_the_line():
    """On a terminal `all` rewrites one stderr line per derivation checked ('3/17 checked (elu)') and
    leaves it blank; the table on stdout is as without a terminal."""
    on_terminal, shown = run_with_terminal_stderr("all", "--oracle", "exact")
    total = len(list((ROOT / "derivations").glob("*.deriv")))
    assert on_terminal.returncode == 0
    assert f"1/{total} checked" in shown and f"{total - 1}/{total} checked" in shown
    assert shown.rstrip(" ").endswith("\r")  # the last state of the line is blank
    piped = subprocess.run(
        [sys.executable, "-m", "verify", "all", "--oracle", "exact"], cwd=ROOT, capture_output=True, text=True
    )
    assert piped.stderr == "" and piped.stdout == on_terminal.stdout


def test_check_shows_no_progress_even_on_a_terminal():
    """`check` names its files itself: no progress line, even with stderr on a terminal."""
    done, shown = run_with_terminal_stderr("check", "derivations/tanh.deriv", "--oracle", "exact")
    assert done.returncode == 0 and "checked (" not in shown
