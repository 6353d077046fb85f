"""Small edits of a wrong statement, each a candidate fix: the ways people get a gradient wrong, undone.

Each `Edit` is a new right-hand side for one statement, the kind of mistake it undoes, what it says about
the mistake in words, and a cost: the fix search tries the cheapest first and reports the first one the
exact oracle verifies. The families (issue 13):

    sign            the sign of the whole, or of one term
    scale           a factor 1/size, or a size, put in or taken out
    wrong-size      one size where another belongs, N - 1 where N belongs
    exponent        a power one off (-1/2 and -3/2), a square too many
    eps             eps left out of a root or a power, or put in where it does not belong
    threshold       a where() condition moved to the forward's kink, or its comparison reversed
    transpose       the two indices of a read swapped
    wrong-index     an index of a read renamed to another index over the same size
    wrong-variable  a read of another tensor of the same shape (x and xhat, y and x)
    upstream        the upstream gradient multiplied in
    extra-term      a term dropped
    extra-factor    a factor dropped, or a read that is a whole branch of a where() replaced by 1
    missing-factor  a factor of the chain rule multiplied in (a mask where(h > 0, ., 0), gamma[j])
    missing-term    a term of the true expansion (`verify.diagnose.expansion`) added

Edits never read a name the statement could not read (one defined after it).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import sympy as sp
from sympy.core.relational import Relational

from ..model import Derivation, Statement, base, step_of
from ..mutate import sum_axes
from ..unparse import expression_text
from .kinds import Kind

NODES = 6  # Add, Mul and Pow nodes edited per statement (the first ones, outermost first)
TERMS = 6  # terms or factors tried per node


@dataclass(frozen=True)
class Edit:
    """A candidate fix of statement `target`: its new right-hand side, the kind of mistake it undoes, the
    mistake in words ("the term ... has the wrong sign"), what the edit does, and its cost."""

    target: str
    rhs: sp.Expr
    kind: Kind
    message: str
    does: str
    cost: int = 1
    rewrite: bool = False


def _text(e) -> str:
    return expression_text(e)


def _nodes(e: sp.Expr, kind) -> list:
    return list(dict.fromkeys(n for n in sp.preorder_traversal(e) if isinstance(n, kind)))


def readable_names(d: Derivation, st: Statement) -> list[str]:
    """The tensors and scalars statement `st` may read: inputs, forward values, the upstream gradient and
    the gradient statements before it (a chain by its conclusion)."""
    before = []
    for g in d.gradients:
        if g is st:
            break
        if step_of(g.target) == g.target:
            before.append(g.target)
    upstream = [d.upstream] if d.upstream in d.tensors else []
    return [*d.inputs, *(s.target for s in d.forward), *upstream, *before]


def _shape(d: Derivation, name: str):
    return d.shape(name) if name in d.tensors else None


def small_constants(d: Derivation) -> list[sp.Symbol]:
    return [sp.Symbol(n, real=True) for n, v in d.fixed_values.items() if 0 < abs(v) < sp.Rational(1, 100)]


def kink_values(d: Derivation) -> list[sp.Expr]:
    """Where the forward's kinks are: the constants its max, min and where() compare with (0 for ReLU)."""
    found: list[sp.Expr] = []
    for st in d.forward:
        for node in _nodes(st.rhs, (sp.Max, sp.Min)):
            found += [a for a in node.args if a.is_Number]
        for rel in _nodes(st.rhs, Relational):
            found += [s for s in (rel.lhs, rel.rhs) if s.is_Number]
    return list(dict.fromkeys(found or [sp.S.Zero]))


