"""High-precision evaluation of SymPy index expressions at concrete sizes, element by element.

This is the `exact` oracle's arithmetic: it shares no code with the generated NumPy, JAX or PyTorch
programs. Values are mpmath numbers at `DIGITS` significant digits; inputs are exact rationals. A read
outside a tensor's axis (a shifted subscript past the edge) is zero; a windowed maximum leaves such
positions out. A sum whose summand holds a Kronecker delta of a summed index with coefficient +-1
(what SymPy's derivative of a sum is, delta(a2, S*i + kh - P) included) takes that index from the delta
instead of running over its range.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import mpmath
import numpy as np
import sympy as sp

from . import deadline
from .model import Derivation, Statement, WindowMax, constant, deltas_out, fresh_sums, summands
from .primitives import BY_NODE, Primitive, kink_value

DIGITS = 50


def elements(shape: tuple[int, ...]):
    return itertools.product(*(range(s) for s in shape))


_METHODS: dict[tuple[type, type], Callable[[Evaluator, Any, Any], Any]] = {}


class Evaluator:
    """Evaluates an expression with tensors bound to object arrays of mpf (or an mpf; Rounded numbers in
    verify.rounding's Bounder), indices bound to integers.

    One `_ev_<Node>` method per SymPy node type, as SymPy's printers do it, and the functions of
    `verify.primitives` through their records."""

    def __init__(self, tensors: Mapping[str, Any], sizes: Mapping[sp.Symbol, int], observe=None):
        self.tensors = tensors
        self.sizes = sizes
        # called with (kind, site, value, env) at every kink: max, min, abs, < and >, and the gap between
        # a window's two largest values ("window"); `env` binds the statement's free indices and the
        # sums' indices, so that (site, env) names one element's kink
        self.observe = observe
        self.reads: set | None = None  # when a set, every tensor element read is recorded in it
        self.outside = 0  # how many reads fell outside an axis so far
        self._windows: dict = {}  # (window, its free indices' values) -> (max, argmax)
        # What an evaluation needs of a node besides its value, worked out once per evaluator, since it
        # runs for every element: id(node) -> (node, what), the node kept alive with its id. Subscripts,
        # delta arguments and sum limits as functions of the indices; reads as (tensor name, subscripts);
        # sums' limits with the deltas that fix them; products' factors, deltas first.
        self._integers: dict[int, tuple] = {}
        self._reads: dict[int, tuple] = {}
        self._limits: dict[int, tuple] = {}
        self._factors: dict[int, tuple] = {}

    def __call__(self, expr: sp.Expr, env: Mapping[sp.Symbol, int]):
        deadline.check()
        return self.ev(expr, env)

    def ev(self, expr, env):
        method = _METHODS.get((type(self), type(expr)))
        if method is None:
            method = _METHODS[type(self), type(expr)] = self._method(type(expr))
        return method(self, expr, env)

    @classmethod
    def _method(cls, node: type):
        """The function evaluating a node type: its primitive's record, or `_ev_<Node>` of the nearest
        class in its MRO (looked up once per evaluator class and node type)."""
        prim = BY_NODE.get(node)
        if prim is not None:
            return lambda self, e, env: self._ev_primitive(e, env, prim)
        for base in node.__mro__:
            method = getattr(cls, "_ev_" + base.__name__, None)
            if method is not None:
                return method
        return lambda self, e, env: self._unknown(e)

    def _unknown(self, e):
        raise TypeError(f"cannot evaluate {type(e).__name__}: {e}")

    def _ev_Rational(self, e, env):
        return mpmath.mpf(int(e.p)) / int(e.q)

    def _ev_Integer(self, e, env):
        return _whole(int(e))

    def _ev_Float(self, e, env):
        return mpmath.mpf(e)

    def _ev_Symbol(self, e, env):
        if e in env:
            return env[e]
        if e in self.sizes:
            return _whole(int(self.sizes[e]))
        if self.reads is not None:
            self.reads.add((e.name, ()))
        return self.tensors[e.name]

    def _ev_Indexed(self, e, env):
        read = self.read(e, env)
        if read is None:
            return _ZERO
        if self.reads is not None:
            self.reads.add(read)
        name, idx = read
        return self.tensors[name][idx]

    def read(self, e: sp.Indexed, env) -> tuple[str, tuple[int, ...]] | None:
        """(tensor name, element) of a read, or None (counted in `outside`) where it lies outside the
        tensor."""
        name, subscripts = _once(
            self._reads, e, lambda: (e.base.label.name, tuple(map(self.integer, e.indices)))
        )
        idx = tuple([f(env) for f in subscripts])
        for k, n in zip(idx, self.tensors[name].shape, strict=True):
            if not 0 <= k < n:
                self.outside += 1
                return None
        return name, idx

    def integer(self, e: sp.Expr) -> Callable[[Mapping], int]:
        """A subscript, delta argument or sum limit as a function of the indices (see `_affine`)."""
        return _once(self._integers, e, lambda: _affine(e, self.sizes))

    def factors(self, e: sp.Mul) -> tuple:
        """A product's factors, Kronecker deltas first: most terms of a derivative are zero and need not
        be evaluated further."""
        return _once(
            self._factors,
            e,
            lambda: tuple(sorted(e.args, key=lambda a: not isinstance(a, sp.KroneckerDelta))),
        )

    def limits(self, e: sp.Sum | WindowMax) -> tuple:
        """A sum's limits as (index, lo, hi, fixed): lo and hi compiled (`integer`), and `fixed` the
        values that a Kronecker delta factor of the summand with coefficient +-1 pins the index to
        (delta(a2, S*i + kh - P) fixes kh), each with the indices it needs set first."""
        return _once(self._limits, e, lambda: self._compile_limits(e))

    def _ev_Add(self, e, env):
        return mpmath.fsum(self.ev(a, env) for a in e.args)

    def _ev_Mul(self, e, env):
        out, zero, undefined = _ONE, False, False
        for a in self.factors(e):
            v = self.ev(a, env)
            if v == 0 and isinstance(a, sp.KroneckerDelta):
                return _ZERO
            # a zero value times a factor that is not a real number is none either (float: 0 * inf
            # is nan), so the other factors are still evaluated, though not multiplied
            zero = zero or v == 0
            undefined = undefined or not mpmath.isfinite(v)
            out = out if zero else out * v
        if zero:
            return NAN if undefined else mpmath.mpf(0)
        return out

    def _ev_Pow(self, e, env):
        base = self.ev(e.base, env)
        if e.exp.is_Number:
            return power(base, e.exp)
        return real(mpmath.power, base, self.ev(e.exp, env))

    def _ev_sign(self, e, env):
        return mpmath.sign(self.ev(e.args[0], env))

    def _ev_Heaviside(self, e, env):
        v = self.ev(e.args[0], env)
        return mpmath.mpf(1) if v > 0 else mpmath.mpf(0)

    def _ev_primitive(self, e, env, prim: Primitive):
        args = [self.ev(a, env) for a in e.args]
        if prim.kink is not None:
            self._kink(prim.kink, e, kink_value(prim, args), env)
        return real(prim.exact, *args)

    def _ev_KroneckerDelta(self, e, env):
        i, j = (self.integer(x)(env) for x in e.args)
        return _ONE if i == j else _ZERO

    def _ev_Piecewise(self, e, env):
        for value, cond in e.args:
            holds = True if cond is sp.true else self.ev(cond, env)
            if holds is None:  # a comparison with a value that is not a real number decides nothing
                return NAN
            if holds:
                return self.ev(value, env)
        raise ValueError("no branch of a where() applies")

    def _relation(self, e, env, op):
        a, b = self.ev(e.lhs, env), self.ev(e.rhs, env)
        if mpmath.isnan(a) or mpmath.isnan(b):
            return None
        if op not in ("==", "!="):
            self._kink("where", e, a - b, env)
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[op]

    def _ev_StrictLessThan(self, e, env):
        return self._relation(e, env, "<")

    def _ev_LessThan(self, e, env):
        return self._relation(e, env, "<=")

    def _ev_StrictGreaterThan(self, e, env):
        return self._relation(e, env, ">")

    def _ev_GreaterThan(self, e, env):
        return self._relation(e, env, ">=")

    def _ev_And(self, e, env):
        """SymPy joins the conditions of two where() factors of one product (inside a sum) with &: every
        condition evaluated, so that each kink is watched; None (undecided) unless one is false."""
        held = [self.ev(a, env) for a in e.args]
        return False if any(h is False for h in held) else None if any(h is None for h in held) else True

    def _ev_Or(self, e, env):
        """SymPy joins the conditions of nested where()s with equal values with |."""
        held = [self.ev(a, env) for a in e.args]
        return True if any(h is True for h in held) else None if any(h is None for h in held) else False

    def _ev_Equality(self, e, env):
        return self._relation(e, env, "==")

    def _ev_Unequality(self, e, env):
        return self._relation(e, env, "!=")

    def _ev_BooleanTrue(self, e, env):
        return True

    def _ev_Sum(self, e, env):
        terms: list = []
        self._sum(e.function, self.limits(e), dict(env), terms)
        return self.total(terms)

    def total(self, terms: list):
        """The sum of a sum's terms."""
        return mpmath.fsum(terms)

    def _sum(self, body, limits, env, terms):
        """Add the summand at every point of `limits` to `terms`; an index that a delta of the summand
        fixes is set from it (once the indices it depends on are set) instead of running over its range."""
        if not limits:
            terms.append(self.ev(body, env))
            return
        for k, (i, lo, hi, fixed) in enumerate(limits):
            for value, needs in fixed:
                if needs <= env.keys():
                    v = value(env)
                    if lo(env) <= v <= hi(env):
                        self._sum(body, limits[:k] + limits[k + 1 :], {**env, i: v}, terms)
                    return
        (i, lo, hi, _), rest = limits[0], limits[1:]
        for v in range(lo(env), hi(env) + 1):
            self._sum(body, rest, {**env, i: v}, terms)

    def _compile_limits(self, e: sp.Sum | WindowMax) -> tuple:
        solved: list = []
        bound = [lim[0] for lim in e.limits]
        for f in sp.Mul.make_args(deltas_out(e.function)):
            if not isinstance(f, sp.KroneckerDelta):
                continue
            difference = f.args[0] - f.args[1]
            for i in bound:
                coefficient = difference.diff(i)
                if coefficient in (1, -1) and not (difference - coefficient * i).has(i):
                    value = sp.expand(-(difference - coefficient * i) / coefficient)
                    # sizes and constants are always known
                    needs = frozenset(s for s in value.free_symbols if s.is_integer and not s.is_nonnegative)
                    solved.append((i, _affine(value, self.sizes), needs))
        return tuple(
            (i, self.integer(lo), self.integer(hi), tuple((v, n) for j, v, n in solved if j == i))
            for i, lo, hi in e.limits
        )

    def number(self, v):
        """A value as a plain mpf, for comparisons (verify.rounding's values carry error bounds)."""
        return v

    def _window(self, e: WindowMax, env):
        """(the maximum, the position of the maximum) of a windowed maximum, once per window."""
        key = (id(e), tuple(env.get(s) for s in _indices(e)))
        if key not in self._windows:
            found: list = []  # (value, position) of every position inside the axes
            self._positions(e.function, self.limits(e), dict(env), (), found)
            if not found:
                raise ValueError(f"a window of {e} lies wholly outside its tensor")
            found.sort(key=lambda vp: self.number(vp[0]), reverse=True)
            if len(found) > 1:
                self._kink("window", e, self.number(found[0][0]) - self.number(found[1][0]), env)
            self._windows[key] = (found[0][0], found[0][1], e)
        return self._windows[key]

    def _positions(self, body, limits, env, position, out):
        if not limits:
            before = self.outside
            value = self.ev(body, env)
            if self.outside == before:
                out.append((value, position))
            return
        (i, lo, hi, _), rest = limits[0], limits[1:]
        for v in range(lo(env), hi(env) + 1):
            self._positions(body, rest, {**env, i: v}, position + (v,), out)

    def _ev_WindowMax(self, e, env):
        return self._window(e, env)[0]

    def _ev_WindowArgmax(self, e, env):
        window, *at = e.args
        position = self._window(window, env)[1]
        return _ONE if tuple(env[i] for i in at) == position else _ZERO

    def _kink(self, kind, site, value, env):
        if self.observe is not None and not mpmath.isnan(value):
            self.observe(kind, site, value, env)


class DerivativeEvaluator(Evaluator):
    """Evaluates SymPy's local derivatives for the reverse accumulation: any zero factor ends a product.
    The forward values at a sample are real and finite, and a derivative through a closed mask or a zero
    weight is zero even where another factor of it is not (sqrt'(0)); unlike the statements as written,
    whose values must be NaN wherever float64's are, this is not the generated code's arithmetic."""

    def _ev_Mul(self, e, env):
        out = _ONE
        for a in self.factors(e):
            v = self.ev(a, env)
            if v == 0:
                return _ZERO
            out *= v
        return out


NAN = mpmath.mpf("nan")
_ONE, _ZERO = mpmath.mpf(1), mpmath.mpf(0)


@functools.lru_cache(maxsize=4096)
def _whole(n: int) -> mpmath.mpf:
    """An integer as an mpf (exact at any precision), made once."""
    return mpmath.mpf(n)


@functools.cache
def _indices(e: sp.Expr) -> tuple[sp.Symbol, ...]:
    """The free indices (and sizes) of an expression, in a fixed order."""
    return tuple(sorted((s for s in e.free_symbols if isinstance(s, sp.Symbol) and s.is_integer), key=str))


def _once(table: dict, node, compile: Callable[[], Any]):
    """table[id(node)]'s value, compiled on first use; the node is kept with it, so that its id stays its
    own."""
    hit = table.get(id(node))
    if hit is None:
        hit = table[id(node)] = (node, compile())
    return hit[1]


def _affine(e: sp.Expr, sizes: Mapping[sp.Symbol, int]) -> Callable[[Mapping], int]:
    """A subscript, delta argument or sum limit at concrete sizes, as a function of the indices to a
    Python int: with the sizes folded in it is c0 + c1 i1 + c2 i2 + ... for whole c (S*i + kh - P at S = 2,
    P = 1 is 2 i + kh - 1), evaluated without walking the expression again."""
    known = {s: sp.Integer(sizes[s]) for s in e.free_symbols if s in sizes}
    const, terms = 0, []
    for term in sp.Add.make_args(sp.expand(e.xreplace(known))):
        c, index = term.as_coeff_Mul()
        if not c.is_Integer or not (index == 1 or index.is_Symbol):  # the parser lets no other through
            raise TypeError(f"not a subscript: {e}")
        if index == 1:
            const += int(c)
        else:
            terms.append((index, int(c)))
    if not terms:
        return lambda env: const
    if len(terms) == 1:
        ((i, a),) = terms
        return (lambda env: env[i] + const) if a == 1 else (lambda env: a * env[i] + const)
    if len(terms) == 2:
        (i, a), (j, b) = terms
        return lambda env: a * env[i] + b * env[j] + const
    return lambda env: sum(c * env[i] for i, c in terms) + const


def real(f, *args):
    """f(*args) where it is a real number; NaN where it is not (the square root or logarithm of a negative
    number, a division by zero): such a value is no verdict's business but the sampler's, which redraws,
    or the written formula's fault, which the comparison reports."""
    try:
        v = f(*args)
    except ZeroDivisionError:
        return NAN
    if isinstance(v, mpmath.mpc):
        return v.real if v.imag == 0 else NAN
    return v


def power(base, exp: sp.Number):
    """base ** exp for a SymPy number `exp`, NaN where it is not real."""
    if exp.is_Integer:
        if abs(int(exp)).bit_length() > _SQUARINGS and mpmath.isfinite(base) and base != 0:
            return _huge_power(base, int(exp))
        return real(lambda b: b ** int(exp), base)
    if exp == sp.Rational(1, 2):
        return real(mpmath.sqrt, base)
    value = mpmath.mpf(int(exp.p)) / int(exp.q) if exp.is_Rational else mpmath.mpf(exp)
    return real(mpmath.power, base, value)


# mpmath raises to a whole power by squaring, at a working precision that grows by 4 bits per bit of
# the exponent: 15 ms an element for 10**300. Past this many bits exp(n log|b|) is faster.
_SQUARINGS = 256


def _huge_power(base, n: int):
    """base ** n for a finite nonzero base and a whole n of more than _SQUARINGS bits, as
    exp(n log|base|) with the sign of base ** n: its working precision covers the bits of n and of log|base|
    that the product moves into the integer part, so that the result keeps the current precision
    (equal after rounding to mpmath's squaring at 50 digits; 0.2 to 1 ms against 15 ms for n = 10**300)."""
    guard = mpmath.mp.prec + n.bit_length() + 20
    with mpmath.workprec(guard):
        log = mpmath.log(abs(base))
    with mpmath.workprec(guard + max(0, int(mpmath.mag(log)))):
        value = mpmath.exp(n * mpmath.log(abs(base)))
    return +(-value if base < 0 and n % 2 else value)


def concrete_shape(d: Derivation, name: str, sizes: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(sizes[s.name] for s in d.shape(name))


def size_values(d: Derivation, sizes: Mapping[str, int]) -> dict[sp.Symbol, int]:
    """Every size and integer constant of `d` by its symbol."""
    return {**{d.sizes[k]: v for k, v in sizes.items()}, **{constant(k): v for k, v in d.constants.items()}}


def run_statement(
    st: Statement, d: Derivation, values: dict, sizes: Mapping[str, int], observe=None, evaluator=None
):
    """Evaluate one statement for every element of its target; returns an object array or an mpf.
    `observe`, if given, is called with the statement and then the evaluator's kink arguments;
    `evaluator` is the Evaluator class (verify.rounding's carries error bounds along)."""
    watch = (lambda *a: observe(st, *a)) if observe else None
    ev = (evaluator or Evaluator)(values, size_values(d, sizes), watch)
    shape = concrete_shape(d, st.target, sizes)
    rhs = contracted(st.rhs)
    if not shape:
        return ev(rhs, {})
    out = np.empty(shape, dtype=object)
    for e in elements(shape):
        out[e] = ev(rhs, dict(zip(st.indices, e, strict=True)))
    return out


_CONTRACTED: dict[sp.Expr, sp.Expr] = {}


def contracted(expr: sp.Expr) -> sp.Expr:
    """`expr` with every sum over an index that a Kronecker delta pins taken at that index
    (sum(f(k) * delta(k, j), k) is f(j); the parser gives a delta's two indices one range), so that a
    derivation step written with deltas (sum(dy[m,n] * sum(delta(m,i) * delta(k,j) * W[n,k], k), m, n),
    as reports write them) costs what its contracted form costs. Exact: nothing is approximated."""
    if not (expr.has(sp.KroneckerDelta) and expr.has(sp.Sum)):
        return expr
    if expr not in _CONTRACTED:
        _CONTRACTED[expr] = _contract(fresh_sums(expr))  # a delta's index must not be captured
    return _CONTRACTED[expr]


def _contract(e: sp.Expr) -> sp.Expr:
    if isinstance(e, sp.Sum):
        body = _contract(e.function)
        terms = summands(body) if body.has(sp.KroneckerDelta) else (body,)
        return sp.Add(*(_contract_term(t, list(e.limits)) for t in terms))
    if isinstance(e, sp.Indexed) or not e.args:
        return e
    args = [_contract(a) for a in e.args]
    if args == list(e.args):
        return e
    return e.func(*args, evaluate=False) if isinstance(e, sp.Piecewise | sp.Max | sp.Min) else e.func(*args)


def _contract_term(term: sp.Expr, limits: list) -> sp.Expr:
    factors = _hoisted(list(sp.Mul.make_args(term)))
    changed = True
    while changed:
        changed = False
        for f in factors:
            if not isinstance(f, sp.KroneckerDelta):
                continue
            a, b = f.args
            summed = next((lim for lim in limits if lim[0] in (a, b) and a != b), None)
            if summed is None:
                continue
            gone = summed[0]
            keep = b if gone == a else a
            factors.remove(f)
            factors = [g.xreplace({gone: keep}) for g in factors]
            limits = [lim for lim in limits if lim[0] != gone]
            changed = True
            break
    body = sp.Mul(*factors)
    return sp.Sum(body, *limits) if limits else body


def _hoisted(factors: list) -> list:
    """Factors of a product, with each inner sum's factors that do not use its indices moved out of it
    (so that a delta inside an inner sum can meet the outer sum that binds its index)."""
    out = []
    for f in factors:
        if isinstance(f, sp.Sum) and f.function.is_Mul:
            bound = {lim[0] for lim in f.limits}
            inner = sp.Mul.make_args(f.function)
            outside = [g for g in inner if not (g.free_symbols & bound)]
            if outside:
                inside = [g for g in inner if g.free_symbols & bound]
                out += outside + [sp.Sum(sp.Mul(*inside), *f.limits)]
                continue
        out.append(f)
    return out


def run_all(
    d: Derivation, inputs: Mapping[str, object], sizes: Mapping[str, int], observe=None, evaluator=None
) -> dict:
    """Every forward value and every written gradient, in order, each statement using the earlier ones."""
    values = dict(inputs)
    with mpmath.workdps(DIGITS):
        for st in d.forward + d.gradients:
            values[st.target] = run_statement(st, d, values, sizes, observe, evaluator)
    return values


# -----------------------------------------------------------------------------------------------------
# SymPy's derivative of the forward, propagated backwards: the true adjoint of every name.


def local_derivatives(d: Derivation) -> dict[str, list[tuple[str, tuple[sp.Symbol, ...], sp.Expr]]]:
    """For each forward statement, SymPy's derivative of its right-hand side with respect to each name it
    reads, at free element indices: [(name, indices, derivative)]."""
    out = {}
    for st in d.forward:
        parts = []
        used = sorted(
            {a.base.label.name for a in st.rhs.atoms(sp.Indexed)}
            | {s.name for s in st.rhs.free_symbols if isinstance(s, sp.Symbol) and s.name in d.tensors}
        )
        for name in used:
            shape = d.shape(name)
            at = tuple(sp.Dummy(f"a{k}", integer=True) for k in range(len(shape)))
            wrt = sp.Indexed(sp.IndexedBase(name, real=True), *at) if shape else sp.Symbol(name, real=True)
            der = contracted(sp.diff(_real_abs(st.rhs), wrt))
            if der != 0:
                parts.append((name, at, der))
        out[st.target] = parts
    return out


def _real_abs(expr: sp.Expr) -> sp.Expr:
    """`expr` with every abs(a) whose argument SymPy cannot prove real (abs(sqrt(b)) for a real b) written
    sqrt(a**2): SymPy differentiates such an abs through re() and im() of its argument, into cos and
    atan2 that nothing here evaluates. The two are equal wherever the forward is real, the only
    samples there are, and sqrt(a**2) has the derivative a' * a / |a|, real there too."""
    odd = {e: sp.sqrt(e.args[0] ** 2) for e in expr.atoms(sp.Abs) if not e.args[0].is_extended_real}
    return expr.xreplace(odd) if odd else expr


_DERIVATIVES: dict[int, tuple] = {}


def derivatives_of(d: Derivation):
    """`local_derivatives(d)`, computed once per derivation."""
    if id(d) not in _DERIVATIVES:
        _DERIVATIVES[id(d)] = (d, local_derivatives(d))  # holding d keeps its id from being reused
    return _DERIVATIVES[id(d)][1]


def adjoints(
    d: Derivation,
    values: Mapping[str, object],
    sizes: Mapping[str, int],
    upstream,
    derivatives,
    seed: str | None = None,
    evaluator=None,
    plain: Mapping[str, object] | None = None,
    cut: frozenset[tuple[str, str]] = frozenset(),
    keep=None,
):
    """Reverse-mode accumulation of L = sum(upstream * output) through the forward, in high precision;
    with `seed`, of L = sum(upstream * seed) for that forward name instead of the output.

    Returns the adjoint of every input and forward name: the partial derivative of L with respect to it,
    that name treated as independent and everything downstream of it depending on it. For each target
    element, SymPy's derivative is evaluated only at the elements that element's definition reads: the
    derivative with respect to any other element is zero. With another `evaluator` (verify.rounding's),
    `values` are its numbers and `plain` the same values as plain numbers, for finding the reads.

    For the diagnosis of a wrong gradient, parts of the chain rule can be left out: `cut` holds edges
    (statement target, name read) along which nothing is propagated (a name held constant in that
    statement), and `keep(target, element, name, read element)`, when given, says which entries of each
    statement's local Jacobian are kept (its diagonal alone, say)."""
    sv = size_values(d, sizes)
    with mpmath.workdps(DIGITS):
        adj: dict[str, np.ndarray | mpmath.mpf] = {}
        for name in list(d.inputs) + [s.target for s in d.forward]:
            shape = concrete_shape(d, name, sizes)
            adj[name] = np.full(shape, mpmath.mpf(0), dtype=object) if shape else mpmath.mpf(0)
        adj[seed or d.output] = upstream
        ev = (evaluator or DerivativeEvaluator)(values, sv)
        reader = DerivativeEvaluator(plain, sv) if plain is not None else ev
        for st in reversed(d.forward):
            a_t = adj[st.target]
            parts = {name: (at, der) for name, at, der in derivatives[st.target]}
            for e in elements(concrete_shape(d, st.target, sizes)):
                weight = a_t[e] if e else a_t
                if weight == 0:
                    continue
                env = dict(zip(st.indices, e, strict=True))
                reader.reads = set()
                reader(st.rhs, env)
                reads, reader.reads = reader.reads, None
                for name, f in reads:
                    if name not in parts or (st.target, name) in cut:
                        continue
                    if keep is not None and not keep(st.target, e, name, f):
                        continue
                    at, der = parts[name]
                    v = ev(der, {**env, **dict(zip(at, f, strict=True))})
                    if f:
                        adj[name][f] += weight * v
                    else:
                        adj[name] += weight * v
    return adj


def jacobian(
    d: Derivation,
    values: Mapping[str, object],
    sizes: Mapping[str, int],
    derivatives,
    of: str,
    wrt: str,
    evaluator=None,
    plain: Mapping[str, object] | None = None,
):
    """The full Jacobian of forward value `of` with respect to `wrt` (an input or intermediate, treated
    as independent): an object array of shape of.shape + wrt.shape, one reverse accumulation per element
    of `of` with a unit upstream vector on that element (`evaluator` and `plain` as for `adjoints`)."""
    y_shape, x_shape = concrete_shape(d, of, sizes), concrete_shape(d, wrt, sizes)
    out = np.empty(y_shape + x_shape, dtype=object)
    with mpmath.workdps(DIGITS):
        for e in elements(y_shape):
            unit = np.full(y_shape, mpmath.mpf(0), dtype=object) if y_shape else mpmath.mpf(1)
            if y_shape:
                unit[e] = mpmath.mpf(1)
            adj = adjoints(d, values, sizes, unit, derivatives, of, evaluator, plain)[wrt]
            out[e + (Ellipsis,)] = adj
    return out
