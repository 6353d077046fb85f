"""The data model of a derivation: what the parser produces and every other module reads.

A `Derivation` holds its statements as SymPy expressions in index notation: tensors are `Indexed`
objects over `IndexedBase`s, scalars and sizes are `Symbol`s, sums are `Sum`s whose upper limit is the
size minus one (or the explicit limits written, `sum(e, (l, -1, 0))`), a windowed maximum is a
`WindowMax` over its limits. A subscript may be affine in the indices (`x[n, c, S*i + kh - P]`); a
read outside a tensor's axis is zero. Integer constants (stride, padding) are `constant` symbols.
Nothing here parses text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import sympy as sp
from sympy.concrete.expr_with_limits import ExprWithLimits
from sympy.core.relational import Relational


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
    # sizes computed from others, `I = (H + 2*P - KH) / S + 1` in [sizes]: SymPy, floor division as floor()
    size_relations: dict[str, sp.Expr] = field(default_factory=dict)
    constants: dict[str, int] = field(default_factory=dict)  # integer constants (stride S, padding P)
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

    @property
    def base(self) -> int:
        """Where the file's subscripts count from: 1 with `indexing: 1-based`, else 0."""
        return 1 if self.header.get("indexing") == "1-based" else 0

    def as_written(self, expr: sp.Expr) -> sp.Expr:
        """`expr` with its subscripts as the file writes them: counted from 1 again in a 1-based file
        (the parser holds every subscript 0-based: x[i] with i from 1 is x[i - 1] of an array)."""
        if not self.base:
            return expr
        explicit = {
            i
            for node in expr.atoms(sp.Sum, WindowMax)
            for i, lo, hi in node.limits
            if lo != 0 or not (hi + 1).is_Symbol
        }
        written = {}
        for a in expr.atoms(sp.Indexed):
            implicit = {
                s: s - 1
                for s in a.free_symbols
                if isinstance(s, sp.Symbol) and s.is_integer and not s.is_nonnegative and s not in explicit
            }
            written[a] = sp.Indexed(a.base, *(sp.expand((e + 1).xreplace(implicit)) for e in a.indices))
        return expr.xreplace(written)

    def complete_sizes(self, sizes: Mapping[str, int]) -> dict[str, int]:
        """`sizes` with the fixed sizes of [sizes] and every related size computed from them."""
        out = {**sizes, **self.fixed_sizes}
        values = {self.sizes[k]: v for k, v in out.items() if k in self.sizes}
        values.update({constant(k): v for k, v in self.constants.items()})
        for name, relation in self.size_relations.items():  # in dependency order
            out[name] = values[self.sizes[name]] = int(relation.xreplace(values))
        return out

    def window_sizes(self) -> set[str]:
        """The sizes of windows: fixed ones (a pooling's 3 x 3) and those an output size relation shrinks
        with (`shrinking`)."""
        values = {constant(k): v for k, v in self.constants.items()}
        return set(self.fixed_sizes) | {s.name for s in shrinking(self.size_relations.values(), values)}

    @property
    def windowed(self) -> bool:
        """Whether any statement reads a tensor at a shifted subscript, takes a windowed maximum, or pairs
        indices by a delta of affine ones (delta(q, 2*j), a zero-inserting upsampling)."""
        return any(
            st.rhs.has(WindowMax)
            or any(not i.is_Symbol for a in st.rhs.atoms(sp.Indexed) for i in a.indices)
            or any(not (i.is_Symbol or i.is_Integer) for a in st.rhs.atoms(sp.KroneckerDelta) for i in a.args)
            for st in self.forward + self.gradients
        )


def shrinking(relations, values: Mapping) -> set[sp.Symbol]:
    """The sizes the output sizes of `relations` shrink with, the others at `values`: the windows (KH in
    I = (H + 2*P - KH) / S + 1; every size at 64, the one tried at 128)."""
    out: set[sp.Symbol] = set()
    for relation in relations:
        r = relation.xreplace(values)
        typical = {s: 64 for s in r.free_symbols}
        out |= {s for s in r.free_symbols if r.xreplace({**typical, s: 128}) < r.xreplace(typical)}
    return out