def edits(d: Derivation, st: Statement) -> Iterator[Edit]:
    """The single edits of statement `st` (cost 1), in the order they are tried."""
    rhs = st.rhs
    t = st.target
    yield Edit(t, -rhs, Kind.SIGN, "has the wrong sign", "the sign flipped")
    for add in _nodes(rhs, sp.Add)[:NODES]:
        for term in add.args[:TERMS]:
            new = rhs.xreplace({add: sp.Add(*[-a if a is term else a for a in add.args])})
            yield Edit(
                t,
                new,
                Kind.SIGN,
                f"the term {_text(term)} has the wrong sign",
                f"the sign of {_text(term)} flipped",
            )
    yield from _sizes(d, st)
    yield from _exponents(d, st)
    yield from _eps(d, st)
    yield from _thresholds(d, st)
    yield from _indices(d, st)
    for new in sum_axes(d, st):
        yield Edit(t, new, Kind.SUM_AXIS, "sums over the wrong axis", "the sum taken over the other axis")
    yield from _neighbours(d, st)
    yield from _upstream(d, st)
    for add in _nodes(rhs, sp.Add)[:NODES]:
        for term in add.args[:TERMS]:
            new = rhs.xreplace({add: sp.Add(*[a for a in add.args if a is not term])})
            yield Edit(
                t, new, Kind.EXTRA_TERM, f"the term {_text(term)} does not belong", f"{_text(term)} dropped"
            )
    for mul in _nodes(rhs, sp.Mul)[:NODES]:
        for factor in mul.args[:TERMS]:
            if factor.is_Number:
                continue
            new = rhs.xreplace({mul: sp.Mul(*[a for a in mul.args if a is not factor])})
            yield Edit(
                t,
                new,
                Kind.EXTRA_FACTOR,
                f"the factor {_text(factor)} does not belong",
                f"{_text(factor)} dropped",
            )
    for where in _nodes(rhs, sp.Piecewise)[:NODES]:
        for value, cond in where.args:
            if isinstance(value, sp.Indexed):
                branches = tuple((sp.S.One if v is value else v, c) for v, c in where.args)
                new = rhs.xreplace({where: sp.Piecewise(*branches)})
                yield Edit(
                    t,
                    new,
                    Kind.EXTRA_FACTOR,
                    f"{_text(value)} where 1 belongs (where {_text(cond)})",
                    f"{_text(value)} replaced by 1",
                )
        yield Edit(t, rhs.xreplace({where: where.args[0][0]}), Kind.EXTRA_FACTOR,
                   f"the mask where({_text(where.args[0][1])}, ...) does not belong", "the where() dropped")  # fmt: skip


def _sizes(d: Derivation, st: Statement) -> Iterator[Edit]:
    rhs, t = st.rhs, st.target
    for mul in _nodes(rhs, sp.Mul)[:NODES]:
        c = next((a for a in mul.args if a.is_Number), None)
        if c is None or abs(c) == 1:
            continue
        for new_c, message in ((sp.sign(c), f"the factor {c} does not belong"), (c * 2, "misses a factor 2"),
                               (c / 2, f"the factor 2 in {c} does not belong")):  # fmt: skip
            new = rhs.xreplace({mul: sp.Mul(*[new_c if a is c else a for a in mul.args])})
            yield Edit(t, new, Kind.SCALE, message, f"{_text(c)} replaced by {_text(new_c)}")
    present = [s for s in d.sizes.values() if s in rhs.free_symbols]
    for s in d.sizes.values():
        yield Edit(t, rhs / s, Kind.SCALE, f"misses a factor 1/{s}", f"divided by {s}")
        yield Edit(t, rhs * s, Kind.SCALE, f"misses a factor {s}", f"multiplied by {s}")
    for s in present:
        yield Edit(
            t, rhs.xreplace({s: sp.S.One}), Kind.SCALE, f"the factor {s} does not belong", f"{s} dropped"
        )
        for other in d.sizes.values():
            if other != s:
                yield Edit(
                    t,
                    rhs.xreplace({s: other}),
                    Kind.WRONG_SIZE,
                    f"{s} where {other} belongs",
                    f"{s} replaced by {other}",
                )
    for add in _nodes(rhs, sp.Add):
        sizes = [a for a in add.args if a in d.sizes.values()]
        if len(sizes) == 1 and len(add.args) == 2 and sum(a.is_Integer for a in add.args) == 1:
            yield Edit(t, rhs.xreplace({add: sizes[0]}), Kind.WRONG_SIZE, f"{_text(add)} where {sizes[0]} belongs",
                       f"{_text(add)} replaced by {sizes[0]}")  # fmt: skip


def _exponents(d: Derivation, st: Statement) -> Iterator[Edit]:
    rhs, t = st.rhs, st.target
    forward = {s.target for s in d.forward}
    for read in [r for r in _nodes(rhs, sp.Indexed) if r.base.label.name in forward][:NODES]:
        if not any(isinstance(p, sp.Pow) and p.base == read for p in _nodes(rhs, sp.Pow)):
            yield Edit(t, rhs.xreplace({read: read**2}), Kind.EXPONENT, f"{_text(read)} where {_text(read**2)} belongs",
                       f"{_text(read)} squared")  # fmt: skip
    for p in [p for p in _nodes(rhs, sp.Pow) if p.exp.is_Number][:NODES]:
        for exp in (p.exp - 1, p.exp + 1):
            if exp == 0:
                continue
            new = rhs.xreplace({p: sp.Pow(p.base, exp)})
            yield Edit(t, new, Kind.EXPONENT, f"the power {_text(p.exp)} of {_text(p.base)} should be {_text(exp)}",
                       f"exponent {_text(exp)} for {_text(p.exp)}")  # fmt: skip


