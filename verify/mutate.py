"""Plausible mistakes in a derivation's gradient statements: mutants, each a whole derivation text with
one statement changed the way people get it wrong, labelled with the kind of mistake.

The checks must call every mutant wrong (or reject it as invalid); the diagnosis counts the kinds it
names; the prover must prove none. Kinds (`Kind`):

    sign           a term's sign flipped, or the whole right-hand side negated
    dropped-term   a term of a sum or a factor of a product left out (a mask dropped)
    size-factor    a 1/N missing, doubled, or one where none belongs
    wrong-size     one size where another belongs (N for J)
    transpose      two indices of a read swapped
    sum-axis       a sum over the other axis of the tensors it reads
    eps-dropped    a small fixed constant (eps) left out
    exponent       a power one off (-1/2 for -3/2), or a read squared
    neighbour      a neighbouring variable of the same shape read instead (x for xhat, y for dy)
    threshold      a where() condition moved off its kink by 1/128, or its comparison reversed

Statements written as chains, Jacobians, matrices or LaTeX are left as they are: a mutant replaces one
index-notation statement by another.

A candidate that equals the original statement wherever it is evaluated (at exact samples drawn from a
seed of its own, including draws with kinks placed close) is not a mistake and is left out: dropping
`sum(x[n, j] - mu[j], n)` from batch norm's dmu changes nothing, since that sum is zero.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import StrEnum

import mpmath
import numpy as np
import sympy as sp
from sympy.core.relational import Relational

from . import sampling
from .exacteval import DIGITS, run_statement
from .model import Derivation, DerivationError, Statement
from .parse import parse
from .unparse import statement_text


class Kind(StrEnum):
    SIGN = "sign"
    DROPPED_TERM = "dropped-term"
    SIZE_FACTOR = "size-factor"
    WRONG_SIZE = "wrong-size"
    TRANSPOSE = "transpose"
    SUM_AXIS = "sum-axis"
    EPS_DROPPED = "eps-dropped"
    EXPONENT = "exponent"
    NEIGHBOUR = "neighbour"
    THRESHOLD = "threshold"


@dataclass(frozen=True)
class Mutant:
    """One mistake: `statement` is the target of the statement changed, `line` that statement as the
    mutant writes it, `text` the whole derivation with it."""

    statement: str
    kind: Kind
    line: str
    text: str


SHIFT = sp.Rational(1, 128)  # a threshold moved this far off its kink (sampling.NEAR is smaller)
PER_STATEMENT = 12  # mutants kept per statement, spread over the kinds
FILTER_SEED = 7_919  # the seed of the samples that tell a mistake from an equivalent rewrite


def mutants(d: Derivation, text: str, per_statement: int = PER_STATEMENT) -> list[Mutant]:
    """Up to `per_statement` mutants of every gradient statement (checked ones and helpers) of `d`,
    parsed from `text`, each a real mistake: it parses to something else, or it does not parse."""
    draws = sampling.samples(d, FILTER_SEED)
    out = []
    for st in d.gradients:
        if st.chain is not None or st.jacobian is not None or st.source:
            continue  # a step of a chain, a Jacobian, a matrix or LaTeX line: not one index statement
        found: dict[str, Mutant | None] = {}
        for kind, rhs in _in_turn(_candidates(d, st)):
            line = statement_text(st, rhs)
            if line in found or rhs == st.rhs:
                continue
            mutant = Mutant(st.target, kind, line, replace_statement(text, st, line))
            found[line] = mutant if _differs(d, mutant, draws) else None
            if sum(m is not None for m in found.values()) == per_statement:
                break
        out += [m for m in found.values() if m is not None]
    return out


def _in_turn(candidates):
    """The candidates with the kinds taking turns, so that each kind is represented."""
    by_kind: dict[Kind, list] = {}
    for kind, rhs in candidates:
        by_kind.setdefault(kind, []).append((kind, rhs))
    return [c for turn in itertools.zip_longest(*by_kind.values()) for c in turn if c is not None]


def replace_statement(text: str, st: Statement, line: str) -> str:
    """`text` with the physical lines of statement `st` replaced by `line`."""
    lines = text.splitlines()
    first = st.line - 1
    remaining, last = st.text.count("\n"), first
    while remaining:
        last += 1
        if lines[last].split("#", 1)[0].strip():
            remaining -= 1
    return "\n".join(lines[:first] + [line] + lines[last + 1 :]) + "\n"


def _differs(d: Derivation, mutant: Mutant, draws) -> bool:
    """Whether the mutant is a mistake: it does not parse, or some gradient statement takes another value
    at one of the samples (or no real one)."""
    try:
        m = parse(mutant.text, d.file, d.name)
    except DerivationError:
        return True
    if set(m.inputs) != set(d.inputs) or [st.target for st in m.gradients] != [
        st.target for st in d.gradients
    ]:
        return True
    changed = [st.target for st in d.gradients].index(mutant.statement)
    for sample in draws:
        values = dict(sample.forward)
        with mpmath.workdps(DIGITS):
            for st in m.gradients[changed:]:  # the forward and the statements before are unchanged
                values[st.target] = run_statement(st, m, values, sample.sizes)
                mine, theirs = np.ravel(values[st.target]), np.ravel(sample.forward[st.target])
                if any(not mpmath.isfinite(a) or abs(a - b) > mpmath.mpf(10) ** -30 * (1 + abs(b))
                       for a, b in zip(mine, theirs, strict=True)):  # fmt: skip
                    return True
    return False


# -----------------------------------------------------------------------------------------------------
# The mistakes, as rewrites of a statement's right-hand side.


def _candidates(d: Derivation, st: Statement):
    """Every rewrite, by kind, the specific kinds first: a rewrite two kinds produce (eps dropped is a
    dropped term too) keeps the first, more telling label."""
    rhs = st.rhs
    yield from ((Kind.EPS_DROPPED, r) for r in _eps_dropped(d, rhs))
    yield from ((Kind.THRESHOLD, r) for r in _thresholds(rhs))
    yield from ((Kind.SUM_AXIS, r) for r in sum_axes(d, st))
    yield from ((Kind.WRONG_SIZE, r) for r in _wrong_sizes(d, rhs))
    yield from ((Kind.SIGN, r) for r in _signs(rhs))
    yield from ((Kind.EXPONENT, r) for r in _exponents(rhs))
    yield from ((Kind.SIZE_FACTOR, r) for r in _size_factors(d, rhs))
    yield from ((Kind.TRANSPOSE, r) for r in _transposes(rhs))
    yield from ((Kind.NEIGHBOUR, r) for r in _neighbours(d, st))
    yield from ((Kind.DROPPED_TERM, r) for r in _dropped(rhs))


def _nodes(e: sp.Expr, kind) -> list:
    return list(dict.fromkeys(n for n in sp.preorder_traversal(e) if isinstance(n, kind)))


def _signs(rhs):
    yield -rhs
    for add in _nodes(rhs, sp.Add)[:3]:
        for t in add.args[:4]:
            yield rhs.xreplace({add: sp.Add(*[-a if a is t else a for a in add.args])})


def _dropped(rhs):
    for add in _nodes(rhs, sp.Add)[:3]:
        for t in add.args[:4]:
            yield rhs.xreplace({add: sp.Add(*[a for a in add.args if a is not t])})
    for mul in _nodes(rhs, sp.Mul)[:3]:
        for f in mul.args[:4]:
            if not f.is_Number:
                yield rhs.xreplace({mul: sp.Mul(*[a for a in mul.args if a is not f])})
    for where in _nodes(rhs, sp.Piecewise)[:2]:
        yield rhs.xreplace({where: where.args[0][0]})  # the mask left out


def _sizes_in(d: Derivation, e) -> list[sp.Symbol]:
    return [s for s in d.sizes.values() if s in e.free_symbols]


def _size_factors(d: Derivation, rhs):
    present = _sizes_in(d, rhs)
    for s in present:
        yield rhs.xreplace({s: sp.Integer(1)})
        yield rhs / s
    for s in [s for s in d.sizes.values() if s not in present][:2]:
        yield rhs / s
        yield rhs * s


def _wrong_sizes(d: Derivation, rhs):
    for s in _sizes_in(d, rhs):
        for other in d.sizes.values():
            if other != s:
                yield rhs.xreplace({s: other})


def _transposes(rhs):
    for read in _nodes(rhs, sp.Indexed)[:4]:
        idx = list(read.indices)
        if len(idx) >= 2 and idx[0] != idx[1]:
            idx[0], idx[1] = idx[1], idx[0]
            yield rhs.xreplace({read: read.base[tuple(idx)]})


def sum_axes(d: Derivation, st: Statement):
    """A sum over m of reads t[p, m] (p free) turned into a sum over t's other axis: t[m', q], with m' a
    new index over p's size and q the statement's free index over m's size."""
    for total in _nodes(st.rhs, sp.Sum):
        if len(total.limits) != 1:
            continue
        m, _, hi = total.limits[0]
        reads = [r for r in _nodes(total.function, sp.Indexed) if len(r.indices) == 2 and m in r.indices]
        for read in reads[:2]:
            p = next((i for i in read.indices if i != m), None)
            if p is None or p not in st.ranges:
                continue
            q = next((i for i, size in st.ranges.items() if size == hi + 1 and i != p), None)
            if q is None:
                continue
            fresh = sp.Symbol(f"{m.name}{m.name}", integer=True)
            body = total.function.xreplace({p: fresh, m: q})
            yield st.rhs.xreplace({total: sp.Sum(body, (fresh, 0, st.ranges[p] - 1))})


