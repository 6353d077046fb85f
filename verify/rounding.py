"""How far a float64 evaluation can be from the exact value, at one sample: the error bounds the float
oracles judge with, instead of fixed tolerances.

Running error analysis (Wilkinson): every operation of a statement is evaluated exactly, at the sample's
exact inputs, together with a bound on how far the float64 result of the same operations can be from
it. Each operation rounds once (a relative error of at most U = 2^-53; a few U for library functions),
and carries its operands' errors along: through a sum they add, through a product they scale with the
other factors, through a function they move with the function's values at the ends of the operand's
error interval, and a `where` whose condition float64 cannot decide may take the other branch. The bound
grows where float64 loses accuracy (a difference of nearly equal numbers, a power of a small number), so
a comparison that cannot be resolved in float64 shows up as a bound comparable to the value itself.

The same accumulation that gives the exact oracle the true adjoints (`exacteval.adjoints`), run on
`Rounded` numbers, bounds the rounding error of a float64 reverse-mode pass: what jax, torch and a
hand-written backward compute. The bounds follow the written expression tree; generated code orders
some operations differently, which `comparison.TOLERANCES` covers with a safety factor.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy as sp

from .exacteval import (
    DIGITS,
    Evaluator,
    adjoints,
    concrete_shape,
    derivatives_of,
    elements,
    power,
    real,
    run_statement,
)
from .exacteval import jacobian as exact_jacobian
from .model import Derivation
from .primitives import Primitive

U = mpmath.mpf(2) ** -53  # the unit roundoff of float64
# the unit roundoff of each format code may be checked in (`verify.code`); bounds are computed at U and
# rescaled to the format's unit by `comparison.Tolerance.scale`
UNITS = {"float64": U, "float32": mpmath.mpf(2) ** -24}
DIGITS_NOISE = mpmath.mpf(10) ** (3 - DIGITS)  # 50-digit rounding, with room to spare, per unit of U
LINEAR = mpmath.mpf(10) ** -8  # an error this small against its value: first order is exact enough
FUNCTION_ULPS = 4  # library functions (exp, log, tanh, ...) and powers: within a few units of the last place
INF = mpmath.inf
ZERO = mpmath.mpf(0)


class Rounded:
    """An exact value `v` and a bound `e` on how far its float64 evaluation can be from it. Sums and
    products of Rounded numbers round once each, as float64 arithmetic does."""

    __slots__ = ("v", "e")

    def __init__(self, v, e=ZERO):
        self.v, self.e = v, e

    def __add__(self, other):
        o = other if isinstance(other, Rounded) else Rounded(other)
        v = self.v + o.v
        return Rounded(v, self.e + o.e + U * abs(v))

    __radd__ = __add__

    def __mul__(self, other):
        o = other if isinstance(other, Rounded) else Rounded(other)
        v = self.v * o.v
        return Rounded(v, abs(self.v) * o.e + abs(o.v) * self.e + self.e * o.e + U * abs(v))

    __rmul__ = __mul__

    def __eq__(self, other):  # `adjoints` skips an exact zero weight, as it does for plain numbers
        return self.e == 0 and self.v == other

    __hash__ = None  # type: ignore[assignment]  # unhashable, as __eq__ compares with plain numbers

    def __repr__(self):
        return f"Rounded({mpmath.nstr(self.v, 8)}, {mpmath.nstr(self.e, 3)})"


def _exact(v) -> Rounded:
    """A value float64 holds exactly (an index, a size)."""
    return Rounded(mpmath.mpf(v))


_RELATIONS = {
    sp.StrictLessThan: operator.lt,
    sp.LessThan: operator.le,
    sp.StrictGreaterThan: operator.gt,
    sp.GreaterThan: operator.ge,
    sp.Equality: operator.eq,
    sp.Unequality: operator.ne,
}


class Bounder(Evaluator):
    """Evaluates an expression to a `Rounded`: its exact value and the bound of its float64 evaluation.
    Tensors are bound to object arrays of Rounded; indices and sizes are exact."""

    def __init__(self, tensors, sizes, observe=None):
        super().__init__(tensors, sizes, observe)
        self.indices = Evaluator({}, sizes)  # subscripts, delta arguments and sum limits: exact integers

    def _ev_Rational(self, e, env):
        v = mpmath.mpf(int(e.p)) / int(e.q)
        return Rounded(v, abs(v - mpmath.mpf(float(v))))  # printed as p/q: one correctly rounded division

    def _ev_Integer(self, e, env):
        return _exact(int(e))

    def _ev_Float(self, e, env):
        v = mpmath.mpf(e)
        return Rounded(v, U * abs(v))

    def _ev_Symbol(self, e, env):
        if e in env:
            return _exact(env[e])
        if e in self.sizes:
            return _exact(int(self.sizes[e]))
        if self.reads is not None:
            self.reads.add((e.name, ()))
        return self.tensors[e.name]

    def _ev_Indexed(self, e, env):
        read = self.read(e, env)
        if read is None:  # outside the tensor's axis: an exact zero
            return Rounded(ZERO)
        if self.reads is not None:
            self.reads.add(read)
        name, idx = read
        return self.tensors[name][idx]

    def _ev_Add(self, e, env):
        return _sum([self.ev(a, env) for a in e.args])

    def _ev_Mul(self, e, env):
        parts = []
        for a in self.factors(e):
            p = self.ev(a, env)
            if p.v == 0 and p.e == 0:  # float64 multiplies by an exact zero exactly
                return Rounded(ZERO)
            parts.append(p)
        v = mpmath.fprod(p.v for p in parts)
        # sum over k of e_k times the product of (|v_j| + e_j) over j != k, by prefix and suffix products
        wide = [abs(p.v) + p.e for p in parts]
        before, e = mpmath.mpf(1), ZERO
        after = [mpmath.mpf(1)] * (len(parts) + 1)
        for k in range(len(parts) - 1, -1, -1):
            after[k] = after[k + 1] * wide[k]
        for k, p in enumerate(parts):
            if p.e:
                e += p.e * before * after[k + 1]
            before *= wide[k]
        return Rounded(v, e + U * (len(parts) - 1) * abs(v))

    def _ev_Pow(self, e, env):
        b = self.ev(e.base, env)
        if not e.exp.is_Number:  # b ** x with x a value: first order in both, where b stays positive
            x = self.ev(e.exp, env)
            v = real(mpmath.power, b.v, x.v)
            if not mpmath.isfinite(v) or b.v <= 0 or b.e >= LINEAR * b.v or x.e >= LINEAR:
                return Rounded(
                    v, INF if (b.e or x.e) or not mpmath.isfinite(v) else FUNCTION_ULPS * U * abs(v)
                )
            spread = abs(v) * (abs(x.v) * b.e / b.v + abs(mpmath.log(b.v)) * x.e) * (1 + LINEAR * 4)
            return Rounded(v, spread + FUNCTION_ULPS * U * abs(v))
        v = power(b.v, e.exp)
        if not mpmath.isfinite(v):
            return Rounded(v, INF)
        size, p = abs(b.v), e.exp
        pm = mpmath.mpf(int(p.p)) / int(p.q) if p.is_Rational else mpmath.mpf(p)  # no SymPy number in a bound
        if b.e == 0:
            spread = ZERO
        elif p.is_Integer and p >= 0:  # |b'^p - b^p| <= (|b| + e)^p - |b|^p
            spread = power(size + b.e, p) - power(size, p)
        elif size <= b.e:  # a negative or fractional power of a value float64 may hold as zero
            spread = INF
        elif b.e < LINEAR * size:  # |p| |b|^(p-1) e, and the second order is below a part in 1e8 of it
            spread = abs(pm) * abs(v) / size * b.e * (1 + LINEAR * (abs(pm) + 1))
        else:
            at = power(size, p)
            spread = max(abs(power(size - b.e, p) - at), abs(power(size + b.e, p) - at))
        ulps = 1 if p in (0, 1, 2, sp.Rational(1, 2)) else FUNCTION_ULPS
        return Rounded(v, spread + ulps * U * abs(v))

    def _ev_primitive(self, e, env, prim: Primitive):
        args = [self.ev(a, env) for a in e.args]
        values = [a.v for a in args]
        v = real(prim.exact, *values)
        # abs, max and min round exactly and move no more than their arguments; of a NaN argument (the
        # square root of a negative number) they are NaN, bounded below as any value that is not finite
        if prim.kink is not None and not mpmath.isnan(v):
            if len(args) == 2 and (
                args[0].e + args[1].e == 0 or abs(values[0] - values[1]) > args[0].e + args[1].e
            ):
                # float64 takes the same argument: its error alone (max(h, 0) is exactly 0 where h < 0)
                return Rounded(v, next(a.e for a in args if a.v == v))
            return Rounded(v, max(a.e for a in args))
        if not mpmath.isfinite(v):
            return Rounded(v, INF)
        (a,) = args
        if a.e == 0:
            spread = ZERO
        elif prim.monotone:
            ends = [real(prim.exact, a.v - a.e), real(prim.exact, a.v + a.e)]
            spread = max(abs(x - v) if mpmath.isfinite(x) else INF for x in ends)
        else:
            spread = INF
        return Rounded(v, spread + FUNCTION_ULPS * U * abs(v))

    def _ev_KroneckerDelta(self, e, env):
        return _exact(self.indices.ev(e, env))

    def total(self, terms: list[Rounded]) -> Rounded:
        return _sum(terms)

    def number(self, v: Rounded):
        return v.v

    def _ev_WindowArgmax(self, e, env):
        return _exact(super()._ev_WindowArgmax(e, env))

    def _ev_Piecewise(self, e, env):
        """The chosen branch; where float64 may decide a condition the other way, the computed value may
        be another branch's, so the bound spans the branches."""
        chosen, undecided = None, False
        for value, cond in e.args:
            truth, decided = self.condition(cond, env)
            undecided |= not decided
            if truth:
                chosen = self.ev(value, env)
                break
        if chosen is None:
            raise ValueError("no branch of a where() applies")
        if not undecided:
            return chosen
        branches = [self.ev(value, env) for value, _ in e.args]
        jump = max(abs(b.v - chosen.v) for b in branches)
        return Rounded(chosen.v, max(b.e for b in branches) + jump)

    def condition(self, cond, env) -> tuple[bool, bool]:
        """(the condition's exact truth, whether float64 decides it the same way for certain)."""
        if cond is sp.true:
            return True, True
        if isinstance(cond, sp.And | sp.Or):  # where()s SymPy joined: factors of a product, equal branches
            parts = [self.condition(c, env) for c in cond.args]
            truth = all(t for t, _ in parts) if isinstance(cond, sp.And) else any(t for t, _ in parts)
            return truth, all(decided for _, decided in parts)
        relation = _RELATIONS.get(type(cond))
        if relation is None:
            return bool(self.indices.ev(cond, env)), True
        a, b = self.ev(cond.lhs, env), self.ev(cond.rhs, env)
        slack = a.e + b.e
        return relation(a.v, b.v), slack == 0 or abs(a.v - b.v) > slack

    def _jump(self, e, env, step):
        """sign and Heaviside (in SymPy's derivatives of abs and max), as `step` of the argument: exact,
        unless float64 may put the argument on the other side of zero."""
        a = self.ev(e.args[0], env)
        v = step(a.v)
        height = abs(step(mpmath.mpf(1)) - step(mpmath.mpf(-1)))
        return Rounded(v, ZERO if a.e == 0 or abs(a.v) > a.e else height)

    def _ev_sign(self, e, env):
        return self._jump(e, env, mpmath.sign)

    def _ev_Heaviside(self, e, env):
        return self._jump(e, env, lambda x: mpmath.mpf(1) if x > 0 else ZERO)


