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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy.core.relational import Relational

from .model import Derivation, Statement
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
            elif isinstance(e, Einsum | ReduceSum | Eye | Zeros):
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
        """Union of axes, in the preferred (target) order first, then by first appearance."""
        seen = []
        for a in preferred:
            if any(a in s for s in axes_sets):
                seen.append(a)
        for s in axes_sets:
            for a in s:
                if a not in seen:
                    seen.append(a)
        return tuple(seen)

    def align(self, expr, src, dst):
        """Broadcast `expr`, whose axes are `src`, to the axes `dst`.

        Broadcasting commutes with elementwise work, so it is pushed down to the arrays: the printed code
        reads `x - mu[:, None]` and `a / s[:, None]` stays a division. Invariant: every array leaf of an
        expression with axes A is a bare array with axes A or an Align whose target is A."""
        src, dst = tuple(src), tuple(dst)
        if src == dst or expr.is_Number:
            return expr
        if isinstance(expr, sp.Symbol):
            return expr if expr.name in self.scalars else Align(expr, sp.Tuple(*src), sp.Tuple(*dst))
        if isinstance(expr, Align):
            return Align(expr.args[0], expr.args[1], sp.Tuple(*dst))
        if isinstance(expr, Einsum | ReduceSum | ReduceMax | Eye):
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
        if isinstance(e, sp.KroneckerDelta):
            i, j = e.args
            if i == j:  # delta(n, n)
                return sp.Integer(1), ()
            return self.temp(Eye(self.range_of(i), self.range_of(j)), (i, j))
        if isinstance(e, IndexMax):
            body, i, size = e.args
            self.ranges[i] = size
            x, axes = self.lower(body, tuple(pref) + (i,))
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
            pieces = []
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
        args = [self.align(x, a, axes) for x, a in lowered]
        if _is_call(e) and not any(self.has_array(a) for a in args):
            # a backend function of numbers and sizes alone: give it an array (torch.tanh(0.5) raises)
            args = [AsArray(args[0]), *args[1:]] if isinstance(e, sp.Pow) else [AsArray(a) for a in args]
        if isinstance(e, sp.Max | sp.Min | Relational):
            return e.func(*args, evaluate=False), axes
        return e.func(*args), axes

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
        for s in expr.atoms(sp.Sum):
            for i, _, hi in s.limits:
                self.ranges[i] = hi + 1

    def indexed(self, e: sp.Indexed, pref):
        name = e.base.label.name
        if name in self.helpers:
            return self.lower(self.inline(name, e.indices), pref)
        idx = tuple(e.indices)
        if len(set(idx)) < len(idx):  # a repeated index is a diagonal
            letters = _letters(set(idx))
            uniq = tuple(dict.fromkeys(idx))
            spec = "".join(letters[i] for i in idx) + "->" + "".join(letters[i] for i in uniq)
            return self.temp(Einsum(sp.Symbol(spec), array(name)), uniq)
        return array(name), idx

    def inline(self, name, indices):
        h = self.helpers[name]
        rhs = _fresh_sums(h.rhs)
        self.know_ranges(rhs)
        return rhs.xreplace(dict(zip(h.indices, indices, strict=True)))

    def summation(self, e: sp.Sum, pref):
        bound = [lim[0] for lim in e.limits]
        extent = {lim[0]: lim[2] + 1 for lim in e.limits}
        body = self.expand_helpers(e.function)
        # Only a delta is worth splitting a sum into terms for: it contracts away in some of them.
        terms = sp.Add.make_args(sp.expand(body)) if body.has(sp.KroneckerDelta) else (body,)
        results = [self.sum_term(t, bound, extent, pref) for t in terms]
        axes = self.order([a for _, a in results], pref)
        return sp.Add(*[self.align(x, a, axes) for x, a in results]), axes

    def expand_helpers(self, e):
        """Replace helper references by their definitions, so that deltas inside helpers can contract."""
        reps = {}
        for ix in e.atoms(sp.Indexed):
            name = ix.base.label.name
            if name in self.helpers:
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
                    if (i in bound or j in bound) and self.range_of(i) == self.range_of(j):
                        gone, keep = (i, j) if i in bound else (j, i)
                        factors.remove(f)
                        factors = [g.xreplace({gone: keep}) for g in factors]
                        bound.remove(gone)
                        changed = True
                        break
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

    def contract(self, factors, bound, pref):
        # Inside a sum, each operand keeps its axes in the order its tensors store them: no transposes
        # for x[n, j] (an einsum or a matrix product takes its operands' axes in any order).
        operands = []
        for f in factors:
            natural = [i for ix in _by_rank(f) for i in ix.indices if self.is_index(i)]
            x, axes = self.lower(f, tuple(dict.fromkeys(natural + list(pref) + list(bound))))
            if not isinstance(x, sp.Symbol) and axes:
                x, axes = self.temp(x, axes)
            operands.append((x, axes))
        out = tuple(a for a in self.order([a for _, a in operands], pref) if a not in bound)
        scalars = [x for x, a in operands if not a]
        arrays = [(x, a) for x, a in operands if a]
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
            value, _ = self.temp(Einsum(sp.Symbol(spec), *[x for x, _ in arrays]), out)
        return sp.Mul(*scalars) * value, out

    # -- statements -----------------------------------------------------------------------------------

    def statement(self, st: Statement):
        self.ranges = dict(st.ranges)
        rhs = _fresh_sums(stable(st.rhs))
        self.know_ranges(rhs)
        expr, axes = self.lower(rhs, st.indices)
        # A factor common to every term is multiplied once: dy*y - y*s becomes y*(dy - s), one
        # whole-array product fewer.
        expr = sp.factor_terms(expr, sign=False)
        # Every statement is an array of its target's full shape in the inputs' dtype: also one whose
        # expression lost an index (a constant, `0 * a[n, j]`, v[n] / v[n]) or reads no array at all.
        if not st.indices and not self.has_array(expr):
            expr = AsArray(expr)
        elif (
            set(axes) != set(st.indices) or self.carried(expr, axes) != set(axes) or not self.has_array(expr)
        ):
            expr = Zeros(*(st.ranges[i] for i in st.indices)) + self.align(expr, axes, st.indices)
            axes = st.indices
        if tuple(axes) != tuple(st.indices):
            expr = Align(expr, sp.Tuple(*axes), sp.Tuple(*st.indices))
        self.body.append(Assign(st.target, expr, st.indices, True))


