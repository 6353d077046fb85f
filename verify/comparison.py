"""Judging a written value against a reference: the statuses, the tolerance table, and the one
comparison every oracle's values go through.

A comparison is judged against a bound on the oracle's own error at that sample (`verify.rounding`
for rounding, and the finite-difference oracle's truncation estimate), never against a fixed
tolerance: `fail` only where the disagreement is larger than the bound can explain, `inconclusive`
where the bound itself is too large a part of the gradient to tell a mistake from rounding, `pass`
otherwise. A `Comparison` starts `unchecked`: only a comparison that ran can make it anything else, so
an oracle that never compares a gradient cannot report it as passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum

import mpmath
import numpy as np

from .exacteval import DIGITS
from .rounding import U


class Status(StrEnum):
    """An oracle's verdict on one gradient (or on a forward), and a gradient's overall verdict."""

    PASS = "pass"
    FAIL = "fail"  # a disagreement the oracle's own error bound cannot explain
    SKIP = "skip"  # the oracle did not compare it: framework missing, no module, nothing computed
    INCONCLUSIVE = "inconclusive"  # float64 cannot resolve the comparison here (oracle), no oracle
    # could decide (gradient)
    ERROR = "error"  # the oracle itself raised: a failure of the tool, never a verdict on the formula
    UNCHECKED = "unchecked"  # no comparison has run yet
    VERIFIED = "verified"
    WRONG = "wrong"


@dataclass(frozen=True)
class Tolerance:
    """How an oracle bounds its own error: `verify.rounding`'s float64 bounds (unit roundoff U),
    rescaled to the `unit` roundoff of the oracle's arithmetic and multiplied by `safety` (generated
    code and frameworks order operations differently from the written expression, and their library
    functions are accurate to a few units in the last place). A comparison whose bound is more than
    `resolution` of the gradient's largest value cannot tell a mistake from rounding: inconclusive. A
    gradient that is zero mathematically is compared absolutely: it passes when the written value is
    zero to within the bound."""

    unit: float
    safety: float
    resolution: float

    @property
    def arithmetic(self) -> str:
        named = {FLOAT64: "float64", FLOAT32: "float32"}
        return named.get(self.unit, "its 50-digit arithmetic")

    def scale(self, bound):
        """An absolute float64 bound from `verify.rounding` as a bound for this oracle."""
        return bound * mpmath.mpf(self.unit / float(U) * self.safety)


FLOAT64 = float(U)
FLOAT32 = 2.0**-24

TOLERANCES = {
    "exact": Tolerance(1e-49, 16, 1e-20),  # 50-digit mpmath
    # fd adds its own truncation and rounding estimate per element, whose loss rounding bound this safety
    # multiplies too (a running-error bound is already a worst case over every rounding); a difference
    # quotient divides that worst case by a step of 1e-5 or less, so it resolves less than the others
    "fd": Tolerance(FLOAT64, 4, 1e-5),
    "numpy": Tolerance(FLOAT64, 16, 1e-6),
    "jax": Tolerance(FLOAT64, 16, 1e-6),
    "torch": Tolerance(FLOAT64, 16, 1e-6),
}


@dataclass
class Result:
    """One oracle's verdict on one gradient (or on the forward), worst over all samples.

    max_rel_err is normwise: max |written - reference| / max |reference|; `bound` is the largest error
    bound of the sample reported, and `rel_bound` that bound over max |reference| (the tolerance on the
    same scale as max_rel_err)."""

    status: Status
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    worst_index: list[int] | None = None
    written: float | None = None
    reference: float | None = None
    sizes: dict[str, int] | None = None
    reason: str = ""
    bound: float | None = None
    rel_bound: float | None = None

    def to_json(self) -> dict:
        out: dict[str, object] = {
            "status": str(self.status),
            "max_abs_err": self.max_abs_err,
            "max_rel_err": self.max_rel_err,
            "worst_index": self.worst_index,
        }
        if self.bound is not None:
            out["bound"] = self.bound
            out["rel_bound"] = self.rel_bound
        if self.written is not None:
            out["written"] = self.written
            out["reference"] = self.reference
        if self.sizes is not None:
            out["sizes"] = self.sizes
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class Truth:
    """What is known exactly about the value compared, at one sample: the exact written value (NaN
    where the formula is not real there), the largest magnitude of the true value, and the forward
    value float64 knows least well (for reasons)."""

    written: object
    size: object
    context: str = ""


SEVERITY = {Status.UNCHECKED: 0, Status.PASS: 1, Status.INCONCLUSIVE: 2, Status.FAIL: 3}


@dataclass
class Comparison:
    """Accumulates the worst verdict over samples for one gradient and one oracle: a failure anywhere
    fails, else a sample float64 cannot resolve leaves it inconclusive, else it passes."""

    tol: Tolerance
    name: str = "value"  # what is compared, for reasons: "dvar", "the forward"
    # why the reference may have no value it can bound (an oracle's own reason, shown with the index)
    unbounded: str = "the reference and its bound are not finite there"
    result: Result = field(default_factory=lambda: Result(Status.UNCHECKED, reason="nothing was compared"))
    arrays: tuple | None = None  # (written, reference, sample) of the first failing sample

    def add(self, written, reference, sample, bound, truth: Truth) -> None:
        """Judge one sample's written value against the reference (arrays of mpf or floats, or framework
        tensors), with `bound` the oracle's error bound (absolute, elementwise or one number)."""
        w, r = as_array(written), as_array(reference)
        if w.shape != r.shape:
            failed = Result(Status.FAIL, reason=f"shape {w.shape} but the reference has {r.shape}")
            self._keep(failed, sample)
            return
        scalar = w.shape == ()
        w, r = (w.reshape(-1), r.reshape(-1)) if scalar else (w, r)
        b = np.broadcast_to(np.asarray(bound, dtype=object), w.shape).reshape(w.shape)
        exact = np.asarray(as_array(truth.written)).reshape(w.shape)
        with mpmath.workdps(DIGITS):
            result = self._judge(w, r, b, exact, truth)
        result.sizes = dict(sample.sizes)
        if scalar:
            result.worst_index = []
        diagnosable = finite(r).all()  # the diagnosis compares with the true values (a written NaN it names)
        self._keep(result, sample, (w, r, sample) if diagnosable else None)

    def _judge(self, w, r, b, exact, truth) -> Result:
        w_ok, r_ok, exact_ok = finite(w), finite(r), finite(exact)
        not_real = ~w_ok & ~exact_ok
        if not_real.any():
            at = _index(not_real)
            return Result(
                Status.FAIL,
                worst_index=at,
                reason=f"the written {self.name} is not a real number at {_where(at)} (a square root or logarithm "
                "of a negative number, or a division by zero)",
            )
        unreliable = ~r_ok & ~finite(b)  # the oracle says it has no value it can stand by there
        if unreliable.any():
            at = _index(unreliable)
            return Result(
                Status.INCONCLUSIVE,
                worst_index=at,
                reason=f"no reference value it can bound at {_where(at)} ({self.unbounded})",
            )
        if not (w_ok & r_ok).all():
            at = _index(~(w_ok & r_ok))
            which, value = ("written value", w) if not w_ok[tuple(at)] else ("reference", r)
            return Result(
                Status.INCONCLUSIVE,
                worst_index=at,
                reason=f"float64 overflows here: its {which} is {float(value[tuple(at)])} at {_where(at)}, "
                "where the exact value is finite",
            )
        diff = np.abs(w - r)
        excess = diff - b
        bad = excess > 0
        mag = np.abs(r)
        largest = max(mag.max(), 0) if mag.size else 0
        # relative figures divided before the conversion to float64: exact values past 1e308 (exp(1000 x))
        # have a finite relative error, though their absolute one is no float64
        per = max(largest, 1e-300)
        max_abs = float(diff.max()) if diff.size else 0.0
        max_rel = float(diff.max() / per) if diff.size else 0.0
        at = _index(excess if bad.any() else diff) if diff.size else []
        bound = float(b.max()) if b.size else 0.0
        measured = Result(  # a pass unless beyond its bound or unresolvable, as found below
            Status.PASS,
            max_abs_err=max_abs,
            max_rel_err=max_rel,
            worst_index=at,
            written=float(w[tuple(at)]) if diff.size else None,
            reference=float(r[tuple(at)]) if diff.size else None,
            bound=bound,
            # relative to a true value that is all zero, a bound is no number worth printing (2e+253)
            rel_bound=float(b.max() / per) if b.size and largest > 0 else None,
        )
        if bad.any():
            worst = tuple(at)
            reason = (
                f"differs by {_g(diff[worst], 2)} at {_where(at)}, beyond its error bound {_g(b[worst], 1)}"
            )
            return replace(measured, status=Status.FAIL, reason=reason)
        size = float(truth.size)
        if size > 0 and bound > self.tol.resolution * size:
            where = f"; {truth.context}" if truth.context else ""
            why = f"its error bound {bound:.1e} is {bound / size:.0e} of the largest true {self.name} {size:.1e}"
            reason = f"{self.tol.arithmetic} cannot resolve it here: {why}{where}"
            return replace(measured, status=Status.INCONCLUSIVE, reason=reason)
        return measured

    def record(self, result: Result, sample, arrays: tuple | None = None) -> None:
        """Count a verdict reached without comparing values (a value that is no number, an array of
        another shape, code that raised) as this sample's; `arrays` as for diagnosis, if there are any."""
        result.sizes = dict(sample.sizes)
        self._keep(result, sample, arrays)

    def _keep(self, result: Result, sample, arrays=None) -> None:
        current = self.result
        worse = SEVERITY[result.status] > SEVERITY[current.status]
        same = result.status == current.status and (result.max_abs_err or 0.0) >= (current.max_abs_err or 0.0)
        if worse or same:
            self.result = result
        if result.status == Status.FAIL and self.arrays is None and arrays is not None:
            self.arrays = arrays


