"""Matrix notation: `dW = dy.T @ x`, `db = sum(dy, axis=0)`, `dx = y * (dy - sum(dy * y, axis=1)[:, None])`
is not it (no slicing), but `diag(y) - outer(y, y)`, `ones(N) @ dy`, `eye(K)`, elementwise `* /`, vectors
broadcast over rows, `.T`, are.

A matrix expression is translated into the index-notation `ast` the parser walks: every tensor gets
fresh index names (the lower-case form of its axes' size names: `X: (N, D)` reads `X[n, d]`), `@`
contracts the inner pair with a `sum`, broadcasting aligns axes from the right as NumPy does. So the
index form is the meaning, and the rest of the tool (oracles, code, LaTeX) sees only index notation.

Shapes are tuples of size names. In [gradients] they are the derivation's sizes and are checked (`@`
with inner sizes that differ is an error at the operator); in [forward] an undeclared tensor's sizes are
only hints (the parser's size inference settles them), and only ranks are checked.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass

from ..model import DerivationError
from ..text import Source

MATRIX_FUNCTIONS = frozenset({"ones", "eye", "diag", "outer"})
ELEMENTWISE = frozenset({"exp", "log", "sqrt", "tanh", "sigmoid", "abs", "softplus", "max", "min"})
_POOL = "ijklmpqrstuvabcefgh"


@dataclass
class Shapes:
    """What the translation knows about names: `of(name)` is a tensor's shape as size names (a name
    may be None where unknown), or None for a scalar or a size; `sizes` are the size names;
    `exact` says whether shapes are real sizes to check (in [gradients]) or hints (in [forward]);
    `taken` holds names an index may not take (functions, tensors, sizes)."""

    of: Callable[[str], tuple[str | None, ...] | None]
    sizes: frozenset[str]
    exact: bool
    taken: frozenset[str]


@dataclass
class Term:
    """An index expression and its free indices, in axis order, with each axis's size name."""

    expr: ast.expr
    axes: list[tuple[str, str | None]]
    row: bool = False  # a vector written transposed (x^T): a row, for products by juxtaposition

    @property
    def rank(self) -> int:
        return len(self.axes)


def uses_matrix_notation(node: ast.expr, shapes: Shapes) -> bool:
    """Whether an expression is written in matrix notation: `@`, `.T`, the matrix functions, `sum` with
    an axis or no index, or a tensor used without indices; and no subscript at all (`x[n, i]`, or a
    bracketed matrix part `(A @ B)[i, j]` of an index expression)."""
    if any(isinstance(sub, ast.Subscript) for sub in ast.walk(node)):
        return False  # index notation, perhaps with bracketed matrix parts (A @ B)[i, j]
    matrix = False
    for sub in ast.walk(node):
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.MatMult):
            matrix = True
        elif isinstance(sub, ast.Attribute):
            matrix = True
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name):
            if sub.func.id in MATRIX_FUNCTIONS:
                matrix = True
            elif sub.func.id == "sum" and (sub.keywords or len(sub.args) == 1):
                matrix = True
        elif isinstance(sub, ast.Name) and shapes.of(sub.id):
            matrix = True
    return matrix


def fresh_index(size: str | None, used: set[str], taken: frozenset[str]) -> str:
    """A new index name for an axis of `size` (`n` for N), not in `used` (which it joins) nor `taken`."""
    stem = size.lower() if size and size.isidentifier() else None
    candidates = [stem] if stem else []
    candidates += [f"{stem}{k}" for k in range(2, 50)] if stem else list(_POOL)
    for name in candidates + [f"i{k}" for k in range(2, 200)]:
        if name not in used and name not in taken:
            used.add(name)
            return name
    raise AssertionError("no index name left")  # 200 indices in one statement