def _sum(terms: list[Rounded]) -> Rounded:
    """k terms added in any order: k - 1 roundings, each at most U times the sum of the magnitudes."""
    v = mpmath.fsum(t.v for t in terms)
    magnitude = mpmath.fsum(abs(t.v) for t in terms)
    return Rounded(v, mpmath.fsum(t.e for t in terms) + U * max(len(terms) - 1, 0) * magnitude)


@dataclass
class Bounds:
    """Float64 error bounds at one sample: absolute, elementwise, at unit roundoff U.

    `values`: of every input as float64 holds it, every forward value and every written gradient;
    `adjoints`: of a float64 reverse-mode adjoint of every input and forward name; `true`: the exact
    adjoints themselves; `loss`: of L = sum(dy * y) in float64; `worst`: the forward value float64
    knows least well, in words (for the reasons of inconclusive comparisons)."""

    values: dict[str, object]
    adjoints: dict[str, object]
    true: dict[str, object]
    loss: object
    worst: str

    def size(self, name: str):
        """The largest magnitude of the exact adjoint of `name`: what a comparison resolves against."""
        return size(self.true[name], self.adjoints[name])


def size(true, bound):
    """The largest magnitude of exact values, zero where they are zero to within the 50-digit
    arithmetic's own rounding (a gradient that is zero mathematically, computed as 1e-51); `bound` is
    their float64 bound, which scales the 50-digit one."""
    largest = max((abs(x) for x in np.ravel(true)), default=ZERO)
    noise = max((e for e in np.ravel(bound)), default=ZERO) / U * DIGITS_NOISE
    return ZERO if largest <= noise else largest


