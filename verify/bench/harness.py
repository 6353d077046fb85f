"""How the bench times: medians over alternating rounds, one thread per backend, an allocator that keeps
freed memory, the machine described, and the cold wall time of `python -m verify all`."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import catalogue
from ..check import check

ROOT = Path(__file__).resolve().parent.parent.parent  # the checkout, where `python -m verify` runs


@dataclass
class Timing:
    """One function to time: `fn()` runs it to completion."""

    label: str
    fn: Callable[[], object]
    compile_s: float | None = None
    samples: list[float] = field(default_factory=list)
    per_batch: int = 1
    batches_per_round: int = 1

    @property
    def median(self) -> float:
        return float(np.median(self.samples))


@dataclass(frozen=True)
class Schedule:
    """How long and how often each function is timed."""

    budget_s: float  # about the time spent on each function
    rounds: int  # rounds of batches, the functions taking turns
    warmup: int  # untimed calls first
    pause_s: float  # rest after one backend's functions, before the next backend's

    @classmethod
    def for_run(cls, quick: bool) -> Schedule:
        return cls(0.02, 3, 1, 0.05) if quick else cls(1.5, 10, 3, 0.5)


def measure(timings: list[Timing], schedule: Schedule) -> None:
    """Median seconds per call of each function. Calls are grouped in batches of at least ~2 ms (a
    batch's mean is one sample), and the functions take turns, one round of batches each at a time."""
    budget_s, rounds = schedule.budget_s, schedule.rounds
    for t in timings:
        for _ in range(schedule.warmup):
            t.fn()
        start = time.perf_counter()
        t.fn()
        once = max(time.perf_counter() - start, 1e-7)
        t.per_batch = max(1, int(0.002 / once))
        t.batches_per_round = max(1, int(budget_s / rounds / (once * t.per_batch)))
        t.batches_per_round = min(t.batches_per_round, 50)
    for _ in range(rounds):
        for t in timings:
            for _ in range(t.batches_per_round):
                start = time.perf_counter()
                for _ in range(t.per_batch):
                    t.fn()
                t.samples.append((time.perf_counter() - start) / t.per_batch)


def limit_threads(n: int) -> dict:
    """Give every backend the same `n` threads: BLAS (threadpoolctl), PyTorch intra- and inter-op, and
    XLA's CPU client (only before jax is first imported). On a shared 2-core machine one thread each is
    what gives stable medians: a parallel region waits for its slowest thread, and any thread may lose
    its core to another process for a whole scheduler time slice."""
    done: dict = {"threads": n}
    try:
        from threadpoolctl import threadpool_limits

        done["_blas_limit"] = threadpool_limits(n)
    except ImportError:
        done["blas_threads"] = "threadpoolctl not installed: BLAS threads left at their default"
    if "jax" not in sys.modules:
        flags = (
            f"--xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'} intra_op_parallelism_threads={n}"
        )
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
    else:
        done["xla_threads"] = "jax was already imported: XLA threads left at their default"
    try:
        import torch

        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:
            pass  # already set, or parallel work already ran in this process
    except ImportError:
        pass
    return done


def keep_freed_memory() -> str:
    """Have glibc keep freed memory for reuse instead of returning it to the kernel.

    By default glibc gives 4 MiB arrays back to the kernel when a few such temporaries are freed
    together (they then sit above its trim threshold), and the next call page-faults every page in
    again: measured here, that made one NumPy statement with two live temporaries 5-10x slower than its
    operations timed one by one, by an amount that depends on the allocator's history rather than on
    the code. With freed memory kept, as a long-running training process or a caching allocator keeps
    it, the medians measure arithmetic and memory traffic. GRADVERIFY_BENCH_MALLOC=default leaves the
    allocator as it is."""
    if os.environ.get("GRADVERIFY_BENCH_MALLOC", "") == "default":
        return "default (GRADVERIFY_BENCH_MALLOC=default)"
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        if libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 1 << 30):
            return "glibc mallopt: mmap threshold 32 MiB, trim threshold 1 GiB (freed memory kept)"
        return "default (mallopt refused)"
    except (OSError, AttributeError):
        return "default (not glibc)"