def _eps(d: Derivation, st: Statement) -> Iterator[Edit]:
    rhs, t = st.rhs, st.target
    for eps in small_constants(d):
        if eps in rhs.free_symbols:
            yield Edit(
                t, rhs.xreplace({eps: sp.S.Zero}), Kind.EPS, f"{eps} does not belong", f"{eps} left out"
            )
        for p in _nodes(rhs, sp.Pow):
            if p.exp.is_Number and not p.exp.is_Integer and eps not in p.base.free_symbols:
                new = rhs.xreplace({p: sp.Pow(p.base + eps, p.exp)})
                yield Edit(
                    t, new, Kind.EPS, f"leaves {eps} out of {_text(p)}", f"{eps} added to {_text(p.base)}"
                )


def _thresholds(d: Derivation, st: Statement) -> Iterator[Edit]:
    rhs, t = st.rhs, st.target
    flip = {">": "<", ">=": "<=", "<": ">", "<=": ">="}
    for rel in _nodes(rhs, Relational)[:NODES]:
        if rel.rel_op not in flip:
            continue
        for kink in kink_values(d):
            if rel.rhs.is_Number and rel.rhs != kink:
                new = rhs.xreplace({rel: Relational(rel.lhs, kink, rel.rel_op)})
                yield Edit(t, new, Kind.THRESHOLD, f"the threshold {_text(rel.rhs)} of where({_text(rel)}) is off the kink at {kink}",
                           f"threshold {kink}")  # fmt: skip
        new = rhs.xreplace({rel: Relational(rel.lhs, rel.rhs, flip[rel.rel_op])})
        yield Edit(
            t,
            new,
            Kind.THRESHOLD,
            f"the comparison of where({_text(rel)}) is reversed",
            "comparison reversed",
        )


def _scoped(e: sp.Expr, ranges: dict, path=()) -> Iterator[tuple[sp.Indexed, tuple, dict]]:
    """Every read with its path and the indices in scope there with their sizes (the free ones, and
    those of the sums around it)."""
    if isinstance(e, sp.Indexed):
        yield e, path, ranges
        return
    if isinstance(e, sp.Sum):
        inner = dict(ranges)
        for i, _lo, hi in e.limits:
            inner[i] = sp.expand(hi + 1)
        yield from _scoped(e.function, inner, (*path, 0))
        return
    for k, a in enumerate(e.args):
        if isinstance(a, sp.Expr):
            yield from _scoped(a, ranges, (*path, k))


def _indices(d: Derivation, st: Statement) -> Iterator[Edit]:
    rhs, t = st.rhs, st.target
    batch = d.shape(d.upstream)[0] if d.upstream in d.tensors and d.shape(d.upstream) else None
    for a, b in itertools.combinations(st.indices, 2):
        if st.ranges.get(a) == st.ranges.get(b):
            new = rhs.xreplace({a: b, b: a})
            yield Edit(t, new, Kind.TRANSPOSE, f"is the transpose: {a.name} and {b.name} are swapped",
                       f"{a.name} and {b.name} swapped")  # fmt: skip
    for total in _nodes(rhs, sp.Sum)[:NODES]:
        for i, _lo, hi in total.limits:
            for free, size in st.ranges.items():
                if size == sp.expand(hi + 1) and len(total.limits) > 1:
                    rest = [lim for lim in total.limits if lim[0] != i]
                    new = rhs.xreplace({total: sp.Sum(total.function.xreplace({i: free}), *rest)})
                    mixes = batch is not None and size == batch
                    kind = Kind.BATCH_MIXING if mixes else Kind.SUM_AXIS
                    what = ", mixing samples," if mixes else ""
                    yield Edit(t, new, kind, f"sums over {i.name} too{what} where it should take {i.name} = {free.name}",
                               f"the sum over {i.name} taken at {free.name}")  # fmt: skip
    reads = list(_scoped(rhs, dict(st.ranges)))
    for read in list(dict.fromkeys(r for r, _, _ in reads)):
        idx = list(read.indices)
        for a, b in itertools.combinations(range(len(idx)), 2):
            if idx[a] != idx[b]:
                swapped = list(idx)
                swapped[a], swapped[b] = idx[b], idx[a]
                new_read = read.base[tuple(swapped)]
                yield Edit(t, rhs.xreplace({read: new_read}), Kind.TRANSPOSE, f"{_text(read)} where {_text(new_read)} belongs",
                           f"indices of {_text(read)} swapped")  # fmt: skip
    for read, path, scope in reads[: NODES * 2]:
        for k, i in enumerate(read.indices):
            if i not in scope:
                continue
            for other, size in scope.items():
                if other != i and size == scope[i] and other not in read.indices:
                    renamed = list(read.indices)
                    renamed[k] = other
                    new_read = read.base[tuple(renamed)]
                    yield Edit(t, replaced_at(rhs, path, new_read), Kind.WRONG_INDEX,
                               f"{_text(read)} where {_text(new_read)} belongs", f"{_text(read)} replaced by {_text(new_read)}")  # fmt: skip