@dataclass
class Full:
    """A full Jacobian (of.shape + wrt.shape) at a sample: exact, and the bound of a float64 reverse pass."""

    true: object
    bound: object


def jacobian(d: Derivation, sample, of: str, wrt: str) -> Full:
    """The Jacobian d of / d wrt and its bound at a sample, computed once per sample and pair."""
    key = ("jacobian", of, wrt)
    if key not in sample.cache:
        pairs = _pairs(d, sample)
        with mpmath.workdps(DIGITS):
            full = exact_jacobian(
                d, pairs, sample.sizes, derivatives_of(d), of, wrt, evaluator=Bounder, plain=sample.forward
            )
        sample.cache[key] = Full(*_split(full))
    return sample.cache[key]


def of(d: Derivation, sample, dtype: str = "float64") -> Bounds:
    """The bounds at a sample, computed once per sample. With `dtype` "float32" they bound a float32
    evaluation from inputs rounded to float32, in units of U: every operation rounds at U as before, and
    each input carries its float32 representation error scaled by U / (float32's unit), so that rescaling
    the whole bound to float32's unit (`Tolerance.scale`) gives that error back at its true size."""
    key = "bounds" if dtype == "float64" else f"bounds:{dtype}"
    if key not in sample.cache:
        sample.cache[key] = _bounds(d, sample, dtype)
    return sample.cache[key]


