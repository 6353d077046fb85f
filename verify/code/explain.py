"""Why a gradient the code returned is wrong: what is particular to code (gradients returned in the wrong
order, a batch mean for a sum, a transposed or misshapen array) first, then the derivation-level
diagnosis of `verify.diagnose` (a multiple of the true gradient, a missing path, ...) through
`diagnosis`, which takes (derivation, gradient name, written values, true values, sample)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ..comparison import Result
from ..diagnose import diagnose
from ..model import Derivation
from .layout import batch, shape_text


class CodeKind(StrEnum):
    """Kinds of mistake only code makes (the derivation-level kinds come from `verify.diagnose`)."""

    ORDER = "order"  # the gradient of another input returned in this one's place
    BATCH_MEAN = "batch-mean"  # the batch mean where the derivation's gradient is the sum
    TRANSPOSE = "transpose"  # the transpose of the true gradient (shaped like the transposed input)
    SHAPE = "shape"  # an array of another shape than its input's
    RAISED = "raised"  # the code raised
    NOT_FINITE = "not-finite"  # nan or inf where the true gradient is a moderate number
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Mistake:
    """What is wrong with one gradient of the code: a kind, a one-line message, the worst entry, and the
    derivation's own statement of the gradient when the exact oracle verified it (what to compute)."""

    kind: str
    message: str
    worst: str = ""
    fix: str = ""

    def summary(self) -> str:
        parts = [f"{self.kind}: {self.message}" if self.message else self.kind]
        if self.fix:
            parts.append(f"the derivation computes it as {self.fix}")
        if self.worst:
            parts.append(self.worst)
        return "; ".join(parts)

    def to_json(self) -> dict:
        out = {"kind": str(self.kind), "message": self.message}
        if self.worst:
            out["worst"] = self.worst
        if self.fix:
            out["fix"] = self.fix
        return out


def _same(a: np.ndarray, b: np.ndarray, rtol: float) -> bool:
    if a.shape != b.shape:
        return False
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return scale > 0 and bool(np.all(np.abs(a - b) <= rtol * scale))


def explain(d: Derivation, name: str, written: np.ndarray, true: dict[str, np.ndarray], sample,
            result: Result, rtol: float) -> Mistake:  # fmt: skip
    """The mistake in gradient d`name` (of input `name`): `written` the code's value, `true` the true
    gradient of every input at that sample (float64), `rtol` how close counts as equal."""
    r = true[name]
    label = f"d{name}"
    worst = _worst(label, result)
    others = [u for u in true if u != name and u in d.inputs and u not in d.fixed_values]
    for u in others:
        if _same(written, true[u], rtol):
            return Mistake(
                CodeKind.ORDER,
                f"your {label} is the gradient of {u}: the gradients are returned in the wrong order",
                worst,
            )
    if written.shape != r.shape:
        if written.ndim == 2 and written.shape == r.shape[::-1]:
            if _same(written.T, r, rtol):
                return Mistake(
                    CodeKind.TRANSPOSE,
                    f"your {label} is the transpose of the true gradient: it is {shape_text(d, name, True)}, "
                    f"{name} is {shape_text(d, name)}",
                    worst,
                )
        return Mistake(
            CodeKind.SHAPE, f"your {label} has shape {written.shape}; {name} has shape {r.shape}", worst
        )
    n = batch(d)
    if n is not None and _same(written * sample.sizes[n], r, rtol):
        return Mistake(
            CodeKind.BATCH_MEAN,
            f"your {label} is the batch mean; the derivation's is the sum (if that is your convention, "
            f"declare it: --convention {label}=mean)",
            worst,
        )
    return diagnosis(d, label, written, r, sample, worst, rtol)


def diagnosis(
    d: Derivation,
    gradient: str,
    written: np.ndarray,
    true: np.ndarray,
    sample,
    worst: str,
    rtol: float | None = None,
) -> Mistake:
    """The derivation-level diagnosis of a wrong value of gradient `gradient` (a statement of `d`, or the
    gradient of an input the derivation states none for): `verify.diagnose.diagnose`, which names the
    cause from the values alone (no fix is searched: the code has no statement to edit), to `rtol`."""
    if not any(st.target == gradient for st in d.gradients):
        return Mistake(CodeKind.UNKNOWN, "", worst)
    found = diagnose(d, gradient, written, true, sample, rtol=rtol)
    return Mistake(str(found.kind), found.message, worst)


def _worst(label: str, result: Result) -> str:
    if result.worst_index is None or result.written is None:
        return ""
    where = f"{label}[{', '.join(map(str, result.worst_index))}]" if result.worst_index else label
    return f"worst at {where}: yours {result.written:.6g}, true {result.reference:.6g}"
