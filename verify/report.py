"""Reports: what `check` returns, what the CLI prints as a table, and what `--json` writes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .comparison import Result
from .model import DerivationError, Statement

if TYPE_CHECKING:
    from .prove import Proof


@dataclass
class GradientReport:
    """One checked statement: a gradient, a Jacobian (named dy/dx) or a step of a chain (dW step 2/3)."""

    name: str
    line: int
    status: str  # verified | wrong | unchecked (no oracle ran)
    oracles: dict[str, Result]
    diagnosis: str = ""
    statement: Statement | None = None
    proof: Proof | None = None  # the prover's outcome, with --prove

    @property
    def target(self) -> str:
        """The statement's name in the derivation (d.statement(target))."""
        return self.statement.target if self.statement is not None else self.name

    def to_json(self) -> dict:
        out = {"name": self.name, "line": self.line, "status": self.status}
        st = self.statement
        if st is not None and st.chain is not None:
            out.update(claim=st.claim, step=st.chain[0], steps=st.chain[1], column=st.column)
        if st is not None and st.jacobian is not None:
            out["jacobian"] = {"of": st.jacobian.of, "wrt": st.jacobian.wrt}
        out["oracles"] = {k: v.to_json() for k, v in self.oracles.items()}
        out["diagnosis"] = self.diagnosis
        if self.proof is not None:
            out["proof"] = self.proof.to_json()
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
    status: str  # verified | wrong | invalid
    title: str = ""
    error: DerivationError | None = None
    gradients: list[GradientReport] = field(default_factory=list)
    forward: list[ForwardReport] = field(default_factory=list)
    seed: int = 0
    sizes: list[dict[str, int]] = field(default_factory=list)
    unchecked: list[tuple[int, int, str]] = field(default_factory=list)  # steps that are no formula

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
        return out


@dataclass
class Report:
    derivations: list[DerivationReport]
    oracles: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        statuses = {d.status for d in self.derivations}
        if "invalid" in statuses:
            return 2
        if statuses - {"verified"}:
            return 1
        return 0

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
            for f in d.forward:
                if f.result.status == "fail":
                    notes.append(f"{d.name}: forward differs from {f.against} ({f.oracle}): {_err(f.result)}")
            for g in d.gradients:
                cells = [_cell(g.oracles.get(o)) for o in self.oracles]
                proof = [_proof_cell(g.proof)] if self.proved else []
                rows.append([d.name, g.name, *cells, g.status, *proof])
                if g.diagnosis:
                    notes.append(f"{d.name}: {g.name}: {g.diagnosis}")
                if g.proof is not None and (g.proof.stated or g.proof.status != "proved"):
                    notes.append(f"{d.name}: {g.name}: {g.proof.summary()}")
            notes += d.unchecked_lines()
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
        by = {s: sum(d.status == s for d in self.derivations) for s in ("verified", "wrong", "invalid")}
        grads = [g for d in self.derivations for g in d.gradients]
        ok = sum(g.status == "verified" for g in grads)
        parts = [f"{by['verified']} verified", f"{by['wrong']} wrong", f"{by['invalid']} invalid"]
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
    if r.status == "skip":
        return "skip"
    text = f"{r.max_rel_err:.1e}" if r.max_rel_err is not None else "-"
    return text if r.status == "pass" else f"FAIL {text}" if r.max_rel_err is not None else "FAIL"


def _proof_cell(proof: Proof | None) -> str:
    return "-" if proof is None else str(proof.status).replace("-", " ")


def _err(r: Result) -> str:
    if r.max_abs_err is None:
        return r.reason
    return f"max abs error {r.max_abs_err:.3g} at {r.worst_index}" + (f" ({r.reason})" if r.reason else "")
