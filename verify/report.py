"""Reports: what `check` returns, what the CLI prints as a table, and what `--json` writes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .comparison import Result, Status
from .model import DerivationError, Statement

if TYPE_CHECKING:
    from .prove import Proof


@dataclass
class GradientReport:
    """One checked statement: a gradient, a Jacobian (named dy/dx) or a step of a chain (dW step 2/3)."""

    name: str
    line: int
    status: str  # verified | wrong | inconclusive (no oracle decided)
    oracles: dict[str, Result]
    diagnosis: str = ""
    statement: Statement | None = None
    proof: Proof | None = None  # the prover's outcome, with --prove
    reason: str = ""  # why it is inconclusive

    @property
    def target(self) -> str:
        """The statement's name in the derivation (d.statement(target))."""
        return self.statement.target if self.statement is not None else self.name

    def to_json(self) -> dict:
        out = {"name": self.name, "line": self.line, "status": str(self.status)}
        st = self.statement
        if st is not None and st.chain is not None:
            out.update(claim=st.claim, step=st.chain[0], steps=st.chain[1], column=st.column)
        if st is not None and st.jacobian is not None:
            out["jacobian"] = {"of": st.jacobian.of, "wrt": st.jacobian.wrt}
        out["oracles"] = {k: v.to_json() for k, v in self.oracles.items()}
        out["diagnosis"] = self.diagnosis
        if self.proof is not None:
            out["proof"] = self.proof.to_json()
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class ForwardReport:
    """The generated forward against a library op or a hand-written module."""

    oracle: str
    against: str
    result: Result

    def to_json(self) -> dict:
        return {"oracle": self.oracle, "against": self.against, **self.result.to_json()}


@dataclass
class DerivationReport:
    name: str
    file: str | None
    status: str  # verified | wrong | inconclusive | invalid
    title: str = ""
    error: DerivationError | None = None
    gradients: list[GradientReport] = field(default_factory=list)
    forward: list[ForwardReport] = field(default_factory=list)
    seed: int = 0
    sizes: list[dict[str, int]] = field(default_factory=list)
    unchecked: list[tuple[int, int, str]] = field(default_factory=list)  # steps that are no formula
    domains: dict[str, dict[str, str]] = field(default_factory=dict)  # input -> domain (and why inferred)
    warnings: list[str] = field(default_factory=list)  # where the check is weaker than it looks
    near: list[bool] = field(default_factory=list)  # per draw: whether it placed kinks close on purpose

    def unchecked_lines(self) -> list[str]:
        return [f"{self.file or '<text>'}:{line}:{col}: {message}" for line, col, message in self.unchecked]

    def to_json(self) -> dict:
        out: dict = {"name": self.name, "file": self.file, "status": self.status}
        if self.title:
            out["title"] = self.title
        if self.error is not None:
            out["error"] = {
                "line": self.error.line,
                "column": self.error.column,
                "message": self.error.message,
            }
            return out
        out["gradients"] = [g.to_json() for g in self.gradients]
        out["forward"] = [f.to_json() for f in self.forward]
        out["seed"] = self.seed
        out["sizes"] = self.sizes
        if self.unchecked:
            out["unchecked"] = [{"line": ln, "column": col, "message": m} for ln, col, m in self.unchecked]
        out["near_kink_draws"] = self.near
        out["domains"] = self.domains
        out["warnings"] = self.warnings
        return out

    def notes(self) -> list[str]:
        """What the table cannot show: every oracle result other than a pass with its reason (one line
        for the gradients that share it), failing forwards, diagnoses, inferred domains and warnings."""
        out = []
        for name, d in self.domains.items():
            if "inferred" in d:
                out.append(f"{self.name}: {name} is drawn {d['domain']} (inferred: {d['inferred']})")
        out += [f"{self.name}: warning: {w}" for w in self.warnings]
        for f in self.forward:
            if f.result.status != Status.PASS:
                out.append(
                    f"{self.name}: forward against {f.against} ({f.oracle}) {f.result.status}: {_err(f.result)}"
                )
        shared: dict[tuple[str, str, str], list[str]] = {}
        for g in self.gradients:
            for oracle, r in g.oracles.items():
                if r.status not in (Status.PASS, Status.FAIL):
                    shared.setdefault((oracle, str(r.status), r.reason), []).append(g.name)
        for (oracle, status, reason), names in shared.items():
            out.append(f"{self.name}: {oracle} {status} for {', '.join(names)}: {reason}")
        for g in self.gradients:
            if g.diagnosis:
                out.append(f"{self.name}: {g.name}: {g.diagnosis}")
        return out + self.unchecked_lines()


