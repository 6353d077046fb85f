"""The edit-check loop's figures (issue 17), each beside what it compares to:

- a repeated cold `python -m verify check derivations/batchnorm.deriv` (every oracle, a new process each
  time) beside the first run, made with an empty JAX cache;
- `python -m verify all` the same way: the first run with an empty cache, then repeated;
- a re-check under `check --watch` of an edited batch-norm file, beside the first check of that watcher.

Every run uses a fresh cache folder (XDG_CACHE_HOME in a temporary directory), so the figures do not
depend on what the user's own cache holds. Wall seconds, and the CPU seconds of the process and its
workers together (what a busy machine stretches least). The watcher's edits set `eps` to a new value each
time, so that every re-check runs new programs (jax compiles them afresh) and stays verified.
"""

from __future__ import annotations

import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import catalogue

ROOT = Path(__file__).resolve().parents[2]
REPEATS = 3
EDITS = 5


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(args: list[str], env: dict) -> tuple[float, float]:
    """(wall s, CPU s) of `python -m verify ARGS`, run to its end."""
    cpu, start = _children_cpu(), time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "verify", *args], cwd=ROOT, env=env, capture_output=True, check=False
    )
    return time.perf_counter() - start, _children_cpu() - cpu


def _cold(args: list[str], repeats: int) -> dict:
    """The first run with an empty cache, then `repeats` more: wall and CPU of each, and their medians."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "XDG_CACHE_HOME": cache}
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        first = _timed(args, env)
        runs = [_timed(args, env) for _ in range(repeats)]
    return {
        "command": "python -m verify " + " ".join(args),
        "first_s": first[0],
        "first_cpu_s": first[1],
        "repeated_s": [wall for wall, _ in runs],
        "repeated_cpu_s": [cpu for _, cpu in runs],
        "median_s": statistics.median(wall for wall, _ in runs),
        "median_cpu_s": statistics.median(cpu for _, cpu in runs),
    }


def _watch(edits: int) -> dict:
    """Seconds of each check a watcher reports ('checked in X s'): the first, then one per edit; and the
    time from each save to the end of its check's output (polling and settling included)."""
    text = (catalogue.folder() / "batchnorm.deriv").read_text(encoding="utf-8")
    if "eps = 1e-5" not in text:
        raise ValueError("derivations/batchnorm.deriv no longer fixes eps = 1e-5: update the bench's edit")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "batchnorm.deriv"
        path.write_text(text, encoding="utf-8")
        env = {**os.environ, "XDG_CACHE_HOME": str(Path(folder) / "cache")}
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        watcher = subprocess.Popen(
            [sys.executable, "-m", "verify", "check", str(path), "--watch"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            checked, latency = [_checked_in(watcher)], []
            for k in range(edits):
                saved = time.perf_counter()
                path.write_text(text.replace("eps = 1e-5", f"eps = {k + 2}e-5"), encoding="utf-8")
                checked.append(_checked_in(watcher))
                latency.append(time.perf_counter() - saved)
        finally:
            watcher.terminate()
            watcher.wait()
    return {
        "command": "python -m verify check batchnorm.deriv --watch, eps edited",
        "first_s": checked[0],
        "rechecks_s": checked[1:],
        "median_s": statistics.median(checked[1:]),
        "save_to_verdict_s": latency,
        "median_save_to_verdict_s": statistics.median(latency),
    }


def _checked_in(watcher) -> float:
    for line in watcher.stdout:
        found = re.match(r"checked in ([0-9.]+) s", line)
        if found:
            return float(found.group(1))
    raise RuntimeError("the watcher stopped before reporting a check")


def run(repeats: int = REPEATS, edits: int = EDITS, log=print) -> dict:
    log("edit-check loop: cold check of batchnorm", flush=True)
    check = _cold(["check", "derivations/batchnorm.deriv"], repeats)
    log("edit-check loop: verify all", flush=True)
    everything = _cold(["all"], repeats)
    log("edit-check loop: --watch re-checks", flush=True)
    return {"check_batchnorm": check, "verify_all": everything, "watch_batchnorm": _watch(edits)}


def summary(loop: dict) -> list[str]:
    """The loop's figures beside their goals, one line each."""
    check, everything, watch = loop["check_batchnorm"], loop["verify_all"], loop["watch_batchnorm"]
    return [
        "edit-check loop (every oracle; wall s, CPU s of the process and its workers in brackets):",
        f"  check batchnorm, a new process: repeated {check['median_s']:.2f} ({check['median_cpu_s']:.2f}) "
        f"[goal 3 s]; first, empty JAX cache {check['first_s']:.2f} ({check['first_cpu_s']:.2f})",
        f"  verify all, a new process: repeated {everything['median_s']:.2f} ({everything['median_cpu_s']:.2f}) "
        f"[goal 3 s, idle machine]; first, empty JAX cache {everything['first_s']:.2f} "
        f"({everything['first_cpu_s']:.2f})",
        f"  --watch re-check of an edited batchnorm: {watch['median_s']:.2f} [goal 0.5 s] "
        f"(save to verdict {watch['median_save_to_verdict_s']:.2f}); the watcher's first check "
        f"{watch['first_s']:.2f}",
    ]
