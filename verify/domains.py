"""Where the inputs must lie for the forward to be real and finite, read off the forward itself.

A logarithm needs a positive argument, a square root or another fractional power a non-negative one, a
negative power (a denominator) a non-zero one, a power whose exponent is a value (x ** a) a positive one. Where such an argument is an input itself (`log(x[n, k])`
with `x` undeclared), the input is drawn from the domain that keeps it real: `positive`. Every other
condition (a compound argument, a denominator) is met by redrawing (`verify.sampling`), and all of them
are shown by `show` and in the report, so that a user sees what the checks assumed.

A domain written in `[inputs]` always wins over an inferred one.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .model import Derivation, Domain
from .primitives import BY_NODE
from .unparse import expression_text

POSITIVE = Domain("positive")


@dataclass(frozen=True)
class Condition:
    """`expr` must be `need` (positive, nonnegative or nonzero) for the forward to be real and finite;
    `where` is the call or power that needs it, in the derivation's own words."""

    expr: sp.Expr
    need: str
    where: str

    def describe(self) -> str:
        sign = {"positive": "> 0", "nonnegative": ">= 0", "nonzero": "!= 0"}[self.need]
        return f"{self.where} needs {expression_text(self.expr)} {sign}"


@dataclass(frozen=True)
class Inferred:
    """A domain inferred for an input, and the condition it comes from."""

    domain: Domain
    why: Condition


def conditions(d: Derivation) -> list[Condition]:
    """Every condition the forward puts on the values it reads, in order, each once."""
    found: list[Condition] = []
    for st in d.forward:
        for node in sp.preorder_traversal(st.rhs):
            need, arg = _need(node)
            if need is not None:
                c = Condition(arg, need, expression_text(node))
                if c not in found:
                    found.append(c)
    return found


def _need(node) -> tuple[str | None, sp.Expr | None]:
    prim = BY_NODE.get(type(node))
    if prim is not None and prim.domain is not None:
        return prim.domain, node.args[0]
    if isinstance(node, sp.Pow) and node.exp.is_Number:
        p = node.exp
        if not p.is_Integer:
            return ("positive" if p < 0 else "nonnegative"), node.base
        if p < 0:
            return "nonzero", node.base
        return None, None  # x**2, x**3: real for every x (inferring x > 0 hid |x| written for x)
    if isinstance(node, sp.Pow):  # a power whose exponent is a value: real for a positive base
        return "positive", node.base
    return None, None


_INFERRED: dict[int, tuple] = {}


def inferred(d: Derivation) -> dict[str, Inferred]:
    """The domains inferred for inputs that declare none: `positive` for an input that is itself the
    argument of a logarithm, a square root or a fractional or negative power."""
    if id(d) not in _INFERRED:
        out: dict[str, Inferred] = {}
        for c in conditions(d):
            name = _input_read(d, c.expr)
            if name is None or name in out or name in d.domains or name in d.fixed_values:
                continue
            if c.need in ("positive", "nonnegative") and not _positive_already(d, name):
                out[name] = Inferred(POSITIVE, c)
        _INFERRED[id(d)] = (d, out)  # holding d keeps its id from being reused
    return _INFERRED[id(d)][1]


def _input_read(d: Derivation, expr) -> str | None:
    if isinstance(expr, sp.Indexed) and expr.base.label.name in d.inputs:
        return expr.base.label.name
    if isinstance(expr, sp.Symbol) and expr.name in d.inputs:
        return expr.name
    return None


def _positive_already(d: Derivation, name: str) -> bool:
    domain = d.domain(name)
    if domain.kind == "uniform":
        assert domain.low is not None, "a uniform domain has its bounds"
        return domain.low > 0
    return domain.kind in ("positive", "simplex")


def of(d: Derivation, name: str) -> Domain:
    """How input `name` is drawn: its declared domain, else an inferred one, else the default."""
    if name in d.domains:
        return d.domains[name]
    found = inferred(d).get(name)
    return found.domain if found else d.domain(name)


def describe(d: Derivation, name: str) -> str:
    """An input's domain in words, saying where it was inferred from."""
    found = None if name in d.domains else inferred(d).get(name)
    domain = of(d, name).describe()
    return f"{domain} (inferred: {found.why.describe()})" if found else domain
