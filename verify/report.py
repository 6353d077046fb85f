"""Reports: what `check` returns, what the CLI prints as a table, and what `--json` writes."""

from __future__ import annotations

import json
import math
import os
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .comparison import Result, Status
from .model import DerivationError, Statement

if TYPE_CHECKING:
    from .diagnose import Mistake
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
    mistake: Mistake | None = None  # for a wrong one: the kind of mistake, its cause and a verified fix

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
        if self.mistake is not None:
            out["mistake"] = self.mistake.to_json()
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
        unrun: dict[str, list[str]] = {}  # inconclusive with no oracle run (no sample): one line per reason
        for g in self.gradients:
            if not g.oracles and g.reason:
                unrun.setdefault(g.reason, []).append(g.name)
        out += [f"{self.name}: {', '.join(names)} inconclusive: {reason}" for reason, names in unrun.items()]
        for g in self.gradients:
            if g.diagnosis:
                kind = f" [{g.mistake.kind}]" if g.mistake is not None else ""
                out.append(f"{self.file or self.name}:{g.line}: {g.name} is {g.status}{kind}: {g.diagnosis}")
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
        return dumps(self.to_json())

    @property
    def proved(self) -> bool:
        """Whether the prover ran (check --prove): the table then has a proof column."""
        return any(g.proof is not None for d in self.derivations for g in d.gradients)

    def table(self, colour: bool = False, errors: bool = True) -> str:
        """The verification table, its notes and the summary line. `colour`: verdict words and failing
        cells in ANSI colours (for a terminal); `errors`: an invalid file's `file:line:col: message`
        among the notes (the command line prints it on stderr instead, once)."""
        head = ["derivation", "gradient", *self.oracles, "verdict", *(["proof"] if self.proved else [])]
        rows = []
        notes = []
        for d in self.derivations:
            if d.error is not None:
                rows.append([d.name, "-", *["" for _ in self.oracles], "INVALID"])
                if errors:
                    notes.append(str(d.error))
                continue
            for g in d.gradients:
                cells = [_cell(g.oracles.get(o)) for o in self.oracles]
                proof = [_proof_cell(g.proof)] if self.proved else []
                rows.append([d.name, g.name, *cells, str(g.status), *proof])
                if g.proof is not None and (g.proof.stated or g.proof.fixed or g.proof.status != "proved"):
                    notes.append(f"{d.name}: {g.name}: {g.proof.summary()}")
            notes += d.notes()
        widths = [max(len(str(r[k])) for r in [head, *rows]) for k in range(len(head))]
        paint = _paint if colour else (lambda text, padded: padded)
        lines = [
            "  ".join(paint(str(c), str(c).ljust(w)) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [head, *rows]
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        legend = self.legend()
        lines += [""] + notes if notes else []
        lines += ["", legend] if legend else []
        lines += ["", self.summary()]
        return "\n".join(lines)

    def legend(self) -> str:
        """What the oracle columns hold, and each oracle's tolerance in this table on the same scale."""
        results = [
            (name, r)
            for d in self.derivations
            for g in d.gradients
            for name, r in g.oracles.items()
            if r.max_rel_err is not None
        ]
        if not results:
            return ""
        bounds: dict[str, float] = {}
        for name, r in results:
            if r.rel_bound is not None:
                bounds[name] = max(bounds.get(name, 0.0), r.rel_bound)
        groups: dict[str, list[str]] = {}
        for name in self.oracles:
            if name in _BOUNDS:
                groups.setdefault(_BOUNDS[name], []).append(name)
        how = "; ".join(f"for {_and(names)} {what}" for what, names in groups.items())
        text = (
            "Oracle columns: the largest normwise relative error, max|written - reference| / max|reference|, "
            "over the samples. An oracle passes a gradient when each element's error is within its bound, the "
            f"formula's float64 rounding error (verify.rounding) {how}."
        )
        if bounds:
            largest = ", ".join(f"{name} {bounds[name]:.0e}" for name in self.oracles if name in bounds)
            text += f" Largest bound here, relative as the columns: {largest}."
        return textwrap.fill(text, width=110)

    def summary(self) -> str:
        n = len(self.derivations)
        kinds = ("verified", "wrong", "inconclusive", "invalid")
        by = {s: sum(d.status == s for d in self.derivations) for s in kinds}
        grads = [g for d in self.derivations for g in d.gradients]
        ok = sum(g.status == Status.VERIFIED for g in grads)
        parts = [f"{by[k]} {k}" for k in kinds if by[k] or k != "inconclusive"]
        done = [g.proof for g in grads if g.proof is not None and g.proof.status == "proved"]
        pinned = sum(bool(p.fixed) for p in done)  # proved for the sizes the derivation fixes (KH = 3, N = 1)
        proved = f", {len(done)} proved for all sizes" + (
            f" ({pinned} at the sizes their file fixes)" if pinned else ""
        )
        return (
            f"{n} derivation{'s' * (n != 1)}: "
            + ", ".join(parts)
            + f"; {ok}/{len(grads)} gradients verified"
            + (proved if self.proved else "")
        )


# How each oracle's bound comes from the float64 rounding bound (verify.comparison.TOLERANCES).
_BOUNDS = {
    "exact": "in 50 digits",
    "fd": "x4 plus the difference quotient's own error",
    "numpy": "x16",
    "jax": "x16",
    "torch": "x16",
}

# ANSI colours of the words a terminal shows coloured: green verified, red wrong, yellow undecided.
_COLOURS = {
    "verified": "32",
    "wrong": "31",
    "INVALID": "31",
    "FAIL": "31",
    "ERROR": "31",
    "inconclusive": "33",
}


def colour_for(stream) -> bool:
    """Whether a table printed to `stream` gets colours: a terminal, NO_COLOR unset or empty
    (https://no-color.org), and a terminal that has colours (TERM is not 'dumb')."""
    isatty = getattr(stream, "isatty", None)
    return bool(
        isatty is not None
        and isatty()
        and not os.environ.get("NO_COLOR")
        and os.environ.get("TERM", "") != "dumb"
    )


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _paint(text: str, padded: str) -> str:
    """`padded` (text and its padding) with the text's verdict word coloured, the padding left plain
    so that the columns stay aligned."""
    word = text.split(" ", 1)[0]
    code = _COLOURS.get(word)
    return padded if code is None else padded.replace(word, f"\x1b[{code}m{word}\x1b[0m", 1)


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


def dumps(data) -> str:
    """JSON text of a report: a number float64 cannot hold (an error of values past 1e308, a nan) is
    null, since NaN and Infinity are no JSON and strict readers refuse the file."""

    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(data), indent=2, allow_nan=False)
