"""The prover's normal form: index expressions as polynomials over opaque atoms, and the zero test.

An atom is a SymPy symbol standing for one canonical thing: a tensor element `x[n, j]` (at an affine
subscript too: `x[n, c, S*i + kh - P]`), a Kronecker delta of two index expressions, an indicator
`[e >= 0]` of an index expression (`Bound`), a function of a normalised argument (`exp`, `log`, the step
`[u > 0]`), the indicator `[a == b]` of two values (`Equal`, max pooling only), the square root of a
normalised base, or a sum over one index of a normalised monomial (a moment such as
`sum(x[n, j] * dy[n, j], n)`). `Algebra.norm` turns an expression into an expanded polynomial over
atoms (with rational-function coefficients in sizes and scalars), bottom-up:

- a read at an affine subscript a is zero outside its axis (zero padding, design section 2.1): the
  element times [a >= 0] and [H - 1 - a >= 0]; an indicator that the ranges of its indices decide for
  every value is 1 (or 0); the others are made primitive (integer content out, so 2*i - 4 >= 0 and
  i - 2 >= 0 are one atom), as is a delta's difference (delta(h, S*i + kh - P) is delta(h - S*i - kh +
  P, 0) up to sign);
- a sum is split over the terms of its body; factors free of the summed index move out; a term free of
  it becomes size times term; a term holding a delta that pins the summed index down (coefficient
  +-1: kh = h + P - S*i) becomes the rest at that value times the indicators that the value lies in the
  sum's range; what is left is a moment atom whose bound index is renamed canonically (`·0` for the
  innermost level, `·1` around it, ...). A sum over several indices contracts first the indices a delta
  pins down; a sum from lo != 0 (`(l, -1, 0)`) is shifted to start at 0; sizes the derivation fixes
  (a 3 x 3 window) are their numbers, strides and paddings stay symbols (proved for all of them);
- `exp` of a sum is the product of `exp` of its monomials, so exp(a) * exp(-a) cancels; sigmoid and
  tanh are written through exp; softplus(u) is log(1 + exp(u));
- a domain rule turns `sum(t[n, k], k)` into 1 for a one-hot or simplex `t` along k.

Treating distinct atoms as independent variables makes a zero result a proof for every size and every
input where the denominators are non-zero: `is_zero` cancels the difference of two normal forms and
reduces its numerator with the relations the atoms do satisfy (r**2 = B for a root r of B, s**2 = s for
a step, an indicator, a delta or a one-hot entry), and splits on a delta between two free indices
(equal, or not).

Nothing here calls `simplify` or `Sum.doit()` (SymPy issue #27359: wrong answers on such sums; doit
crashes on batch-norm derivatives).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import sympy as sp

from ..model import Derivation, WindowMax, constant
from ..primitives import sigmoid, softplus

BOUND = "·"  # canonical bound indices are named ·0, ·1, ...: no derivation can name an index so


class Unsupported(Exception):
    """A form the prover does not handle: the gradient is `not proved`, with this as the reason."""


class Step(sp.Function):
    """The indicator [u > 0]: 1 where its argument is positive, 0 where it is negative, undefined at 0
    (a kink). Its derivative is 0, so a proof with steps holds away from the kinks. `max`, `min`, `abs`,
    `where` and SymPy's Heaviside are written with it (`to_steps`)."""

    nargs = 1

    @classmethod
    def eval(cls, u):
        if u.is_positive:
            return sp.S.One
        if u.is_negative:
            return sp.S.Zero
        if u.could_extract_minus_sign():
            return 1 - cls(-u)
        return None

    def fdiff(self, argindex=1):
        return sp.S.Zero


