"""The prover runs in a worker process of its own, so that a time limit per gradient holds whatever SymPy
does: the caller waits on a pipe with a deadline and kills the worker when it passes, then starts a new
one for the gradients after the one it gave up on.

The worker is a fresh interpreter (`python -m verify.prove`), not a multiprocessing child: it
imports nothing of the caller's script, and the caller's process keeps its signal handlers, threads and
environment. Messages are pickled over two pipes: jobs in, progress and outcomes out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from ..model import Derivation

BOOT_S = 60.0  # a fresh interpreter importing SymPy: seconds, even on a loaded machine


@dataclass(frozen=True)
class Job:
    """Prove d.claims[start:], with the gradients in `proved` (earlier ones) taken as proved."""

    d: Derivation
    start: int
    proved: tuple[str, ...]
    seed: int


@dataclass(frozen=True)
class Phase:
    """The worker began drawing the self-check's sample (`kind` "sample") or proving claim number `k`
    ("start"), at `at` on the system's monotonic clock (shared by the processes of one machine), so that
    the caller's deadline counts from the start even when it reads the event late."""

    kind: str
    k: int
    at: float


@dataclass(frozen=True)
class Sampled:
    seconds: float


@dataclass(frozen=True)
class Finished:
    """The job's last claim is done."""


@dataclass(frozen=True)
class Done:
    """Gradient number `k` finished: its outcome (a search.Outcome) and the seconds it took."""

    k: int
    outcome: object
    seconds: float


@dataclass(frozen=True)
class Failed:
    """Proving gradient number `k` raised: a bug of the prover or of SymPy, never a verdict."""

    k: int
    message: str
    seconds: float


@dataclass(frozen=True)
class _Running:
    """A started worker: its process, the pipe its jobs go in by and the one its events come out of."""

    proc: subprocess.Popen
    jobs: Connection
    events: Connection


class Worker:
    """One worker process, started on demand, killed when a deadline passes."""

    def __init__(self) -> None:
        self.running: _Running | None = None

    def start(self) -> _Running:
        job_r, job_w = os.pipe()
        ev_r, ev_w = os.pipe()
        root = str(Path(__file__).resolve().parents[2])  # the folder holding this `verify` package
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        proc = subprocess.Popen(
            [sys.executable, "-m", "verify.prove", str(job_r), str(ev_w)],
            pass_fds=(job_r, ev_w),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        os.close(job_r)
        os.close(ev_w)
        self.running = _Running(proc, Connection(job_w, readable=False), Connection(ev_r, writable=False))
        return self.running

    def send(self, job: Job) -> None:
        running = self.running or self.start()
        running.jobs.send(job)

    def receive(self, timeout: float):
        """The next event, or None when `timeout` seconds pass first; EOFError when the worker died."""
        assert self.running is not None, "receive() follows send(), which starts the worker"
        if not self.running.events.poll(max(timeout, 0.0)):
            return None
        return self.running.events.recv()

    def exit_code(self) -> int | None:
        return None if self.running is None else self.running.proc.poll()

    def stop(self, kill: bool = False) -> None:
        running = self.running
        if running is None:
            return
        try:
            if not kill:
                running.jobs.send(None)
                running.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if running.proc.poll() is None:
                running.proc.kill()
                running.proc.wait()
            running.jobs.close()
            running.events.close()
            self.running = None


def serve(jobs: Connection, events: Connection) -> None:
    """The worker's loop: prove each job's gradients in order, reporting each as it starts and ends."""
    from .search import DerivationProver

    while True:
        try:
            job = jobs.recv()
        except EOFError:
            return
        if job is None:
            return
        prover = DerivationProver(job.d, job.seed)
        prover.proved.update(job.proved)
        events.send(Phase("sample", job.start, time.monotonic()))
        start = time.perf_counter()
        try:
            prover.reference()
        except Exception as e:  # noqa: BLE001 - no sample: every gradient of the job gives up, saying why
            for k in range(job.start, len(job.d.claims)):
                events.send(Failed(k, f"no sample for the self-check: {e}", time.perf_counter() - start))
            events.send(Finished())
            continue
        events.send(Sampled(time.perf_counter() - start))
        for k in range(job.start, len(job.d.claims)):
            events.send(Phase("start", k, time.monotonic()))
            start = time.perf_counter()
            try:
                outcome = prover.prove(job.d.claims[k])
            except Exception as e:  # noqa: BLE001 - reported as the prover giving up, with what broke
                where = traceback.extract_tb(e.__traceback__)[-1]
                message = f"{type(e).__name__}: {e} ({Path(where.filename).name}:{where.lineno})"
                events.send(Failed(k, message, time.perf_counter() - start))
                continue
            events.send(Done(k, outcome, time.perf_counter() - start))
        events.send(Finished())
