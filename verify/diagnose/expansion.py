"""The true gradient written out in the file's own names: one step of the chain rule, symbolically.

The true adjoint of v at the statement's indices is a sum over the forward statements s that read v of
sum over s's elements of dL/ds * ds/dv (SymPy's local derivative, as the exact oracle uses it). Each
dL/ds is written as the file writes it where it can be: the upstream gradient for the output, an earlier
gradient statement whose values are right at the sample (dxhat, dvar), else expanded one step further.
Kronecker deltas are summed out, and forward definitions are folded back into their names where that
makes the expression shorter ((x[n,j] - mu[j]) / sqrt(var[j] + eps) is xhat[n,j]; exp(x[n,k]) is
y[n,k] * sum(exp(x[n,m]), m) in a softmax), so that a term reads as a person would write it.

These terms are candidates only: every fix built from them is verified numerically and then by the
exact oracle before it is shown.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import sympy as sp

from .. import deadline
from ..exacteval import _contract_term, contracted, derivatives_of
from ..model import Derivation, Statement, base, summands

DEPTH = 3  # how many steps an adjoint that no statement states is expanded before giving up
FOLD_SIZE = 600  # expressions larger than this are not folded (folding matches patterns: slow on big ones)


class TooDeep(Exception):
    """An adjoint that needs more than DEPTH steps of expansion."""


def _fresh(e: sp.Expr) -> sp.Expr:
    """`e` with every summed index renamed to a new Dummy, so that substituting into it captures nothing."""
    if not e.has(sp.Sum):
        return e
    if isinstance(e, sp.Sum):
        body = _fresh(e.function)
        limits = []
        for k, lo, hi in e.limits:
            new = sp.Dummy(k.name, integer=True)
            body = body.xreplace({k: new})
            limits.append((new, lo, hi))
        return sp.Sum(body, *limits)
    return e.func(*(_fresh(a) if isinstance(a, sp.Expr) else a for a in e.args))


class Expansion:
    """One step of the chain rule for the adjoint of `v`, at the indices of statement `st`.

    `usable` maps a forward name to the earlier gradient statement that states its adjoint correctly."""

    def __init__(self, d: Derivation, st: Statement, usable: Mapping[str, Statement]):
        self.d = d
        self.st = st
        self.usable = dict(usable)
        self.parts = derivatives_of(d)
        self.readers = {
            name: [s for s in d.forward if any(n == name for n, _, _ in self.parts[s.target])]
            for name in [*d.inputs, *(s.target for s in d.forward)]
        }

    def adjoint(self, name: str, args: tuple, depth: int = DEPTH) -> sp.Expr:
        """dL/dname at element `args`, in the file's names."""
        d = self.d
        if name == d.output:
            return sp.Indexed(base(d.upstream), *args) if args else sp.S.One
        if name in self.usable:
            g = self.usable[name]
            return sp.Indexed(base(g.target), *args) if args else sp.Symbol(g.target, real=True)
        if depth == 0:
            raise TooDeep(name)
        return sp.Add(*self.terms(name, args, depth - 1).values())

    def terms(self, v: str, args: tuple, depth: int = DEPTH) -> dict[str, sp.Expr]:
        """The one-step terms of dL/dv at `args`, by the forward statement they come through."""
        out = {}
        for s in self.readers.get(v, []):
            at, der = next((at, der) for n, at, der in self.parts[s.target] if n == v)
            idx = tuple(sp.Dummy(i.name, integer=True) for i in s.indices)
            der = _fresh(der).xreplace(
                {**dict(zip(s.indices, idx, strict=True)), **dict(zip(at, args, strict=True))}
            )
            weight = self.adjoint(s.target, idx, depth)
            limits = [(i, 0, n - 1) for i, n in zip(idx, self.d.shape(s.target), strict=True)]
            out[s.target] = sp.Add(*(_summed(weight * part, limits) for part in _by_deltas(der)))
        return out