class Translator:
    """One statement's translation: fresh index names are unique within the statement."""

    def __init__(self, src: Source, shapes: Shapes):
        self.src = src
        self.shapes = shapes
        self.used: set[str] = set()

    def err(self, node, message) -> DerivationError:
        return self.src.error(node, message)

    def fresh(self, size: str | None) -> str:
        return fresh_index(size, self.used, self.shapes.taken)

    # -- the walk ---------------------------------------------------------------------------------------

    def term(self, node: ast.expr) -> Term:
        method = getattr(self, "_t_" + type(node).__name__, None)
        if method is None:
            raise self.err(node, f"{type(node).__name__} is not allowed in a matrix formula")
        return method(node)

    def _t_Constant(self, node):
        return Term(node, [])

    def _t_Name(self, node):
        shape = self.shapes.of(node.id)
        if not shape:
            return Term(node, [])
        axes = [(self.fresh(s), s) for s in shape]
        slots: list[ast.expr] = [ast.copy_location(ast.Name(id=i, ctx=ast.Load()), node) for i, _ in axes]
        index = (
            slots[0] if len(slots) == 1 else ast.copy_location(ast.Tuple(elts=slots, ctx=ast.Load()), node)
        )
        return Term(ast.copy_location(ast.Subscript(value=node, slice=index, ctx=ast.Load()), node), axes)

    def _t_Attribute(self, node):
        if node.attr != "T":
            raise self.err(node, f"'.{node.attr}' is not matrix notation: only .T (transpose) is")
        inner = self.term(node.value)
        if inner.rank > 2:
            raise self.err(node, f".T of a tensor with {inner.rank} axes is ambiguous: write its indices")
        return Term(inner.expr, inner.axes[::-1], row=inner.rank == 1 and not inner.row)

    def _t_UnaryOp(self, node):
        if not isinstance(node.op, ast.USub):
            raise self.err(node, "only unary minus is allowed")
        inner = self.term(node.operand)
        return Term(ast.copy_location(ast.UnaryOp(op=ast.USub(), operand=inner.expr), node), inner.axes)

    def _t_BinOp(self, node):
        a, b = self.term(node.left), self.term(node.right)
        if isinstance(node.op, ast.MatMult):
            juxtaposed = type(node.op).__name__ == "Juxtapose"  # a LaTeX product (verify.notation.latexin)
            return self.matmul(operator(node, self.src), a, b, juxtaposed)
        if not isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div | ast.Pow):
            raise self.err(node, "operator not allowed in a matrix formula: use + - * / ** @ and .T")
        (a, b), axes = self.broadcast(operator(node, self.src), [a, b], _OPS[type(node.op)])
        op = ast.copy_location(ast.BinOp(left=a.expr, op=node.op, right=b.expr), node)
        return Term(op, axes, row=a.row or b.row)

    def _t_Subscript(self, node):
        raise self.err(node, "an indexed tensor in a matrix formula: write the statement in one notation")

    def _t_Compare(self, node):
        raise self.err(node, "a comparison is only allowed as the condition of where(cond, a, b)")

    def _t_Call(self, node):
        if not isinstance(node.func, ast.Name):
            raise self.err(node, "only the listed functions can be called")
        name = node.func.id
        if name == "sum":
            return self.summation(node)
        if name in MATRIX_FUNCTIONS:
            if node.keywords:
                raise self.err(node, f"{name}() takes no keyword arguments")
            return getattr(self, "_call_" + name)(node)
        if name == "where":
            return self.where(node)
        if name in ELEMENTWISE:
            if node.keywords:
                raise self.err(node, f"{name}() takes no keyword arguments")
            terms, axes = self.broadcast(node, [self.term(a) for a in node.args], f"{name}()")
            call = ast.Call(func=node.func, args=[t.expr for t in terms], keywords=[])
            return Term(ast.copy_location(call, node), axes)
        if name == "delta":
            raise self.err(node, "delta(i, j) takes indices: in matrix notation write eye(K)")
        raise self.err(node, f"unknown function {name}()")

    # -- products, sums and broadcasting -------------------------------------------------------------

    def rename(self, term: Term, old: str, new: str) -> Term:
        """The term with index `old` written `new`."""
        return _renamed(term, {old: new})

    def unify(self, node, what: str, left: tuple[str, str | None], right: tuple[str, str | None]):
        """The size of a pair of axes made one, or an error when both sizes are known and differ."""
        (_, s), (_, t) = left, right
        if self.shapes.exact and s and t and s != t:
            raise self.err(node, f"{what}: sizes {s} and {t} differ")
        return s or t

    def broadcast(self, node, terms: list[Term], what: str) -> tuple[list[Term], list]:
        """Align terms' axes from the right, as NumPy broadcasts: a vector spreads over a matrix's rows."""
        full = max(terms, key=lambda t: t.rank)
        axes = list(full.axes)
        out = []
        for t in terms:
            offset = len(axes) - t.rank
            for k, axis in enumerate(t.axes):
                target = axes[offset + k]
                size = self.unify(node, f"{_shape(terms)} cannot be combined by {what}", target, axis)
                axes[offset + k] = (target[0], size)
                if axis[0] != target[0]:
                    t = self.rename(t, axis[0], target[0])
            out.append(t)
        return out, axes

    def matmul(self, node, a: Term, b: Term, juxtaposed: bool = False) -> Term:
        """a @ b as NumPy reads it; juxtaposed (LaTeX `A B`, `A \\cdot B`), a scalar factor multiplies,
        and a column vector times a row vector (x y^T) is their outer product."""
        if juxtaposed and (a.rank == 0 or b.rank == 0):
            (a, b), axes = self.broadcast(node, [a, b], "a product")
            product = ast.copy_location(ast.BinOp(left=a.expr, op=ast.Mult(), right=b.expr), node)
            return Term(product, axes, row=a.row or b.row)
        if juxtaposed and a.rank == 1 and b.rank == 1 and not a.row and b.row:
            product = ast.copy_location(ast.BinOp(left=a.expr, op=ast.Mult(), right=b.expr), node)
            return Term(product, a.axes + b.axes)
        if juxtaposed and (
            (a.rank == 1 and not a.row and b.rank == 2) or (a.rank == 2 and b.rank == 1 and b.row)
        ):
            raise self.err(
                node, f"{_shape([a])} times {_shape([b])}: a column vector's place is on the right"
            )
        if a.rank == 0 or b.rank == 0:
            raise self.err(node, "@ multiplies vectors and matrices: a scalar factor takes *")
        if a.rank > 2 or b.rank > 2:
            raise self.err(node, "@ of a tensor with more than 2 axes is ambiguous: write the sum")
        inner_a, inner_b = a.axes[-1], b.axes[0]
        what = f"{_shape([a])} @ {_shape([b])}: the inner sizes must agree (a missing .T?)"
        self.unify(node, what, inner_a, inner_b)
        b = self.rename(b, inner_b[0], inner_a[0])
        product = ast.copy_location(ast.BinOp(left=a.expr, op=ast.Mult(), right=b.expr), node)
        axes = a.axes[:-1] + b.axes[1:]
        return Term(self.sum_over(node, product, [inner_a[0]]), axes, row=a.rank == 1 and b.rank == 2)

    def sum_over(self, node, body: ast.expr, indices: list[str]) -> ast.expr:
        names = [ast.copy_location(ast.Name(id=i, ctx=ast.Load()), node) for i in indices]
        call = ast.Call(
            func=ast.copy_location(ast.Name(id="sum", ctx=ast.Load()), node), args=[body, *names], keywords=[]
        )
        return ast.copy_location(call, node)

    def summation(self, node) -> Term:
        """sum(A) over every axis; sum(A, axis=k) or sum(A, k) over axis k (negative counts from the end;
        a tuple sums several)."""
        if not node.args:
            raise self.err(node, "sum() needs an argument")
        inner = self.term(node.args[0])
        axis_nodes = list(node.args[1:]) + [kw.value for kw in node.keywords if kw.arg == "axis"]
        if any(kw.arg != "axis" for kw in node.keywords) or len(axis_nodes) > 1:
            raise self.err(node, "sum() in matrix notation takes one axis: sum(A, axis=0)")
        if not axis_nodes:
            axes = list(range(inner.rank))
        else:
            given = axis_nodes[0]
            items = given.elts if isinstance(given, ast.Tuple) else [given]
            axes = [self._axis(a, inner.rank) for a in items]
        if inner.rank == 0:
            raise self.err(node, "sum() of a scalar: nothing to sum over")
        summed = [inner.axes[k][0] for k in axes]
        rest = [ax for k, ax in enumerate(inner.axes) if k not in axes]
        return Term(self.sum_over(node, inner.expr, summed), rest)

    def _axis(self, node, rank: int) -> int:
        value = node.value if isinstance(node, ast.Constant) else None
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
        ):
            value = node.operand.value
            value = -value if isinstance(value, int) and not isinstance(value, bool) else None
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.err(node, "an axis is a whole number: sum(A, axis=0)")
        if not -rank <= value < rank:
            raise self.err(node, f"axis {value} is out of range for a tensor with {rank} axes")
        return value % rank

    def where(self, node) -> Term:
        if len(node.args) != 3 or node.keywords:
            raise self.err(node, "where() takes three arguments: where(condition, a, b)")
        cond = node.args[0]
        if not isinstance(cond, ast.Compare) or len(cond.ops) != 1:
            raise self.err(cond, "the condition of where() must be one comparison such as x > 0")
        parts = [
            self.term(cond.left),
            self.term(cond.comparators[0]),
            self.term(node.args[1]),
            self.term(node.args[2]),
        ]
        (lhs, rhs, a, b), axes = self.broadcast(node, parts, "where()")
        test = ast.copy_location(ast.Compare(left=lhs.expr, ops=cond.ops, comparators=[rhs.expr]), cond)
        call = ast.Call(func=node.func, args=[test, a.expr, b.expr], keywords=[])
        return Term(ast.copy_location(call, node), axes)

    def _sizes_of(self, node) -> list[str]:
        if not node.args:
            raise self.err(node, f"{node.func.id}() needs its size, as in {node.func.id}(N)")
        out = []
        for a in node.args:
            if not (isinstance(a, ast.Name) and a.id in self.shapes.sizes):
                raise self.err(a, f"{node.func.id}() takes sizes, as in {node.func.id}(N)")
            out.append(a.id)
        return out

    def _call_ones(self, node):
        """ones(N) (or ones(N, K)): the constant 1 along fresh axes of those sizes; ones() a vector whose
        size is that of what it meets (LaTeX's \\mathbb{1})."""
        sizes = self._sizes_of(node) if node.args else [None]
        axes = [(self.fresh(s), s) for s in sizes]
        return Term(ast.copy_location(ast.Constant(value=1), node), axes)

    def _call_eye(self, node):
        (size,) = self._one(node, self._sizes_of(node))
        i, j = self.fresh(size), self.fresh(size)
        return Term(self._delta(node, i, j), [(i, size), (j, size)])

    def _call_diag(self, node):
        v = self.term(self._one(node, node.args)[0])
        if v.rank != 1:
            raise self.err(node, "diag() takes a vector: the matrix with it on its diagonal")
        (i, size), j = v.axes[0], self.fresh(v.axes[0][1])
        product = ast.copy_location(
            ast.BinOp(left=v.expr, op=ast.Mult(), right=self._delta(node, i, j)), node
        )
        return Term(product, [(i, size), (j, size)])

    def _call_outer(self, node):
        if len(node.args) != 2:
            raise self.err(node, "outer() takes two vectors: outer(u, v)")
        u, v = (self.term(a) for a in node.args)
        if u.rank != 1 or v.rank != 1:
            raise self.err(node, "outer() takes two vectors: outer(u, v)")
        product = ast.copy_location(ast.BinOp(left=u.expr, op=ast.Mult(), right=v.expr), node)
        return Term(product, u.axes + v.axes)

    def _one(self, node, args):
        if len(args) != 1:
            raise self.err(node, f"{node.func.id}() takes one argument")
        return args

    def _delta(self, node, i, j):
        names: list[ast.expr] = [ast.copy_location(ast.Name(id=k, ctx=ast.Load()), node) for k in (i, j)]
        call = ast.Call(
            func=ast.copy_location(ast.Name(id="delta", ctx=ast.Load()), node), args=names, keywords=[]
        )
        return ast.copy_location(call, node)