def _eps_dropped(d: Derivation, rhs):
    for name, value in d.fixed_values.items():
        symbol = sp.Symbol(name, real=True)
        if symbol in rhs.free_symbols and 0 < abs(value) < sp.Rational(1, 100):
            yield rhs.xreplace({symbol: sp.Integer(0)})


def _exponents(rhs):
    powers = [p for p in _nodes(rhs, sp.Pow) if p.exp.is_Number and p.exp != -1]
    for p in powers[:3]:
        for exp in (p.exp + 1, p.exp - 1):
            if exp != 0:
                yield rhs.xreplace({p: sp.Pow(p.base, exp)})
    if not powers:
        for read in _nodes(rhs, sp.Indexed)[:2]:
            yield rhs.xreplace({read: read**2})


def _neighbours(d: Derivation, st: Statement):
    """A read of t replaced by a read of another tensor of the same shape that the statement may read:
    an input, a forward value or the upstream gradient."""
    allowed = [*d.inputs, *(s.target for s in d.forward), d.upstream]
    for read in _nodes(st.rhs, sp.Indexed)[:4]:
        name = read.base.label.name
        shape = d.shape(name) if name in d.tensors else None
        others = [n for n in allowed if n != name and n in d.tensors and d.shape(n) == shape]
        for other in others[:3]:
            yield st.rhs.xreplace({read: sp.IndexedBase(other, real=True)[read.indices]})


def _thresholds(rhs):
    flip = {">": "<", ">=": "<=", "<": ">", "<=": ">="}
    for rel in _nodes(rhs, Relational)[:2]:
        if rel.rel_op not in flip:
            continue
        yield rhs.xreplace({rel: Relational(rel.lhs, rel.rhs + SHIFT, rel.rel_op)})
        yield rhs.xreplace({rel: Relational(rel.lhs, rel.rhs - SHIFT, rel.rel_op)})
        yield rhs.xreplace({rel: Relational(rel.lhs, rel.rhs, flip[rel.rel_op])})
