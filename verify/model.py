"""The data model of a derivation: what the parser produces and every other module reads.

A `Derivation` holds its statements as SymPy expressions in index notation: tensors are `Indexed`
objects over `IndexedBase`s, scalars and sizes are `Symbol`s, sums are `Sum`s whose upper limit is the
size minus one. Nothing here parses text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import sympy as sp


class DerivationError(Exception):
    """A parse or semantic error at a place in a derivation file: printed as `file:line:col: message`."""

    def __init__(self, message: str, line: int = 0, column: int = 0, file: str | None = None):
        super().__init__(message)
        self.message, self.line, self.column, self.file = message, line, column, file

    def __str__(self) -> str:
        where = self.file or "<text>"
        return f"{where}:{self.line}:{self.column}: {self.message}"


DOMAINS = ("normal", "positive", "uniform", "simplex", "onehot")


@dataclass(frozen=True)
class Domain:
    """How an input is sampled: `kind` is one of DOMAINS; `axis` is the simplex / one-hot axis."""

    kind: str
    low: Fraction | None = None
    high: Fraction | None = None
    axis: int | None = None

    def describe(self) -> str:
        """The domain as it is written in a derivation file (`axis` 0-based, as NumPy counts)."""
        if self.kind == "uniform":
            return f"uniform({self.low}, {self.high})"
        if self.axis is not None:
            return f"{self.kind} along axis {self.axis}"
        return self.kind


NORMAL = Domain("normal")
SCALAR_DEFAULT = Domain("uniform", Fraction(1, 2), Fraction(2))


@dataclass(frozen=True)
class Tensor:
    """A named value: an input, a forward definition, the upstream gradient, a gradient or a helper.

    `shape` holds one size symbol per axis (empty for a scalar)."""

    name: str
    shape: tuple[sp.Symbol, ...]
    role: str  # input | forward | upstream | gradient | helper


@dataclass(frozen=True)
class Statement:
    """`target[indices] = rhs`, with `rhs` a SymPy expression over Indexed tensors, scalars and sizes.

    `ranges` gives the size each free index ranges over (the parser knows it; nothing guesses it again
    later); a summed index's range is its Sum's limits."""

    target: str
    indices: tuple[sp.Symbol, ...]
    rhs: sp.Expr
    line: int
    column: int
    text: str
    of: str | None = None  # for a checked gradient dv: the name v; None for forward lines and helpers
    ranges: Mapping[sp.Symbol, sp.Symbol] = field(default_factory=dict, compare=False)

    @property
    def reads(self) -> set[str]:
        """The names of the tensors and scalars the right-hand side reads (sizes and indices aside)."""
        return reads(self.rhs)


def reads(expr: sp.Expr) -> set[str]:
    """Names of the tensors (`Indexed`) and real scalars (`Symbol`, not sizes or indices) in `expr`."""
    tensors = {a.base.label.name for a in expr.atoms(sp.Indexed)}
    scalars = {
        s.name for s in expr.free_symbols if isinstance(s, sp.Symbol) and s.is_real and not s.is_integer
    }
    return tensors | scalars


@dataclass
class Derivation:
    """A parsed, checked derivation. Sizes are SymPy symbols named by the forward's indices."""

    name: str
    file: str | None
    header: dict[str, str]
    forward: list[Statement]
    gradients: list[Statement]
    tensors: dict[str, Tensor]
    inputs: list[str]
    output: str
    upstream: str
    sizes: dict[str, sp.Symbol]
    fixed_sizes: dict[str, int] = field(default_factory=dict)
    fixed_values: dict[str, sp.Rational] = field(default_factory=dict)
    domains: dict[str, Domain] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.header.get("title", self.name)

    @property
    def checked(self) -> list[Statement]:
        """The gradient statements that are checked: those whose target is d + an input or intermediate."""
        return [s for s in self.gradients if s.of is not None]

    @property
    def helpers(self) -> list[Statement]:
        return [s for s in self.gradients if s.of is None]

    def statement(self, name: str) -> Statement:
        return next(s for s in self.forward + self.gradients if s.target == name)

    def shape(self, name: str) -> tuple[sp.Symbol, ...]:
        return self.tensors[name].shape

    def domain(self, name: str) -> Domain:
        """How input `name` is sampled: its declared domain, or the default for its rank."""
        if name in self.domains:
            return self.domains[name]
        return NORMAL if self.shape(name) else SCALAR_DEFAULT

    @property
    def scalar_output(self) -> bool:
        return not self.shape(self.output)

    def _repr_latex_(self) -> str:
        """Jupyter shows a derivation as its formulas."""
        from .notebook import formulas_latex

        return formulas_latex(self)


def base(name: str) -> sp.IndexedBase:
    return sp.IndexedBase(name, real=True)


def scalar(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def index(name: str) -> sp.Symbol:
    return sp.Symbol(name, integer=True)


def size(name: str) -> sp.Symbol:
    return sp.Symbol(name, integer=True, positive=True)
