"""Why a gradient the code returned is wrong: what is particular to code (gradients returned in the wrong
order, a batch mean for a sum, a transposed or misshapen array) first, then the derivation-level
diagnosis of `verify.diagnose` (a multiple of the true gradient, a path of the chain rule left out, a
Jacobian cut to its diagonal, ...), which reads the cause off the code's values at one sample, in the
derivation's terms ("your dx treats var as a constant: it misses the path x -> var -> xhat")."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ..comparison import Result
from ..diagnose import Worst, diagnose
from ..model import Derivation
from .layout import batch, shape_text


class CodeKind(StrEnum):
    """Kinds of mistake only code makes (the derivation-level kinds are `verify.diagnose.Kind`)."""

    ORDER = "order"  # the gradient of another input returned in this one's place
    BATCH_MEAN = "batch-mean"  # the batch mean where the derivation's gradient is the sum
    TRANSPOSE = "transpose"  # the transpose of the true gradient (shaped like the transposed input)
    SHAPE = "shape"  # an array of another shape than its input's
    RAISED = "raised"  # the code raised
    NOT_FINITE = "not-finite"  # nan or inf where the true gradient is a moderate number
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Mistake:
    """What is wrong with one gradient of the code: a kind (a `CodeKind` or a `verify.diagnose.Kind`), a
    one-line message, the worst entry, and the derivation's own statement of the gradient when the exact
    oracle verified it (what to compute). Its JSON has the keys of `check`'s mistakes."""

    kind: str
    message: str
    claim: str = ""  # the gradient as the report names it (dW)
    worst: Worst | None = None
    fix: str = ""

    def summary(self) -> str:
        parts = [f"{self.kind}: {self.message}" if self.message else str(self.kind)]
        if self.fix:
            parts.append(f"the derivation computes it as {self.fix}")
        if self.worst is not None:
            w = self.worst
            where = f"{self.claim}[{', '.join(map(str, w.index))}]" if w.index else self.claim
            parts.append(f"worst at {where}: yours {w.written:.6g}, true {w.true:.6g}")
        return "; ".join(parts)

    def to_json(self) -> dict:
        out: dict = {"kind": str(self.kind), "message": self.message}
        if self.worst is not None:
            out["worst"] = self.worst.to_json()
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
    worst = _worst(result)
    others = [u for u in true if u != name and u in d.inputs and u not in d.fixed_values]
    for u in others:
        if _same(written, true[u], rtol):
            return Mistake(
                CodeKind.ORDER,
                f"your {label} is the gradient of {u}: the gradients are returned in the wrong order",
                label,
                worst,
            )
    if written.shape != r.shape:
        if written.ndim == 2 and written.shape == r.shape[::-1]:
            if _same(written.T, r, rtol):
                return Mistake(
                    CodeKind.TRANSPOSE,
                    f"your {label} is the transpose of the true gradient: it is {shape_text(d, name, True)}, "
                    f"{name} is {shape_text(d, name)}",
                    label,
                    worst,
                )
        return Mistake(
            CodeKind.SHAPE,
            f"your {label} has shape {written.shape}; {name} has shape {r.shape}",
            label,
            worst,
        )
    n = batch(d)
    if n is not None and _same(written * sample.sizes[n], r, rtol):
        return Mistake(
            CodeKind.BATCH_MEAN,
            f"your {label} is the batch mean; the derivation's is the sum (if that is your convention, "
            f"declare it: --convention {label}=mean)",
            label,
            worst,
        )
    return diagnosis(d, label, written, r, sample, worst, rtol)


def diagnosis(
    d: Derivation,
    gradient: str,
    written: np.ndarray,
    true: np.ndarray,
    sample,
    worst: Worst | None,
    rtol: float | None = None,
) -> Mistake:
    """The derivation-level diagnosis of a wrong value of gradient `gradient` (a statement of `d`, or the
    gradient of an input the derivation states none for): `verify.diagnose.diagnose`, which names the
    cause from the values alone (no fix is searched: the code has no statement to edit), to `rtol`."""
    if not any(st.target == gradient for st in d.gradients):
        return Mistake(CodeKind.UNKNOWN, "", gradient, worst)
    found = diagnose(d, gradient, written, true, sample, rtol=rtol)
    return Mistake(str(found.kind), _yours(found.message, gradient), gradient, worst)


def _yours(message: str, gradient: str) -> str:
    """The diagnosis's sentence about the written gradient as one about the code's ("your dx is N times
    the true gradient", "your dx treats var as a constant")."""
    if message.startswith(("is ", "has ", "keeps ", "leaves ")):
        return f"your {gradient} {message}"
    if message.startswith(f"{gradient} "):
        return f"your {message}"
    return message


def _worst(result: Result) -> Worst | None:
    """The entry furthest from the true value, as the comparison with the exact oracle's values found it."""
    if result.worst_index is None or result.written is None or result.reference is None:
        return None
    return Worst(tuple(result.worst_index), result.written, result.reference, "exact")