@dataclass
class Report:
    derivations: list[DerivationReport]
    oracles: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        """2 when an input is invalid, 1 when a gradient is wrong, 4 when an oracle raised (the tool
        failed), 3 when a gradient is inconclusive, 0 when everything is verified."""
        statuses = {d.status for d in self.derivations}
        if "invalid" in statuses:
            return 2
        if "wrong" in statuses:
            return 1
        if self.errors():
            return 4
        if "inconclusive" in statuses:
            return 3
        return 0

    def errors(self) -> list[str]:
        """Every oracle that raised, once per derivation: 'derivation: oracle: reason'."""
        found = {
            f"{d.name}: {name}: {r.reason}"
            for d in self.derivations
            for g in d.gradients
            for name, r in g.oracles.items()
            if r.status == Status.ERROR
        }
        return sorted(found)

    def to_json(self) -> dict:
        return {"derivations": [d.to_json() for d in self.derivations]}

    def _repr_html_(self) -> str:
        """Jupyter shows a report as its verification table, verdicts coloured."""
        from .notebook import report_html

        return report_html(self)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    @property
    def proved(self) -> bool:
        """Whether the prover ran (check --prove): the table then has a proof column."""
        return any(g.proof is not None for d in self.derivations for g in d.gradients)

    def table(self) -> str:
        head = ["derivation", "gradient", *self.oracles, "verdict", *(["proof"] if self.proved else [])]
        rows = []
        notes = []
        for d in self.derivations:
            if d.error is not None:
                rows.append([d.name, "-", *["" for _ in self.oracles], "INVALID"])
                notes.append(str(d.error))
                continue
            for g in d.gradients:
                cells = [_cell(g.oracles.get(o)) for o in self.oracles]
                proof = [_proof_cell(g.proof)] if self.proved else []
                rows.append([d.name, g.name, *cells, str(g.status), *proof])
                if g.proof is not None and (g.proof.stated or g.proof.status != "proved"):
                    notes.append(f"{d.name}: {g.name}: {g.proof.summary()}")
            notes += d.notes()
        widths = [max(len(str(r[k])) for r in [head, *rows]) for k in range(len(head))]
        lines = [
            "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines += [""] + notes if notes else []
        lines += ["", self.summary()]
        return "\n".join(lines)

    def summary(self) -> str:
        n = len(self.derivations)
        kinds = ("verified", "wrong", "inconclusive", "invalid")
        by = {s: sum(d.status == s for d in self.derivations) for s in kinds}
        grads = [g for d in self.derivations for g in d.gradients]
        ok = sum(g.status == Status.VERIFIED for g in grads)
        parts = [f"{by[k]} {k}" for k in kinds if by[k] or k != "inconclusive"]
        proved = (
            f", {sum(g.proof is not None and g.proof.status == 'proved' for g in grads)} proved for all sizes"
        )
        return (
            f"{n} derivation{'s' * (n != 1)}: "
            + ", ".join(parts)
            + f"; {ok}/{len(grads)} gradients verified"
            + (proved if self.proved else "")
        )


def _cell(r: Result | None) -> str:
    if r is None:
        return ""
    if r.status in (Status.SKIP, Status.ERROR, Status.INCONCLUSIVE):
        return str(r.status).upper() if r.status == Status.ERROR else str(r.status)
    text = f"{r.max_rel_err:.1e}" if r.max_rel_err is not None else "-"
    return text if r.status == Status.PASS else f"FAIL {text}" if r.max_rel_err is not None else "FAIL"


def _proof_cell(proof: Proof | None) -> str:
    return "-" if proof is None else str(proof.status).replace("-", " ")


def _err(r: Result) -> str:
    if r.max_abs_err is None:
        return r.reason
    return f"max abs error {r.max_abs_err:.3g} at {r.worst_index}" + (f" ({r.reason})" if r.reason else "")
