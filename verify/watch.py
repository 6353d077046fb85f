"""`check FILE... --watch`: check, then check again after every save, in one warm process.

The files' modification times and sizes are polled every POLL_S seconds (no dependency, and it works on
every file system an editor saves to). A change is checked once the files have stayed the same for
SETTLE_S, so that an editor writing a file in several steps is checked once. Each check prints the table
and the time it took; a file that is momentarily unreadable or invalid mid-edit prints its one-line
error, and watching goes on. Ctrl-C stops it (exit status 0).

Warm means: SymPy and the verifier are imported once, and the jax and torch oracles stay in their worker
processes (verify.parallel) with their frameworks imported, so that a re-check costs what the checks
themselves cost.
"""

from __future__ import annotations

import os
import sys
import time

from .check import check
from .report import colour_for

POLL_S = 0.1
SETTLE_S = 0.05


def _stamp(paths: list[str]) -> tuple[tuple[int, int] | None, ...]:
    """What changes when a file is saved: its modification time and size (None while it is missing)."""
    stamps: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            stamps.append(None)
        else:
            stamps.append((info.st_mtime_ns, info.st_size))
    return tuple(stamps)


def check_and_print(paths: list[str], oracles, seed: int, workers, out=sys.stdout) -> float:
    """One check of `paths` with its table (errors of invalid files on stderr, one line each); returns
    the seconds it took. A failure of the tool itself is one line too: the next save may not trip it."""
    started = time.perf_counter()
    try:
        report = check(paths, oracles=oracles, seed=seed, workers=workers)
    except Exception as e:  # keep watching; the message names what broke
        print(f"error: the check itself failed: {type(e).__name__}: {e}", file=sys.stderr)
        return time.perf_counter() - started
    seconds = time.perf_counter() - started
    print(report.table(colour=colour_for(out), errors=False), file=out)
    for d in report.derivations:
        if d.error is not None:
            print(str(d.error), file=sys.stderr)
    return seconds


def watch(paths: list[str], oracles, seed: int, workers, out=sys.stdout) -> int:
    """Check `paths` now and after every change until Ctrl-C."""
    what = paths[0] if len(paths) == 1 else f"{len(paths)} files"
    try:
        stamp = _stamp(paths)
        seconds = check_and_print(paths, oracles, seed, workers, out)
        while True:
            print(f"checked in {seconds:.2f} s; watching {what} (Ctrl-C to stop)", file=out, flush=True)
            while (now := _stamp(paths)) == stamp:
                time.sleep(POLL_S)
            time.sleep(SETTLE_S)
            while (settled := _stamp(paths)) != now:
                now = settled
                time.sleep(SETTLE_S)
            stamp = now
            print(f"\n{time.strftime('%H:%M:%S')} {what} changed", file=out)
            seconds = check_and_print(paths, oracles, seed, workers, out)
    except KeyboardInterrupt:
        print(f"\nstopped watching {what}", file=out)
        return 0
