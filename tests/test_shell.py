"""Shell-friendly output: progress on stderr for `all` and `latex` only when stderr is a terminal, and
nothing but the table and summary on stdout."""

import os
import pty
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
        received = b""
        while True:
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:  # the terminal is closed and drained
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(leader)
    return done, received.decode()


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
