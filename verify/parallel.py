"""Where the framework oracles run: one worker process each, so that a cold check uses both cores.

Most of a cold check is importing torch (about 1.2 s of CPU) and jax (0.5 s), and tracing and compiling
under jax.jit; the exact, fd and numpy oracles need neither framework. The command line therefore
forks one worker per framework oracle (jax, torch) as soon as the verifier is imported, before it parses
anything: each worker imports its framework while this process parses the derivations and draws the
samples, then receives them (pickled: the same samples, not drawn again) and sends back each
derivation's `OracleRun`, while this process runs the other oracles. `check --watch` keeps the workers
for every re-check, warm.

Forking is safe only from a process with a single thread that has not imported the framework, so
`Workers.start` returns None (and everything runs in the calling process) unless the process is like
that, on Linux, with two CPUs or more; and only the command line asks for workers, never a library
caller of `verify.check`. A worker that dies leaves its oracle to run in this process.
"""

from __future__ import annotations

import importlib
import itertools
import multiprocessing
import os
import queue
import signal
import sys
import threading
from multiprocessing.connection import Connection

from .oracles import ORACLE_CLASSES

FRAMEWORK_ORACLES = ("jax", "torch")


class Workers:
    """One forked worker process per framework oracle. A check `begin`s, `send`s each prepared
    derivation, `(derivation, samples)`, as soon as it is ready, then asks for each one's `result`."""

    def __init__(self, names: list[str]) -> None:
        context = multiprocessing.get_context("fork")
        self._connections: dict[str, Connection] = {}
        self._processes = {}
        for name in names:
            here, there = context.Pipe()
            process = context.Process(
                target=_serve, args=(name, there), name=f"gradverify-{name}", daemon=True
            )
            process.start()
            there.close()
            self._connections[name] = here
            self._processes[name] = process
        self._jobs = itertools.count()
        self._job = -1
        self._received: dict[str, dict[int, object]] = {name: {} for name in names}

    @classmethod
    def start(cls, oracles) -> Workers | None:
        """Workers for the framework oracles among `oracles` that are installed, or None where forking is
        not safe or not worth it (see the module docstring)."""
        names = [n for n in FRAMEWORK_ORACLES if n in oracles and ORACLE_CLASSES[n].available_here()]
        safe = (
            sys.platform == "linux"
            and threading.active_count() == 1
            and not any(n in sys.modules for n in FRAMEWORK_ORACLES)
        )
        if not names or not safe or (os.cpu_count() or 1) < 2:
            return None
        return cls(names)

    def __contains__(self, name: str) -> bool:
        return name in self._connections

    def begin(self) -> None:
        """Start a check: results of an earlier one still unread (a tool failure in it) are dropped."""
        self._job = next(self._jobs)
        for received in self._received.values():
            received.clear()

    def send(self, k: int, prepared: tuple) -> None:
        """Send every worker derivation k of this check, `(derivation, samples)`, to run its oracle on."""
        for name in list(self._connections):
            try:
                self._connections[name].send((self._job, k, prepared))
            except OSError:
                self._lost(name)

    def result(self, name: str, k: int):
        """The worker's `OracleRun` for derivation k of this check, or None if its worker is gone (the
        oracle then runs in this process)."""
        received = self._received.get(name)
        if received is None:
            return None
        while k not in received:
            try:
                job, index, run = self._connections[name].recv()
            except (EOFError, OSError):
                self._lost(name)
                return None
            if job == self._job:
                received[index] = run
        return received.pop(k)

    def close(self) -> None:
        """Stop every worker now: one still importing its framework (a check that ended early, such as
        on an invalid file) would otherwise keep the command waiting for an import it no longer needs."""
        for name in list(self._connections):
            self._lost(name)

    def _lost(self, name: str) -> None:
        self._connections.pop(name).close()
        self._received.pop(name, None)
        process = self._processes.pop(name)
        process.terminate()
        process.join()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _serve(name: str, connection: Connection) -> None:
    """A worker's life: import the framework while the jobs arrive, then run the oracle on each."""
    from .check import OracleRun, run_oracle  # already imported in the parent: free after the fork

    # Ctrl-C reaches the whole process group: the parent stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    jobs: queue.Queue = queue.Queue()

    def receive() -> None:  # the parent must never block sending while this worker imports
        while True:
            try:
                job = connection.recv()
            except (EOFError, OSError):
                job = None
            jobs.put(job)
            if job is None:
                return

    threading.Thread(target=receive, daemon=True).start()
    importlib.import_module(name)
    while (job := jobs.get()) is not None:
        number, k, (d, draws) = job
        full = run_oracle(name, d, draws)
        connection.send((number, k, OracleRun(full.results, full.arrays, full.forward)))  # not the oracle
