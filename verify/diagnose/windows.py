"""Named causes for the mistakes of convolutions and pooling (derivations with shifted subscripts or a
windowed maximum).

Each `Undo` rewrites the written statement the way one known mistake would be undone, and names the
mistake when the rewrite gives the true gradient at the failing sample:

    kernel not flipped      a kernel read at e along its window axes where size - 1 - e belongs
    stride left out         an index with coefficient 1 in a shifted subscript where the forward has S
    offset off by one       every shifted subscript of one tensor one place too far or too near

all of kind wrong-index; a max pool's gradient sent to every entry of its window (the true gradient of
the forward with each windowed maximum a window sum) is missing-factor, the argmax mask left out; and a
multiple that is a product of sizes dividing the forward (an average pool's KH*KW) is scale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from itertools import combinations

import mpmath
import sympy as sp

from ..exacteval import adjoints, local_derivatives, run_all, run_statement
from ..model import Derivation, Statement, WindowMax, constant
from .causes import Cause, Numbers, floats
from .kinds import Kind


def cause(num: Numbers, own: bool) -> Cause | None:
    """The window mistake that explains the written values of `num`, or None. `own`: the written values
    are the statement's own formula, so that undoing a mistake in it can be tried; values from code are
    not (undoing a mistake the derivation's correct statement lacks changes nothing at a stride of 1, and
    would name that mistake for any wrong code)."""
    d, st = num.d, num.st
    if st.jacobian is not None or not d.windowed:
        return None
    found = _divisor(num)
    if found is not None:
        return found
    for undo in UNDOS if own else ():
        for rhs, message in undo.rewrites(d, st):
            try:
                undone = run_statement(dataclasses.replace(st, rhs=rhs), d, dict(num.sample.forward),
                                       num.sample.sizes)  # fmt: skip
            except (IndexError, KeyError, ValueError, TypeError):
                continue
            if num.same(undone, num.true):
                return Cause(undo.kind, message)
    if st.of is not None and any(f.rhs.has(WindowMax) for f in d.forward):
        if num.same(_window_sum_gradient(d, st.of, num.sample)):
            return Cause(
                Kind.MISSING_FACTOR,
                "sends the gradient to every entry of each window, as a window sum would: only the entry "
                "that is the window's maximum gets it (the argmax mask is missing)",
            )
    return None


def _divisor(num: Numbers) -> Cause | None:
    """A multiple that is a product of sizes dividing the forward (KH*KW of an average pool): its missing
    or extra division."""
    w, r, d = num.written, num.true, num.d
    if w.shape != r.shape or not r.any():
        return None
    c = float((w * r).sum() / (r * r).sum())
    if abs(float(abs(w - c * r).max())) > 1e-7 * max(float(abs(w).max()), 1e-300):
        return None
    values = {d.sizes[k]: v for k, v in num.sample.sizes.items()}
    values |= {constant(k): v for k, v in d.constants.items()}
    for st in d.forward:
        for term in sp.Add.make_args(st.rhs):
            divisor = sp.fraction(term)[1]
            if len(sp.Mul.make_args(divisor)) < 2 or not divisor.free_symbols <= set(values):
                continue
            value = float(divisor.xreplace(values))
            if _close(c, value):
                return Cause(Kind.SCALE, f"is {divisor} times the true gradient (a missing 1/({divisor})?)")
            if _close(c, 1 / value):
                return Cause(Kind.SCALE, f"is 1/({divisor}) of the true gradient (an extra 1/({divisor})?)")
    return None


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


@dataclasses.dataclass(frozen=True)
class Undo:
    mistake: str
    kind: Kind
    rewrites: Callable[[Derivation, Statement], Iterator[tuple[sp.Expr, str]]]  # (undone rhs, message)


def _shifted_reads(expr: sp.Expr) -> list[sp.Indexed]:
    return [a for a in expr.atoms(sp.Indexed) if not all(i.is_Symbol for i in a.indices)]


def _indices(e: sp.Expr) -> set[sp.Symbol]:
    return {s for s in e.free_symbols if isinstance(s, sp.Symbol) and s.is_integer and not s.is_nonnegative}


def _flips(d: Derivation, st: Statement):
    """A kernel read unflipped: every read of a tensor along its window-sized axes, position e, read at
    size - 1 - e instead."""
    windows = d.window_sizes()
    for name in sorted({a.base.label.name for a in st.rhs.atoms(sp.Indexed)}):
        shape = d.shape(name) if name in d.tensors else ()
        axes = [k for k, s in enumerate(shape) if s.name in windows]
        if not axes:
            continue
        flipped = {
            a: sp.Indexed(a.base, *(shape[k] - 1 - e if k in axes else e for k, e in enumerate(a.indices)))
            for a in st.rhs.atoms(sp.Indexed)
            if a.base.label.name == name
        }
        sizes = ", ".join(f"{shape[k]} - 1 - ..." for k in axes)
        yield st.rhs.xreplace(flipped), f"the kernel {name} is not flipped: it must be read at {sizes}"


def _strides(d: Derivation, st: Statement):
    """The stride left out: in the shifted subscripts, an index with coefficient 1 where the forward
    multiplies it by a stride constant."""
    strides = sorted(
        {
            c
            for f in d.forward
            for a in _shifted_reads(f.rhs)
            for e in a.indices
            for c in e.free_symbols
            if c.name in d.constants and any((e.diff(i) == c) for i in _indices(e))
        },
        key=str,
    )
    reads = _shifted_reads(st.rhs)
    candidates = sorted(
        {i for a in reads for e in a.indices if not e.is_Symbol for i in _indices(e) if e.diff(i) in (1, -1)},
        key=str,
    )
    for stride in strides:
        for count in range(len(candidates), 0, -1):
            for chosen in combinations(candidates, count):
                undone = {
                    a: sp.Indexed(a.base, *(_scale(e, chosen, stride) for e in a.indices)) for a in reads
                }
                names = " and ".join(i.name for i in chosen)
                tensors = ", ".join(sorted({a.base.label.name for a in reads}))
                yield (
                    st.rhs.xreplace(undone),
                    f"the stride {stride} is left out of the shifted subscripts of {tensors}: "
                    f"{names} must be multiplied by {stride}",
                )


def _scale(e: sp.Expr, chosen, stride) -> sp.Expr:
    if e.is_Symbol:
        return e
    return e.xreplace({i: stride * i for i in chosen if e.diff(i) in (1, -1)})


def _offsets(d: Derivation, st: Statement):
    """A padding offset off by one: every shifted subscript of one tensor one place further or nearer."""
    reads = _shifted_reads(st.rhs)
    for name in sorted({a.base.label.name for a in reads}):
        for step in (1, -1):
            moved = {
                a: sp.Indexed(a.base, *(e if e.is_Symbol else e + step for e in a.indices))
                for a in reads
                if a.base.label.name == name
            }
            yield (
                st.rhs.xreplace(moved),
                f"the padding offset of {name}'s shifted subscripts is off by one "
                f"({'+' if step < 0 else '-'}1 too many)",
            )


UNDOS = (
    Undo("kernel not flipped", Kind.WRONG_INDEX, _flips),
    Undo("stride left out", Kind.WRONG_INDEX, _strides),
    Undo("padding offset off by one", Kind.WRONG_INDEX, _offsets),
)


def _window_sum_gradient(d: Derivation, of: str, sample):
    """The true gradient of `of` when every windowed maximum of the forward is a sum over its window."""
    forward = [
        dataclasses.replace(
            f, rhs=f.rhs.replace(lambda e: isinstance(e, WindowMax), lambda e: sp.Sum(e.function, *e.limits))
        )
        for f in d.forward
    ]
    summed = dataclasses.replace(d, forward=forward, gradients=[])
    upstream = sample.exact.get(d.upstream, mpmath.mpf(1))
    values = run_all(summed, {**sample.exact}, sample.sizes)
    return floats(adjoints(summed, values, sample.sizes, upstream, local_derivatives(summed))[of])
