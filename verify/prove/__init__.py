"""Proofs for every size: each written gradient shown equal to the true one at symbolic N, J, K.

`prove(items)` returns, per derivation, a `Proof` per checked gradient: `proved` (for all sizes, under
its stated conditions: non-zero denominators, the domain rules used, away from kinks), `not-proved`
(with the residue, the difference that did not reduce to zero, as a hint) or `gave-up` (the time limit
passed, or the prover broke). The prover never calls a formula wrong: only the sampled check does.

How (see `search` and `algebra`): the true gradient is one step of reverse accumulation differentiated
by SymPy at symbolic element indices; both sides become polynomials over opaque atoms (tensor elements,
moments such as sum(x[n, j], n), exp and step atoms, square roots) after a Kronecker-delta contraction
of our own; `cancel` and the atoms' relations decide zero. A proof is also checked against the exact
oracle at one sample (`selfcheck`), so a bug of the prover cannot pass as a proof. Each proof runs in a
worker process (`worker`) that is killed when its time limit passes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from ..model import Derivation
from .conditions import Condition, ConditionKind
from .worker import BOOT_S, Failed, Finished, Job, Phase, Sampled, Worker

TIME_LIMIT_S = 10.0

__all__ = ["TIME_LIMIT_S", "Condition", "ConditionKind", "Proof", "ProofRun", "ProofStatus", "prove"]


class ProofStatus(StrEnum):
    PROVED = "proved"
    NOT_PROVED = "not-proved"
    GAVE_UP = "gave-up"


@dataclass
class Proof:
    """The prover's outcome for one gradient. `conditions` holds every condition, those the declared
    domains make true for every input included (`always`); `stated` are the others."""

    gradient: str
    status: ProofStatus
    seconds: float
    sizes: tuple[str, ...] = ()  # the sizes and integer constants (stride, padding) it holds for all of
    fixed: tuple[str, ...] = ()  # the sizes the derivation fixes, as "KH = 3": proved for those values
    conditions: list[Condition] = field(default_factory=list)
    residue: str = ""
    reason: str = ""
    stage: str = ""

    @property
    def stated(self) -> list[Condition]:
        return [c for c in self.conditions if not c.always]

    def summary(self) -> str:
        """One line: 'proved for all N, J if x[n, k] != 0', 'not proved: why', 'gave up: why'."""
        if self.status is ProofStatus.PROVED:
            text = "proved for all " + ", ".join(self.sizes) if self.sizes else "proved"
            text += f" ({', '.join(self.fixed)} as stated)" if self.fixed else ""
            return text + ("; conditions: " + "; ".join(c.text for c in self.stated) if self.stated else "")
        if self.status is ProofStatus.GAVE_UP:
            return f"gave up: {self.reason}"
        return f"not proved: {self.reason}" + (f"; residue: {self.residue}" if self.residue else "")

    def to_json(self) -> dict:
        out = {
            "status": str(self.status),
            "conditions": [c.text for c in self.stated],
            "residue": self.residue,
            "seconds": round(self.seconds, 4),
        }
        if self.status is ProofStatus.PROVED:
            out["sizes"] = list(self.sizes)
            out["fixed"] = list(self.fixed)
            out["always_true"] = [c.text for c in self.conditions if c.always]
            out["stage"] = self.stage
        if self.reason:
            out["reason"] = self.reason
        return out


Scope = tuple[tuple[str, ...], tuple[str, ...]]  # (Proof.sizes, Proof.fixed) of one derivation


class ProofRun:
    """Proofs of several derivations, computed in a worker process while the caller does other work
    (the sampled check): `results()` waits for them. Each gradient has `time_limit` seconds; the
    self-check's sample of each derivation has as many again."""

    def __init__(
        self, derivations: Iterable[Derivation | None], seed: int = 0, time_limit: float = TIME_LIMIT_S
    ):
        self.derivations = list(derivations)
        self.seed = seed
        self.time_limit = time_limit
        self.sample_seconds: list[float] = [0.0] * len(self.derivations)
        self._worker = Worker()
        self._results: list[dict[str, Proof]] | None = None
        if any(d is not None and d.claims for d in self.derivations):
            self._worker.start()  # it boots (imports SymPy) while the caller goes on

    def results(self) -> list[dict[str, Proof]]:
        """Per derivation (in order; {} for None), its proofs by gradient name."""
        if self._results is None:
            try:
                self._results = [
                    self._prove(k, d) if d is not None else {} for k, d in enumerate(self.derivations)
                ]
            finally:
                self._worker.stop()
        return self._results

    def _prove(self, index: int, d: Derivation) -> dict[str, Proof]:
        out: dict[str, Proof] = {}
        # the batch first: "for all N, J"; then the stride and padding, which the proof leaves symbolic
        free = sorted((n for n in d.sizes if n not in d.fixed_sizes), key=lambda n: (n != "N", n))
        scope = (tuple(free) + tuple(d.constants), tuple(f"{n} = {v}" for n, v in d.fixed_sizes.items()))
        k = 0
        while k < len(d.claims):
            proved = tuple(name for name, p in out.items() if p.status is ProofStatus.PROVED)
            self._worker.send(Job(d, k, proved, self.seed))
            k = self._follow(index, d, k, out, scope)
        return out

    def _follow(self, index: int, d: Derivation, k: int, out: dict, scope: Scope) -> int:
        """Read the worker's events for a job starting at claim k; returns where the next job starts."""
        deadline = time.monotonic() + max(BOOT_S, self.time_limit)
        phase = "starting the prover"
        while True:
            try:
                event = self._worker.receive(deadline - time.monotonic())
            except Exception as e:  # noqa: BLE001 - EOF (the worker died) or an unreadable message
                code = self._worker.exit_code()
                self._worker.stop(kill=True)
                why = f"the prover's process ended (exit code {code})" if isinstance(e, EOFError) else repr(e)
                return self._give_up(d, k, out, scope, f"{why} while {phase}")
            if event is None:
                self._worker.stop(kill=True)
                reason = f"time limit of {self.time_limit:g} s passed while {phase}"
                return self._give_up(d, k, out, scope, reason)
            if isinstance(event, Finished):
                return len(d.claims)
            if isinstance(event, Phase):
                k = event.k
                what = d.claims[k].label
                phase = "drawing the self-check's sample" if event.kind == "sample" else f"proving {what}"
                deadline = event.at + self.time_limit
                continue
            if isinstance(event, Sampled):
                self.sample_seconds[index] = event.seconds
                continue
            g = d.claims[event.k]
            if isinstance(event, Failed):
                out[g.target] = Proof(
                    g.target, ProofStatus.GAVE_UP, event.seconds, *scope, reason=event.message
                )
            else:
                o = event.outcome
                status = ProofStatus.PROVED if o.closed else ProofStatus.NOT_PROVED
                out[g.target] = Proof(
                    g.target, status, event.seconds, *scope, o.conditions, o.residue, o.reason, o.stage
                )
            k = event.k + 1
            deadline = time.monotonic() + self.time_limit  # the next claim's start follows at once

    def _give_up(self, d: Derivation, k: int, out: dict, scope: Scope, reason: str) -> int:
        if k < len(d.claims):  # else the worker stopped after its last claim: nothing is lost
            g = d.claims[k]
            out[g.target] = Proof(g.target, ProofStatus.GAVE_UP, self.time_limit, *scope, reason=reason)
        return k + 1

    def close(self) -> None:
        self._worker.stop(kill=True)


def prove(items, seed: int = 0, time_limit: float = TIME_LIMIT_S) -> list[dict[str, Proof]]:
    """Proofs of the checked gradients of each derivation (a Derivation, a path, a catalogue name or the
    text), in order, by gradient name. A derivation that does not parse raises its DerivationError."""
    from ..catalogue import load

    items = list(items) if isinstance(items, list | tuple) else [items]
    derivations = [i if isinstance(i, Derivation) else load(i) for i in items]
    return ProofRun(derivations, seed, time_limit).results()
