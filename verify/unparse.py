"""Printing SymPy index expressions back in the derivation language: for `show`, for messages that quote
a formula, and for the mutants of `verify.mutate` (which must parse back to what they print)."""

from __future__ import annotations

import sympy as sp
from sympy.printing.str import StrPrinter

from . import primitives
from .model import Statement, step_of


class DerivPrinter(StrPrinter):
    """Prints SymPy index expressions back in the derivation language."""

    def _print_Indexed(self, e):
        return f"{e.base.label}[{', '.join(self._print(i) for i in e.indices)}]"

    def _print_Sum(self, e):
        return f"sum({self._print(e.function)}, {self._limits(e)})"

    def _print_WindowMax(self, e):
        return f"max({self._print(e.function)}, {self._limits(e)})"

    def _limits(self, e) -> str:
        """The bound indices; an explicit range as (l, -1, 0)."""
        return ", ".join(
            self._print(i)
            if lo == 0 and (hi + 1).is_Symbol
            else f"({self._print(i)}, {self._print(lo)}, {self._print(hi)})"
            for i, lo, hi in e.limits
        )

    def _print_KroneckerDelta(self, e):
        return f"delta({self._print(e.args[0])}, {self._print(e.args[1])})"

    def _print_Equality(self, e):  # StrPrinter writes Eq(a, b), which the language does not parse
        return f"{self._print(e.lhs)} == {self._print(e.rhs)}"

    def _print_Unequality(self, e):
        return f"{self._print(e.lhs)} != {self._print(e.rhs)}"

    def _print_Piecewise(self, e):
        (a, cond), (b, _) = e.args[0], e.args[-1]
        return f"where({self._print(cond)}, {self._print(a)}, {self._print(b)})"


def _print_call(printer: DerivPrinter, e, prim: primitives.Primitive) -> str:
    return f"{prim.name}({', '.join(printer._print(a) for a in e.args)})"


primitives.install(DerivPrinter, _print_call)


def expression_text(expr: sp.Expr) -> str:
    """An expression as it would be written in a derivation file."""
    return DerivPrinter().doprint(expr)


def _indexed(name: str, indices) -> str:
    return f"{name}[{', '.join(i.name for i in indices)}]" if indices else name


def target_text(st: Statement) -> str:
    """A statement's target as written: name[i, j]; dy[n,k]/dx[n,m] for a Jacobian, after its name when
    it has one; the conclusion's name for every step of a chain."""
    jac = st.jacobian
    if jac is None:
        return _indexed(step_of(st.target), st.indices)
    quotient = f"{_indexed('d' + jac.of, jac.of_indices)}/{_indexed('d' + jac.wrt, jac.wrt_indices)}"
    return f"{_indexed(step_of(st.target), st.indices)} = {quotient}" if jac.named else quotient


def statement_text(st: Statement, rhs: sp.Expr | None = None) -> str:
    """`target[indices] = expression`: the statement, or the same target with another right-hand side."""
    return f"{target_text(st)} = {expression_text(st.rhs if rhs is None else rhs)}"