class Bound(sp.Function):
    """The indicator [e >= 0] of an integer-valued index expression e (affine in indices, sizes and
    constants): a zero-padded read x[S*i + kh - P] is x at that subscript times [S*i + kh - P >= 0] and
    [H - 1 - (S*i + kh - P) >= 0]; contracting delta(kh, e) over kh's range 0..KH-1 leaves [e >= 0] and
    [KH - 1 - e >= 0]. Integer-valued: it has no kink, and its derivative is 0."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sp.S.Zero


class Equal(sp.Function):
    """The indicator [a == b] of two values, for max pooling only: where(x[n, c, h, w] == y[n, c, i, j])
    with y a window maximum, and the derivative of a window maximum with respect to its entries (1 at
    the position of the maximum). With one maximum per window the two agree (a stated condition)."""

    nargs = 2

    def fdiff(self, argindex=1):
        return sp.S.Zero


def _indicator(cond, maxima: frozenset[str]) -> sp.Expr:
    """The 0/1 value of a `where` condition, away from its kink; `maxima` are the forward names that are
    window maxima (a comparison of values with == is modelled only against one of them)."""
    if cond is sp.true:
        return sp.S.One
    if not isinstance(cond, sp.core.relational.Relational):
        raise Unsupported(f"the condition {cond} is not a single comparison")
    lhs, rhs = cond.lhs, cond.rhs
    if isinstance(cond, sp.Eq | sp.Ne):
        if lhs.is_integer and rhs.is_integer:
            ind = sp.KroneckerDelta(lhs, rhs)
        elif any(isinstance(a, sp.Indexed) and a.base.label.name in maxima for a in (lhs, rhs)):
            ind = Equal(lhs, rhs)
        else:
            raise Unsupported("where(a == b) on values holds on a set the samples never reach")
        return ind if isinstance(cond, sp.Eq) else 1 - ind
    if lhs.is_integer and rhs.is_integer:
        raise Unsupported(f"the index comparison {cond}")
    u = lhs - rhs
    return Step(u) if isinstance(cond, sp.StrictGreaterThan | sp.GreaterThan) else Step(-u)


def to_steps(e: sp.Expr, maxima: frozenset[str] = frozenset()) -> sp.Expr:
    """`e` with max, min, abs, where, sign and Heaviside written through `Step` (equal away from kinks);
    where(a == y) with y one of the window maxima `maxima` through `Equal`."""
    if e.is_Atom or isinstance(e, sp.Indexed):
        return e
    if isinstance(e, sp.Piecewise):
        out, rest = sp.S.Zero, sp.S.One  # rest: the indicator that no earlier branch applied
        for value, cond in e.args:
            if cond is sp.true:
                return out + rest * to_steps(value, maxima)
            ind = _indicator(cond.func(*(to_steps(a, maxima) for a in cond.args)), maxima)
            out += rest * ind * to_steps(value, maxima)
            rest *= 1 - ind
        raise Unsupported("a where() without an otherwise branch")
    if isinstance(e, sp.Sum | WindowMax):
        return e.func(to_steps(e.function, maxima), *e.limits)
    args = [to_steps(a, maxima) for a in e.args]
    if isinstance(e, sp.Max | sp.Min):
        if any(a.is_integer and not a.is_Number for a in args):
            raise Unsupported(f"{e}: a maximum over indices (a window), not of values")
        first, *others = args
        out = first
        for b in others:
            s = Step(out - b)
            out = out * s + b * (1 - s) if isinstance(e, sp.Max) else b * s + out * (1 - s)
        return out
    if isinstance(e, sp.Abs):
        return args[0] * (2 * Step(args[0]) - 1)
    if isinstance(e, sp.sign):
        return 2 * Step(args[0]) - 1
    if isinstance(e, sp.Heaviside):
        return Step(args[0])
    return e.func(*args)


def _solve(delta: sp.KroneckerDelta, k) -> sp.Expr | None:
    """The value of k at which delta(a, b) is 1, where a - b holds k with coefficient +-1; else None."""
    difference = _expand(delta.args[0] - delta.args[1])
    c = difference.diff(k)
    if c not in (1, -1) or (difference - c * k).has(k):
        return None
    return _expand(-(difference - c * k) / c)


def _plain_pair(e: sp.Expr, is_index) -> tuple | None:
    """(u, v) where e or -e is u - v for an index u and an index or integer v; else None."""
    for side in (e, _expand(-e)):
        terms = sp.Add.make_args(side)
        plus = [t for t in terms if is_index(t)]
        minus = [-t for t in terms if is_index(-t) or (-t).is_Integer]
        if len(terms) <= 2 and len(plus) == 1 and len(plus) + len(minus) == len(terms):
            return plus[0], minus[0] if minus else sp.S.Zero
    return None


class AtomKind(StrEnum):
    TENSOR = "tensor"  # x[n, j]
    DELTA = "delta"  # delta(i, j) between two indices, delta(u, 0) of an index expression u
    FUNCTION = "function"  # exp, log or step of a normal form
    ROOT = "root"  # the square root of a normal form
    SUM = "sum"  # a moment: the sum over one index of a monomial
    BOUND = "bound"  # [e >= 0] of an index expression (a zero-padded read, a contracted delta's range)
    EQUAL = "equal"  # [a == b] of two values (max pooling)


class RuleKind(StrEnum):
    ROW_SUM = "row-sum"  # sum(t[n, k], k) = 1
    IDEMPOTENT = "idempotent"  # t[n, k]**2 = t[n, k]


@dataclass(frozen=True)
class Atom:
    """What an atom symbol stands for. `definition` is written over other atom symbols; `indices` are the
    free index symbols it depends on (through the atoms inside it too); `depth` is the number of sums
    nested inside it, so that its bound index, if it is a sum, is named BOUND + str(depth - 1)."""

    kind: AtomKind
    definition: sp.Expr
    indices: frozenset
    depth: int


@dataclass(frozen=True)
class Rule:
    """A domain fact the normal form used: `sum(t[n, k], k) = 1` for a one-hot or simplex t along k, or
    `t[n, k]**2 = t[n, k]` for a one-hot t."""

    name: str  # the input
    domain: str  # onehot | simplex
    axis: int
    kind: RuleKind


def _expand(e: sp.Expr) -> sp.Expr:
    """The expanded polynomial: products over sums distributed all the way down (deep; with deep=False
    SymPy leaves a*(b + c) inside a sum unexpanded), powers of atoms and logs left as they are."""
    return sp.expand(e, power_exp=False, power_base=False, log=False)


@dataclass(frozen=True)
class _Constrained:
    """A one-hot or simplex input's domain: its kind and the axis along which its rows sum to 1."""

    kind: str
    axis: int


