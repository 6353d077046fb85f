"""The conditions a proof holds under, stated in the derivation's own names.

A proof shows two normal forms equal as rational functions of independent atoms; that equality says
the written and the true gradient agree wherever both are defined: every denominator non-zero, every
square root of a non-negative base (positive in a denominator), every log of a positive argument, every
step away from its kink. `collect` reads these off the two sides the proof compared; the domain rules
(one-hot rows sum to 1, ...) come from the normal form. A condition that the declared domains make true
for every input (`exp(x) > 0`, `var[j] + eps > 0` with var a mean of squares and eps = 1e-5) is marked
`always` and shown apart.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import mpmath
import sympy as sp

from ..model import Derivation
from ..primitives import sigmoid, softplus
from .algebra import Bound, Equal, Rule, RuleKind, Step


class ConditionKind(StrEnum):
    NONZERO = "nonzero"  # a denominator
    POSITIVE = "positive"  # a square root in a denominator, a log's argument
    NONNEGATIVE = "nonnegative"  # a square root
    KINK = "kink"  # a max, min, abs or where away from its kink
    ONE_MAXIMUM = "one-maximum"  # a window maximum taken at one position of the window only (no ties)
    DOMAIN = "domain"  # a fact of an input's declared domain


@dataclass(frozen=True)
class Condition:
    """`expr` (in the derivation's names) is non-zero, positive, ... for every value of the free indices
    in `ranges` (index, size); for a domain rule, `expr` is the sum that equals 1 or the entry whose
    square is itself; for one maximum per window, the number of the window's positions (inside the
    input) whose entry equals the maximum, which is 1."""

    kind: ConditionKind
    expr: sp.Expr
    ranges: tuple[tuple[sp.Symbol, sp.Symbol], ...]
    text: str
    always: bool = False
    rule: Rule | None = None

    def holds(self, values: Mapping[str, object], sizes: Mapping[sp.Symbol, int]) -> bool:
        """Whether the condition is true at every index value, with tensors bound to `values` (mpf
        arrays by name) and sizes to `sizes`: how a test shows a stated condition is a true statement."""
        from .selfcheck import StepEvaluator

        ev = StepEvaluator(values, sizes)
        names = [i for i, _ in self.ranges]
        for at in itertools.product(*(range(sizes[s]) for _, s in self.ranges)):
            v = ev(self.expr, dict(zip(names, at, strict=True)))
            if not _true(self.kind, self.rule, v):
                return False
        return True


def _true(kind: ConditionKind, rule: Rule | None, v) -> bool:
    if kind is ConditionKind.DOMAIN:
        target = mpmath.mpf(1) if rule is not None and rule.kind is RuleKind.ROW_SUM else None
        return v == target if target is not None else v * v == v
    if kind is ConditionKind.ONE_MAXIMUM:
        return v == 1
    if kind is ConditionKind.POSITIVE:
        return v > 0
    if kind is ConditionKind.NONNEGATIVE:
        return v >= 0
    return v != 0


class Signs:
    """What the declared domains say about the sign of an expression: 1 (positive for every input), 0
    (non-negative) or None (unknown). Forward names are judged by their definitions."""

    def __init__(self, d: Derivation):
        self.d = d
        self.sizes = frozenset(d.sizes.values())
        self.forward = {s.target: s.rhs for s in d.forward}
        self._memo: dict[str, int | None] = {}

    def of_name(self, name: str) -> int | None:
        if name in self._memo:
            return self._memo[name]
        self._memo[name] = None  # a cycle (none in a valid forward) stays unknown
        if name in self.forward:
            sign = self.sign(self.forward[name])
        elif name in self.d.fixed_values:
            v = self.d.fixed_values[name]
            sign = 1 if v > 0 else 0 if v == 0 else None
        elif name in self.d.inputs:
            dom = self.d.domain(name)
            sign = {"positive": 1, "simplex": 1, "onehot": 0}.get(dom.kind)
            if dom.kind == "uniform" and dom.low is not None:
                sign = 1 if dom.low > 0 else 0 if dom.low == 0 else None
        else:
            sign = None
        self._memo[name] = sign
        return sign

    def sign(self, e: sp.Expr) -> int | None:
        if e.is_Number:
            return 1 if e > 0 else 0 if e == 0 else None
        if isinstance(e, sp.Symbol):
            return 1 if e in self.sizes else self.of_name(e.name)
        if isinstance(e, sp.Indexed):
            return self.of_name(e.base.label.name)
        if isinstance(e, sp.exp | sigmoid | softplus):
            return 1
        if isinstance(e, Step | Bound | Equal | sp.Abs):
            return 0
        if isinstance(e, sp.Sum):
            return self.sign(e.function)  # every range holds at least one index value
        if isinstance(e, sp.Pow):
            base = self.sign(e.base)
            if base == 1:
                return 1
            if e.exp.is_Integer and e.exp % 2 == 0:
                return 0
            return 0 if base == 0 and e.exp.is_positive else None
        if isinstance(e, sp.Add | sp.Mul | sp.Max):
            signs = [self.sign(a) for a in e.args]
            if isinstance(e, sp.Max) and 1 in signs:
                return 1
            if None in signs:
                return 0 if isinstance(e, sp.Max) and 0 in signs else None
            if isinstance(e, sp.Mul):
                return 1 if all(s == 1 for s in signs) else 0
            return 1 if 1 in signs else 0
        return None


def collect(
    exprs: list[sp.Expr], ranges: Mapping[sp.Symbol, sp.Symbol], d: Derivation
) -> list[tuple[ConditionKind, sp.Expr, dict]]:
    """Every (kind, quantity, ranges of its free indices) the expressions need: denominators, square-root
    bases, log arguments and step arguments, with the range of every index they use."""
    found: list[tuple[ConditionKind, sp.Expr, dict]] = []
    sizes = frozenset(d.sizes.values())

    def note(kind, quantity, env):
        if quantity.is_Number or quantity in sizes:
            return
        free = {i: env[i] for i in quantity.free_symbols if i in env}
        found.append((kind, quantity, free))

    def walk(e, env):
        if isinstance(e, sp.Sum):
            inner = dict(env)
            for k, _lo, hi in e.limits:
                inner[k] = _size_of(hi)
            walk(e.function, inner)
            return
        if isinstance(e, sp.Pow):
            if not e.exp.is_Integer:
                note(ConditionKind.POSITIVE if e.exp.is_negative else ConditionKind.NONNEGATIVE, e.base, env)
            elif e.exp.is_negative:
                note(ConditionKind.NONZERO, e.base, env)
        elif isinstance(e, sp.log):
            note(ConditionKind.POSITIVE, e.args[0], env)
        elif isinstance(e, Step):
            note(ConditionKind.KINK, e.args[0], env)
        for a in e.args:
            if isinstance(a, sp.Expr):
                walk(a, env)

    for e in exprs:
        walk(e, dict(ranges))
    return found


def _size_of(hi: sp.Expr) -> sp.Expr:
    return sp.expand(hi + 1)


def readable(e: sp.Expr, ranges: Mapping[sp.Symbol, sp.Symbol], keep=()) -> tuple[sp.Expr, dict]:
    """`e` with its index symbols renamed after their sizes (n for N, k for K, k2 for a second K index),
    the bound ones of each sum included; the indices in `keep` keep their names. Returns the renamed
    expression and the ranges of its free indices under their new names."""
    used = {str(i) for i in keep}
    rename = {}
    new_ranges = {}
    for i in sorted(ranges, key=lambda s: (s not in keep, str(ranges[s]), str(s))):
        if i not in e.free_symbols:
            continue
        new = i if i in keep else _fresh_name(ranges[i], used)
        used.add(str(new))
        rename[i] = new
        new_ranges[new] = ranges[i]
    return _rename_bound(e.xreplace(rename), used), new_ranges


def _fresh_name(size, used: set) -> sp.Symbol:
    base = str(size).lower() if isinstance(size, sp.Symbol) else "i"
    name = base
    for k in itertools.count(2):
        if name not in used:
            break
        name = f"{base}{k}"
    return sp.Symbol(name, integer=True)


def _rename_bound(e: sp.Expr, used: set) -> sp.Expr:
    if not e.has(sp.Sum):
        return e
    if isinstance(e, sp.Sum):
        inner_used = set(used)
        body = e.function
        limits = []
        for k, lo, hi in e.limits:
            new = _fresh_name(_size_of(hi), inner_used | {str(s) for s in e.free_symbols})
            inner_used.add(str(new))
            body = body.xreplace({k: new})
            limits.append((new, lo, hi))
        return sp.Sum(_rename_bound(body, inner_used), *limits)
    return e.func(*(_rename_bound(a, used) if isinstance(a, sp.Expr) else a for a in e.args))