def base(name: str) -> sp.IndexedBase:
    return sp.IndexedBase(name, real=True)


def scalar(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def index(name: str) -> sp.Symbol:
    return sp.Symbol(name, integer=True)


def size(name: str) -> sp.Symbol:
    return sp.Symbol(name, integer=True, positive=True)


def constant(name: str) -> sp.Symbol:
    """An integer constant of [sizes] that is not a size, such as a stride or a padding (0 allowed)."""
    return sp.Symbol(name, integer=True, nonnegative=True)


class WindowMax(ExprWithLimits):
    """max(expr, kh, kw): the largest value of `expr` over the limits, like a Sum with max for +.

    Positions where `expr` reads outside a tensor's axis take no part (the libraries pad max pooling with
    -inf, not zero). Its derivative is the derivative of `expr` at the position of the maximum: the
    sampler keeps every window's largest value apart from the others, so that position is unique."""

    is_real = True

    def _eval_derivative(self, wrt):
        return sp.Sum(WindowArgmax(self, *(lim[0] for lim in self.limits)) * sp.diff(self.function, wrt),
                      *self.limits)  # fmt: skip


class WindowArgmax(sp.Function):
    """WindowArgmax(window, kh, kw): 1 where (kh, kw) is the position of the window's maximum, else 0."""

    is_real = True
    is_integer = True

    def _eval_derivative(self, wrt):
        return sp.S.Zero


def fresh_sums(expr: sp.Expr) -> sp.Expr:
    """`expr` with the indices of each sum and windowed maximum renamed to fresh symbols inside it only.
    An index may be summed in one place and free in another (x[n, k] / sum(x[n, k], k)): whatever tells
    indices apart by their symbols (the lowering), or substitutes one for another (contracting a delta:
    sum(delta(i, k) * sum(w[i, k], k), i) must not become the trace sum(w[k, k], k)), needs them apart."""
    if not expr.has(sp.Sum, WindowMax):
        return expr
    if isinstance(expr, sp.Sum | WindowMax):
        fresh = {lim[0]: sp.Dummy(lim[0].name, integer=True) for lim in expr.limits}
        limits = [(fresh[i], lo, hi) for i, lo, hi in expr.limits]
        return expr.func(fresh_sums(expr.function).xreplace(fresh), *limits)
    args = [fresh_sums(a) for a in expr.args]
    if isinstance(expr, sp.Piecewise | sp.Max | sp.Min | Relational):
        return expr.func(*args, evaluate=False)
    return expr.func(*args)


def summands(e: sp.Expr) -> tuple[sp.Expr, ...]:
    """e's terms with products distributed over sums, and nothing else expanded: SymPy's expand would also
    make exp(a - b) exp(a) exp(-b), worse in float64, and exp(sum(a, n)) a Product of exps, which nothing
    here evaluates, prints or differentiates."""
    return sp.Add.make_args(sp.expand(e, power_exp=False))


def deltas_out(e: sp.Expr) -> sp.Expr:
    """where(c, delta(h, S*i + kh) * a, 0) as delta(h, S*i + kh) * where(c, a, 0): a Sum folds a product
    into a Piecewise with a zero branch, and a delta must be a factor of the summand to fix its index."""

    def out(pw):
        (a, cond), (zero, _) = pw.args
        deltas = [f for f in sp.Mul.make_args(a) if isinstance(f, sp.KroneckerDelta)]
        rest = sp.Mul(*[f for f in sp.Mul.make_args(a) if not isinstance(f, sp.KroneckerDelta)])
        return sp.Mul(*deltas) * sp.Piecewise((rest, cond), (0, True), evaluate=False)

    return e.replace(
        lambda p: (
            isinstance(p, sp.Piecewise)
            and len(p.args) == 2
            and p.args[1][0] == 0
            and any(isinstance(f, sp.KroneckerDelta) for f in sp.Mul.make_args(p.args[0][0]))
        ),
        out,
    )
