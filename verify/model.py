"""The data model of a derivation: what the parser produces and every other module reads.

A `Derivation` holds its statements as SymPy expressions in index notation: tensors are `Indexed`
objects over `IndexedBase`s, scalars and sizes are `Symbol`s, sums are `Sum`s whose upper limit is the
size minus one. Nothing here parses text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import sympy as sp


class DerivationError(Exception):
    """A parse or semantic error at a place in a derivation file: printed as `file:line:col: message`."""

    def __init__(self, message: str, line: int = 0, column: int = 0, file: str | None = None):
        # one line, whatever file text the message quotes (a token spanning a line break)
        message = " ".join(message.split())
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
class Jacobian:
    """What a Jacobian statement `dy[n,k]/dx[p,m] = expr` claims: the partial derivative of forward value
    `of` (y) at `of_indices` with respect to `wrt` (x, an input or intermediate) at `wrt_indices`. A
    letter in both index lists states a block: entries where the two differ are claimed zero."""

    of: str
    of_indices: tuple[sp.Symbol, ...]
    wrt: str
    wrt_indices: tuple[sp.Symbol, ...]
    named: bool = False  # given a name (`J[n,k,m] = dy[n,k]/dx[n,m] = ...`) that later statements may use

    @property
    def label(self) -> str:
        return f"d{self.of}/d{self.wrt}"

    @property
    def shared(self) -> tuple[sp.Symbol, ...]:
        """The letters of the block: those in both the numerator's and the denominator's indices."""
        return tuple(i for i in self.of_indices if i in self.wrt_indices)


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
    jacobian: Jacobian | None = None  # for a Jacobian statement: what it claims (its target is its name)
    chain: tuple[int, int] | None = None  # (k, n) for step k of a chain of n steps `dW = e1 = ... = en`
    source: str = ""  # the statement as written, where it was not index notation (matrix, LaTeX)
    restated: int = 0  # for a later statement of a gradient already stated: its line (checked; never read)

    @property
    def checked(self) -> bool:
        """Whether the statement is a claim the oracles check: a gradient dv or a Jacobian."""
        return self.of is not None or self.jacobian is not None

    @property
    def claim(self) -> str:
        """What the statement claims, by name: dW (every step of its chain too), or dy/dx."""
        return self.jacobian.label if self.jacobian else step_of(self.target)

    @property
    def label(self) -> str:
        """How reports name the statement: dW, dy/dx, and `dW step 2/3` for a step of a chain."""
        name = f"{self.claim} (line {self.restated})" if self.restated else self.claim
        return f"{name} step {self.chain[0]}/{self.chain[1]}" if self.chain else name

    @property
    def reads(self) -> set[str]:
        """The names of the tensors and scalars the right-hand side reads (sizes and indices aside)."""
        return reads(self.rhs)


def step_name(target: str, k: int) -> str:
    """The internal name of step k of a chain whose conclusion is `target` (`dW__1`): reserved, so that no
    statement can read a step; later statements read the conclusion."""
    return f"{target}__{k}"


def step_of(name: str) -> str:
    """The target a chain step's internal name belongs to (`dW__1` -> `dW`)."""
    return re.sub(r"__\d+\Z", "", name)


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
    unchecked: list[tuple[int, int, str]] = field(default_factory=list)  # LaTeX steps that are no formula
    text: str = field(default="", repr=False)  # the text it was parsed from (a fix is checked in it)

    @property
    def title(self) -> str:
        return self.header.get("title", self.name)

    @property
    def checked(self) -> list[Statement]:
        """The gradient statements that are checked: those whose target is d + an input or intermediate."""
        return [s for s in self.gradients if s.of is not None]

    @property
    def helpers(self) -> list[Statement]:
        """Shorthands that later statements expand: helpers, and Jacobian statements given a name."""
        return [s for s in self.gradients if s.of is None]

    @property
    def jacobians(self) -> list[Statement]:
        return [s for s in self.gradients if s.jacobian is not None]

    @property
    def claims(self) -> list[Statement]:
        """Every statement the oracles check, in file order: gradients and Jacobians."""
        return [s for s in self.gradients if s.checked]

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
