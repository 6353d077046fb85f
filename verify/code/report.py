"""The report of `check_code`: what the CLI prints and what `--json` writes.

JSON (`python -m verify code ... --json FILE`):

    {"code": {"target": "custom_batchnorm.py:CustomBatchNormManualFunction",
              "kind": "torch.autograd.Function", "dtype": "float64",
              "derivation": {"name": "batchnorm", "file": "derivations/batchnorm.deriv"},
              "status": "verified|wrong|inconclusive",
              "inputs": {"x": "apply's argument input", ...},
              "conventions": ["..."], "notes": ["..."],
              "forward": {"status": "pass|fail|inconclusive", "max_abs_err": ..., ...},
              "gradients": [{"name": "dx", "status": "verified|wrong|inconclusive|skip",
                             "oracles": {"exact": {...}}, "per_draw": ["pass", ...],
                             "reason": "...", "diagnosis": "...",
                             "mistake": {"kind": "missing-path", "message": "...",
                                         "worst": {"index": [2, 2], "written": ..., "true": ...,
                                                   "oracle": "exact"},
                                         "fix": "dx[n,j] = ..."}}],
              "seed": 0, "sizes": [{"N": 3, "J": 2}, ...], "near_kink_draws": [false, ...]}}
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..comparison import Result, Status
from ..report import dumps
from .explain import Mistake


@dataclass
class GradientRow:
    """One gradient: compared (verified, wrong, inconclusive) or not (skip, with why)."""

    name: str
    status: Status
    result: Result | None = None
    reason: str = ""
    mistake: Mistake | None = None
    of: str = ""  # the input it is the gradient of
    draws: list[Status] = field(default_factory=list)  # the verdict at each draw on its own

    def to_json(self) -> dict:
        out: dict = {"name": self.name, "status": str(self.status)}
        if self.result is not None:
            # keyed as `check`'s JSON keys a gradient's comparisons: the code's values against the exact
            # oracle's true gradient (for float32 code, the float32 run's comparison)
            out["oracles"] = {"exact": self.result.to_json()}
            out["per_draw"] = [str(s) for s in self.draws]
        if self.reason:
            out["reason"] = self.reason
        if self.mistake is not None:
            out["diagnosis"] = self.mistake.summary()
            out["mistake"] = self.mistake.to_json()
        return out


@dataclass
class CodeReport:
    code: str
    kind: str
    dtype: str
    derivation: str
    file: str | None
    title: str
    forward: Result
    gradients: list[GradientRow]
    inputs: dict[str, str] = field(default_factory=dict)
    conventions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seed: int = 0
    sizes: list[dict[str, int]] = field(default_factory=list)
    near: list[bool] = field(default_factory=list)

    @property
    def compared(self) -> list[GradientRow]:
        return [g for g in self.gradients if g.status != Status.SKIP]

    @property
    def status(self) -> Status:
        """wrong when the forward or a gradient is; inconclusive when something could not be decided or
        no gradient was compared at all; verified otherwise."""
        statuses = {g.status for g in self.gradients}
        if self.forward.status == Status.FAIL or Status.WRONG in statuses:
            return Status.WRONG
        if self.forward.status != Status.PASS or Status.INCONCLUSIVE in statuses or not self.compared:
            return Status.INCONCLUSIVE
        return Status.VERIFIED

    @property
    def exit_code(self) -> int:
        return {Status.VERIFIED: 0, Status.WRONG: 1}.get(self.status, 3)

    def to_json(self) -> dict:
        return {
            "code": {
                "target": self.code,
                "kind": self.kind,
                "dtype": self.dtype,
                "derivation": {"name": self.derivation, "file": self.file},
                "status": str(self.status),
                "inputs": self.inputs,
                "conventions": self.conventions,
                "notes": self.notes,
                "forward": self.forward.to_json(),
                "gradients": [g.to_json() for g in self.gradients],
                "seed": self.seed,
                "sizes": self.sizes,
                "near_kink_draws": self.near,
            }
        }

    def dumps(self) -> str:
        return dumps(self.to_json())

    def table(self) -> str:
        where = f" ({self.file})" if self.file else ""
        draws = "; ".join(
            " ".join(f"{k}={v}" for k, v in sizes.items()) + (" (near kinks)" if near else "")
            for sizes, near in zip(self.sizes, self.near or [False] * len(self.sizes), strict=False)
        )
        lines = [
            f"code     {self.code} ({self.kind}, {self.dtype})",
            f"against  {self.derivation}{where}: {self.title}",
            f"inputs   {', '.join(f'{k} <- {v}' for k, v in self.inputs.items()) or 'none'}",
            f"samples  {draws}",
            "",
        ]
        rows = [
            [
                "forward",
                str(self.forward.status),
                _err(self.forward),
                self.forward.reason if self.forward.status != Status.PASS else "",
            ]
        ]
        skipped: dict[str, list[str]] = {}
        for g in self.gradients:
            if g.status == Status.SKIP:
                skipped.setdefault(g.reason, []).append(g.name)
                rows.append([g.name, "skip", "", ""])
                continue
            note = g.reason if g.status == Status.INCONCLUSIVE else ""
            if g.mistake is not None:
                note = str(g.mistake.kind)
            rows.append([g.name, str(g.status), _err(g.result), note])
        head = ["checked", "status", "max rel err", ""]
        widths = [max(len(r[k]) for r in [head, *rows]) for k in range(3)]
        for r in [head, ["-" * w for w in widths] + [""], *rows]:
            lines.append(
                "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)).rstrip()
                + (f"  {r[3]}" if r[3] else "")
            )
        notes = [f"{', '.join(names)}: not compared: {why}" for why, names in skipped.items()]
        partial = [("forward", self.forward)] + [(g.name, g.result) for g in self.compared if g.result]
        notes += [f"{name}: {r.reason}" for name, r in partial if r.status == Status.PASS and r.reason]
        explained: dict[str, list[str]] = {}
        for g in self.gradients:
            if g.mistake is not None:
                explained.setdefault(g.mistake.summary(), []).append(g.name)
        notes += [f"{', '.join(names)}: {summary}" for summary, names in explained.items()]
        notes += [f"convention: {c}" for c in self.conventions]
        notes += self.notes
        if notes:
            lines += [""] + notes
        lines += ["", self.summary()]
        return "\n".join(lines)

    def summary(self) -> str:
        compared = self.compared
        ok = sum(g.status == Status.VERIFIED for g in compared)
        skipped = len(self.gradients) - len(compared)
        tail = f", {skipped} not compared" if skipped else ""
        return f"{self.status}: {ok}/{len(compared)} gradients verified{tail}; forward {self.forward.status}"


def _err(r: Result | None) -> str:
    if r is None or r.max_rel_err is None:
        return "-" if r is None or r.status != Status.FAIL else ""
    return f"{r.max_rel_err:.1e}"