def _deltas_out(e: sp.Expr) -> sp.Expr:
    """A where() whose branches all carry the same Kronecker deltas with the deltas outside it."""

    def out(pw):
        branches = [sp.Mul.make_args(sp.factor_terms(v)) for v, _ in pw.args]
        common = set.intersection(*({f for f in b if isinstance(f, sp.KroneckerDelta)} for b in branches))
        if not common:
            return pw
        deltas = sp.Mul(*common)
        return deltas * sp.Piecewise(*((sp.factor_terms(v) / deltas, c) for v, c in pw.args))

    return e.replace(lambda n: isinstance(n, sp.Piecewise), out)


def _by_deltas(der: sp.Expr) -> list[sp.Expr]:
    """The terms of a local derivative grouped by their Kronecker deltas, each group's cofactor with its
    common factors pulled out (2*(x[n,j] - mu[j])/N rather than 2*x[n,j]/N - 2*mu[j]/N)."""
    groups: dict[sp.Expr, list[sp.Expr]] = {}
    for t in summands(_deltas_out(der)):
        deltas = sp.Mul(*(f for f in sp.Mul.make_args(t) if isinstance(f, sp.KroneckerDelta)))
        groups.setdefault(deltas, []).append(t / deltas)
    return [deltas * sp.factor_terms(sp.Add(*rest)) for deltas, rest in groups.items()]


def _summed(body: sp.Expr, limits: list) -> sp.Expr:
    """sum(body, limits) with the deltas that pin a summed index summed out."""
    if not limits:
        return body
    term = _contract_term(body, list(limits))
    return contracted(term) if term.has(sp.KroneckerDelta) and term.has(sp.Sum) else term


# -----------------------------------------------------------------------------------------------------
# Making a term readable: masks as where(), forward definitions folded back into their names, summed
# indices named after their sizes.


def masks_as_where(e: sp.Expr) -> sp.Expr:
    """Heaviside(a) (SymPy's derivative of max(a, 0)) as where(a > 0, 1, 0), which the language writes,
    and a product with such a mask as where(a > 0, product, 0)."""
    e = e.replace(sp.Heaviside, lambda *a: sp.Piecewise((1, sp.StrictGreaterThan(a[0], 0)), (0, True)))
    return e.replace(lambda n: n.is_Mul and any(_is_mask(f) for f in n.args), _mask_outside)


def _is_mask(e: sp.Expr) -> bool:
    return isinstance(e, sp.Piecewise) and len(e.args) == 2 and e.args[0][0] == 1 and e.args[1][0] == 0


def _mask_outside(product: sp.Expr) -> sp.Expr:
    mask = next(f for f in product.args if _is_mask(f))
    rest = sp.Mul(*(f for f in product.args if f is not mask))
    return sp.Piecewise((rest, mask.args[0][1]), (0, True))


def _canonical(e: sp.Expr) -> sp.Expr:
    """`e` with every summed index named by the height of its sum (how many sums nest inside it) and its
    place in the limits, so that two equal sums are equal as SymPy expressions whatever their indices
    were called."""
    if not e.has(sp.Sum):
        return e
    if isinstance(e, sp.Sum):
        body = _canonical(e.function)
        height = _height(body)
        limits = []
        for k, (i, lo, hi) in enumerate(e.limits):
            new = sp.Symbol(f"_s{height}_{k}", integer=True)
            body = body.xreplace({i: new})
            limits.append((new, lo, hi))
        return sp.Sum(body, *limits)
    return e.func(*(_canonical(a) if isinstance(a, sp.Expr) else a for a in e.args))


def _height(e: sp.Expr) -> int:
    if not e.has(sp.Sum):
        return 0
    if isinstance(e, sp.Sum):
        return 1 + _height(e.function)
    return max((_height(a) for a in e.args if isinstance(a, sp.Expr)), default=0)