_OPS = {ast.Add: "'+'", ast.Sub: "'-'", ast.Mult: "'*'", ast.Div: "'/'", ast.Pow: "'**'"}


def _shape(terms: list[Term]) -> str:
    return " and ".join(" x ".join(s or "?" for _, s in t.axes) or "a scalar" for t in terms)


def _renamed(term: Term, mapping: dict[str, str]) -> Term:
    """The term with its indices renamed at once (index names are unique within a statement and never
    a tensor's, scalar's or size's name, so nothing else is caught)."""

    class Rename(ast.NodeTransformer):
        def visit_Name(self, n):
            if n.id in mapping:
                return ast.copy_location(ast.Name(id=mapping[n.id], ctx=n.ctx), n)
            return n

    expr = Rename().visit(term.expr)
    return Term(expr, [(mapping.get(i, i), s) for i, s in term.axes])


def translate(node: ast.expr, src: Source, shapes: Shapes, indices: list[str] | None = None) -> Term:
    """A matrix expression as an index expression: over fresh indices, or over `indices` (the target's
    letters, one per axis of the result; the caller checks the count)."""
    t = Translator(src, shapes)
    t.used |= set(indices or ())
    term = t.term(node)
    if indices is None or len(indices) != term.rank:
        return term
    return _renamed(term, {old: new for (old, _), new in zip(term.axes, indices, strict=True)})


