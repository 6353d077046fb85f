"""Judging a written value against a reference: the statuses, the tolerance table, and the one
comparison every oracle's values go through.

A `Comparison` starts `unchecked`: only a comparison that ran can make it `pass` or `fail`, so an
oracle that never compares a gradient cannot report it as passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import mpmath
import numpy as np

from .exacteval import DIGITS


class Status(StrEnum):
    """An oracle's verdict on one gradient (or on a forward), and a gradient's overall verdict."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"  # the oracle did not compare it: framework missing, no module, nothing computed
    UNCHECKED = "unchecked"  # no comparison has run yet
    VERIFIED = "verified"
    WRONG = "wrong"


@dataclass(frozen=True)
class Tolerance:
    """|written - reference| <= atol * max(1, max|reference|) + rtol * |reference|, elementwise."""

    rtol: float
    atol: float


TOLERANCES = {
    "exact": Tolerance(1e-30, 1e-30),
    "fd": Tolerance(1e-6, 1e-7),
    "numpy": Tolerance(1e-9, 1e-11),
    "jax": Tolerance(1e-9, 1e-11),
    "torch": Tolerance(1e-9, 1e-11),
}


@dataclass
class Result:
    """One oracle's verdict on one gradient (or on the forward), worst over all samples.

    max_rel_err is normwise: max |written - reference| / max |reference|."""

    status: Status
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    worst_index: list[int] | None = None
    written: float | None = None
    reference: float | None = None
    sizes: dict[str, int] | None = None
    reason: str = ""

    def to_json(self) -> dict:
        out = {
            "status": str(self.status),
            "max_abs_err": self.max_abs_err,
            "max_rel_err": self.max_rel_err,
            "worst_index": self.worst_index,
        }
        if self.written is not None:
            out["written"] = self.written
            out["reference"] = self.reference
        if self.sizes is not None:
            out["sizes"] = self.sizes
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class Comparison:
    """Accumulates the worst disagreement over samples for one gradient and one oracle."""

    tol: Tolerance
    result: Result = field(default_factory=lambda: Result(Status.UNCHECKED, reason="nothing was compared"))
    arrays: tuple | None = None  # (written, reference, sample) of the first failing sample

    def add(self, written, reference, sample) -> None:
        """Compare one sample's written value with the reference (arrays of mpf or floats, or framework
        tensors); `sample` supplies the sizes for the report."""
        w, r = as_array(written), as_array(reference)
        if w.shape != r.shape:
            self.result = Result(
                Status.FAIL, reason=f"shape {w.shape} but the reference has {r.shape}", sizes=sample.sizes
            )
            return
        scalar = w.shape == ()
        w, r = w.reshape(-1) if scalar else w, r.reshape(-1) if scalar else r
        with mpmath.workdps(DIGITS):
            diff = np.abs(w - r)
            mag = np.abs(r)
            scale = max(1.0, float(mag.max())) if mag.size else 1.0
            bound = self.tol.atol * scale + self.tol.rtol * mag
            bad = ~finite(w) | (diff > bound)
        worst = np.unravel_index(int(np.argmax(diff.astype(float))), diff.shape) if diff.size else ()
        max_abs = float(diff.max()) if diff.size else 0.0
        # normwise: the largest error over the largest reference value, so near-zero entries don't blow up
        max_rel = max_abs / max(float(mag.max()) if mag.size else 0.0, 1e-300)
        failed = bool(bad.any()) or not np.isfinite(max_abs)
        current = self.result
        if current.status == Status.FAIL and not failed:
            return
        first = current.status == Status.UNCHECKED
        if first or (failed and current.status != Status.FAIL) or max_abs >= (current.max_abs_err or 0.0):
            self.result = Result(
                Status.FAIL if failed else Status.PASS,
                max_abs,
                max_rel,
                [] if scalar else [int(i) for i in worst],
                float(w[worst]) if diff.size else None,
                float(r[worst]) if diff.size else None,
                dict(sample.sizes),
            )
            if failed and self.arrays is None:
                self.arrays = (w, r, sample)


def as_array(v) -> np.ndarray:
    """An object array (mpf entries stay mpf) of a value: a NumPy array, a framework tensor or a number."""
    if isinstance(v, np.ndarray) and v.dtype == object:
        return v
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return np.asarray(np.asarray(v, dtype=np.float64), dtype=object)


def finite(a: np.ndarray) -> np.ndarray:
    if not a.size:
        return np.ones(a.shape, bool)
    return np.vectorize(lambda x: bool(mpmath.isfinite(x)), otypes=[bool])(a)