def hoisted(e: sp.Expr) -> sp.Expr:
    """Factors of a sum's body that do not use its indices moved out of the sum (bottom up), so that
    powers of one base meet and combine."""
    if not e.has(sp.Sum):
        return e
    args = [hoisted(a) if isinstance(a, sp.Expr) else a for a in e.args]
    if isinstance(e, sp.Sum):
        body, limits = args[0], e.limits
        bound = {lim[0] for lim in limits}
        factors = sp.Mul.make_args(body)
        outside = [f for f in factors if not (f.free_symbols & bound)]
        if outside:
            inside = [f for f in factors if f.free_symbols & bound]
            used = [lim for lim in limits if any(lim[0] in f.free_symbols for f in inside)]
            count = sp.Mul(
                *(hi - lo + 1 for i, lo, hi in limits if all(i not in f.free_symbols for f in inside))
            )
            return sp.Mul(*outside) * count * (sp.Sum(sp.Mul(*inside), *used) if used else sp.Mul(*inside))
        return sp.Sum(body, *limits)
    return e.func(*args)


CACHED = 4096  # entries kept by each cache below; a long --watch session must not grow without end
_RULES: dict[int, tuple] = {}


def _rules(d: Derivation) -> list[tuple[sp.Expr, sp.Expr, tuple]]:
    """`_forward_rules(d)`, computed once per derivation."""
    if id(d) not in _RULES:
        if len(_RULES) >= CACHED // 64:
            _RULES.clear()
        _RULES[id(d)] = (d, _domain_rules(d) + _forward_rules(d))  # holding d keeps its id from being reused
    return _RULES[id(d)][1]


def _domain_rules(d: Derivation) -> list[tuple[sp.Expr, sp.Expr, tuple]]:
    """A simplex or one-hot input sums to 1 along its axis: sum(t[n, k], k) is 1."""
    out = []
    for name in d.inputs:
        domain = d.domain(name)
        if domain.kind in ("simplex", "onehot") and domain.axis is not None:
            shape = d.shape(name)
            summed = sp.Symbol("_s0_0", integer=True)
            idx = [sp.Wild(f"w{k}") if k != domain.axis else summed for k in range(len(shape))]
            out.append((sp.Sum(base(name)[tuple(idx)], (summed, 0, shape[domain.axis] - 1)), sp.S.One, ()))
    return out


def _forward_rules(d: Derivation) -> list[tuple[sp.Expr, sp.Expr, tuple]]:
    """(pattern, replacement, sums to leave alone) per forward statement u[i] = f(i): the whole of f, and
    where f is a product with one factor F carrying all of u's indices, F = u / (f / F), except inside
    the sums of f / F. Indices are Wilds."""
    out = []
    for st in d.forward:
        if not st.indices:
            continue
        wild = {i: sp.Wild(f"w_{i.name}") for i in st.indices}
        rhs = _canonical(st.rhs)
        target = sp.Indexed(base(st.target), *st.indices)
        out.append((rhs.xreplace(wild), target.xreplace(wild), ()))
        factors = sp.Mul.make_args(rhs)
        carrying = [f for f in factors if set(st.indices) <= f.free_symbols]
        if len(factors) > 1 and len(carrying) == 1 and not carrying[0].is_Pow:
            rest = rhs / carrying[0]
            keep = tuple(s.xreplace(wild) for s in rest.atoms(sp.Sum))
            out.append((carrying[0].xreplace(wild), (target / rest).xreplace(wild), keep))
            if carrying[0].is_Add:  # x - mu also appears as mu - x
                out.append(((-carrying[0]).xreplace(wild), (-target / rest).xreplace(wild), keep))
    return out


_FOLDED: dict[tuple[int, sp.Expr], tuple] = {}


def fold(d: Derivation, e: sp.Expr) -> sp.Expr:
    """`e` with forward definitions folded back into their names wherever that makes it smaller."""
    key = (id(d), e)
    if key not in _FOLDED:
        if len(_FOLDED) >= CACHED:
            _FOLDED.clear()
        _FOLDED[key] = (d, _fold(d, e))
    return _FOLDED[key][1]