def _index(a: np.ndarray) -> list[int]:
    """The position of the largest entry (or the first True) of an array."""
    flat = int(np.argmax(np.asarray(a, dtype=float))) if a.dtype != bool else int(np.argmax(a))
    return [int(i) for i in np.unravel_index(flat, a.shape)] if a.ndim else []


def _g(x, digits: int) -> str:
    """A number in `digits` significant digits, an exact one past float64's range as it is (2.5e+1303)."""
    value = float(x)
    if math.isfinite(value) or not isinstance(x, mpmath.mpf) or not mpmath.isfinite(x):
        return f"{value:.{digits}g}"
    return mpmath.nstr(x, digits)


def _where(at: list[int]) -> str:
    return f"[{', '.join(map(str, at))}]" if at else "the value"


def as_array(v) -> np.ndarray:
    """An object array (mpf entries stay mpf) of a value: a NumPy array, a framework tensor or a number."""
    if isinstance(v, np.ndarray) and v.dtype == object:
        return v
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    if isinstance(v, mpmath.mpf):
        return np.asarray(v, dtype=object)
    return np.asarray(np.asarray(v, dtype=np.float64), dtype=object)


def finite(a: np.ndarray) -> np.ndarray:
    if not a.size:
        return np.ones(a.shape, bool)
    return np.vectorize(_finite, otypes=[bool])(a)


def _finite(x) -> bool:
    return math.isfinite(x) if isinstance(x, float) else bool(mpmath.isfinite(x))
