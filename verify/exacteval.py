"""High-precision evaluation of SymPy index expressions at concrete sizes, element by element.

This is the `exact` oracle's arithmetic: it shares no code with the generated NumPy, JAX or PyTorch
programs. Values are mpmath numbers at `DIGITS` significant digits; inputs are exact rationals.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import mpmath
import numpy as np
import sympy as sp

from .model import Derivation, Statement
from .primitives import BY_NODE, Primitive, kink_value

DIGITS = 50


def elements(shape: tuple[int, ...]):
    return itertools.product(*(range(s) for s in shape))


_METHODS: dict[tuple[type, type], object] = {}


class Evaluator:
    """Evaluates an expression with tensors bound to object arrays of mpf, indices bound to integers.

    One `_ev_<Node>` method per SymPy node type, as SymPy's printers do it, and the functions of
    `verify.primitives` through their records."""

    def __init__(self, tensors: Mapping[str, object], sizes: Mapping[sp.Symbol, int], observe=None):
        self.tensors = tensors
        self.sizes = sizes
        # called with (kind, site, value, env) at every kink: max, min, abs, < and >; `env` binds the
        # statement's free indices and the sums' indices, so that (site, env) names one element's kink
        self.observe = observe
        self.reads: set | None = None  # when a set, every tensor element read is recorded in it

    def __call__(self, expr: sp.Expr, env: Mapping[sp.Symbol, int]):
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
        return mpmath.mpf(int(e))

    def _ev_Float(self, e, env):
        return mpmath.mpf(e)

    def _ev_Symbol(self, e, env):
        if e in env:
            return env[e]
        if e in self.sizes:
            return mpmath.mpf(int(self.sizes[e]))
        if self.reads is not None:
            self.reads.add((e.name, ()))
        return self.tensors[e.name]

    def _ev_Indexed(self, e, env):
        idx = tuple(int(self.ev(i, env)) for i in e.indices)
        if self.reads is not None:
            self.reads.add((e.base.label.name, idx))
        return self.tensors[e.base.label.name][idx]

    def _ev_Add(self, e, env):
        return mpmath.fsum(self.ev(a, env) for a in e.args)

    def _ev_Mul(self, e, env):
        # Kronecker deltas first: most terms of a derivative are zero and need not be evaluated further.
        args = sorted(e.args, key=lambda a: not isinstance(a, sp.KroneckerDelta))
        out = mpmath.mpf(1)
        for a in args:
            v = self.ev(a, env)
            if v == 0:
                return mpmath.mpf(0)
            out *= v
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
        i, j = (self.ev(x, env) for x in e.args)
        return mpmath.mpf(1) if i == j else mpmath.mpf(0)

    def _ev_Piecewise(self, e, env):
        for value, cond in e.args:
            if cond is sp.true or self.ev(cond, env):
                return self.ev(value, env)
        raise ValueError("no branch of a where() applies")

    def _relation(self, e, env, op):
        a, b = self.ev(e.lhs, env), self.ev(e.rhs, env)
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

    def _ev_Equality(self, e, env):
        return self._relation(e, env, "==")

    def _ev_Unequality(self, e, env):
        return self._relation(e, env, "!=")

    def _ev_BooleanTrue(self, e, env):
        return True

    def _ev_Sum(self, e, env):
        (i, lo, hi), *rest = e.limits
        body = sp.Sum(e.function, *rest) if rest else e.function
        env = dict(env)
        total = []
        for k in range(int(self.ev(lo, env)), int(self.ev(hi, env)) + 1):
            env[i] = k
            total.append(self.ev(body, env))
        return mpmath.fsum(total)

    def _kink(self, kind, site, value, env):
        if self.observe is not None:
            self.observe(kind, site, value, env)


NAN = mpmath.mpf("nan")


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
        return real(lambda b: b ** int(exp), base)
    if exp == sp.Rational(1, 2):
        return real(mpmath.sqrt, base)
    value = mpmath.mpf(int(exp.p)) / int(exp.q) if exp.is_Rational else mpmath.mpf(exp)
    return real(mpmath.power, base, value)


def concrete_shape(d: Derivation, name: str, sizes: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(sizes[s.name] for s in d.shape(name))


def size_values(d: Derivation, sizes: Mapping[str, int]) -> dict[sp.Symbol, int]:
    return {d.sizes[k]: v for k, v in sizes.items()}


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
        _CONTRACTED[expr] = _contract(expr)
    return _CONTRACTED[expr]


def _contract(e: sp.Expr) -> sp.Expr:
    if isinstance(e, sp.Sum):
        body = _contract(e.function)
        terms = sp.Add.make_args(sp.expand(body)) if body.has(sp.KroneckerDelta) else (body,)
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
            der = contracted(sp.diff(st.rhs, wrt))
            if der != 0:
                parts.append((name, at, der))
        out[st.target] = parts
    return out


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
        adj: dict[str, object] = {}
        for name in list(d.inputs) + [s.target for s in d.forward]:
            shape = concrete_shape(d, name, sizes)
            adj[name] = np.full(shape, mpmath.mpf(0), dtype=object) if shape else mpmath.mpf(0)
        adj[seed or d.output] = upstream
        ev = (evaluator or Evaluator)(values, sv)
        reader = Evaluator(plain, sv) if plain is not None else ev
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