def _fresh_sums(expr):
    """`expr` with each sum's indices renamed to fresh symbols inside that sum only. An index may be
    summed in one place and free in another (x[n, k] / sum(x[n, k], k)), and the lowering tells indices
    apart by their symbols."""
    if not expr.has(sp.Sum):
        return expr
    if isinstance(expr, sp.Sum):
        fresh = {lim[0]: sp.Dummy(lim[0].name, integer=True) for lim in expr.limits}
        limits = [(fresh[i], lo, hi) for i, lo, hi in expr.limits]
        return sp.Sum(_fresh_sums(expr.function).xreplace(fresh), *limits)
    args = [_fresh_sums(a) for a in expr.args]
    if isinstance(expr, sp.Piecewise | sp.Max | sp.Min | Relational):
        return expr.func(*args, evaluate=False)
    return expr.func(*args)


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
    return sorted(e.atoms(sp.Indexed), key=lambda a: -len(a.indices))


def _letters(indices) -> dict:
    pool = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    names = sorted(indices, key=lambda s: s.name)
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
        tensor_needed = any(a.expr.has(Zeros, Eye, AsArray) for a in body) and not any(
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


def backward_program(d: Derivation, wanted: tuple[str, ...] | None = None) -> Program:
    """Every written gradient and Jacobian, from the inputs, the forward values and the upstream gradient
    (a Jacobian given a name is also a helper: statements using it expand it); or only
    the gradients named in `wanted` and the statements they use (`python -m verify bench` times the
    input gradients alone beside a library backward that computes no others)."""
    helpers = {st.target: st for st in d.gradients if st.of is None}
    low = _Lowering(d, helpers)
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


def _size_sources(d: Derivation, params: list[str]) -> dict[str, tuple[str, int]]:
    out = {}
    for name in params:
        for k, s in enumerate(d.shape(name) if name in d.tensors else ()):
            out.setdefault(s.name, (name, k))
    return out