def verify_all_seconds(*oracles: str) -> float:
    """Wall time of `python -m verify all` (with these oracles, or all), cold, as a subprocess."""
    start = time.perf_counter()
    flags = [f for o in oracles for f in ("--oracle", o)]
    subprocess.run(
        [sys.executable, "-m", "verify", "all", *flags], cwd=ROOT, capture_output=True, check=False
    )
    return time.perf_counter() - start


# `python -m verify code` on one implementation of each kind, with issue 16's goal for a cold check
CODE_CHECKS = (
    ("NumPy module", ["implementations/numpy/modules.py:BatchNormModule", "--against", "batchnorm"], 3.0),
    (
        "torch.autograd.Function",
        ["implementations/torch/custom_batchnorm.py:CustomBatchNormManualFunction", "--against", "batchnorm"],
        5.0,
    ),
)


def code_seconds(repeats: int = 3) -> list[dict]:
    """Wall time of `python -m verify code` on each of CODE_CHECKS, cold, as a subprocess, beside its goal
    (a NumPy check imports no framework; a torch one pays for importing torch): the median of `repeats`
    runs, the checks alternating so that a burst of load on the shared machine hits both alike."""
    runs: list[list[float]] = [[] for _ in CODE_CHECKS]
    cpu: list[list[float]] = [[] for _ in CODE_CHECKS]
    exits = [0] * len(CODE_CHECKS)
    for _ in range(repeats):
        for k, (_, args, _) in enumerate(CODE_CHECKS):
            used = _children_cpu()
            start = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "verify", "code", *args], cwd=ROOT, capture_output=True)
            runs[k].append(time.perf_counter() - start)
            cpu[k].append(_children_cpu() - used)
            exits[k] = exits[k] or r.returncode
    return [
        {
            "what": what,
            "command": "python -m verify code " + " ".join(args),
            "wall_s": float(np.median(runs[k])),
            "runs_s": runs[k],
            # user + system CPU time: what the check costs, whatever else the shared machine runs
            "cpu_s": float(np.median(cpu[k])),
            "goal_s": goal,
            "exit": exits[k],
        }
        for k, (what, args, goal) in enumerate(CODE_CHECKS)
    ]


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def prove_seconds() -> dict:
    """`python -m verify prove` on the whole catalogue, cold, as a subprocess: its wall time and, from its
    JSON, each gradient's proof time (issue 18's goals: at most 0.5 s each, 10 s for the catalogue), and
    which gradients are the windowed entries' (convolutions, pooling)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "prove.json"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "verify", "prove", "--json", str(out)],
            cwd=ROOT,
            capture_output=True,
            check=False,
        )
        wall = time.perf_counter() - start
        report = json.loads(out.read_text()) if out.exists() else {"derivations": []}
    proofs = {
        f"{d['name']} {g['name']}": g["proof"] for d in report["derivations"] for g in d.get("gradients", [])
    }
    windowed = {p.stem for p in catalogue.paths() if catalogue.load(p).windowed}
    return {
        "wall_s": wall,
        "seconds": {k: p["seconds"] for k, p in proofs.items()},
        "proved": sum(p["status"] == "proved" for p in proofs.values()),
        "claims": len(proofs),
        # convolutions and pooling (zero-padded reads, window maxima): their figures apart
        "windowed": sorted(k for k in proofs if k.split(" ")[0] in windowed),
    }


def exact_seconds_per_derivation() -> dict[str, float]:
    """The exact oracle's time per catalogue derivation (sampling included), in this process."""
    out = {}
    for path in catalogue.paths():
        start = time.perf_counter()
        check(str(path), oracles=("exact",))
        out[path.stem] = time.perf_counter() - start
    return out


def machine() -> dict:
    info: dict = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "numpy": np.__version__,
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: p.get(k) for k in ("internal_api", "architecture", "num_threads", "version")}
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    info["OPENBLAS_CORETYPE"] = os.environ.get("OPENBLAS_CORETYPE")
    try:
        import torch

        info["torch"] = f"{torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        pass
    try:
        import jax

        info["jax"] = jax.__version__
    except ImportError:
        pass
    return info