def operator(node: ast.BinOp, src: Source) -> ast.AST:
    """A node placed at a binary operator's symbol (ast places a BinOp at its left operand), for errors."""
    line, col = getattr(node.left, "end_lineno", None), getattr(node.left, "end_col_offset", None)
    if line is None or col is None or line > len(src.lines):
        return node
    text = src.lines[line - 1].encode("utf-8")
    symbol = {ast.MatMult: b"@", ast.Add: b"+", ast.Sub: b"-", ast.Mult: b"*", ast.Div: b"/", ast.Pow: b"**"}
    found = text.find(symbol.get(type(node.op), b"\0"), col)
    if found < 0:
        return node
    return ast.Constant(value=0, lineno=line, col_offset=found, end_lineno=line, end_col_offset=found + 1)


def embed(node: ast.expr, src: Source, shapes: Shapes) -> ast.expr:
    """An index-notation expression with its bracketed matrix parts, `(dy.T @ x)[k, i]`, translated: each
    such part becomes an index expression whose axes are the bracket's indices."""
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}

    class Embed(ast.NodeTransformer):
        def visit_Subscript(self, sub):
            if isinstance(sub.value, ast.Name):
                return self.generic_visit(sub)
            slots = sub.slice.elts if isinstance(sub.slice, ast.Tuple) else [sub.slice]
            letters = [s.id for s in slots if isinstance(s, ast.Name)]
            if len(letters) != len(slots):
                raise src.error(sub, "a bracketed matrix expression takes index names: (A @ B)[i, j]")
            t = Translator(src, shapes)
            t.used |= names
            term = t.term(sub.value)
            if term.rank != len(letters):
                raise src.error(sub, f"this matrix expression has {term.rank} axes, not {len(letters)}")
            return _renamed(term, {old: i for (old, _), i in zip(term.axes, letters, strict=True)}).expr

    return Embed().visit(node)
