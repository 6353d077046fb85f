"""Lowering index expressions to array programs.

A statement `t[i, j] = rhs` becomes SymPy expressions over whole arrays: each array is a Symbol, and
the array operations SymPy has no node for are the Function classes below (`Einsum`, `ReduceSum`,
`Align`, `Eye`). Elementwise arithmetic stays ordinary SymPy, so the printers inherit its precedence
and layout. The lowering

- turns sums of products into einsum contractions and other sums into reductions;
- hoists every factor that does not depend on a summed index out of the sum, so that a sum over an
  inner index is computed once and broadcast (never folded into one large contraction);
- contracts a Kronecker delta away where it meets a sum over one of its indices;
- inlines helper statements, and computes each repeated sum once;
- takes a factor common to all the terms of a statement out of them;
- writes softmax, log-softmax and log-sum-exp in their stable form, shifted by the maximum (`stable`),
  so that logits of 1000 work in float64 and of 100 in float32.
- reads a tensor at shifted subscripts (`x[n, c, S*i + kh - P, ...]`) as one strided `Window` view with
  an axis per index (zero outside the tensor), so that a convolution is an einsum over windows and a
  windowed maximum a `MaxOver`: no loop over elements in any backend.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import sympy as sp
from sympy.core.relational import Relational

from .model import (
    Derivation,
    DerivationError,
    Statement,
    WindowMax,
    constant,
    deltas_out,
    fresh_sums,
    summands,
)
from .primitives import BY_NODE


class Einsum(sp.Function):
    is_commutative = True
    is_real = True
    """Einsum(spec, *operands): spec is a Symbol naming the subscripts, as in 'nj,nj->j'."""


class ReduceSum(sp.Function):
    is_commutative = True
    is_real = True
    """ReduceSum(operand, axes...): the sum of an array over the given axis positions."""


class Align(sp.Function):
    is_commutative = True
    is_real = True
    """Align(operand, Tuple(source axes), Tuple(target axes)): transpose and insert broadcast axes."""


class Zeros(sp.Function):
    is_commutative = True
    is_real = True
    """Zeros(*sizes): an array of zeros of that shape, in the inputs' dtype. Added to a statement whose
    expression does not use every index of its target (a constant, or `0 * a[n, j]` that SymPy already
    simplified away), so that the result has the target's full shape rather than a broadcastable one."""

    @property
    def is_number(self):
        # an array, even of no axes: never a number SymPy may compare (Max(Zeros() + 1, 0) must stay)
        return False


class AsArray(sp.Function):
    is_commutative = True
    is_real = True
    """AsArray(x): a number or an expression of sizes as a 0-d array in the inputs' dtype, where a
    backend function would otherwise get a Python number (torch.tanh(0.5) raises; np.sqrt(2.0) is a
    float64 beside float32 arrays)."""

    @property
    def is_number(self):
        return False


class ReduceMax(sp.Function):
    is_commutative = True
    is_real = True
    """ReduceMax(operand, axis): the maximum of an array over one axis, used only as a shift that cancels
    (see `stable`): the printers keep autodiff from differentiating through it."""


class IndexMax(sp.Function):
    is_commutative = True
    is_real = True
    """IndexMax(expr, i, size): the maximum of an index expression over the index i (ranging over size),
    with i a Dummy of its own. It exists between `stable` and the lowering, which makes it a ReduceMax."""


class MaxOver(sp.Function):
    is_commutative = True
    is_real = True
    """MaxOver(operand, axes...): the maximum of an array over the given axis positions (a windowed
    maximum: differentiated through, unlike the shift `ReduceMax`)."""


class Window(sp.Function):
    is_commutative = True
    is_real = True
    """Window(array, pad, dilate, start, steps, shape, fill): the reads of one shifted subscript as an
    array with an axis per index. `array` is spread out by `dilate` per axis (zeros between its
    entries), then padded with `fill` by `pad` ((before, after) per axis); view[v] is that array at
    start + sum_j steps[j] * v_j. All entries are size expressions; `shape` is the view's."""


class Conv(sp.Function):
    is_commutative = True
    is_real = True
    """Conv(einsum, B, A, lhs, rhs, out, su, sv, dilate, low, high, U, V, L, weight, sizes, units): an
    `einsum` of array A with a Window of array B that is a convolution, for the backends that have one:

        out[b, f, u...] = sum(Bc[b, g, |su|*u + |sv|*v ...] * A'[f, g, v...], g, v...)

    where Bc is B spread out by `dilate` (zeros between entries) and padded by (low, high) per spatial
    axis (negative: cut), and A' is A read backwards along each spatial axis whose sv is negative; the
    result is read backwards along each u whose su is negative. `lhs` lists B's axes (b, g, spatial...),
    `rhs` A's (f, g, v...), `out` the positions of (b, f, u...) in the result; U, V and L are the sizes of
    u, v and B's spatial axes. `weight` is true when the u axes are a window's and the v axes long (a
    kernel's gradient, which a library computes as such); `sizes` holds the lengths of b and f. `units`
    = (to B, to A, to the result): how many unit axes a missing role takes, appended after the array's
    own axes (b then g to B, f then g to A, b then f to the result, each counted in the positions above);
    the result's are dropped again."""

    @property
    def transposed(self) -> bool:
        """Whether it is the adjoint of a convolution with A as its kernel: A read backwards, the result
        at unit stride (a library's transposed convolution, at the stride `dilate` spreads B out by)."""
        su, sv = self.args[6:8]
        return all(s < 0 for s in sv) and all(s == 1 for s in su)


class Pad(sp.Function):
    is_commutative = True
    is_real = True
    """Pad(array, pad, fill): `array` padded with `fill` by `pad` ((before, after) per axis, size
    expressions), for windows that all view one padded copy."""


class Inside(sp.Function):
    is_commutative = True
    is_real = True
    """Inside(position, size): 1 where `position` (an affine expression of indices) is a whole number
    from 0 to size - 1, else 0: the range of a summed index that a Kronecker delta or a change of
    variables removed. Lowered as a Window of ones."""


class Ones(sp.Function):
    is_commutative = True
    is_real = True
    """Ones(*sizes): an array of ones in the inputs' dtype (what an Inside reads)."""


class Merge(sp.Function):
    is_commutative = True
    is_real = True
    """Merge(operand, Tuple(axis sizes), k, length): axes k and k + 1 of the operand (a position's
    quotient q and remainder t by a stride, the sizes listed) made one axis h = stride*q + t, cut to
    `length`: the output of a statement lowered in strided phases (see `_Lowering.phase_splits`)."""


class Scatter(sp.Function):
    is_commutative = True
    is_real = True
    """Scatter(values, shape, axes, strides, counts, offsets): an array of `shape` that is the sum of
    the arrays `values` (a Tuple) each placed at strided positions: along target axis axes[d], entry
    q of values[k] lands at offsets[k][d] + strides[d] * q (for q < counts[d]); a position outside
    the target is dropped. The adjoint of a window read, statement by statement: the gradient of a
    pooling or a convolution scattered into the windows that overlap, one value per kernel offset."""


class Fold(sp.Function):
    is_commutative = True
    is_real = True
    """Fold(value, shape, kernel, strides, dilations, paddings, counts, fits): the sum of a window's
    terms placed into the target, col2im (PyTorch's `F.fold`), the same sum as a Scatter with the window
    offsets as axes of one array rather than unrolled. `value` has axes (batch.., k_1..k_m, i_1..i_m),
    the target `shape` (batch.., h_1..h_m): entry (k, i) lands at h = stride*i + dilation*k - padding
    along each of the m trailing target axes, and is dropped outside. `fits` (1 or 0): whether every count
    i is the library's output count of its h, floor((h + 2 padding - dilation (K - 1) - 1) / stride) + 1,
    so that F.fold can be given the target's size as it is."""


class FirstAt(sp.Function):
    is_commutative = True
    is_real = True
    """FirstAt(mask, kernel, strides, dilations, paddings, target, ties): where a boolean `mask` with a
    Fold value's axes (batch.., k_1..k_m, i_1..i_m) holds, as flat positions in the m trailing target
    axes of sizes `target` (h = stride*i + dilation*k - padding along each; outside the target does not
    count). Two arrays, this one and the one named `ties`: per window (batch.., i..), the position of
    the one offset where it holds, -1 where it holds at none or several; and (2 x T) the positions and
    window indices of the entries of windows where it holds at several. Where a max pooling's maxima
    are, as autograd keeps them, with ties kept too."""


class ScatterAt(sp.Function):
    is_commutative = True
    is_real = True
    """ScatterAt(value, at, ties, shape, m): the Fold of where(mask, value, 0) into `shape`, computed by
    adding each entry of `value` (axes (batch.., i..)) at its position in the m trailing axes, `at` and
    `ties` being the arrays of a FirstAt of the mask."""


class Eye(sp.Function):
    is_commutative = True
    is_real = True
    """Eye(rows, columns): the identity matrix (rectangular when the two sizes differ), for a Kronecker
    delta that no sum contracts."""


