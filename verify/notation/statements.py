"""The shape of a statement, before its expressions are read: its target (a name, name[indices], a
Jacobian `dy[n,k]/dx[p,m]`, or a name given to a Jacobian) and its steps (`dW[i,j] = e1 = e2` has two).

Python-syntax statements are split here; LaTeX statements (`verify.notation.latexin`) produce the same
records. Formula text is only ever parsed with `ast`, never evaluated."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from ..model import DerivationError
from ..text import Line, Source, parse_fragment, parse_tail, split_equalities

Index = tuple[str, int, int]  # an index name and where it is written (line, column)


@dataclass
class Step:
    """One expression of a statement: the right-hand side, or one link of a chain.

    `rhs` is index or matrix notation in Python's `ast`; a LaTeX front-end leaves symbol placeholders in
    it that the loader resolves against the derivation's names."""

    rhs: ast.expr
    src: Source
    line: int
    column: int


@dataclass
class JacobianTarget:
    """`dy[n,k]/dx[p,m]`: the numerator's name and indices, the denominator's. Indices are None when the
    form has none (`dy/dx`, matrix notation)."""

    of: str
    of_indices: list[Index] | None
    wrt: str
    wrt_indices: list[Index] | None
    line: int
    column: int


@dataclass
class Parsed:
    """A statement split into its target and steps. `target_indices` is None for a target written
    without brackets whose rank the loader settles (a scalar, or a tensor in matrix notation)."""

    target: str
    target_indices: list[Index]
    line: int
    column: int
    text: str
    steps: list[Step]
    jacobian: JacobianTarget | None = None
    latex: bool = False
    bare_target: bool = False  # written without brackets: a scalar, or a tensor in matrix notation
    source: str = ""  # the text as written, when it was translated (matrix notation, LaTeX)
    unchecked: list[tuple[int, int, str]] = field(default_factory=list)  # steps that are not formulas

    @property
    def rhs(self) -> ast.expr:
        """The conclusion: the last step, the one later statements read."""
        return self.steps[-1].rhs

    @property
    def src(self) -> Source:
        return self.steps[-1].src


def target_indices(node: ast.Subscript, src: Source, functions) -> list[Index]:
    """The index names of a target `t[i, j]`: plain, distinct names."""
    slots = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    out: list[Index] = []
    for slot in slots:
        if not isinstance(slot, ast.Name):
            raise src.error(slot, "the indices of a definition's target must be plain index names")
        ln, col = src.at(slot)
        if any(slot.id == other for other, _, _ in out):
            raise DerivationError(f"index {slot.id} appears twice in the target", ln, col, src.file)
        if slot.id in functions:
            raise DerivationError(f"{slot.id} is a function name and cannot be an index", ln, col, src.file)
        out.append((slot.id, ln, col))
    return out


def _named(node: ast.expr, src: Source, functions) -> tuple[str, list[Index] | None] | None:
    """`name` or `name[indices]` as (name, indices or None); None for anything else."""
    if isinstance(node, ast.Name):
        return node.id, None
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        return node.value.id, target_indices(node, src, functions)
    return None


def jacobian_target(node: ast.expr, src: Source, functions) -> JacobianTarget | None:
    """`dy[n,k]/dx[p,m]` (or `dy/dx`) as a JacobianTarget; None when `node` is not of that form."""
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)):
        return None
    top, bottom = _named(node.left, src, functions), _named(node.right, src, functions)
    if top is None or bottom is None or not (top[0].startswith("d") and bottom[0].startswith("d")):
        return None
    if len(top[0]) < 2 or len(bottom[0]) < 2:
        return None
    line, col = src.at(node)
    return JacobianTarget(top[0][1:], top[1], bottom[0][1:], bottom[1], line, col)


def python_statement(line: Line, file: str | None, functions) -> Parsed:
    """A statement in Python syntax: `target = e1 [= e2 ...]`, with a target `name`, `name[i, j]`,
    `dy[n,k]/dx[p,m]`, or `J[n,k,m] = dy[n,k]/dx[n,m] = ...` naming a Jacobian."""
    text = line.text
    eqs = split_equalities(text)
    if not eqs:
        raise DerivationError("expected a definition 'name[indices] = expression'", line.number, 1, file)
    eq = eqs[0]
    if "\n" in text[:eq]:
        raise DerivationError("the target of a definition must be on one line", line.number, 1, file)
    lhs_src = Source(text[:eq], line.number, 1, file)
    lhs = parse_fragment(text[:eq].rstrip(), lhs_src)
    steps = []
    for k, start in enumerate(eqs):
        end = eqs[k + 1] if k + 1 < len(eqs) else len(text)
        if not text[start + 1 : end].strip():
            ln = line.number + text[:start].count("\n")
            col = len(text[:start].split("\n")[-1]) + 1
            raise DerivationError("expected an expression after '='", ln, col, file)
        rhs, src = parse_tail(text[:end], start + 1, line.number, file)
        ln, col = src.at(rhs)
        steps.append(Step(rhs, src, ln, col))
    jac = jacobian_target(lhs, lhs_src, functions)
    if jac is not None:
        name, idx = "", []
    elif (named := _named(lhs, lhs_src, functions)) is not None:
        name, idx = named[0], named[1] or []
        if len(steps) > 1 and (jac := jacobian_target(steps[0].rhs, steps[0].src, functions)) is not None:
            steps = steps[1:]  # `J[n,k,m] = dy[n,k]/dx[n,m] = expr`: J names the Jacobian
    else:
        raise lhs_src.error(lhs, "the target of a definition must be a name or name[indices]")
    bare = isinstance(lhs, ast.Name)
    return Parsed(name, idx, line.number, 1, text, steps, jac, bare_target=bare)