def _signature(e: sp.Expr) -> set:
    """What a pattern needs to be found in an expression: the tensors it reads and its function types."""
    return {a.base.label.name for a in e.atoms(sp.Indexed)} | {type(f) for f in e.atoms(sp.Function, sp.Sum)}


def _fold(d: Derivation, e: sp.Expr) -> sp.Expr:
    best = hoisted(_canonical(e))
    if size_of(best) > FOLD_SIZE:
        return best
    for start in (best, sp.factor_terms(best)):
        current = start
        for pattern, replacement, keep in _rules(d):
            if not _signature(pattern) <= _signature(current):
                continue
            deadline.check()  # one replace can take a second on a large statement
            try:
                folded = _replace_outside(current, pattern, replacement, keep)
            except (TypeError, ValueError, RecursionError):  # a pattern SymPy cannot match here
                continue
            if folded != current and size_of(folded) <= size_of(current):
                current = folded
        if size_of(current) < size_of(best):
            best = current
    return best


def size_of(e: sp.Expr) -> int:
    """How big an expression reads: its nodes, numbers and indices aside."""
    return sum(1 for n in sp.preorder_traversal(e) if not (n.is_Number or (n.is_Symbol and n.is_integer)))


def _replace_outside(e: sp.Expr, pattern, replacement, keep: tuple) -> sp.Expr:
    """`e` with `pattern` replaced, except inside the sums of `keep` (a softmax's denominator keeps its
    exp(x[n,m]) when exp(x[n,k]) becomes y[n,k] times it)."""
    protected: dict[sp.Expr, sp.Dummy] = {}
    for k in keep:
        for node in e.atoms(sp.Sum):
            if node.match(k) is not None:
                protected.setdefault(node, sp.Dummy("kept"))
    hidden = e.xreplace(protected)
    out = hoisted(hidden.replace(pattern, replacement))
    return out.xreplace({v: k for k, v in protected.items()})


def readable(e: sp.Expr, st: Statement, d: Derivation) -> sp.Expr:
    """`e` with its summed indices named as the file names indices over the same size (m over N when
    the file sums over m), never clashing with the statement's own indices or each other."""
    preferred: dict[sp.Expr, list[str]] = {}
    for s in [*d.forward, *d.gradients]:
        for i, size in s.ranges.items():
            preferred.setdefault(size, []).append(i.name)
        for node in s.rhs.atoms(sp.Sum):
            for i, _, hi in node.limits:
                preferred.setdefault(sp.expand(hi + 1), []).append(i.name)
    taken = {i.name for i in st.indices} | {s.name for s in e.free_symbols}
    return _rename(e, taken, preferred)


def _rename(e: sp.Expr, taken: set[str], preferred) -> sp.Expr:
    if not e.has(sp.Sum):
        return e
    if isinstance(e, sp.Sum):
        body, limits, inner = e.function, [], set(taken)
        for i, lo, hi in e.limits:
            size = sp.expand(hi + 1)
            stem = str(size).lower() if isinstance(size, sp.Symbol) else "i"
            options = itertools.chain(
                preferred.get(size, []), [stem], (f"{stem}{k}" for k in itertools.count(2))
            )
            name = next(o for o in options if o not in inner)
            new = sp.Symbol(name, integer=True)
            inner.add(name)
            body = body.xreplace({i: new})
            limits.append((new, lo, hi))
        return sp.Sum(_rename(body, inner, preferred), *limits)
    return e.func(*(_rename(a, taken, preferred) if isinstance(a, sp.Expr) else a for a in e.args))


def written_form(d: Derivation, st: Statement, e: sp.Expr) -> sp.Expr:
    """A term made readable: masks as where(), forward names folded back, summed indices named."""
    return readable(fold(d, masks_as_where(e)), st, d)
