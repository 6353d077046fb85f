"""Diagnosis of a wrong gradient: the kind of mistake, its cause by name, the worst entry, and a fix that
the exact oracle verified.

    diagnose(d, name, written, true, sample)  ->  Mistake

takes the derivation, the name of the wrong statement (a gradient dv, a Jacobian, a step of a chain),
its written values and the true ones at one sample (any arrays of floats or 50-digit numbers), however
the written values were produced. With `own=True` (the written values are the statement's own formula
evaluated, as in `check`) the statement itself is examined as well: whether it is wrong only through a
wrong gradient it uses, whether it mixes samples, and, given the check's `draws`, which small edit of it
the exact oracle verifies (`fixes`).

The order: wrong only through another (propagated); a convolution's or a pooling's named mistakes
(`windows`); a multiple or the transpose (`causes.shape`); the
upstream factor, a path, a Jacobian's off-diagonal part left out (`causes.left_out`); samples mixed; then
the fix search, whose edit names the kind when the numbers named none (`kinds` lists every kind).
"""

from __future__ import annotations

import mpmath
import numpy as np

from .. import deadline, jacobians
from ..comparison import Result, Status, finite
from ..model import Derivation
from . import windows
from .causes import Cause, Numbers, floats, left_out, mixes_samples, multiple, propagated, shape
from .fixes import Budget, Found, Search, editable, truth
from .kinds import Fix, Kind, Mistake, Worst

__all__ = ["Budget", "Fix", "Kind", "Mistake", "Worst", "diagnose", "from_results", "unavailable"]

# CPU seconds for all the diagnoses of one derivation (`check` sets it with verify.deadline): the check's
# own cost is bounded by verify.limits, but a diagnosis evaluates the chain rule again for every cause it
# tries and every candidate fix, and a derivation with many wrong gradients multiplies that
ALL_DIAGNOSES_SECONDS = 6.0

EXACT_RTOL = 1e-20  # written values in 50-digit arithmetic: equal to a cause to far below any mistake
FLOAT_RTOL = 1e-8  # written values in float64 (other code): rounding, never a mistake, stays below this


def diagnose(
    d: Derivation,
    name: str,
    written,
    true,
    sample,
    *,
    own: bool = False,
    draws=None,
    seed: int = 0,
    worst: Worst | None = None,
    rtol: float | None = None,
    budget: Budget | None = None,
) -> Mistake:
    """What is wrong with statement `name` of `d`, whose written values at `sample` are `written` and
    true values `true` (the exact oracle's). `own`: the written values are the statement's own formula,
    so that it can be re-evaluated; `draws`: the check's samples, where a fix must hold (no fix search
    without them); `seed`: the check's seed (a fix is also verified at an extra draw from it); `worst`:
    the worst entry as the caller found it (computed here otherwise); `rtol`: how close counts as equal
    (by default that of the written values' arithmetic).

    The diagnosis never changes a verdict: where it fails (an exception anywhere in it), the mistake is
    of kind unknown and its message says the diagnosis is unavailable and why."""
    try:
        return _diagnose(d, name, written, true, sample, own, draws, seed, worst, rtol, budget)
    except deadline.OutOfTime as e:
        why = f"not diagnosed: the diagnosis of this derivation's wrong gradients {e}"
        return Mistake(
            Kind.UNKNOWN, why, d.statement(name).claim, worst or _worst(floats(written), floats(true))
        )
    except Exception as e:  # a failing diagnosis must leave the verdict as it is
        return unavailable(d, name, e, worst)


def unavailable(d: Derivation, name: str, error: Exception, worst: Worst | None = None) -> Mistake:
    """The mistake when the diagnosis itself failed: kind unknown, with the reason."""
    claim = name
    try:
        claim = d.statement(name).claim
    except Exception:  # the name itself may be what failed
        pass
    why = f"{type(error).__name__}: {error}".strip().splitlines()[0][:200]
    return Mistake(Kind.UNKNOWN, f"no diagnosis available (it failed: {why})", claim, worst)


def _diagnose(d, name, written, true, sample, own, draws, seed, worst, rtol, budget) -> Mistake:
    st = d.statement(name)
    w, t = _in_range(written, true)
    if rtol is None:
        rtol = EXACT_RTOL if _high_precision(written) else FLOAT_RTOL
    worst = worst or _worst(w, t)
    num = Numbers(d, st, w, t, sample, truth(d, sample) if own else {}, rtol)
    # a symptom, or a multiple by a plain number: the fix may name the cause
    weak = _not_real(st.claim, written)
    cause = None
    if st.jacobian is not None:
        block = jacobians.block_mismatch(st, true, 1e-9)
        cause = Cause(Kind.DIAGONAL_ONLY, block) if block else None
    elif own:
        cause = propagated(num)
    if cause is None and weak is None:
        cause = windows.cause(num, own)  # a convolution's or a pooling's own mistakes, named
    if cause is None and weak is None:
        cause = shape(w, t, _named(d, sample), _elsewhere(d, st, sample, draws) if own else None)
        if cause is not None and cause.weak:
            weak, cause = cause, None
    if cause is None and st.jacobian is None:
        cause = left_out(num)
    fix, note = None, ""
    if own and draws is not None and (cause is None or cause.kind != Kind.PROPAGATED):
        note = editable(st)
        if not note:
            try:
                found = Search(num, cause, draws, budget or Budget(), seed).run()
            except deadline.OutOfTime as e:
                found = Found(note=f"the fix search of this derivation's diagnoses {e}")
            fix, note = found.fix, found.note
            if fix is not None and found.edit is not None and cause is None and not fix.rewrite:
                message = found.edit.message + (f"; {weak.message}" if weak is not None else "")
                cause = Cause(found.edit.kind, message)
    if cause is None and own and st.jacobian is None:
        cause = mixes_samples(num)  # after the edits: a wrong index inside a sum looks like mixing too
    cause = cause or weak or Cause(Kind.UNKNOWN, "no simple mistake explains it")
    return Mistake(cause.kind, cause.message, st.claim, worst, fix, note)