def _occurrences(e: sp.Expr, path=()) -> Iterator[tuple[sp.Expr, tuple]]:
    """Every node of `e` with its path (argument positions from the root)."""
    yield e, path
    for k, a in enumerate(e.args):
        if isinstance(a, sp.Basic):
            yield from _occurrences(a, (*path, k))


def replaced_at(e: sp.Expr, path: tuple, new: sp.Expr) -> sp.Expr:
    """`e` with the one node at `path` replaced by `new`."""
    if not path:
        return new
    args = list(e.args)
    args[path[0]] = replaced_at(args[path[0]], path[1:], new)
    return e.func(*args)


def _neighbours(d: Derivation, st: Statement) -> Iterator[Edit]:
    """A read of another tensor of the same shape: everywhere the read appears, or at one place of it (the
    value of a where() but not its condition), or as one factor of a square."""
    rhs, t = st.rhs, st.target
    names = readable_names(d, st)
    shapes = {n: _shape(d, n) for n in names}

    def others(read):
        name = read.base.label.name
        return [base(o)[read.indices] for o in names
                if o != name and shapes.get(o) is not None and shapes[o] == shapes.get(name)]  # fmt: skip

    places: dict[sp.Indexed, list[tuple]] = {}
    for node, path in _occurrences(rhs):
        if isinstance(node, sp.Indexed):
            places.setdefault(node, []).append(path)
    for read in list(places)[: NODES * 2]:
        for new_read in others(read):
            message, does = (
                f"reads {_text(read)} where {_text(new_read)} belongs",
                f"{_text(read)} replaced by {_text(new_read)}",
            )
            yield Edit(t, rhs.xreplace({read: new_read}), Kind.WRONG_VARIABLE, message, does)
            if len(places[read]) > 1:
                for path in places[read]:
                    yield Edit(
                        t, replaced_at(rhs, path, new_read), Kind.WRONG_VARIABLE, message, does + " (once)"
                    )
    for p in _nodes(rhs, sp.Pow):
        if isinstance(p.base, sp.Indexed) and p.exp == 2:
            for new_read in others(p.base):
                yield Edit(t, rhs.xreplace({p: p.base * new_read}), Kind.WRONG_VARIABLE,
                           f"reads {_text(p.base)} where {_text(new_read)} belongs (in {_text(p)})",
                           f"{_text(p)} replaced by {_text(p.base * new_read)}")  # fmt: skip


def _upstream(d: Derivation, st: Statement) -> Iterator[Edit]:
    """The upstream gradient multiplied in, at the statement's indices over the same sizes."""
    if d.upstream not in d.tensors or d.upstream in {r.base.label.name for r in st.rhs.atoms(sp.Indexed)}:
        return
    shape = d.shape(d.upstream)
    options = [[i for i, s in st.ranges.items() if s == size] for size in shape]
    for choice in itertools.product(*options):
        if len(set(choice)) == len(choice):
            up = base(d.upstream)[choice]
            yield Edit(st.target, st.rhs * up, Kind.UPSTREAM_MISSING, f"leaves out the upstream gradient {_text(up)}",
                       f"multiplied by {_text(up)}")  # fmt: skip


def multiplied(st: Statement, factor: sp.Expr) -> sp.Expr:
    """st's right-hand side times `factor`; a mask where(c, 1, 0) is written where(c, rhs, 0)."""
    if (
        isinstance(factor, sp.Piecewise)
        and len(factor.args) == 2
        and factor.args[0][0] == 1
        and factor.args[1][0] == 0
    ):
        return sp.Piecewise((st.rhs, factor.args[0][1]), (0, True))
    return st.rhs * factor