class Algebra:
    """Normal forms over one derivation's atoms. One instance per derivation: the atom table and the
    memo serve every gradient."""

    def __init__(self, d: Derivation, ranges: Mapping[sp.Symbol, sp.Expr] | None = None):
        """`ranges`: the sizes of the free indices of the expressions to normalise (a claim's), so that
        an indicator such as [h >= 0] is known to be 1."""
        self.d = d
        self.sizes = frozenset(d.sizes.values())
        self.constants = frozenset(constant(k) for k in d.constants)  # stride, padding: for all values
        # sizes the derivation fixes (a 3 x 3 window) are numbers here: proved for the values it states
        self.fixed = {d.sizes[k]: sp.Integer(v) for k, v in d.fixed_sizes.items()}
        self.domains = {
            name: _Constrained(dom.kind, dom.axis)
            for name, dom in d.domains.items()
            if dom.kind in ("onehot", "simplex") and dom.axis is not None
        }
        self.atoms: dict[sp.Symbol, Atom] = {}
        self._by_definition: dict[tuple, sp.Symbol] = {}
        self._memo: dict[sp.Expr, sp.Expr] = {}
        self._subst_memo: dict[tuple, sp.Expr] = {}
        self._restored: dict[sp.Symbol, sp.Expr] = {}
        # bound(e) by e: the ranges it is decided by are known before any e holding their index is made
        self._bounds: dict[sp.Expr, sp.Expr] = {}
        self.rules: set[Rule] = set()
        # (lowest, highest) value of each free index and of each summed index of the raw expressions
        # (each sum's own Dummy); never of a canonical bound index ·d, whose range differs between the
        # moments that use it: `sum` passes the range of the index it sums over itself
        self.ranges: dict[sp.Symbol, tuple[sp.Expr, sp.Expr]] = {
            i: (sp.S.Zero, self.norm(n) - 1) for i, n in (ranges or {}).items()
        }

    # -- atoms ------------------------------------------------------------------------------------------

    def _atom(self, kind: AtomKind, definition: sp.Expr, indices: Iterable, depth: int) -> sp.Symbol:
        key = (kind, definition)
        found = self._by_definition.get(key)
        if found is not None:
            return found
        sym = sp.Symbol(f"α{len(self.atoms)}")
        self.atoms[sym] = Atom(kind, definition, frozenset(indices), depth)
        self._by_definition[key] = sym
        return sym

    def is_index(self, s) -> bool:
        return isinstance(s, sp.Symbol) and s.is_integer is True and s not in self.sizes | self.constants

    def is_affine(self, e: sp.Expr) -> bool:
        """Whether `e` is integer-valued and linear in indices: integer coefficients, each monomial holding
        at most one index, times sizes and constants (a subscript such as S*i + kh - P)."""
        symbols = sorted(e.free_symbols, key=str)
        if not all(self.is_index(x) or x in self.sizes or x in self.constants for x in symbols):
            return False
        if not symbols:
            return e.is_Integer
        try:
            poly = sp.Poly(e, *symbols)
        except sp.PolynomialError:
            return False
        at = [k for k, x in enumerate(symbols) if self.is_index(x)]
        return all(c.is_Integer for c in poly.coeffs()) and all(
            sum(m[k] for k in at) <= 1 for m in poly.monoms()
        )

    def deps(self, e: sp.Expr) -> frozenset:
        """The free index symbols `e` depends on, through its atoms."""
        out: set = set()
        for s in e.free_symbols:
            atom = self.atoms.get(s)
            if atom is not None:
                out |= atom.indices
            elif self.is_index(s):
                out.add(s)
        return frozenset(out)

    def depth(self, e: sp.Expr) -> int:
        return max((self.atoms[s].depth for s in e.free_symbols if s in self.atoms), default=0)

    # -- normal form --------------------------------------------------------------------------------------

    def norm(self, e: sp.Expr) -> sp.Expr:
        """The expanded polynomial over atoms equal to `e` (raw SymPy: Sum, Indexed, KroneckerDelta,
        functions, Step; no Max, Min, Abs or Piecewise: see `to_steps`)."""
        found = self._memo.get(e)
        if found is None:
            found = self._norm(e)
            self._memo[e] = found
        return found

    def _norm(self, e: sp.Expr) -> sp.Expr:
        if e.is_Number or e is sp.S.Exp1:
            return e
        if isinstance(e, sp.Symbol):
            return self.fixed.get(e, e)
        if isinstance(e, sp.Indexed):
            return self.tensor(e)
        if isinstance(e, sp.KroneckerDelta):
            return self.delta(*e.args)
        if isinstance(e, sp.Add):
            return _expand(sp.Add(*(self.norm(a) for a in e.args)))
        if isinstance(e, sp.Mul):
            return self.idempotent(_expand(sp.Mul(*(self.norm(a) for a in e.args))))
        if isinstance(e, sp.Pow):
            return self.power(self.norm(e.base), e.exp)
        if isinstance(e, sp.Sum):
            return self.sums(e)
        if isinstance(e, Bound):
            return self.bound(self.norm(e.args[0]))
        if isinstance(e, Equal):
            return self.equal(*(self.norm(a) for a in e.args))
        if isinstance(e, WindowMax):
            raise Unsupported(f"the window maximum {e} written out (it is modelled as the name it defines)")
        if isinstance(e, sp.exp):
            return self.exp(self.norm(e.args[0]))
        if isinstance(e, sp.log):
            return self.log(self.norm(e.args[0]))
        if isinstance(e, Step):
            return self.step(self.norm(e.args[0]))
        if isinstance(e, sigmoid):  # e / (1 + e) with e = exp(u)
            x = self.exp(self.norm(e.args[0]))
            return _expand(x * self.power(_expand(x + 1), -1))
        if isinstance(e, sp.tanh):  # (e - 1) / (e + 1) with e = exp(2u)
            x = self.exp(_expand(2 * self.norm(e.args[0])))
            return _expand((x - 1) * self.power(_expand(x + 1), -1))
        if isinstance(e, softplus):
            return self.log(_expand(1 + self.exp(self.norm(e.args[0]))))
        raise Unsupported(f"{type(e).__name__} ({e})")

    def tensor(self, e: sp.Indexed) -> sp.Expr:
        """An element; at an affine subscript (x[n, c, S*i + kh - P]) the element times the indicators
        that the subscript lies inside its axis, a read outside being zero (zero padding)."""
        subscripts = [i if self.is_index(i) else _expand(self.norm(i)) for i in e.indices]
        inside = sp.S.One
        shape = self._shape(e.base.label.name)
        for axis, i in enumerate(subscripts):
            if self.is_index(i) and (i not in self.ranges or shape is None):
                continue  # index typing: a canonical bound index ranges over the axes it subscripts
            if shape is None:
                raise Unsupported(f"a read of {e.base.label} at the shifted subscript {i}")
            n = self.norm(shape[axis])
            if self.ranges.get(i) == (0, n - 1):
                continue  # an index over the whole axis (the common case, decided without bound())
            if not self.is_affine(i):
                raise Unsupported(f"the subscript {i} of {e.base.label}: not linear in the indices")
            inside *= self.bound(i) * self.bound(_expand(n - 1 - i))
            if inside == 0:
                return sp.S.Zero
        indices = set().union(*(self.deps(i) for i in subscripts))
        return self._atom(AtomKind.TENSOR, sp.Indexed(e.base, *subscripts), indices, 0) * inside

    def _shape(self, name: str) -> tuple[sp.Expr, ...] | None:
        """The shape of a tensor of the derivation, or of the opaque adjoint dL/dname standing for one;
        None for another opaque name (a Jacobian's)."""
        for prefix in ("", "dL/d"):
            if name.startswith(prefix) and name.removeprefix(prefix) in self.d.tensors:
                return self.d.shape(name.removeprefix(prefix))
        return None

    def delta(self, a, b) -> sp.Expr:
        """delta(a, b) of two index expressions, as the delta of their difference made primitive and of a
        fixed sign; between two indices (or an index and an integer) delta(i, j) as SymPy orders it."""
        a, b = self.norm(a), self.norm(b)
        difference = _expand(a - b)
        if difference.is_Number:
            return sp.S.One if difference == 0 else sp.S.Zero
        if not self.is_affine(difference):
            raise Unsupported(f"delta({a}, {b}) between expressions that are not linear in the indices")
        _, prim = difference.as_content_primitive()  # integers: c * u == 0 exactly where u == 0
        if prim.could_extract_minus_sign():
            prim = _expand(-prim)
        plain = _plain_pair(prim, self.is_index)
        definition = sp.KroneckerDelta(*plain) if plain else sp.KroneckerDelta(prim, 0, evaluate=False)
        return self._atom(AtomKind.DELTA, definition, self.deps(prim), 0)

    def bound(self, e: sp.Expr, extra: Mapping | None = None) -> sp.Expr:
        """[e >= 0] for an affine integer-valued e: 1 or 0 where the ranges of its indices (the free and
        raw summed ones, and `extra`) decide it for every value, else an atom of e made primitive."""
        if not extra:
            found = self._bounds.get(e)
            if found is None:
                found = self._bounds[e] = self._bound(e, {})
            return found
        return self._bound(e, extra)

    def _bound(self, e: sp.Expr, extra: Mapping) -> sp.Expr:
        e = _expand(e)
        if e.is_Number:
            return sp.S.One if e >= 0 else sp.S.Zero
        _, prim = e.as_content_primitive()  # c * u >= 0 exactly where u >= 0, for c > 0
        low = self._extreme(prim, extra, lowest=True)
        if low is not None and low.is_nonnegative:
            return sp.S.One
        high = self._extreme(prim, extra, lowest=False)
        if high is not None and high.is_negative:
            return sp.S.Zero
        return self._atom(AtomKind.BOUND, Bound(prim, evaluate=False), self.deps(prim), 0)

    def _extreme(self, e: sp.Expr, extra: Mapping, lowest: bool) -> sp.Expr | None:
        """The lowest (or highest) value of the affine `e` over the ranges of its indices, or None where
        an index's range or the sign of its coefficient is unknown."""
        at = {}
        for i in e.free_symbols:
            if not self.is_index(i):
                continue
            span = extra.get(i) or self.ranges.get(i)
            c = e.diff(i)
            if span is None or c.free_symbols & e.free_symbols - self.sizes - self.constants:
                return None
            if c.is_nonnegative:
                at[i] = span[0] if lowest else span[1]
            elif c.is_nonpositive:
                at[i] = span[1] if lowest else span[0]
            else:
                return None
        return _expand(e.xreplace(at))

    def equal(self, a: sp.Expr, b: sp.Expr) -> sp.Expr:
        """[a == b] for two normal forms (max pooling's comparison of an entry with its window's maximum)."""
        if a == b:
            return sp.S.One
        a, b = sorted((a, b), key=sp.default_sort_key)
        return self._atom(
            AtomKind.EQUAL, Equal(a, b, evaluate=False), self.deps(a) | self.deps(b), self.depth(a + b)
        )

    def power(self, base: sp.Expr, p) -> sp.Expr:
        """base**p for a normal-form base: expanded for a natural p or a monomial base; for a sum, its
        content and sign come out and the rest stays a factor (a negative p) or becomes a root atom r
        with r**2 = rest (p an odd multiple of 1/2)."""
        p = sp.sympify(p)
        if not p.is_Rational:
            raise Unsupported(f"the power ({base})**({p}) with a symbolic exponent")
        if p.is_Integer and (p >= 0 or not isinstance(base, sp.Add)):
            return self.idempotent(_expand(base**p))
        if not p.is_Integer and p.q != 2:
            raise Unsupported(f"the power ({base})**({p}): only square roots are eliminated")
        laurent = any(q.exp.is_negative for q in base.atoms(sp.Pow))
        num, den = sp.fraction(sp.together(base)) if laurent else (base, sp.S.One)
        if den != 1:  # a Laurent polynomial: its monomial denominator comes out
            if not p.is_Integer and not den.free_symbols <= self.sizes:
                # sqrt(a / b) = sqrt(a) / sqrt(b) only where b > 0: sizes are, other atoms need not be
                raise Unsupported(f"the square root of a fraction over {den}")
            return _expand(self.power(_expand(num), p) * self.power(_expand(den), -p))
        content, prim = base.as_content_primitive()
        if p.is_Integer:
            if prim.could_extract_minus_sign():
                content, prim = -content, _expand(-prim)
            return content**p * prim**p
        if content < 0:  # sqrt(c * u) = sqrt(c) * sqrt(u) for c > 0, u of any sign
            content, prim = -content, _expand(-prim)
        if prim.free_symbols <= self.sizes and not isinstance(prim, sp.Add):
            return content**p * prim**p  # a product of sizes, all positive: SymPy's own power is exact
        root = self._atom(
            AtomKind.ROOT, sp.Pow(prim, sp.S.Half, evaluate=False), self.deps(prim), self.depth(prim)
        )
        return _expand(content**p * root ** (2 * p))

    def exp(self, u: sp.Expr) -> sp.Expr:
        """exp of a sum of monomials: the product of exp(monomial)**coefficient (an integer power where
        the coefficient is an integer; exp(m / q)**p otherwise)."""
        out = sp.S.One
        for term in sp.Add.make_args(u):
            c, m = term.as_coeff_Mul()
            if m == 1:
                out *= sp.exp(c)
                continue
            if not c.is_Rational:
                raise Unsupported(f"exp of {term}")
            atom = self._atom(AtomKind.FUNCTION, sp.exp(m / c.q, evaluate=False), self.deps(m), self.depth(m))
            out *= atom**c.p
        return out

    def log(self, u: sp.Expr) -> sp.Expr:
        atom = self.atoms.get(u)
        if atom is not None and atom.kind is AtomKind.FUNCTION and isinstance(atom.definition, sp.exp):
            return atom.definition.args[0]  # log(exp(m)) = m for real m
        return self._atom(AtomKind.FUNCTION, sp.log(u, evaluate=False), self.deps(u), self.depth(u))

    def step(self, u: sp.Expr) -> sp.Expr:
        if u.is_Number:
            if u == 0:
                raise Unsupported("a step at its kink")
            return sp.S.One if u > 0 else sp.S.Zero
        content, prim = u.as_content_primitive()
        if content < 0:
            prim = -prim
        if prim.could_extract_minus_sign():
            return 1 - self.step(_expand(-prim))
        return self._atom(AtomKind.FUNCTION, Step(prim, evaluate=False), self.deps(prim), self.depth(prim))

    def idempotent_atom(self, s) -> bool:
        """Whether s**2 = s: a step, a delta, or an element of a one-hot input."""
        atom = self.atoms.get(s)
        if atom is None:
            return False
        if atom.kind in (AtomKind.DELTA, AtomKind.BOUND, AtomKind.EQUAL) or isinstance(atom.definition, Step):
            return True
        if atom.kind is AtomKind.TENSOR:
            dom = self.domains.get(atom.definition.base.label.name)
            return dom is not None and dom.kind == "onehot"
        return False

    def idempotent(self, e: sp.Expr) -> sp.Expr:
        """`e` with every positive power of an idempotent atom (s**2 = s) replaced by the atom."""
        reps = {}
        for p in e.atoms(sp.Pow):
            if p.exp.is_Integer and p.exp > 1 and self.idempotent_atom(p.base):
                reps[p] = p.base
                self._note_idempotent(p.base)
        return _expand(e.xreplace(reps)) if reps else e

    def _note_idempotent(self, s) -> None:
        atom = self.atoms[s]
        if atom.kind is AtomKind.TENSOR:  # a one-hot entry: a domain rule
            name = atom.definition.base.label.name
            dom = self.domains[name]
            self.rules.add(Rule(name, dom.kind, dom.axis, RuleKind.IDEMPOTENT))

    # -- sums ---------------------------------------------------------------------------------------------

    def sums(self, e: sp.Sum) -> sp.Expr:
        """A sum over several indices: its body normalised with their ranges known, then one index at a
        time, first those a delta of the body pins down (sum(delta(h, S*i + kh - P) * ..., i, kh)
        contracts kh, whose coefficient is 1, and then sums over i), else in the order written. Sums
        with limits free of each other's indices commute."""
        limits = [(k, self.norm(lo), self.norm(hi)) for k, lo, hi in e.limits]
        for k, lo, hi in limits:
            self.ranges[k] = (lo, hi)  # each sum has Dummies of its own (search.fresh): never reused
        body = self.norm(e.function)
        independent = not any(
            (lo.free_symbols | hi.free_symbols) & {k for k, _, _ in limits} for _, lo, hi in limits
        )
        while limits:
            k, lo, hi = limits.pop(self._pinned(body, limits) if independent else 0)
            body = self.sum(body, k, lo, hi)
        return body

    def _pinned(self, body: sp.Expr, limits: list) -> int:
        """The position in `limits` of the first index that a delta of `body` pins down, else 0."""
        deltas = [self.atoms[f].definition for f in body.free_symbols if self._is(f, AtomKind.DELTA)]
        for n, (k, _, _) in enumerate(limits):
            if any(_solve(d, k) is not None for d in deltas):
                return n
        return 0

    def sum(self, body: sp.Expr, k, lo, hi) -> sp.Expr:
        """sum(body, k = lo..hi) in normal form: split over terms, deltas contracted, moments canonical.
        A sum from lo != 0 is one from 0 over a new index k' = k - lo."""
        if lo != 0:
            shifted = sp.Dummy(k.name, integer=True)
            self.ranges[shifted] = (sp.S.Zero, _expand(hi - lo))
            return self.sum(self.subst(body, {k: shifted + lo}), shifted, sp.S.Zero, _expand(hi - lo))
        if hi == lo:
            return self.subst(body, {k: lo})
        size = hi + 1
        span = {k: (lo, hi)}
        out = []
        for term in sp.Add.make_args(body):
            coeff, factors = term.as_coeff_mul()
            dep = [f for f in factors if k in self.deps(f)]
            if not dep:
                out.append(term * size)
                continue
            # an indicator on k that k's range decides: [k >= 0], [K - 1 - k >= 0]
            dep = [self.bound(self.atoms[f].definition.args[0], span) if self._is(f, AtomKind.BOUND) else f
                   for f in dep]  # fmt: skip
            if 0 in dep:
                continue
            rest = sp.Mul(coeff, *(f for f in factors if k not in self.deps(f)))
            rest *= sp.Mul(*(f for f in dep if k not in self.deps(f)))
            dep = [f for f in dep if k in self.deps(f)]
            if not dep:
                out.append(rest * size)
                continue
            contract = self._contraction(dep, k)
            if contract is not None:
                delta, at = contract
                others = list(dep)
                others.remove(delta)
                # sum over k in lo..hi of f(k) * delta(k, at) is f(at) where lo <= at <= hi, else 0
                inside = self.bound(at - lo) * self.bound(hi - at) if self.ranges.get(at) != (lo, hi) else 1
                out.append(rest * inside * self.subst(sp.Mul(*others), {k: at}))
            else:
                out.append(rest * self.moment(sp.Mul(*dep), k, hi))
        return self.idempotent(_expand(sp.Add(*out)))

    def _is(self, s, kind: AtomKind) -> bool:
        atom = self.atoms.get(s)
        return atom is not None and atom.kind is kind

    def _contraction(self, factors, k):
        """A factor delta(...) that pins k down (k with coefficient +-1), and k's value; else None."""
        for f in factors:
            if self._is(f, AtomKind.DELTA):
                at = _solve(self.atoms[f].definition, k)
                if at is not None:
                    return f, at
        return None

    def moment(self, body: sp.Expr, k, hi) -> sp.Expr:
        depth = self.depth(body) + 1
        canonical = sp.Symbol(f"{BOUND}{depth - 1}", integer=True)
        body = self.subst(body, {k: canonical}) if k != canonical else body
        rule = self._row_sum(body, canonical)
        if rule is not None:
            self.rules.add(rule)
            return sp.S.One
        indices = (self.deps(body) - {canonical}) | self.deps(hi)
        return self._atom(AtomKind.SUM, sp.Sum(body, (canonical, 0, hi)), indices, depth)

    def _row_sum(self, body, k) -> Rule | None:
        """The rule that makes sum(body, k) equal 1: body is t[..., k, ...] with k at the one-hot or
        simplex axis of t and nowhere else."""
        atom = self.atoms.get(body)
        if atom is None or atom.kind is not AtomKind.TENSOR:
            return None
        e = atom.definition
        dom = self.domains.get(e.base.label.name)
        if dom is None or dom.axis >= len(e.indices) or e.indices[dom.axis] != k:
            return None
        if sum(i == k for i in e.indices) != 1:
            return None
        return Rule(e.base.label.name, dom.kind, dom.axis, RuleKind.ROW_SUM)

    # -- substitution of indices --------------------------------------------------------------------------

    def subst(self, e: sp.Expr, m: dict) -> sp.Expr:
        """`e` with the index symbols in `m` replaced, every atom that depends on one rebuilt."""
        keys = frozenset(m)
        reps = {}
        for s in e.free_symbols:
            atom = self.atoms.get(s)
            if atom is not None:
                if atom.indices & keys:
                    reps[s] = self._subst_atom(s, m)
            elif s in m:
                reps[s] = m[s]
        return self.idempotent(_expand(e.xreplace(reps))) if reps else e

    def _subst_atom(self, s, m: dict) -> sp.Expr:
        atom = self.atoms[s]
        relevant = {k: v for k, v in m.items() if k in atom.indices}
        key = (s, tuple(sorted(relevant.items(), key=str)))
        found = self._subst_memo.get(key)
        if found is not None:
            return found
        e = atom.definition
        if atom.kind is AtomKind.TENSOR:
            out = self.tensor(e.xreplace(relevant))
        elif atom.kind is AtomKind.DELTA:
            out = self.delta(*(a.xreplace(relevant) for a in e.args))
        elif atom.kind is AtomKind.BOUND:
            out = self.bound(self.subst(e.args[0], relevant))
        elif atom.kind is AtomKind.EQUAL:
            out = self.equal(*(self.subst(a, relevant) for a in e.args))
        elif atom.kind is AtomKind.ROOT:
            out = self.power(self.subst(e.base, relevant), sp.S.Half)
        elif atom.kind is AtomKind.SUM:
            ((k, lo, hi),) = e.limits
            out = self.sum(self.subst(e.function, relevant), k, lo, hi.xreplace(relevant))
        elif isinstance(e, sp.exp):
            out = self.exp(_expand(self.subst(e.args[0], relevant)))
        elif isinstance(e, sp.log):
            out = self.log(self.subst(e.args[0], relevant))
        else:
            out = self.step(self.subst(e.args[0], relevant))
        self._subst_memo[key] = out
        return out

    # -- back to index expressions ------------------------------------------------------------------------

    def restore(self, e: sp.Expr) -> sp.Expr:
        """`e` with every atom replaced by what it stands for: an index expression again (for the residue,
        the conditions and the self-check)."""
        reps = {s: self._restore_atom(s) for s in e.free_symbols if s in self.atoms}
        return e.xreplace(reps) if reps else e

    def _restore_atom(self, s) -> sp.Expr:
        found = self._restored.get(s)
        if found is None:
            atom = self.atoms[s]
            e = atom.definition
            if atom.kind is AtomKind.SUM:
                ((k, lo, hi),) = e.limits
                found = sp.Sum(self.restore(e.function), (k, lo, hi))
            elif atom.kind is AtomKind.ROOT:
                found = sp.sqrt(self.restore(e.base))
            elif atom.kind in (AtomKind.FUNCTION, AtomKind.BOUND, AtomKind.EQUAL):
                found = e.func(*(self.restore(a) for a in e.args))
            else:
                found = e
            self._restored[s] = found
        return found

    # -- the zero test ------------------------------------------------------------------------------------

    def is_zero(self, e: sp.Expr) -> tuple[bool, sp.Expr]:
        """Whether the normal form `e` is zero for all values of its atoms that satisfy their relations,
        and the reduced residue (numerator over denominator) when it is not."""
        e = self.idempotent(e)
        if e == 0:
            return True, e
        num, den = sp.fraction(sp.cancel(sp.together(e)))
        num = self.reduce(_expand(num))
        if num == 0:
            return True, num
        for s in sorted(num.free_symbols, key=str):
            atom = self.atoms.get(s)
            if atom is None or atom.kind is not AtomKind.DELTA:
                continue
            a, b = atom.definition.args
            if not (self.is_index(a) and self.is_index(b)):
                continue
            # a delta between two free indices: zero when they differ and when they are equal
            apart, _ = self.is_zero(num.xreplace({s: 0}))
            equal, _ = self.is_zero(self.subst(num, {b: a}))
            if apart and equal:
                return True, sp.S.Zero
            break
        return False, num / den

    def reduce(self, num: sp.Expr) -> sp.Expr:
        """The polynomial `num` reduced by the atoms' relations: r**2 = B for every root, s**2 = s for
        every idempotent atom. A remainder of zero means num vanishes wherever the relations hold."""
        for _ in range(8):
            gens = [s for s in num.free_symbols if self.atoms.get(s) is not None
                    and (self.atoms[s].kind is AtomKind.ROOT or self.idempotent_atom(s))]  # fmt: skip
            if not gens:
                return num
            out = []
            changed = False
            for monom, coeff in sp.Poly(num, *gens).terms():
                term = coeff
                for g, k in zip(gens, monom, strict=True):
                    if k >= 2:
                        changed = True
                        if self.atoms[g].kind is AtomKind.ROOT:
                            term *= self.atoms[g].definition.base ** (k // 2)
                            k = k % 2
                        else:
                            self._note_idempotent(g)
                            k = 1
                    term *= g**k
                out.append(term)
            num = _expand(sp.Add(*out))
            if not changed:
                return num
        return num