def _elsewhere(d, st, sample, draws) -> list | None:
    """At the check's other draws: (the written values' multiple of the true ones, or None, and the
    sizes), from the values the check computed there (None where there are no other draws)."""
    if not draws or st.jacobian is not None:
        return None
    out = []
    for other in draws:
        if other is sample or st.target not in other.forward:
            continue
        written, true = _in_range(other.forward[st.target], truth(d, other)[st.of])
        out.append((multiple(written, true) if np.all(np.isfinite(written)) else None, _named(d, other)))
    return out or None


def _named(d, sample) -> dict:
    """The numbers a multiple may be named by at a sample: its sizes, and the scalar inputs drawn (a
    temperature T left out of a softmax's gradient)."""
    scalars = {n: float(sample.values[n]) for n in d.inputs if not d.shape(n) and n not in d.fixed_values}
    return {**sample.sizes, **{n: v for n, v in scalars.items() if v != 0}}


def _in_range(written, true) -> tuple[np.ndarray, np.ndarray]:
    """Written and true values as float64, both divided by the largest true one where that is past
    float64's range (exp(1000 x) in 50 digits): their ratios, which the causes read, survive."""
    w, t = np.asarray(written, dtype=object), np.asarray(true, dtype=object)
    largest = max((abs(x) for x in np.ravel(t)), default=0)
    if isinstance(largest, mpmath.mpf) and mpmath.isfinite(largest) and largest > 1e300:
        return floats(w / largest), floats(t / largest)
    return floats(written), floats(true)


def _not_real(claim: str, written) -> Cause | None:
    bad = ~finite(np.asarray(written, dtype=object).reshape(np.shape(written)))
    if not bad.any():
        return None
    at = np.unravel_index(int(np.argmax(bad)), bad.shape) if bad.ndim else ()
    where = f"[{', '.join(str(int(i)) for i in at)}]" if at else ""
    return Cause(Kind.NOT_REAL, f"the written {claim}{where} is not a real number (a square root or logarithm of a "
                 "negative number, or a division by zero)", weak=True)  # fmt: skip


def _high_precision(values) -> bool:
    flat = np.ravel(np.asarray(values, dtype=object))
    return flat.size > 0 and not isinstance(flat[0], float | np.floating)


def _worst(w: np.ndarray, t: np.ndarray) -> Worst | None:
    if w.shape != t.shape or not w.size:
        return None
    at = np.unravel_index(int(np.argmax(np.abs(w - t))), t.shape) if t.ndim else ()
    return Worst(tuple(int(i) for i in at), float(w[at] if at else w), float(t[at] if at else t))


def from_results(
    d: Derivation, name: str, arrays, results: dict[str, Result], draws, seed: int, budget=None
) -> Mistake:
    """The diagnosis `check` makes of a wrong claim from its oracles' results: `arrays` are (written, true,
    sample) of the first failing sample of the best oracle (the exact one's if it failed), None when
    there are no numbers to diagnose (a value that is not real, or of the wrong shape)."""
    try:
        return _from_results(d, name, arrays, results, draws, seed, budget)
    except Exception as e:  # see diagnose
        return unavailable(d, name, e)


def _from_results(d, name, arrays, results, draws, seed, budget) -> Mistake:
    st = d.statement(name)
    failing = [(k, r) for k, r in results.items() if r.status == Status.FAIL]
    worst = None
    if failing:
        k, r = failing[0]
        if r.worst_index is not None and r.written is not None:
            worst = Worst(tuple(r.worst_index), r.written, r.reference, k)
    if arrays is None:
        by_reason: dict[str, list[str]] = {}
        for k, r in failing:
            if r.reason:
                by_reason.setdefault(r.reason, []).append(k)
        message = "; ".join(f"{why} ({', '.join(names)})" for why, names in by_reason.items()) or "wrong"
        kind = Kind.NOT_REAL if any("not a real number" in why for why in by_reason) else Kind.UNKNOWN
        return Mistake(kind, message, st.claim, None)
    written, true, sample = arrays
    return diagnose(
        d, name, written, true, sample, own=True, draws=draws, seed=seed, worst=worst, budget=budget
    )