def loss_noise(d: Derivation, sample, v: str, value: str | None = None):
    """A bound on how differently float64 rounds L (or, given `value`, each element of that forward value)
    at two values of `v` (an input or a forward name, the others held): only the operations that depend
    on `v` round differently, everything computed before `v` is used comes out bit-identical in both.
    This is the rounding error of a finite difference in `v`, before it is divided by the step."""
    dependent, reached = [], {v}
    for st in d.forward:
        if st.target != v and st.reads & reached:
            dependent.append(st)
            reached.add(st.target)
    if value is None and len(dependent) == len(d.forward) - (v in sample.forward and v not in sample.exact):
        return of(d, sample).loss  # every operation depends on v: the whole loss's bound
    key = ("noise", value, tuple(st.target for st in dependent))
    if key not in sample.cache:
        with mpmath.workdps(DIGITS):
            pairs = {
                k: Rounded(x) if not isinstance(x, np.ndarray) else _exactly(x)
                for k, x in sample.forward.items()
            }
            for st in dependent:
                pairs[st.target] = run_statement(st, d, pairs, sample.sizes, evaluator=Bounder)
            if value is not None:
                sample.cache[key] = _split(pairs[value])[1]
            else:
                # a scalar's bound is one Rounded, an array's an object array of them: flat, both are lists
                upstream = np.ravel(np.asarray(pairs.get(d.upstream, Rounded(mpmath.mpf(1))), dtype=object))
                output = np.ravel(np.asarray(pairs[d.output], dtype=object))
                terms = [u * y for u, y in zip(upstream, output, strict=True)]
                sample.cache[key] = _sum(terms).e
    return sample.cache[key]