def array(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


@dataclass
class Assign:
    """`name = expr`: an array with axes `axes` (index symbols, in order)."""

    name: str
    expr: sp.Expr
    axes: tuple[sp.Symbol, ...]
    statement: bool  # True for a derivation statement, False for a temporary


@dataclass
class Program:
    """A straight-line array program: parameters in, assignments in order, results out."""

    params: list[str]
    body: list[Assign]
    results: list[str]
    sizes: dict[str, tuple[str, int]] = field(default_factory=dict)  # size name -> (array, axis) giving it
    saved: dict[str, tuple] = field(default_factory=dict)  # what a forward keeps for its backward: shapes


class _Lowering:
    def __init__(self, d: Derivation, helpers: dict[str, Statement]):
        self.d = d
        self.helpers = helpers
        self.body: list[Assign] = []
        self.cse: dict[str, str] = {}
        self.size_symbols = set(d.sizes.values())
        self.scalars = {s.name for s in d.sizes.values()} | {n for n, t in d.tensors.items() if not t.shape}
        self.counter = 0
        self.ranges: dict[sp.Symbol, sp.Expr] = {}  # index -> size, for the statement being lowered
        self.window_sizes = d.window_sizes()
        self.scatters = False  # whether a statement may be lowered as a Scatter (see `scatter`)
        self.folds = False  # whether a Scatter may be a Fold instead (see `fold`)
        self.spreads = False  # whether a strided convolution's input gradient may read a spread window
        self.window_order: tuple = ()  # while lowering a Fold's terms: the axis order of its window views
        self.shared_pads: dict[str, list[tuple[sp.Expr, sp.Expr]]] = {}  # see `scatter`

    def is_index(self, s) -> bool:
        # by the symbol, not its name: a summation index `N` is not the size N
        return isinstance(s, sp.Symbol) and s.is_integer and s not in self.size_symbols

    def free(self, e) -> set:
        return {s for s in e.free_symbols if self.is_index(s)}

    def temp(self, expr, axes) -> tuple[sp.Symbol, tuple]:
        expr = self.full(expr, axes)
        # computed once per structure: indices named by their axis position (summed indices are fresh
        # symbols in each statement, see _fresh_sums)
        canonical = {a: sp.Symbol(f"_axis{k}", integer=True) for k, a in enumerate(axes)}
        key = sp.srepr(expr.xreplace(canonical)) + f"|{len(axes)}"
        if key not in self.cse:
            self.counter += 1
            name = f"s{self.counter}"
            if not axes:
                self.scalars.add(name)
            self.body.append(Assign(name, expr, axes, False))
            self.cse[key] = name
        return array(self.cse[key]), axes

    def carried(self, expr, axes) -> set:
        """The axes that `expr`, lowered with axes `axes`, really has. SymPy may have cancelled every
        factor that had one (v[n] / v[n] in a product over n and k), and then the array broadcasts to
        fewer axes than claimed."""
        out: set = set()
        stack = [expr]
        while stack:
            e = stack.pop()
            if isinstance(e, Align):
                out |= set(e.args[1])
            elif isinstance(e, sp.Piecewise):
                # by its values alone: SymPy drops a condition whose branches are equal (where(c, 0, 0))
                stack.extend(value for value, _ in e.args)
            elif isinstance(e, Einsum | Conv | ReduceSum | Eye | Zeros):
                out |= set(axes)  # bare, such a node has the expression's axes (see `align`)
            elif isinstance(e, sp.Symbol):
                if e.is_real and not e.is_integer and e.name not in self.scalars:
                    out |= set(axes)
            else:
                stack.extend(e.args)
        return out

    def full(self, expr, axes):
        """`expr` with every axis of `axes` (zeros added where SymPy cancelled one away)."""
        if self.carried(expr, axes) == set(axes):
            return expr
        return Zeros(*(self.range_of(a) for a in axes)) + expr

    def order(self, axes_sets, preferred) -> tuple:
        """Union of axes, in the preferred (target) order first, then by first appearance; in a
        windowed derivation the axes of window size (kernel positions, stride phases) go before the
        others, so that elementwise work runs its innermost loop along a long axis."""
        seen = []
        for a in preferred:
            if any(a in s for s in axes_sets):
                seen.append(a)
        for s in axes_sets:
            for a in s:
                if a not in seen:
                    seen.append(a)
        if self.window_sizes:
            seen = [a for a in seen if self.small(a)] + [a for a in seen if not self.small(a)]
        return tuple(seen)

    def small(self, i) -> bool:
        """Whether index `i` ranges over a window's size or a fixed number (a stride phase)."""
        size = self.ranges.get(i)
        return size is not None and all(s.name in self.window_sizes for s in size.free_symbols)

    def align(self, expr, src, dst):
        """Broadcast `expr`, whose axes are `src`, to the axes `dst`.

        Broadcasting commutes with elementwise work, so it is pushed down to the arrays: the printed code
        reads `x - mu[:, None]`, not a broadcast copy of mu. Invariant: every array leaf of an
        expression with axes A is a bare array with axes A or an Align whose target is A."""
        src, dst = tuple(src), tuple(dst)
        if src == dst or expr.is_Number:
            return expr
        if isinstance(expr, sp.Symbol):
            return expr if expr.name in self.scalars else Align(expr, sp.Tuple(*src), sp.Tuple(*dst))
        if isinstance(expr, Align):
            return Align(expr.args[0], expr.args[1], sp.Tuple(*dst))
        if isinstance(expr, Einsum | Conv | ReduceSum | ReduceMax | MaxOver | Eye | Window | Merge | Pad):
            return Align(expr, sp.Tuple(*src), sp.Tuple(*dst))
        if isinstance(expr, sp.Piecewise):
            pairs = [
                (self.align(v, src, dst), c if c is sp.true else self.align(c, src, dst))
                for v, c in expr.args
            ]
            return sp.Piecewise(*pairs, evaluate=False)
        args = [self.align(a, src, dst) for a in expr.args]
        if isinstance(expr, sp.Max | sp.Min | Relational):
            return expr.func(*args, evaluate=False)
        return expr.func(*args)

    # -- the walk -------------------------------------------------------------------------------------

    def lower(self, e, pref) -> tuple[sp.Expr, tuple]:
        if isinstance(e, sp.Indexed):
            return self.indexed(e, pref)
        if isinstance(e, sp.Symbol) and e.name in self.helpers and not self.helpers[e.name].indices:
            return self.lower(self.inline(e.name, ()), pref)
        if isinstance(e, sp.Sum):
            return self.summation(e, pref)
        if isinstance(e, WindowMax):
            return self.window_max(e, pref)
        if isinstance(e, Inside):
            position, size = e.args
            axis = sp.Symbol("_", integer=True)  # the axis of the ones: a range of its own
            self.ranges[axis] = size
            ones, _ = self.temp(Ones(size), (axis,))
            return self.window(ones, (size,), (position,), sp.S.Zero)
        if isinstance(e, sp.KroneckerDelta):
            i, j = e.args
            if i == j:  # delta(n, n)
                return sp.Integer(1), ()
            fixed = [a for a in (i, j) if not (a.free_symbols & set(self.ranges))]
            if len(fixed) == 1:  # delta(j, 0): one-hot along j, the read of a one-entry array at j - 0
                index = j if fixed[0] is i else i
                return self.lower(Inside(index - fixed[0], sp.Integer(1)), pref)
            if not (i.is_Symbol and j.is_Symbol):
                # delta(q + 1, j), delta(q, -q): affine indices, 1 where i - j is 0, which is the read of
                # a one-entry array of ones at i - j
                return self.lower(Inside(i - j, sp.Integer(1)), pref)
            return self.temp(Eye(self.range_of(i), self.range_of(j)), (i, j))
        if isinstance(e, IndexMax):
            body, i, size = e.args
            self.ranges[i] = size
            x, axes = self.lower(body, tuple(a for a in pref if a != i) + (i,))
            if i not in axes:
                return x, axes
            if not isinstance(x, sp.Symbol):
                x, axes = self.temp(x, axes)
            return self.temp(ReduceMax(x, sp.Integer(axes.index(i))), tuple(a for a in axes if a != i))
        if isinstance(e, sp.Piecewise):
            parts = []
            for value, cond in e.args:
                parts.append(value)
                if cond is not sp.true:
                    parts.append(cond)
            lowered = [self.lower(p, pref) for p in parts]
            axes = self.order([a for _, a in lowered], pref)
            it = iter(self.align(x, a, axes) for x, a in lowered)
            pieces: list[tuple[sp.Expr, sp.Expr]] = []  # (value, condition), in order
            for _, cond in e.args:
                value = next(it)
                cond = self.condition(next(it)) if cond is not sp.true else sp.true
                if cond is sp.true and not pieces:
                    return value, axes
                if cond is not sp.false:
                    pieces.append((value, cond))
                if cond is sp.true:
                    break
            return sp.Piecewise(*pieces, evaluate=False), axes
        if not e.args or e.is_Atom:
            return e, ()
        lowered = [self.lower(a, pref) for a in e.args]
        axes = self.order([a for _, a in lowered], pref)
        if isinstance(e, sp.Mul):
            lowered = self.reciprocal(lowered, axes)
        args = [self.align(x, a, axes) for x, a in lowered]
        if _is_call(e) and not any(self.has_array(a) for a in args):
            # a backend function of numbers and sizes alone: give it an array (torch.tanh(0.5) raises)
            args = [AsArray(args[0]), *args[1:]] if isinstance(e, sp.Pow) else [AsArray(a) for a in args]
        if isinstance(e, sp.Max | sp.Min):
            # torch.maximum takes no Python number: an argument of sizes alone (100 / J) is a 0-d array
            args = [a if a.is_Number or self.has_array(a) else AsArray(a) for a in args]
        if isinstance(e, sp.Max | sp.Min | Relational):
            return e.func(*args, evaluate=False), axes
        return e.func(*args), axes

    def reciprocal(self, factors: list, axes: tuple) -> list:
        """The divisors of a product that have fewer axes than the product (layernorm's
        J*sqrt(var[n] + eps) under dx[n, j]) computed as one array at their own rank, by which the
        product then multiplies: one division per row instead of one per entry. A division costs
        several multiplications' time, and neither torch.compile nor XLA turns a / b into a * (1 / b),
        which rounds once more (within the oracles' bound, as any reassociation). Sizes and numbers
        dividing (the 1/J) join a divisor with axes; without one, the factors are returned as they are."""
        small: list[tuple[sp.Expr, tuple]] = []
        rest: list[tuple[sp.Expr, tuple]] = []
        for x, a in factors:
            divides = isinstance(x, sp.Pow) and x.exp.is_Number and x.exp < 0 and set(a) < set(axes)
            # not a scalar input alone: 1 / c raises for a Python float c = 0.0, where x / c is inf
            (small if divides and (a or not self.has_array(x)) else rest).append((x, a))
        if not any(a for _, a in small):
            return factors
        divisor_axes = self.order([a for _, a in small], axes)
        divisor = sp.Mul(*(self.align(x, a, divisor_axes) for x, a in small))
        return [*rest, self.temp(divisor, divisor_axes)]

    def condition(self, cond):
        """A lowered where() condition. One of numbers alone (the deltas of `delta(k, k) != 1` are
        gone) is decided here; one of sizes alone compares 0-d arrays, so that it is an array too
        (torch.where takes no Python bool)."""
        if self.has_array(cond):
            return cond
        decided = cond.func(*cond.args)
        if decided in (sp.true, sp.false):
            return decided
        return cond.func(AsArray(cond.lhs), cond.rhs, evaluate=False)

    def has_array(self, expr) -> bool:
        """Whether `expr` reads an array (or a scalar input): not numbers and sizes alone."""
        symbols = (s for s in expr.free_symbols if isinstance(s, sp.Symbol))
        return expr.has(Zeros, AsArray) or any(s.is_real and not s.is_integer for s in symbols)

    def range_of(self, i):
        """The size index `i` ranges over in the statement being lowered: the parser's range of a free
        index, or the limits of the sum that binds it."""
        return self.ranges[i]

    def know_ranges(self, expr):
        for s in expr.atoms(sp.Sum, WindowMax):
            for i, _, hi in s.limits:
                self.ranges[i] = hi + 1

    def indexed(self, e: sp.Indexed, pref, fill=sp.S.Zero):
        name = e.base.label.name
        idx = tuple(e.indices)
        shifted = not all(isinstance(i, sp.Symbol) for i in idx)
        if not shifted and name in self.d.tensors:
            # an index whose range is not the axis's size (i over I reading an axis of H, where a
            # Scatter put h = i) reads a prefix or past the end: a window too
            shifted = any(self.ranges.get(i, n) != n for i, n in zip(idx, self.d.shape(name), strict=True))
        if name in self.helpers and not shifted:
            return self.lower(self.inline(name, e.indices), pref)
        if shifted:
            # a helper read at shifted subscripts is computed whole first: inlined, its indices would
            # lose their ranges (g[.., h + P - S*i] is zero where h + P - S*i is not a position of g)
            source = self.materialize(name) if name in self.helpers else array(name)
            return self.window(source, self.d.shape(name), idx, fill)
        if len(set(idx)) < len(idx):  # a repeated index is a diagonal
            letters = _letters(set(idx))
            uniq = tuple(dict.fromkeys(idx))
            spec = "".join(letters[i] for i in idx) + "->" + "".join(letters[i] for i in uniq)
            return self.temp(Einsum(sp.Symbol(spec), array(name)), uniq)
        return array(name), idx

    def materialize(self, name: str) -> sp.Symbol:
        """Helper `name` computed as an array over its own indices (a temporary)."""
        h, saved = self.helpers[name], self.ranges
        self.ranges = dict(h.ranges)
        rhs = self.prepare(h.rhs)
        self.know_ranges(rhs)
        expr, axes = self.lower(rhs, h.indices)
        self.ranges = saved
        if set(axes) != set(h.indices):
            expr, axes = (
                Zeros(*(h.ranges[i] for i in h.indices)) + self.align(expr, axes, h.indices),
                h.indices,
            )
        return self.temp(self.align(expr, axes, h.indices) if tuple(axes) != tuple(h.indices) else expr,
                         h.indices)[0]  # fmt: skip

    def window(self, source: sp.Symbol, shape: tuple, subscripts: tuple, fill) -> tuple[sp.Symbol, tuple]:
        """The reads of array `source` (of `shape`) at shifted subscripts as one Window view, with an
        axis per index in the order they first appear (`x[n, c, S*i + kh - P, S*j + kw - P]` has axes
        n c i kh j kw)."""
        axes = tuple(dict.fromkeys(a for e in subscripts for a in _ordered(self.free(e))))
        if set(axes) <= set(self.window_order):
            axes = tuple(a for a in self.window_order if a in axes)
        ranges = [self.range_of(a) for a in axes]
        pad, dilate, start, steps = self.geometry(shape, subscripts, axes)
        shared = self.shared_pads.get(source.name)
        if shared is not None and all(d == 1 for d in dilate):
            # the padded tensor made once (a temporary), viewed at this read's offset
            start = [s - b + common for s, (b, _), (common, _) in zip(start, pad, shared, strict=True)]
            source, pad = self.padded(source, shape, shared, fill), [(sp.S.Zero, sp.S.Zero)] * len(shape)
        return self.temp(self.window_node(source, pad, dilate, start, steps, ranges, fill), axes)

    def padded(self, source: sp.Symbol, shape: tuple, pads, fill) -> sp.Symbol:
        """Array `source` (of `shape`) padded with `fill` by `pads`, as a temporary."""
        axes = tuple(sp.Symbol(f"_pad{k}", integer=True) for k in range(len(shape)))
        sizes = [n + before + after for n, (before, after) in zip(shape, pads, strict=True)]
        self.ranges.update(zip(axes, sizes, strict=True))
        whole = Pad(source, sp.Tuple(*(sp.Tuple(*p) for p in pads)), fill)
        return self.temp(whole, axes)[0]

    @staticmethod
    def window_node(source, pad, dilate, start, steps, shape, fill) -> Window:
        return Window(
            source,
            sp.Tuple(*(sp.Tuple(*p) for p in pad)),
            sp.Tuple(*dilate),
            sp.Tuple(*start),
            sp.Tuple(*(sp.Tuple(*row) for row in steps)),
            sp.Tuple(*shape),
            fill,
        )

    def geometry(self, shape: tuple, subscripts: tuple, axes: tuple):
        """(pad, dilate, start, steps) of the Window reading an array of `shape` at `subscripts`, with
        a view axis per index of `axes`."""
        ranges = [self.range_of(a) for a in axes]
        pad, dilate, start = [], [], []
        steps: list[list[sp.Expr]] = [[] for _ in axes]
        for e, length in zip(subscripts, shape, strict=True):
            e = sp.expand(e)
            coefficients = [e.diff(a) for a in axes]
            offset = e.xreplace({a: 0 for a in axes})
            # a subscript with fractions (after a change of variables) reads a spread-out copy
            d = sp.ilcm(
                1, *(sp.fraction(sp.together(t))[1] for t in [*coefficients, *sp.Add.make_args(offset)])
            )
            coefficients, offset, length = [d * c for c in coefficients], d * offset, d * (length - 1) + 1
            low = offset + sum(sp.Min(0, c) * (r - 1) for c, r in zip(coefficients, ranges, strict=True))
            high = offset + sum(sp.Max(0, c) * (r - 1) for c, r in zip(coefficients, ranges, strict=True))
            before, after = sp.Max(0, -low), sp.Max(0, high - (length - 1))
            pad.append((before, after))
            dilate.append(d)
            start.append(offset + before)
            for row, c in zip(steps, coefficients, strict=True):
                row.append(c)
        return pad, dilate, start, steps

    def window_max(self, e: WindowMax, pref):
        """max(x[...], kh, kw): a Window of x padded with -inf (positions outside x take no part, as the
        libraries pad max pooling), reduced over the window's indices."""
        body, bound = e.function, [lim[0] for lim in e.limits]
        if not isinstance(body, sp.Indexed) or body.base.label.name in self.helpers:
            raise NotImplementedError(
                "code for a windowed maximum of anything but one tensor read, max(x[...], kh, kw), is not generated"
            )
        name, idx = body.base.label.name, tuple(body.indices)
        if all(isinstance(i, sp.Symbol) for i in idx):
            x, axes = array(name), idx
        else:
            x, axes = self.window(array(name), self.d.shape(name), idx, -sp.oo)
        keep = tuple(a for a in axes if a not in bound)
        reduced = MaxOver(x, *[sp.Integer(k) for k, a in enumerate(axes) if a in bound])
        return self.temp(reduced, keep)

    def inline(self, name, indices):
        h = self.helpers[name]
        rhs = fresh_sums(self.prepare(h.rhs))
        self.know_ranges(rhs)
        return rhs.xreplace(dict(zip(h.indices, indices, strict=True)))

    def summation(self, e: sp.Sum, pref):
        bound = [lim[0] for lim in e.limits]
        extent = {lim[0]: lim[2] + 1 for lim in e.limits}
        body = deltas_out(self.expand_helpers(e.function))
        # A sum is split into terms where that saves work: a delta contracts away in some of them, and
        # an addend free of the summed indices leaves the sum (sum(dxhat*(x - mu), n) is
        # sum(dxhat*x, n) - mu*sum(dxhat, n): no N x J temporary x - mu).
        hoistable = any(
            isinstance(f, sp.Add)
            and any(not (self.free(t) & set(bound)) for t in f.args)
            and any(self.free(t) & set(bound) for t in f.args)
            for f in sp.Mul.make_args(body)
        )
        terms = summands(body) if body.has(sp.KroneckerDelta) or hoistable else (body,)
        results = [self.sum_term(t, bound, extent, pref) for t in terms]
        axes = self.order([a for _, a in results], pref)
        return sp.Add(*[self.align(x, a, axes) for x, a in results]), axes

    def expand_helpers(self, e):
        """Replace helper references by their definitions, so that deltas inside helpers can contract."""
        reps = {}
        for ix in e.atoms(sp.Indexed):
            name = ix.base.label.name
            if name in self.helpers and all(isinstance(i, sp.Symbol) for i in ix.indices):
                reps[ix] = self.expand_helpers(self.inline(name, ix.indices))
        for x in e.atoms(sp.Symbol):
            if x.name in self.helpers and not self.helpers[x.name].indices:  # a scalar helper
                reps[x] = self.expand_helpers(self.inline(x.name, ()))
        return e.xreplace(reps) if reps else e

    def sum_term(self, term, bound, extent, pref):
        bound = list(bound)
        factors = list(sp.Mul.make_args(term))
        # Contract Kronecker deltas that meet a summed index.
        changed = True
        while changed:
            changed = False
            for f in factors:
                if isinstance(f, sp.KroneckerDelta) and f.args[0] == f.args[1]:  # delta(m, m) is 1
                    factors.remove(f)
                    changed = True
                    break
                if isinstance(f, sp.KroneckerDelta):
                    i, j = f.args
                    # over two different ranges the delta is a rectangular Eye, which einsum contracts
                    plain = i.is_Symbol and j.is_Symbol
                    if (i in bound or j in bound) and plain and self.range_of(i) == self.range_of(j):
                        gone, keep = (i, j) if i in bound else (j, i)
                        factors.remove(f)
                        factors = [g.xreplace({gone: keep}) for g in factors]
                        bound.remove(gone)
                        changed = True
                        break
                    # delta(h, S*i + kh - P) fixes kh: its range becomes a factor (a delta of two plain
                    # indices over different ranges stays a rectangular Eye, as above)
                    solved = None if i.is_Symbol and j.is_Symbol else _solve(i - j, bound)
                    if solved is not None:
                        gone, keep = solved
                        factors.remove(f)
                        factors = self.substitute(factors, gone, keep, extent[gone])
                        bound.remove(gone)
                        changed = True
                        break
        factors, bound, extent = self.change_variables(factors, bound, extent)
        # A summed index that no factor uses contributes its extent.
        for b in list(bound):
            if not any(b in self.free(f) for f in factors):
                factors.append(extent[b])
                bound.remove(b)
        outside = [f for f in factors if not (self.free(f) & set(bound))]
        inside = [f for f in factors if self.free(f) & set(bound)]
        outer_expr, outer_axes = self.lower(sp.Mul(*outside), pref) if outside else (sp.Integer(1), ())
        if not bound:
            inner, inner_axes = self.lower(sp.Mul(*inside), pref) if inside else (sp.Integer(1), ())
        else:
            inner, inner_axes = self.contract(inside, bound, pref)
        axes = self.order([outer_axes, inner_axes], pref)
        return self.align(outer_expr, outer_axes, axes) * self.align(inner, inner_axes, axes), axes

    def substitute(self, factors, gone, keep, size):
        """`factors` with index `gone` replaced by the expression `keep`, and `Inside(keep, size)` for
        its range unless a factor reads `keep` on an axis of that size already (a read outside an axis
        is zero, so that factor vanishes wherever `keep` is out of range)."""
        guarded = any(self.reads_plainly(f, gone, size) for f in factors)
        out = [g.xreplace({gone: keep}) for g in factors]
        return out if guarded else [*out, Inside(keep, size)]

    def reads_plainly(self, factor, i, size) -> bool:
        """Whether `factor` is zero wherever its read of `i` alone, on an axis of `size`, is outside that
        axis: it is such a read, a product with one, or a where(c, a, 0) whose `a` is."""
        if isinstance(factor, sp.Mul):
            return any(self.reads_plainly(f, i, size) for f in factor.args)
        if isinstance(factor, sp.Piecewise):
            return all(v == 0 or self.reads_plainly(v, i, size) for v, _ in factor.args)
        if isinstance(factor, sp.Indexed):
            plain = all(isinstance(e, sp.Symbol) for e in factor.indices)
            # a helper read at a shifted subscript is computed whole, and zero outside like a tensor
            if factor.base.label.name in self.helpers and plain:
                return False
            shape = self.d.shape(factor.base.label.name)
            return any(e == i and n == size for e, n in zip(factor.indices, shape, strict=True))
        return isinstance(factor, Inside) and factor.args == (i, size)

    def change_variables(self, factors, bound, extent):
        """A summed index i read in a shifted subscript of a window-sized axis, K[o, c, h + P - S*i]:
        the sum runs over that axis's positions u instead, i = (h + P - u)/S, so that it costs the
        window's size rather than i's whole range (other reads of i become reads at fractions, which
        are zero between whole positions)."""
        extent = dict(extent)
        for v in list(bound):
            for f in factors:
                found = self.window_axis(f, v)
                if found is None:
                    continue
                position, size = found
                u = sp.Dummy(v.name, integer=True)
                coefficient = position.diff(v)
                rest = sp.expand(position - coefficient * v)
                # terms of the rest that are multiples of the coefficient (S*q of a phase split) move
                # into v: position = |c| a + remainder, a whole change of variables (i = q - a)
                multiple = sum((t for t in sp.Add.make_args(rest) if (t / coefficient).is_integer), sp.S.Zero)
                if multiple != 0:
                    remainder = rest - multiple
                    low, high = self.bounds(remainder)
                    first = -sp.floor(high / abs(coefficient))
                    last = sp.floor((size - 1 - low) / abs(coefficient))
                    extent[u] = self.ranges[u] = last - first + 1
                    keep = sp.sign(coefficient) * (u + first) - multiple / coefficient
                    factors = self.substitute(factors, v, keep, extent[v])
                else:
                    extent[u] = self.ranges[u] = size
                    keep = (u - rest) / coefficient
                    factors = self.substitute(factors, v, keep, extent[v])
                    # the read that gave u its range is Inside(u, size) now, which is 1 everywhere
                    factors = [f for f in factors if not (isinstance(f, Inside) and f.args == (u, size))]
                bound[bound.index(v)] = u
                break
        return factors, bound, extent

    def window_axis(self, factor, v):
        """(subscript, axis size) of a shifted read in `factor` that `v` should run over instead: `v`
        with a whole coefficient beside another index, on an axis whose size is a window's (a size a
        relation of [sizes] shrinks with, or a fixed one) while `v`'s own range is not."""
        if self.window_size(self.range_of(v)):
            return None
        for read in sorted(factor.atoms(sp.Indexed, Inside), key=sp.default_sort_key):
            if isinstance(read, Inside):
                pairs = [read.args]
            elif read.base.label.name in self.helpers and all(isinstance(i, sp.Symbol) for i in read.indices):
                continue
            else:
                pairs = list(zip(read.indices, self.d.shape(read.base.label.name), strict=True))
            for position, size in pairs:
                coefficient = position.diff(v)
                others = self.free(position - coefficient * v)
                if coefficient.is_Integer and coefficient != 0 and others and self.window_size(size):
                    return position, size
        return None

    def bounds(self, e: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
        """The least and greatest value of an affine expression of indices over their ranges."""
        indices = self.free(e)
        base = e.xreplace({i: 0 for i in indices})
        low = base + sum(sp.Min(0, e.diff(i)) * (self.range_of(i) - 1) for i in indices)
        high = base + sum(sp.Max(0, e.diff(i)) * (self.range_of(i) - 1) for i in indices)
        return low, high

    def window_size(self, size) -> bool:
        return isinstance(size, sp.Symbol) and size.name in self.window_sizes

    def contract(self, factors, bound, pref):
        # Inside a sum, each operand keeps its axes in the order its tensors store them: no transposes
        # for x[n, j] (an einsum or a matrix product takes its operands' axes in any order).
        operands = []
        for f in factors:
            natural = [i for ix in _by_rank(f) for e in ix.indices for i in _ordered(self.free(e))]
            x, axes = self.lower(f, tuple(dict.fromkeys(natural + list(pref) + list(bound))))
            if not isinstance(x, sp.Symbol) and axes:
                x, axes = self.temp(x, axes)
            operands.append((x, axes))
        out = tuple(a for a in self.order([a for _, a in operands], pref) if a not in bound)
        scalars = [x for x, a in operands if not a]
        arrays = [(x, a) for x, a in operands if a]
        # a window-sized factor (a range mask of kernel positions) multiplies the largest operand rather
        # than joining the contraction: an einsum over it is a batched matrix product in PyTorch
        small = [(x, a) for x, a in arrays if all(self.small(i) for i in a)]
        # a kernel of window size that a library convolution takes whole is no mask
        conv = self.convolution(arrays, out) if len(arrays) == 2 and small else None
        if conv is not None:
            value, out = conv
            return sp.Mul(*scalars) * value, out
        if small and len(small) < len(arrays):
            large = [(x, a) for x, a in arrays if (x, a) not in small]
            x, axes = max(large, key=lambda xa: len(xa[1]))
            merged = self.order([axes] + [a for _, a in small], axes)
            product = self.align(x, axes, merged) * sp.Mul(*(self.align(y, a, merged) for y, a in small))
            arrays = [(y, a) for y, a in large if y is not x] + [self.temp(product, merged)]
        if len(arrays) == 1:
            x, axes = arrays[0]
            keep = tuple(a for a in axes if a not in bound)
            reduced = ReduceSum(x, *[sp.Integer(k) for k, a in enumerate(axes) if a in bound])
            value, value_axes = self.temp(reduced, keep)
            value = self.align(value, value_axes, out)
        else:
            letters = _letters({a for _, ax in arrays for a in ax})
            spec = ",".join("".join(letters[a] for a in ax) for _, ax in arrays)
            spec += "->" + "".join(letters[a] for a in out)
            conv = self.convolution(arrays, out) if len(arrays) == 2 else None
            if conv is not None:
                value, out = conv  # in the library's order: the caller aligns it
            else:
                value, _ = self.temp(Einsum(sp.Symbol(spec), *[x for x, _ in arrays]), out)
        return sp.Mul(*scalars) * value, out

    def convolution(self, arrays, out) -> tuple[sp.Symbol, tuple] | None:
        """The contraction of an array and a Window to the axes `out` as a Conv (a temporary, and its
        axes: a library convolution's own order, (f, b, u...) for a kernel's gradient, else (b, f,
        u...)) where the window's axes take the roles of a convolution's (see `Conv`); None otherwise."""
        windows = {a.name: a.expr for a in self.body if isinstance(a.expr, Window)}
        for (w, w_axes), (a, a_axes) in (arrays, arrays[::-1]):
            if not (isinstance(w, sp.Symbol) and w.name in windows and isinstance(a, sp.Symbol)):
                continue
            roles = self.conv_roles(windows[w.name], tuple(w_axes), tuple(a_axes), tuple(out))
            if roles is None:
                continue
            # (b, f, u...) in the library's order (f first for a kernel's gradient), a missing role left out
            by_role = [out[int(k)] if k < len(out) else None for k in roles[2]]
            if roles[-3]:
                by_role[:2] = by_role[1::-1]
            natural = tuple(x for x in by_role if x is not None)
            roles = self.conv_roles(windows[w.name], tuple(w_axes), tuple(a_axes), natural)
            letters = _letters({x for _, axes in arrays for x in axes})
            spec = ",".join("".join(letters[x] for x in axes) for _, axes in arrays)
            spec += "->" + "".join(letters[x] for x in natural)
            einsum = Einsum(sp.Symbol(spec), *[x for x, _ in arrays])
            return self.temp(Conv(einsum, windows[w.name].args[0], a, *roles), natural)
        return None

    def related(self, e: sp.Expr) -> sp.Expr:
        """Size expression `e` with each size that [sizes] computes from others (`I = H - 1`) replaced by
        its relation, constants by their values."""
        constants = {constant(k): v for k, v in self.d.constants.items()}
        for name, relation in reversed(self.d.size_relations.items()):  # dependents before what they read
            e = e.xreplace({self.d.sizes[name]: relation.xreplace(constants)})
        return sp.simplify(e) if e.has(sp.floor) else sp.expand(e)

    def conv_roles(self, window: Window, w_axes: tuple, a_axes: tuple, out: tuple):
        """The arguments of a Conv after its einsum and arrays (see `Conv`), or None when the window
        view and the other operand are not a convolution's input and kernel: each axis of the window's
        array is read whole by one view axis (the batch b, kept; the channel g, summed with A's), or by
        two (a spatial axis: u kept, v summed with A's), and A may have one more axis f, kept. A missing
        batch, channel or f is a unit axis for the library."""
        source, pad, dilate, start, steps, shape, fill = window.args
        if fill != 0 or source.name not in self.d.tensors or len(set(a_axes)) < len(a_axes):
            return None
        length = self.d.shape(source.name)
        if any(sum(c != 0 for c in row) != 1 for row in steps):
            return None
        plain: dict[str, tuple[int, sp.Symbol]] = {}
        spatial = []
        for t, n in enumerate(length):
            movers = [k for k, row in enumerate(steps) if row[t] != 0]
            kept = [k for k in movers if w_axes[k] in out and w_axes[k] not in a_axes]
            summed = [k for k in movers if w_axes[k] in a_axes and w_axes[k] not in out]
            if len(movers) == 1:
                (k,) = movers
                whole = steps[k][t] == 1 and pad[t] == (0, 0) and dilate[t] == 1 and start[t] == 0
                role = "b" if kept else "g" if summed else None
                if not whole or shape[k] != n or role is None or role in plain:
                    return None
                plain[role] = (t, w_axes[k])
            elif len(movers) == 2 and len(kept) == len(summed) == 1:
                (ku,), (kv,) = kept, summed
                su, sv = steps[ku][t], steps[kv][t]
                if not (su.is_Integer and sv.is_Integer):
                    return None
                U, V = shape[ku], shape[kv]
                # the view's start once A and the result are read forwards
                first = start[t] + sp.Min(0, su) * (U - 1) + sp.Min(0, sv) * (V - 1)
                low = pad[t][0] - first
                high = abs(su) * (U - 1) + abs(sv) * (V - 1) + 1 - (dilate[t] * (n - 1) + 1) - low
                # in the sizes the others are computed from, so that a padding the relations make zero is 0
                low, high, U, V, n = (self.related(e) for e in (low, high, U, V, n))
                spatial.append((t, w_axes[ku], w_axes[kv], su, sv, dilate[t], low, high, U, V, n))
            else:
                return None
        if not 1 <= len(spatial) <= 3:
            return None
        b, g = plain.get("b", (None, None))[1], plain.get("g", (None, None))[1]
        rest = [x for x in a_axes if x != g and x not in [s[2] for s in spatial]]
        f = rest[0] if rest else None
        if len(rest) > 1 or (f is not None and f not in out):
            return None
        if len(a_axes) != (g is not None) + (f is not None) + len(spatial):
            return None
        present = {x for x in (b, f, *(s[1] for s in spatial)) if x is not None}
        if len(out) != len(present) or set(out) != present:
            return None
        column = list(zip(*spatial, strict=True))
        weight = all(self.small(u) for u in column[1]) and not any(self.small(v) for v in column[2])

        def positions(axes, roles):
            # a role's position among `axes`, a missing one's among the unit axes appended after them
            extra = iter(range(len(axes), len(axes) + len(roles)))
            return [axes.index(x) if x is not None else next(extra) for x in roles]

        source_axes = [None] * len(length)  # B's axes by the view axis that reads each whole
        for t, x in plain.values():
            source_axes[t] = x
        return (
            sp.Tuple(*positions(source_axes, [b, g]), *column[0]),
            sp.Tuple(*positions(list(a_axes), [f, g, *column[2]])),
            sp.Tuple(*positions(list(out), [b, f, *column[1]])),
            *(sp.Tuple(*c) for c in column[3:]),
            sp.true if weight else sp.false,
            sp.Tuple(length[plain["b"][0]] if b is not None else 1, self.range_of(f) if f is not None else 1),
            sp.Tuple((b is None) + (g is None), (f is None) + (g is None), (b is None) + (f is None)),
        )

    # -- statements -----------------------------------------------------------------------------------

    def prepare(self, rhs: sp.Expr) -> sp.Expr:
        """Constants (stride, padding) by their values; explicit limits from 0."""
        return _zero_based(rhs.xreplace({constant(k): v for k, v in self.d.constants.items()}))

    def statement(self, st: Statement):
        self.ranges = dict(st.ranges)
        rhs = fresh_sums(stable(self.prepare(st.rhs)))
        scattered = self.scatter(rhs, st.indices) if self.scatters else None
        if scattered is not None:
            self.body.append(Assign(st.target, scattered, st.indices, True))
            return
        splits = self.phase_splits(rhs, st.indices)
        if splits and self.spreads and self.spread_statement(st, rhs):
            return
        split = list(st.indices)
        merges: list[tuple[sp.Symbol, sp.Symbol, sp.Symbol]] = []
        for h, stride in splits:
            # h = stride*q + t: the statement is computed for each remainder t, then merged back into h
            q, t = sp.Symbol(f"{h.name}_q", integer=True), sp.Symbol(f"{h.name}_t", integer=True)
            self.ranges[q], self.ranges[t] = (
                sp.floor((st.ranges[h] + stride - 1) / stride),
                sp.Integer(stride),
            )
            rhs = rhs.xreplace({h: stride * q + t})
            k = split.index(h)
            split[k : k + 1] = [q, t]
            merges.append((h, q, t))
        indices = tuple(split)
        self.know_ranges(rhs)
        expr = self.whole(rhs, indices)
        if expr.has(sp.zoo, sp.nan):  # (g3 - w3)**-1 with g3 = w3: a division by zero once helpers are put in
            raise DerivationError(
                f"{st.target} divides by zero once the helpers it reads are put in: no code computes it",
                st.line,
                1,
                self.d.file,
            )
        merged = list(indices)
        for h, q, _ in merges:
            k = merged.index(q)
            expr = Merge(expr, sp.Tuple(*(self.ranges[a] for a in merged)), sp.Integer(k), st.ranges[h])
            merged[k : k + 2] = [h]
            self.ranges[h] = st.ranges[h]
        self.body.append(Assign(st.target, expr, st.indices, True))

    def spread_statement(self, st: Statement, rhs: sp.Expr) -> bool:
        """Statement `st` lowered whole, without stride phases, where that makes each window it reads
        spread out by a stride the input of a transposed convolution (a Conv whose kernel is read
        backwards at unit stride), which a backend with `spreads` computes in one library call; else
        nothing is kept and False. Any other reader of a spread window would copy the upstream
        gradient spread out, (S*S - 1)/(S*S) of it zeros: the phases are better there."""
        kept = (list(self.body), dict(self.cse), self.counter, set(self.scalars), dict(self.ranges))
        start = len(self.body)
        self.know_ranges(rhs)
        expr = self.whole(rhs, st.indices)
        new = self.body[start:]
        spread = {a.name for a in new if isinstance(a.expr, Window) and any(d != 1 for d in a.expr.args[2])}

        def transposed(e) -> bool:
            return e.transposed and any(d != 1 for d in e.args[8])

        def reads(e) -> set:
            if isinstance(e, Conv) and transposed(e):
                e = sp.Tuple(*e.args[1:])  # its einsum over the spread window is not computed
            if isinstance(e, sp.Symbol):
                return {e.name}
            return set().union(*(reads(a) for a in e.args)) if e.args else set()

        convs = [a for a in new if isinstance(a.expr, Conv) and transposed(a.expr)]
        readers = [a.expr for a in new if a.name not in spread] + [expr]
        # (a division by zero is left to the phases' lowering, which says so)
        if convs and not any(reads(e) & spread for e in readers) and not expr.has(sp.zoo, sp.nan):
            self.body.append(Assign(st.target, expr, st.indices, True))
            return True
        self.body, self.cse, self.counter, self.scalars, self.ranges = kept
        return False

    def whole(self, rhs: sp.Expr, indices: tuple) -> sp.Expr:
        """`rhs` lowered as an array with exactly the axes `indices`, in that order."""
        expr, axes = self.lower(rhs, indices)
        # A factor common to every term is multiplied once: dy*y - y*s becomes y*(dy - s), one
        # whole-array product fewer.
        expr = sp.factor_terms(expr, sign=False)
        # where(c, a, a) is a: SymPy folds it so whenever it rebuilds the expression (a substitution at
        # printing), and t * where(c, 1/t, 1/t) would then lose t's axes after the shape was settled
        expr = expr.replace(
            lambda e: isinstance(e, sp.Piecewise) and len({value for value, _ in e.args}) == 1,
            lambda e: e.args[0][0],
        )
        # Every statement is an array of its target's full shape in the inputs' dtype: also one whose
        # expression lost an index (a constant, `0 * a[n, j]`, v[n] / v[n]) or reads no array at all.
        if not indices and not self.has_array(expr):
            expr = AsArray(expr)
        elif set(axes) != set(indices) or self.carried(expr, axes) != set(axes) or not self.has_array(expr):
            expr = Zeros(*(self.ranges[i] for i in indices)) + self.align(expr, axes, indices)
            axes = indices
        if tuple(axes) != tuple(indices):
            # an Align of an Align is one permutation (a convolution returned in the library's order)
            inner, src = (expr.args[0], expr.args[1]) if isinstance(expr, Align) else (expr, sp.Tuple(*axes))
            expr = Align(inner, src, sp.Tuple(*indices))
        return expr

    def scatter(self, rhs: sp.Expr, free: tuple) -> Scatter | None:
        """A statement `t[.., h, ..] = sum(f * delta(h, S*i + kh - P) ..., i, kh, ..)` whose deltas place
        each term at a target index, with window indices (kh) of fixed size: the sum unrolled over the
        window indices, one array per kernel offset over (.., i, ..) with h = S*i + kh - P substituted,
        added into the target at those strided positions (a pooling's gradient, with no stride-phase
        broadcast). None for any other statement. Each window index takes each of its values, and each
        i its whole range, so the terms are exactly those of the sum whose delta is 1."""
        total = next((f for f in sp.Mul.make_args(rhs) if isinstance(f, sp.Sum)), None)
        if total is None or any(isinstance(f, sp.Sum) and f is not total for f in sp.Mul.make_args(rhs)):
            return None
        outer = sp.Mul(*[f for f in sp.Mul.make_args(rhs) if f is not total])
        bound = [lim[0] for lim in total.limits]
        extent = {lim[0]: lim[2] + 1 for lim in total.limits}
        factors = sp.Mul.make_args(deltas_out(self.expand_helpers(total.function)))
        placed: dict[sp.Symbol, sp.Expr] = {}  # target index h -> where a term lands along it
        for f in (f for f in factors if isinstance(f, sp.KroneckerDelta)):
            for h, e in (f.args, f.args[::-1]):
                if h in free and h not in placed and self.free(e) and not self.free(e) & set(free):
                    placed[h] = e
                    break
            else:
                return None
        if not placed:
            return None
        fixed = {
            s: sp.Integer(self.d.fixed_sizes[s.name])
            for s in self.size_symbols
            if s.name in self.d.fixed_sizes
        }
        unrolled = [
            v
            for v in bound
            if any(e.has(v) for e in placed.values()) and extent[v].xreplace(fixed).is_Integer
        ]
        counts = [int(extent[v].xreplace(fixed)) for v in unrolled]
        if math.prod(counts) > 64:  # a statement per kernel offset: only for small windows
            return None
        combos = [
            dict(zip(unrolled, map(sp.Integer, c), strict=True))
            for c in itertools.product(*map(range, counts))
        ]
        # along each target axis, a term lands at offset + stride * i for one summed index i of its own
        first = {h: sp.expand(e.xreplace(combos[0])) for h, e in placed.items()}
        moving = {h: self.free(e) for h, e in first.items()}
        if any(len(m) != 1 for m in moving.values()):
            return None
        along = {h: next(iter(m)) for h, m in moving.items()}
        strides = {h: first[h].diff(along[h]) for h in placed}
        if len(set(along.values())) != len(along) or any(
            i not in bound or i in unrolled or not (c.is_Integer and c > 0)
            for i, c in zip(along.values(), strides.values(), strict=True)
        ):
            return None
        axes = tuple(along.get(h, h) for h in free)
        rest = [v for v in bound if v not in unrolled and v not in along.values()]
        body = outer * sp.Mul(*[f for f in factors if not isinstance(f, sp.KroneckerDelta)])
        # A Fold broadcasts the terms over the window offsets first: where they do not vary with the
        # offsets (an average pool's gradient), the printer's Scatter adds shifted copies of one array.
        if self.folds and body.xreplace(placed).has(*unrolled):
            folded = self.fold(rhs, free, placed, along, strides, unrolled, rest, extent, body, fixed)
            if folded is not None:
                return folded
        terms, offsets = [], []
        for combo in combos:
            landing = {h: sp.expand(e.xreplace(combo)) for h, e in placed.items()}
            offsets.append(sp.Tuple(*(landing[h] - strides[h] * along[h] for h in placed)))
            term = body.xreplace({**combo, **landing})
            terms.append(sp.Sum(term, *[(v, 0, extent[v] - 1) for v in rest]) if rest else term)
        self.know_ranges(rhs)
        self.know_ranges(sp.Add(*terms))
        self.shared_pads = self.pads_of(terms)
        values = [self.whole(t, axes) for t in terms]
        self.shared_pads = {}
        # a value that lands at several offsets (an average pool's dy/(KH*KW), at all nine) is computed
        # once, where each slice-add would compute it again
        values = [
            self.temp(v, axes)[0] if values.count(v) > 1 and not isinstance(v, sp.Symbol) else v
            for v in values
        ]
        return Scatter(
            sp.Tuple(*values),
            sp.Tuple(*(self.ranges[h] for h in free)),
            sp.Tuple(*(sp.Integer(free.index(h)) for h in placed)),
            sp.Tuple(*strides.values()),
            sp.Tuple(*(self.ranges[i] for i in along.values())),
            sp.Tuple(*offsets),
        )

    def fold(self, rhs, free, placed, along, strides, unrolled, rest, extent, body, fixed) -> Fold | None:
        """The Scatter's sum as one Fold (PyTorch's col2im) when its targets are the trailing one or two
        axes of the statement, each placed at stride*i + dilation*k - padding with a window index k of
        its own: the terms are then one array over (batch.., k.., i..), the window read of the input
        one strided view, where the unrolled Scatter computes a term and a strided slice-add per
        kernel offset. None otherwise (a Scatter then)."""
        targets = [h for h in free if h in placed]
        m = len(targets)
        if m not in (1, 2) or tuple(free[-m:]) != tuple(targets) or len(unrolled) != m:
            return None
        kernel, dilations, paddings = [], [], []
        for h in targets:
            e = sp.expand(placed[h].xreplace(fixed)) - strides[h] * along[h]
            mine = [k for k in unrolled if e.has(k)]
            if len(mine) != 1:
                return None
            k = mine[0]
            dilation, offset = e.diff(k), e.xreplace({k: sp.S.Zero})
            if not (dilation.is_Integer and dilation > 0 and offset.is_Integer and offset <= 0):
                return None
            kernel.append(k)
            dilations.append(dilation)
            paddings.append(-offset)
        if len(set(kernel)) != m:
            return None
        term = body.xreplace(placed)
        term = sp.Sum(term, *[(v, 0, extent[v] - 1) for v in rest]) if rest else term
        self.know_ranges(rhs)
        batch = tuple(a for a in free if a not in placed)
        wanted = (*batch, *kernel, *(along[h] for h in targets))
        # the window views of the input in the value's own axis order: no permuted copy; an axis the
        # terms lack (the offsets, in an average's) is broadcast where F.fold's input is laid out
        self.window_order = wanted
        try:
            expr, axes = self.lower(term, wanted)
        finally:
            self.window_order = ()
        value = self.align(expr, axes, wanted)
        sizes = [extent[k].xreplace(fixed) for k in kernel]
        counts = [self.ranges[along[h]] for h in targets]
        fits = all(
            self.count_fits(count, self.ranges[h], size, strides[h], dilation, padding)
            for h, count, size, dilation, padding in zip(
                targets, counts, sizes, dilations, paddings, strict=True
            )
        )
        return Fold(
            value,
            sp.Tuple(*(self.ranges[h] for h in free)),
            sp.Tuple(*sizes),
            sp.Tuple(*(strides[h] for h in targets)),
            sp.Tuple(*dilations),
            sp.Tuple(*paddings),
            sp.Tuple(*counts),
            sp.Integer(fits),
        )

    def count_fits(self, count, length, size, stride, dilation, padding) -> bool:
        """Whether `count` is floor((length + 2 padding - dilation (size - 1) - 1) / stride) + 1 for every
        length, as the derivation's size relations define it (a convolution's or pooling's output size):
        tried at lengths 1 to 64, the relation being a function of the length alone."""
        values = {constant(k): v for k, v in self.d.constants.items()}
        values.update(
            {
                s: sp.Integer(self.d.fixed_sizes[s.name])
                for s in self.size_symbols
                if s.name in self.d.fixed_sizes
            }
        )
        if not isinstance(length, sp.Symbol) or not isinstance(count, sp.Symbol):
            return False
        relation = self.d.size_relations.get(count.name)
        if relation is None:
            return False
        relation = relation.xreplace(values)
        if relation.free_symbols - {length}:
            return False
        return all(
            relation.xreplace({length: n}) == (n + 2 * padding - dilation * (size - 1) - 1) // stride + 1
            for n in range(1, 65)
        )

    def pads_of(self, terms) -> dict[str, list[tuple[sp.Expr, sp.Expr]]]:
        """For each tensor the terms read at shifted subscripts (all spread out by 1), the padding that
        covers all those reads: each term's window then views one padded copy, made once."""
        found: dict[str, list[list[tuple]]] = {}
        for t in terms:
            for read in t.atoms(sp.Indexed):
                name = read.base.label.name
                if name not in self.d.tensors or all(isinstance(i, sp.Symbol) for i in read.indices):
                    continue
                axes = tuple(dict.fromkeys(a for e in read.indices for a in _ordered(self.free(e))))
                pad, dilate, _, _ = self.geometry(self.d.shape(name), tuple(read.indices), axes)
                found.setdefault(name, []).append(pad if all(d == 1 for d in dilate) else [])
        return {
            name: [
                (sp.Max(*(p[k][0] for p in pads)), sp.Max(*(p[k][1] for p in pads)))
                for k in range(len(pads[0]))
            ]
            for name, pads in found.items()
            if all(pads)
        }

    def phase_splits(self, rhs: sp.Expr, free: tuple) -> list[tuple[sp.Symbol, int]]:
        """The free indices to compute in strided phases: h, with a stride S > 1, where a shifted
        subscript (or a delta) of a window-sized axis holds h and S times a summed index, as a strided
        convolution's input gradient K[o, c, h + P - S*i] and a strided pooling's delta(h, S*i + kh - P)
        do. Written h = S*q + t, such a sum runs over the window's positions for each remainder t with
        whole subscripts (i = q - a), where it would otherwise read a copy of dy spread out by S,
        (S*S - 1)/(S*S) of it zeros."""
        found: dict[sp.Symbol, int] = {}
        bound = {lim[0]: lim[2] + 1 for node in rhs.atoms(sp.Sum) for lim in node.limits}
        positions = [(e, n) for a in rhs.atoms(sp.Indexed) if a.base.label.name in self.d.tensors
                     for e, n in zip(a.indices, self.d.shape(a.base.label.name), strict=True)]  # fmt: skip
        for delta in rhs.atoms(sp.KroneckerDelta):
            difference = delta.args[0] - delta.args[1]
            # the window index the delta fixes: a bound index with coefficient +-1 over a window's size
            for k, size in bound.items():
                if difference.diff(k) in (1, -1) and self.window_size(size):
                    positions.append((difference, size))
        for e, size in positions:
            if not self.window_size(size):
                continue
            for h in free:
                if e.diff(h) not in (1, -1):
                    continue
                for v, extent in bound.items():
                    c = e.diff(v)
                    if c.is_Integer and abs(c) > 1 and not self.window_size(extent):
                        found.setdefault(h, int(abs(c)))
        return list(found.items())


def _ordered(indices) -> list:
    # by name, then by SymPy's order: two sums' fresh indices share a name (Dummy `_b`), and a set's
    # order between them is hash-seeded, which would make the generated code differ between processes
    return sorted(indices, key=lambda s: (s.name, sp.default_sort_key(s)))


def _zero_based(expr: sp.Expr) -> sp.Expr:
    """Sums and windowed maxima over explicit limits [lo, hi] rewritten over [0, hi - lo]."""

    def shift(e):
        limits, reps = [], {}
        for i, lo, hi in e.limits:
            reps[i] = i + lo
            limits.append((i, 0, hi - lo))
        return e.func(e.function.xreplace(reps), *limits)

    return expr.replace(
        lambda e: isinstance(e, sp.Sum | WindowMax) and any(lim[1] != 0 for lim in e.limits), shift
    )


def _solve(difference: sp.Expr, bound) -> tuple[sp.Symbol, sp.Expr] | None:
    """(i, its value) for a summed index i that `difference` = 0 fixes with coefficient +-1."""
    for i in bound:
        c = difference.diff(i)
        if c in (1, -1) and not (difference - c * i).has(i):
            return i, sp.expand(-(difference - c * i) / c)
    return None


def _is_call(e) -> bool:
    """Whether `e` prints as a backend function call (exp, max, sqrt, ...) rather than an operator."""
    if isinstance(e, sp.Pow):
        return not e.exp.is_Integer
    return type(e) in BY_NODE or isinstance(e, sp.Max | sp.Min)


def stable(e: sp.Expr) -> sp.Expr:
    """`e` with every softmax exp(a_k) / sum(exp(a_m), m), log-softmax log(exp(a_k) / sum(exp(a_m), m))
    and log-sum-exp log(sum(exp(a_m), m)) shifted by M = max over m of a_m, which cancels exactly:
    exp(a_k - M) / sum(exp(a_m - M), m), a_k - M - log(sum(exp(a_m - M), m)), M + log(sum(exp(a_m - M),
    m)). No exp of a positive number is left to overflow, and the sum is at least 1, so its log is safe."""
    if e.is_Atom or not e.args:
        return e
    if isinstance(e, sp.log):
        arg = e.args[0]
        ratio = _softmax(arg)
        if ratio is not None:
            a, shift, shifted, rest = ratio
            if rest == 1:
                return a - shift - sp.log(shifted)
        total = _sum_of_exp(arg)
        if total is not None:
            shift, shifted = total
            return shift + sp.log(shifted)
    if isinstance(e, sp.Mul):
        ratio = _softmax(e)
        if ratio is not None:
            a, shift, shifted, rest = ratio
            return stable(rest) * sp.exp(a - shift) / shifted
    return e.func(*[stable(a) for a in e.args])


def _sum_of_exp(e):
    """(M, sum(exp(a_m - M), m)) for e = sum(exp(a_m), m) over one index, else None."""
    if not (isinstance(e, sp.Sum) and len(e.limits) == 1 and isinstance(e.function, sp.exp)):
        return None
    m, lo, hi = e.limits[0]
    body = e.function.args[0]
    own = sp.Dummy(m.name, integer=True)
    shift = IndexMax(body.xreplace({m: own}), own, hi - lo + 1)
    return shift, sp.Sum(sp.exp(body - shift), (m, lo, hi))


def _softmax(e):
    """(a_k, M, sum(exp(a_m - M), m), the other factors) for a product holding exp(a_k) and
    1 / sum(exp(a_m), m), where a_k is a_m with m renamed to k; else None."""
    factors = sp.Mul.make_args(e)
    for f in factors:
        if not (isinstance(f, sp.Pow) and f.exp == -1):
            continue
        total = _sum_of_exp(f.base)
        if total is None:
            continue
        m = f.base.limits[0][0]
        body = f.base.function.args[0]
        for g in factors:
            if not isinstance(g, sp.exp):
                continue
            a = g.args[0]
            if any(body.xreplace({m: k}) == a for k in a.free_symbols if k.is_integer):
                rest = sp.Mul(*[x for x in factors if x is not f and x is not g])
                return a, total[0], total[1], rest
    return None


def _by_rank(e) -> list[sp.Indexed]:
    """The reads in `e`, most indices first; among equals, those reading no index that an IndexMax
    inside `e` binds (a stable softmax's shift) first, then by their text. Never in a set's order, which
    is hash-seeded: the generated code would differ from one process to the next."""
    bound = {m.args[1] for m in e.atoms(IndexMax)}
    return sorted(e.atoms(sp.Indexed), key=lambda a: (-len(a.indices), len(a.free_symbols & bound), str(a)))


def _letters(indices) -> dict:
    pool = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    names = _ordered(indices)
    out, used = {}, set()
    for s in names:
        c = (
            s.name[0]
            if s.name[0] in pool and s.name[0] not in used
            else next(p for p in pool if p not in used)
        )
        out[s] = c
        used.add(c)
    return out


def shift_name(name: str) -> str:
    return f"shift_{name}"


def forward_program(d: Derivation, given: tuple[str, ...] = (), shifted: tuple[str, ...] = ()) -> Program:
    """The forward pass. Names in `given` are parameters instead of being computed, so that a program
    can treat an intermediate as an independent variable. Each name in `shifted` gets a parameter
    `shift_<name>` added to it where it is computed: at a zero shift, the derivative with respect to the
    shift is that intermediate's adjoint, so one vector-Jacobian product gives every adjoint at once."""
    low = _Lowering(d, {})
    needed = _needed(d, given)
    for st in d.forward:
        if st.target not in given and st.target in needed:
            low.statement(st)
            if st.target in shifted:
                low.body[-1].expr = low.body[-1].expr + array(shift_name(st.target))
    params = [n for n in d.inputs if n in needed] + [n for n in given] + [shift_name(n) for n in shifted]
    params = _complete(d, params, low.body, d.inputs)
    results = [st.target for st in d.forward if st.target not in given and st.target in needed]
    return Program(params, low.body, results, _size_sources(d, params))


def _complete(d: Derivation, params: list[str], body: list[Assign], candidates: list[str]) -> list[str]:
    """`params`, and the first of `candidates` that gives a size the body uses but no parameter has, or
    the dtype of a `Zeros` or `Eye` when no parameter is a tensor."""
    sizes = {s.name for a in body for s in a.expr.free_symbols if s in d.sizes.values()}
    known = set(_size_sources(d, params))
    out = list(params)
    for name in candidates:
        shape = {s.name for s in d.shape(name)}
        tensor_needed = any(a.expr.has(Zeros, Eye, AsArray, Ones, Scatter) for a in body) and not any(
            d.shape(p) for p in out if p in d.tensors
        )
        if name not in out and ((shape & sizes) - known or (shape and tensor_needed)):
            out.append(name)
            known |= shape
    return out


def _needed(d: Derivation, given) -> set[str]:
    """Names the output depends on when the names in `given` are taken as inputs; every name when none
    is given (the forward returns every intermediate, also one the output no longer reads, such as
    `xhat` in `y = 0 * xhat + x`, whose gradient is then checked to be zero)."""
    if not given:
        return {st.target for st in d.forward} | set(d.inputs)
    needed = {d.output}
    for st in reversed(d.forward):
        if st.target in needed and st.target not in given:
            needed |= st.reads
    return needed | set(given)


def backward_program(
    d: Derivation, wanted: tuple[str, ...] | None = None, folds: bool = False, spreads: bool = False
) -> Program:
    """Every written gradient and Jacobian, from the inputs, the forward values and the upstream gradient
    (a Jacobian given a name is also a helper: statements using it expand it); or only
    the gradients named in `wanted` and the statements they use (`python -m verify bench` times the
    input gradients alone beside a library backward that computes no others). With `folds`, a window's
    scattered gradient may be a Fold (a backend with col2im: PyTorch); with `spreads`, a strided
    convolution's input gradient may be a transposed convolution (see `_Lowering.spread_statement`)."""
    helpers = {st.target: st for st in d.gradients if st.of is None}
    low = _Lowering(d, helpers)
    low.scatters = True
    low.folds = folds
    low.spreads = spreads
    keep = {st.target for st in d.gradients if st.checked}
    if wanted is not None:
        keep = set(wanted)
        for st in reversed(d.gradients):
            if st.target in keep:
                keep |= st.reads
    for st in d.gradients:
        if st.checked and st.target in keep:
            low.statement(st)
    produced = {a.name for a in low.body}
    used: list[str] = []
    for a in low.body:
        for s in sorted(a.expr.free_symbols, key=lambda s: s.name):
            if s.name in d.tensors and s.name not in produced and s.name not in used:
                used.append(s.name)
    order = d.inputs + [st.target for st in d.forward] + [d.upstream] * (d.upstream in d.tensors)
    params = _complete(d, [n for n in order if n in used], low.body, order)
    results = [st.target for st in d.gradients if st.checked and st.target in (wanted or keep)]
    return Program(params, low.body, results, _size_sources(d, params))


# -- what a backward reads from the forward alone -------------------------------------------------------

# Array nodes: what they compute is no elementwise function of their arguments' entries, so no
# subexpression holding one is saved. The opaque ones are never looked into either: their printers read
# their arguments' structure (a window's geometry, a scatter's terms).
_ARRAY_NODES = (Einsum, ReduceSum, Align, Zeros, AsArray, ReduceMax, IndexMax, MaxOver, Window, Conv, Pad,
                Inside, Ones, Merge, Scatter, Fold, FirstAt, ScatterAt, Eye, sp.Tuple, sp.Indexed,
                sp.Sum)  # fmt: skip
_OPAQUE = (IndexMax, MaxOver, Window, Conv, Pad, Inside, Merge, Scatter, Fold, FirstAt, ScatterAt)
_BOOLEAN = (Relational, sp.logic.boolalg.BooleanFunction)  # a comparison, an and/or of them: a mask


def saved_for_backward(d: Derivation, bwd: Program, masks: bool = True) -> dict[sp.Expr, Assign]:
    """What the backward `bwd` computes from inputs and forward values alone, elementwise, for its forward
    to compute instead and keep: relu's mask `x > 0`, softplus's `sigmoid(x)`, sigmoid's `y*(1 - y)`.
    That is what autograd saves for backward (jax.vjp's pullback reads relu's 1-byte mask, not x), so a
    backward reading these is timed like with like beside a library's. Each is a largest subexpression,
    of a statement that reads the upstream gradient, whose arrays all share one shape (or are scalars)
    and which does more than read one array (a comparison, a function, a power, or two arrays met): a
    `saved<k>` array of that shape, keyed by the expression so that every backward of `d` names it alike.
    Without `masks`, no comparison is saved (a boolean array: see the printers' `saves_masks`).
    """
    known = {n for n in [*d.inputs, *(st.target for st in d.forward)] if n in d.tensors}
    taken = set(d.tensors) | set(d.sizes) | set(d.constants) | {a.name for a in bwd.body}
    found: dict[sp.Expr, Assign] = {}

    def arrays(e) -> list[sp.Symbol]:
        return [s for s in sp.preorder_traversal(e) if isinstance(s, sp.Symbol) and s.name in known]

    def reads_forward_only(e) -> bool:
        if any(isinstance(n, _ARRAY_NODES) for n in sp.preorder_traversal(e)):
            return False
        names = {s.name for s in e.free_symbols}
        if names - known - set(d.sizes) - set(d.constants):
            return False  # the upstream gradient, an adjoint, a temporary of the backward
        shapes = {d.shape(s.name) for s in arrays(e)} - {()}
        return len(shapes) == 1

    def worth(e) -> bool:
        ops = (*_BOOLEAN, sp.Piecewise, sp.Pow, sp.Function)
        costly = any(isinstance(n, ops) and arrays(n) for n in sp.preorder_traversal(e))
        return costly or len([s for s in arrays(e) if d.shape(s.name)]) > 1

    def save(e) -> None:
        if e not in found:
            k = len(found)
            while f"saved{k}" in taken:
                k += 1
            taken.add(f"saved{k}")
            axes = d.shape(next(s.name for s in arrays(e) if d.shape(s.name)))
            found[e] = Assign(f"saved{k}", e, axes, statement=True)

    def visit(e) -> None:
        if e.is_Atom or isinstance(e, _OPAQUE):
            return
        if reads_forward_only(e):
            if worth(e) and (masks or not isinstance(e, _BOOLEAN)):
                save(e)
            return
        args = list(e.args)
        if isinstance(e, sp.Mul | sp.Add):  # the factors (terms) that read the forward alone, as one
            alone = [a for a in args if reads_forward_only(a)]
            group = e.func(*alone)
            if len(alone) > 1 and reads_forward_only(group) and worth(group):
                save(group)
                args = [a for a in args if a not in alone]
        elif isinstance(e, Einsum):  # its operands, not its spec
            args = args[1:]
        elif isinstance(e, Align):  # its operand, not its axes
            args = args[:1]
        for a in args:
            visit(a)

    for a in bwd.body:
        if not reads_forward_only(a.expr):
            visit(a.expr)
    return found


def reading_saved(d: Derivation, prog: Program, saved: dict[sp.Expr, Assign]) -> Program:
    """The backward `prog` with each expression in `saved` read from its array, which it takes as a
    parameter (after the derivation's own: x, then saved0, then dy where they remain)."""
    names = {e: array(a.name) for e, a in saved.items()}
    body = [Assign(a.name, _replaced(a.expr, names), a.axes, a.statement) for a in prog.body]
    read = {s.name for a in body for s in a.expr.free_symbols}
    params = _reading(d, prog.params, [a.name for a in saved.values()], body, read)
    shapes = {a.name: a.axes for a in saved.values()}
    return Program(params, body, prog.results, _size_sources(d, params), shapes)


def _reading(d: Derivation, params: list[str], saved: list[str], body: list[Assign], read: set) -> list[str]:
    """A backward's parameters once it reads what its forward saved: those of `params` and `saved` that
    the body reads, the saved ones before the upstream gradient, and what gives a size no other gives."""
    params = [p for p in params if p in read]
    at = next((k for k, p in enumerate(params) if p == d.upstream), len(params))
    params[at:at] = [n for n in saved if n in read]
    order = d.inputs + [st.target for st in d.forward] + [d.upstream] * (d.upstream in d.tensors)
    return _complete(d, params, body, order)


def scattered_at_maxima(d: Derivation, fwd: Program, bwd: Program, whole: Program) -> tuple[Program, Program]:
    """The saved forward and backward (`bwd`, of some of the gradients of `whole`) with each max
    pooling's gradient a scatter (see `ScatterAt`), for a backend whose fold is slow beside its scatter
    (PyTorch's col2im). A statement that is a Fold of where(P == Q, D, 0), with P and Q read from inputs
    and forward values alone and D without the kernel axes, adds D at the entries where P == Q: the
    forward finds them and keeps them (`FirstAt`: one position per window, and the entries of windows
    where P == Q holds at several; named after the statement, so that every backward of the derivation
    reads them alike), the backward adds D there and reads neither P nor Q. That is what torch.autograd
    keeps for max pooling (the argmax) and does with it (a scatter), with the formula's meaning kept
    where the maximum is not single: every tied maximum gets D."""
    taken = set(d.tensors) | set(d.sizes) | set(d.constants) | set(whole.saved) | {a.name for a in fwd.body}

    def fresh(stem: str) -> str:
        name, k = stem, 0
        while name in taken:
            k += 1
            name = f"{stem}{k}"
        taken.add(name)
        return name

    folds = {}
    fwd_body, shapes = list(fwd.body), {}
    for a in whole.body:
        picked = _one_hot_fold(d, a.expr, whole.body) if a.statement and isinstance(a.expr, Fold) else None
        if picked is None:
            continue
        _, mask, axes, views = picked
        renamed = {}
        for view in views:  # the backward's window views of forward values, computed in the forward
            renamed[array(view.name)] = array(fresh("saved_view"))
            fwd_body.append(Assign(renamed[array(view.name)].name, view.expr, view.axes, False))
        shape, m = a.expr.args[1], len(a.expr.args[2])
        at, ties = folds[a.name] = fresh(f"saved_{a.name}_at"), fresh(f"saved_{a.name}_ties")
        found = FirstAt(
            mask.xreplace(renamed), *a.expr.args[2:6], sp.Tuple(*shape[len(shape) - m :]), array(ties)
        )
        fwd_body.append(Assign(at, found, axes, True))
        shapes[at] = (*shape[: len(shape) - m], *a.expr.args[6])  # (batch.., counts..)
        shapes[ties] = (sp.Integer(2), sp.Symbol("ties"))
    if not folds:
        return fwd, bwd
    body = []
    for a in bwd.body:
        if a.statement and a.name in folds:
            value = _one_hot_fold(d, a.expr, bwd.body)[0]
            at, ties = folds[a.name]
            scatter = ScatterAt(value, array(at), array(ties), a.expr.args[1], len(a.expr.args[2]))
            a = Assign(a.name, scatter, a.axes, True)
        body.append(a)
    # the fold's window views of x and y are read no more: neither they nor x and y (if nothing else
    # reads them) are the backward's
    read: set[str] = set()
    for a in reversed(body):
        if a.statement or a.name in read:
            read |= {s.name for s in a.expr.free_symbols}
    body = [a for a in body if a.statement or a.name in read]
    params = _reading(d, bwd.params, list(shapes), body, read)
    saved = {n: s for n, s in {**bwd.saved, **shapes}.items() if n in read}
    fwd = Program(fwd.params, fwd_body, fwd.results + list(shapes), fwd.sizes, {**fwd.saved, **shapes})
    return fwd, Program(params, body, bwd.results, _size_sources(d, params), saved)


def _one_hot_fold(d: Derivation, fold: Fold, body: list[Assign]):
    """(D with axes (batch.., i..), the mask P == Q, those axes, the window views of `body` the mask
    reads) for a Fold of where(P == Q, D, 0) as `scattered_at_maxima` takes it; None otherwise."""
    known = {n for n in [*d.inputs, *(st.target for st in d.forward)] if n in d.tensors}
    windows = {a.name: a for a in body if isinstance(a.expr, Window)}
    value, shape, kernel = fold.args[:3]
    if not (isinstance(value, sp.Piecewise) and len(value.args) == 2 and value.args[1] == (0, True)):
        return None
    spread, mask = value.args[0]
    if not (isinstance(mask, sp.Eq) and isinstance(spread, Align) and isinstance(spread.args[0], sp.Symbol)):
        return None
    source, src, dst = spread.args
    m, nb = len(kernel), len(shape) - len(kernel)
    if len(dst) != nb + 2 * m or set(src) & set(dst[nb : nb + m]):
        return None
    reads = {s.name for s in mask.free_symbols if not s.is_integer} - known
    for name in reads:
        if name not in windows or getattr(windows[name].expr.args[0], "name", None) not in known:
            return None  # the mask reads the upstream gradient, or a temporary of the backward
    axes = (*dst[:nb], *dst[nb + m :])
    return Align(source, src, sp.Tuple(*axes)), mask, axes, [windows[n] for n in sorted(reads)]


def _replaced(e, names: dict):
    """`e` with each subexpression in `names` replaced: whole nodes, and groups of a product's factors or
    a sum's terms (what `saved_for_backward` saves of a Mul or an Add)."""
    if e in names:
        return names[e]
    if e.is_Atom or isinstance(e, _OPAQUE):
        return e
    if isinstance(e, sp.Mul | sp.Add):
        for group, name in names.items():
            if isinstance(group, e.func) and set(group.args) <= set(e.args) and group != e:
                rest = [a for a in e.args if a not in group.args]
                return e.func(name, *(_replaced(a, names) for a in rest))
    return e.func(*(_replaced(a, names) for a in e.args))


def _size_sources(d: Derivation, params: list[str]) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for name in params:
        for k, s in enumerate(d.shape(name) if name in d.tensors else ()):
            out.setdefault(s.name, (name, k))
    return out
