"""The functions a derivation may call, one record each: everything the project knows about a function.

The parser builds a call's SymPy node with `make`; the exact oracle evaluates the node with `exact`
(mpmath, high precision) and watches `kink` sites; the NumPy, JAX and PyTorch printers print it with
`array` (or a backend's entry in `backends`); the LaTeX printer with `latex`; `show` in the derivation
language with `name`. Adding a function is adding a record here: nothing else names it.

The language's three structural forms, `sum`, `delta` and `where`, bind indices or conditions rather
than compute a value from values; the parser handles them itself (`FORMS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import mpmath
import sympy as sp


class sigmoid(sp.Function):
    """The logistic function 1 / (1 + exp(-x)), kept whole so that it prints and differentiates as one."""

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sp.exp(-x))

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real

    def _eval_evalf(self, prec):
        # a number for SymPy too: max(sigmoid(0), x) must be able to compare it
        return self.rewrite(sp.exp)._eval_evalf(prec)


class softplus(sp.Function):
    """log(1 + exp(x)), kept whole: its derivative is sigmoid(x)."""

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sp.log(1 + sp.exp(x))

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real

    def _eval_evalf(self, prec):
        return self.rewrite(sp.exp)._eval_evalf(prec)


# A template is array code with {0}, {1}... for the printed arguments, {p0}, {p1}... for the same
# parenthesised where needed (`x + y` as an operand of `*`), and {ns} for the module prefix
# (np, jnp, torch). A callable (printer, node) -> str prints what a template cannot.
Code = str | Callable[[Any, sp.Expr], str]


@dataclass(frozen=True)
class Primitive:
    name: str  # as written in a derivation
    arity: int
    form: str  # how a call is written, for messages: "max(a, b)"
    make: Callable[..., sp.Expr]  # the SymPy expression of a call, from its arguments' expressions
    node: type | None  # the SymPy class `make` builds; None where it builds plain arithmetic (sqrt)
    exact: Callable[..., Any] | None  # the node's value from its arguments' mpmath values
    array: Code = ""  # array code, the same for all three backends
    backends: Mapping[str, Code] = field(default_factory=dict)  # a backend's own code, where it differs
    latex: Code = ""  # a LaTeX operator such as r"\tanh" (printed with its arguments bracketed), or code
    kink: str | None = None  # the derivative jumps where the argument (abs) or a - b (max, min) is zero
    domain: str | None = None  # "positive" / "nonnegative": what the argument must be for a real value
    monotone: bool = False  # a one-argument function that never turns: its value over an interval lies
    # between its values at the ends (how verify.rounding bounds the effect of an argument's error)

    def code(self, backend: str) -> Code:
        return self.backends.get(backend, self.array)


_EXP_RANGE = 10**6  # exp(1e6) is 1e434294: far beyond float64, and exp of it would take mpmath forever


def _exp(x):
    """mpmath.exp, except far outside float64's range: infinity above (a value no check can use, which
    the sampler redraws), 0 below. exp(exp(exp(exp(exp(2))))) would otherwise compute ln 2 to 1e702
    digits."""
    if isinstance(x, mpmath.mpf) and abs(x) > _EXP_RANGE:
        return mpmath.inf if x > 0 else mpmath.mpf(0)
    return mpmath.exp(x)


def _extreme(f):
    """max or min of mpmath numbers, NaN when any is NaN (as NumPy's maximum): a value that is not real
    must not vanish into a maximum and leave a finite one that the generated code cannot reproduce."""
    return lambda *args: mpmath.nan if any(mpmath.isnan(a) for a in args) else f(args)


def _unary(f):
    return lambda x: f(x)


def _torch_clamp(bound: str):
    """torch.clamp for a bound that is a number (one fused kernel), torch.maximum/minimum otherwise."""

    def code(printer, e):
        a, b = e.args
        if a.is_Number or b.is_Number:
            x, c = (a, b) if b.is_Number else (b, a)
            return f"torch.clamp({printer._print(x)}, {bound}={float(c)!r})"
        fn = "maximum" if bound == "min" else "minimum"
        return f"torch.{fn}({printer._print(a)}, {printer._print(b)})"

    return code


def _latex_exp(printer, e):
    if printer.exp_as_power:
        return f"e^{{{printer._print(e.args[0])}}}"
    return printer._call(r"\exp", e.args[0])


def _latex_log(printer, e):
    arg = e.args[0]
    if isinstance(arg, sp.Symbol | sp.Indexed) and not printer._tall(arg):
        return rf"\log {printer._print(arg)}"
    return printer._call(r"\log", arg)


def _latex_extreme(op):
    return lambda printer, e: printer._call(op, *sorted(e.args, key=lambda a: a.is_Number))


PRIMITIVES: tuple[Primitive, ...] = (
    Primitive(
        "exp", 1, "exp(x)", _unary(sp.exp), sp.exp, _exp, "{ns}.exp({0})", latex=_latex_exp,
        monotone=True,
    ),
    Primitive(
        "log", 1, "log(x)", _unary(sp.log), sp.log, mpmath.log, "{ns}.log({0})",
        latex=_latex_log, domain="positive", monotone=True,
    ),
    # sqrt(x) is the power x**(1/2): it prints and evaluates as a power
    Primitive("sqrt", 1, "sqrt(x)", _unary(sp.sqrt), None, None, domain="nonnegative"),
    Primitive(
        "tanh", 1, "tanh(x)", _unary(sp.tanh), sp.tanh, mpmath.tanh, "{ns}.tanh({0})", latex=r"\tanh",
        monotone=True,
    ),
    Primitive(
        "sigmoid", 1, "sigmoid(x)", _unary(sigmoid), sigmoid,
        lambda x: 1 / (1 + _exp(-x)),
        # the tanh form: no overflow warning for large negative inputs, unlike 1 / (1 + exp(-x))
        "(0.5*{ns}.tanh(0.5*{p0}) + 0.5)",
        {"jax": "jax.nn.sigmoid({0})", "torch": "torch.sigmoid({0})"},
        latex=r"\sigma", monotone=True,
    ),
    Primitive(
        "softplus", 1, "softplus(x)", _unary(softplus), softplus,
        lambda x: mpmath.log1p(_exp(x)) if x < _EXP_RANGE else x,
        "np.logaddexp(0.0, {0})",
        {"jax": "jax.nn.softplus({0})", "torch": "torch.nn.functional.softplus({0}, beta=1.0, threshold=50.0)"},
        latex=r"\mathrm{softplus}", monotone=True,
    ),
    Primitive(
        "abs", 1, "abs(x)", _unary(sp.Abs), sp.Abs, abs, "{ns}.abs({0})",
        latex=lambda printer, e: rf"\left|{printer._print(e.args[0])}\right|", kink="abs",
    ),
    Primitive(
        "max", 2, "max(a, b)", lambda a, b: sp.Max(a, b, evaluate=False), sp.Max, _extreme(max),
        "{ns}.maximum({0}, {1})", {"torch": _torch_clamp("min")}, _latex_extreme(r"\max"), kink="max",
    ),
    Primitive(
        "min", 2, "min(a, b)", lambda a, b: sp.Min(a, b, evaluate=False), sp.Min, _extreme(min),
        "{ns}.minimum({0}, {1})", {"torch": _torch_clamp("max")}, _latex_extreme(r"\min"), kink="min",
    ),
)  # fmt: skip

BY_NAME: dict[str, Primitive] = {p.name: p for p in PRIMITIVES}
BY_NODE: dict[type, Primitive] = {p.node: p for p in PRIMITIVES if p.node is not None}
FORMS = frozenset({"sum", "delta", "where"})
FUNCTIONS = frozenset(BY_NAME) | FORMS


def kink_value(prim: Primitive, args: list) -> Any:
    """The quantity whose sign picks the branch at a kink: the argument of abs, a - b of max and min."""
    return args[0] if prim.kink == "abs" else args[0] - args[1]


def install(printer_class: type, method: Callable[[Any, sp.Expr, Primitive], str]) -> None:
    """Give `printer_class` a `_print_<Node>` method for every primitive's SymPy node, each calling
    `method(printer, node, primitive)`: how one printer consumes the whole table."""
    for prim in PRIMITIVES:
        if prim.node is None:
            continue

        def _print(self, e, _prim=prim, **kwargs):
            return method(self, e, _prim)

        setattr(printer_class, f"_print_{prim.node.__name__}", _print)