def _exactly(a: np.ndarray) -> np.ndarray:
    out = np.empty(a.shape, dtype=object)
    for k in elements(a.shape):
        out[k] = Rounded(a[k])
    return out


def _rounded_input(exact, value, dtype: str = "float64"):
    """An input as `dtype` holds it: exact for dyadic draws, off by its representation error otherwise
    (a fixed eps = 1e-5, the fractions of a simplex), in units of U (see `of`)."""
    held = np.asarray(value, dtype=dtype)
    per_unit = U / UNITS[dtype]
    if isinstance(exact, np.ndarray):
        out = np.empty(exact.shape, dtype=object)
        for e in elements(exact.shape):
            out[e] = Rounded(exact[e], abs(exact[e] - mpmath.mpf(float(held[e]))) * per_unit)
        return out
    return Rounded(exact, abs(exact - mpmath.mpf(float(held))) * per_unit)


def _split(a):
    """(exact values, bounds) of a Rounded or an array of them; a plain number is exact (an adjoint
    nothing reached)."""
    if isinstance(a, np.ndarray):
        v, e = np.empty(a.shape, dtype=object), np.empty(a.shape, dtype=object)
        for k in elements(a.shape):
            v[k], e[k] = _split(a[k])
        return v, e
    return (a.v, a.e) if isinstance(a, Rounded) else (a, ZERO)


def _pairs(d: Derivation, sample, dtype: str = "float64") -> dict:
    """Every input, forward value and written gradient as Rounded numbers, computed once per sample."""
    key = "pairs" if dtype == "float64" else f"pairs:{dtype}"
    if key not in sample.cache:
        with mpmath.workdps(DIGITS):
            pairs = {k: _rounded_input(v, sample.values[k], dtype) for k, v in sample.exact.items()}
            for st in d.forward + d.gradients:
                pairs[st.target] = run_statement(st, d, pairs, sample.sizes, evaluator=Bounder)
        sample.cache[key] = pairs
    return sample.cache[key]


def _bounds(d: Derivation, sample, dtype: str = "float64") -> Bounds:
    pairs = _pairs(d, sample, dtype)
    with mpmath.workdps(DIGITS):
        upstream = pairs.get(d.upstream, Rounded(mpmath.mpf(1)))
        adj = adjoints(
            d, pairs, sample.sizes, upstream, derivatives_of(d), evaluator=Bounder, plain=sample.forward
        )
        out = pairs[d.output]
        loss = _sum([u * y for u, y in zip(np.ravel(upstream), np.ravel(out), strict=True)])
    values, true, adjoint_bounds = {}, {}, {}
    for k, a in pairs.items():
        values[k] = _split(a)[1]
    for k, a in adj.items():
        true[k], adjoint_bounds[k] = _split(a)
    return Bounds(values, adjoint_bounds, true, loss.e, _worst(d, sample, values, dtype))


def _worst(d: Derivation, sample, errors, dtype: str = "float64") -> str:
    """The forward value with the largest relative error bound, among those float64 knows to better than
    their own size (a value that is zero mathematically has no relative error worth naming): where
    float64 loses the most."""
    worst, where = ZERO, ""
    scale = UNITS[dtype] / U  # the errors are in units of U
    for st in d.forward:
        exact, err = sample.forward[st.target], errors[st.target]
        for k in elements(concrete_shape(d, st.target, sample.sizes)):
            v, e = (exact[k], err[k]) if k else (exact, err)
            if e * scale < abs(v) and e * scale / abs(v) > worst:
                worst = e * scale / abs(v)
                index = f"[{', '.join(map(str, k))}]" if k else ""
                value, relative = mpmath.nstr(v, 2), mpmath.nstr(worst, 1)
                where = f"{st.target}{index} = {value} holds a {dtype} rounding error up to {relative} of it"
    return where


__all__ = ["UNITS", "Bounder", "Bounds", "Full", "Rounded", "U", "jacobian", "loss_noise", "of", "size"]
