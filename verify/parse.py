"""The derivation language: text in, a checked `Derivation` holding SymPy index expressions out.

Formula text is untrusted. It is parsed with Python's `ast` module and walked with a whitelist of node
types; nothing in it is ever evaluated, executed or handed to `sympify`. Every problem is reported as a
`DerivationError` carrying the line and column it was found at. `verify.text` splits the file into
statements; this module turns each statement into SymPy and infers every size.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction

import sympy as sp

from . import limits
from .model import (
    DOMAINS,
    Derivation,
    DerivationError,
    Domain,
    Jacobian,
    Statement,
    Tensor,
    WindowMax,
    base,
    constant,
    index,
    shrinking,
    size,
    step_name,
    step_of,
)
from .notation import latexin, matrix
from .notation.statements import Parsed, Step, python_statement
from .primitives import BY_NAME, FUNCTIONS
from .sampling import DENOMINATOR
from .text import (
    Line,
    Source,
    logical_lines,
    number,
    parse_tail,
    split_assignment,
    split_sections,
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Names the generated code uses for its modules and temporaries: a tensor named `np` would shadow NumPy.
_RESERVED = frozenset({"np", "jnp", "jax", "torch", "dtype"})
_RESERVED_PATTERN = re.compile(r"(s\d+|shift_.*|__.*|.*__\d+)\Z")  # .*__k: steps of a chain


def reserved(name: str) -> str | None:
    """Why `name` cannot name a tensor or scalar, or None."""
    if name in FUNCTIONS:
        return f"{name} is a function name"
    if name in _RESERVED or _RESERVED_PATTERN.match(name):
        return f"{name} is reserved for generated code"
    return None


_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_OPERATOR_HINTS = {ast.BitXor: "'^' is not a power: use **", ast.MatMult: "'@' is not allowed: write the sum"}
_COMPARISONS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
# Operators that chain left to right at one precedence: `a + b - c + ...` is walked as one level.
_CHAINS = {ast.Add: "+", ast.Sub: "+", ast.Mult: "*", ast.Div: "*"}


@dataclass
class _Occurrence:
    """One index variable's use as a subscript: tensor `name`, axis `axis`, at (line, col)."""

    name: str
    axis: int
    line: int
    col: int


@dataclass
class _IndexVar:
    name: str
    line: int
    col: int
    occurrences: list[_Occurrence] = field(default_factory=list)  # plain subscripts: they fix the range
    shifted: list[_Occurrence] = field(default_factory=list)  # affine subscripts (S*i + kh): they do not
    limits: tuple[sp.Expr, sp.Expr] | None = None  # explicit limits, sum(e, (l, -1, 0)): no size
    size: sp.Expr | None = None  # the size it ranges over, once known
    # a LaTeX sum's upper limit over the whole range (\sum_{n=1}^{N}): (limit, 0 or 1 as the lower
    # limit, line, column), held to the size once known
    upper: tuple[sp.Expr, int, int, int] | None = None


@dataclass
class _Walk:
    """What walking one right-hand side found: the SymPy expression and its free index variables."""

    expr: sp.Expr
    free: dict[str, _IndexVar]
    const: bool = False  # computed from number literals alone (SymPy has already folded it)


class _Converter:
    """Walks a whitelisted Python ast into SymPy, recording every index occurrence for size inference."""

    def __init__(self, src: Source, resolve_name, resolve_tensor, targets=(), resolve_constant=None, base=0):
        self.src = src
        self.base = base  # 1 in a file with `indexing: 1-based`: subscripts count from 1
        self.resolve_name = resolve_name  # (name, node) -> sympy expression for a bare name
        self.resolve_tensor = resolve_tensor  # (name, arity, node) -> None; records tensor use
        self.targets = frozenset(targets)  # the target's index names: free indices of affine subscripts
        # (name, node) -> None: records a size or constant named in a subscript or a limit
        self.resolve_constant = resolve_constant or (lambda name, node: None)
        self.index_vars: list[_IndexVar] = []
        self.scope: list[dict[str, _IndexVar]] = [{}]
        self.sum_ranges: list[tuple[sp.Symbol, _IndexVar]] = []
        self.deltas: list[tuple[_IndexVar, _IndexVar, ast.expr]] = []  # delta(i, j): i, j and the call

    def err(self, node, message):
        return self.src.error(node, message)

    def lookup_index(self, name: str, node) -> _IndexVar:
        for frame in reversed(self.scope):
            if name in frame:
                return frame[name]
        line, col = self.src.at(node)
        var = _IndexVar(name, line, col)
        self.scope[0][name] = var
        self.index_vars.append(var)
        return var

    def walk(self, node: ast.expr) -> _Walk:
        method = getattr(self, "_walk_" + type(node).__name__, None)
        if method is None:
            raise self.err(node, f"{_describe(node)} is not allowed in a formula")
        return method(node)

    def _walk_Constant(self, node):
        return _Walk(number(node, self.src), {}, const=True)

    def _walk_Name(self, node):
        self.check_name(node.id, node)
        if self.is_index(node.id):
            # read as a name, an index would become a scalar input of its own (y = x * i checked with a
            # random i): positions are no values in the language
            raise self.err(node, f"index {node.id} is used as a value: an index only subscripts a tensor")
        return _Walk(self.resolve_name(node.id, node), {})

    def is_index(self, name: str) -> bool:
        """Whether `name` is an index here: the target's, or one a subscript or an enclosing sum bound."""
        return name in self.targets or any(name in frame for frame in self.scope)

    def check_name(self, name, node):
        why = reserved(name)
        if why and name not in FUNCTIONS:  # a bare function name gets its own message
            raise self.err(node, f"{why}: rename it")

    def _walk_UnaryOp(self, node):
        if not isinstance(node.op, ast.USub):
            raise self.err(node, "only unary minus is allowed")
        inner = self.walk(node.operand)
        return _Walk(-inner.expr, inner.free, inner.const)

    def _walk_BinOp(self, node):
        # A chain `a + b - c + ...` is walked in a loop, not by recursion: a long sum is one level deep.
        chain, left, group = [node], node.left, _CHAINS.get(type(node.op))
        while group and isinstance(left, ast.BinOp) and _CHAINS.get(type(left.op)) == group:
            chain.append(left)
            left = left.left
        acc = self.walk(left)
        for link in reversed(chain):
            acc = self._binop(link, acc, self.walk(link.right))
        return acc

    def _binop(self, node, a: _Walk, b: _Walk) -> _Walk:
        op = type(node.op)
        if op not in _OPERATORS:
            raise self.err(node, _OPERATOR_HINTS.get(op, f"operator {_op_text(node.op)} is not allowed"))
        x, y = a.expr, b.expr
        if (op is ast.Div and y == 0) or (op is ast.Pow and x == 0 and y.is_Number and y < 0):
            raise self.err(node, "division by zero")
        if op is ast.Pow and y.is_Number:
            for base in _raised(x):
                problem = limits.power_problem(base, y)
                if problem:
                    raise self.err(node, f"the power {_text(self.src, node)} {problem}")
        if op is ast.Add:
            value = x + y
        elif op is ast.Sub:
            value = x - y
        elif op is ast.Mult:
            value = x * y
        elif op is ast.Div:
            value = x / y
        else:
            value = x**y
        if op in (ast.Div, ast.Pow) and value.has(sp.zoo, sp.nan):
            # SymPy divides into each branch of a where(): x / where(c, x, 0) holds 1/0
            raise self.err(node, "division by zero (in a branch of where()?)")
        return self._checked(node, _Walk(value, {**a.free, **b.free}, a.const and b.const))

    def _checked(self, node, walk: _Walk) -> _Walk:
        """`walk`, once its value passed the checks on numbers: a constant that SymPy computed from
        literals must be a finite real within the limits on magnitudes, and so must the numeric factor
        SymPy pulls out of a product (`1e200 * x * 1e200` is 1e400*x)."""
        value = walk.expr
        constant = walk.const or value.is_Number
        coefficient = value.args[0] if value.is_Mul and value.args[0].is_Number else None
        if constant or coefficient is not None:
            problem = limits.constant_problem(value if constant else coefficient)
            if problem:
                raise self.err(node, f"{_text(self.src, node)} {problem}")
        return _Walk(value, walk.free, constant)

    def _walk_Subscript(self, node):
        if not isinstance(node.value, ast.Name):
            raise self.err(node, "only a name can be subscripted, as in x[n, i]")
        name = node.value.id
        slots = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        self.check_name(name, node)
        self.resolve_tensor(name, len(slots), node)
        indices, free = [], {}
        for axis, slot in enumerate(slots):
            if not isinstance(slot, ast.Name):
                if not isinstance(slot, ast.BinOp | ast.Constant | ast.UnaryOp):
                    raise self.err(slot, f"{_describe(slot)} is not an index: subscripts are index names")
                expr, used = self.affine(slot, name, axis)
                indices.append(expr)
                free.update(used)
                continue
            if slot.id in FUNCTIONS:
                raise self.err(slot, f"{slot.id} is a function name and cannot be an index")
            var = self.lookup_index(slot.id, slot)
            line, col = self.src.at(slot)
            # an index with explicit limits may run past the axis: its reads are checked like shifted ones
            (var.occurrences if var.limits is None else var.shifted).append(
                _Occurrence(name, axis, line, col)
            )
            # counted from 1, an index with explicit limits reads position l - 1
            indices.append(index(slot.id) - self.base if var.limits is not None else index(slot.id))
            free[slot.id] = var
        return _Walk(sp.Indexed(base(name), *indices), free)

    def bound(self, name: str) -> bool:
        return any(name in frame for frame in self.scope) or name in self.targets

    def affine(self, node, tensor: str, axis: int) -> tuple[sp.Expr, dict[str, _IndexVar]]:
        """A shifted subscript `S*i + kh - P`: integer multiples of indices plus whole numbers, sizes and
        integer constants. A name is an index when it is one of the target's or bound by an enclosing
        sum() or max(); any other name is a size or a constant of [sizes]."""
        used: dict[str, _IndexVar] = {}
        hint = "a subscript is an index name or integer multiples of indices plus whole numbers, sizes and constants, as in S*i + kh - P"

        def term(n):
            if isinstance(n, ast.Constant):
                if isinstance(n.value, bool) or not isinstance(n.value, int):
                    raise self.err(n, f"{hint}: {n.value!r} is not a whole number")
                return sp.Integer(n.value)
            if isinstance(n, ast.Name):
                if n.id in FUNCTIONS:
                    raise self.err(n, f"{n.id} is a function name and cannot be an index")
                self.check_name(n.id, n)
                if not self.bound(n.id):
                    self.resolve_constant(n.id, n)
                    return sp.Symbol(n.id, real=True)  # a size or constant: replaced once sizes are named
                var = self.lookup_index(n.id, n)
                line, col = self.src.at(n)
                var.shifted.append(_Occurrence(tensor, axis, line, col))
                used[n.id] = var
                # counted from 1, an index over a whole axis is its position + 1
                return index(n.id) + (self.base if var.limits is None else 0)
            if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
                return -term(n.operand)
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add | ast.Sub | ast.Mult):
                a, b = term(n.left), term(n.right)
                if isinstance(n.op, ast.Mult):
                    if _has_index(a) and _has_index(b):
                        raise self.err(n, f"{hint}: a product of two indices is not affine")
                    return a * b
                return a + b if isinstance(n.op, ast.Add) else a - b
            raise self.err(n, f"{hint}: {_describe(n)} is not allowed in a subscript")

        return sp.expand(term(node) - self.base), used

    def _walk_Compare(self, node):
        raise self.err(node, "a comparison is only allowed as the condition of where(cond, a, b)")

    def _walk_Call(self, node):
        if not isinstance(node.func, ast.Name):
            raise self.err(node, "only the listed functions can be called")
        fname = node.func.id
        if node.keywords:
            raise self.err(node.keywords[0].value, f"{fname}() takes no keyword arguments")
        if fname not in FUNCTIONS:
            raise self.err(node, f"unknown function {fname}(): functions are " + ", ".join(sorted(FUNCTIONS)))
        args = node.args
        if any(isinstance(a, ast.Starred) for a in args):
            raise self.err(node, f"{fname}() takes no starred arguments")
        if fname in BY_NAME:
            return self._primitive(node, args, fname)
        return getattr(self, "_call_" + fname)(node, args)

    def _primitive(self, node, args, fname):
        prim = BY_NAME[fname]
        if fname == "max" and _windowed(args):
            return self._call_window_max(node, args)
        if len(args) != prim.arity:
            n = prim.arity
            raise self.err(node, f"{fname}() takes {n} argument{'s' * (n != 1)}: {prim.form}")
        walks = [self.walk(a) for a in args]
        free = {k: v for w in walks for k, v in w.free.items()}
        const = all(w.const for w in walks)
        return self._checked(node, _Walk(prim.make(*(w.expr for w in walks)), free, const))

    def _arity(self, node, args, n, fname, form):
        if len(args) != n:
            raise self.err(node, f"{fname}() takes {n} argument{'s' * (n != 1)}: {form}")

    def _call_delta(self, node, args):
        self._arity(node, args, 2, "delta", "delta(i, j) with two index names")
        if any(not isinstance(a, ast.Name) for a in args):
            # delta(h, S*i + kh - P): 1 where position h is entry kh of window i. Its indices are read
            # like shifted subscripts: each ranges over the size named after it or the target's axis.
            if not all(isinstance(a, ast.Name | ast.BinOp | ast.UnaryOp | ast.Constant) for a in args):
                raise self.err(
                    node, "delta() takes index names or shifted indices, as in delta(h, S*i + kh - P)"
                )
            free: dict[str, _IndexVar] = {}
            sides = []
            for a in args:
                expr, used = self.affine(a, "#delta", 0)
                sides.append(expr + self.base)  # both sides count from the same place: no shift
                free.update(used)
            return _Walk(sp.KroneckerDelta(*sides, evaluate=False), free)
        free, pair = {}, []
        for a in args:
            if a.id in FUNCTIONS:
                raise self.err(a, "delta() takes index names, as in delta(i, j)")
            free[a.id] = self.lookup_index(a.id, a)
            pair.append(free[a.id])
        self.deltas.append((pair[0], pair[1], node))
        i, j = (index(a.id) for a in args)
        return _Walk(sp.KroneckerDelta(i, j, evaluate=False), free)

    def _call_where(self, node, args):
        self._arity(node, args, 3, "where", "where(condition, a, b)")
        cond = args[0]
        if not isinstance(cond, ast.Compare) or len(cond.ops) != 1:
            raise self.err(cond, "the condition of where() must be one comparison such as x[n,i] > 0")
        op = type(cond.ops[0])
        if op not in _COMPARISONS:
            raise self.err(cond, f"comparison {_op_text(cond.ops[0])} is not allowed in where()")
        lhs, rhs = self.walk(cond.left), self.walk(cond.comparators[0])
        if lhs.const and rhs.const:
            raise self.err(cond, "the condition of where() compares two numbers: it never changes")
        if lhs.expr.has(sp.Piecewise) or rhs.expr.has(sp.Piecewise):
            raise self.err(
                cond,
                "a where() inside the condition of a where() is not supported: use max, min or abs there",
            )
        rel = {
            ast.Lt: sp.StrictLessThan,
            ast.LtE: sp.LessThan,
            ast.Gt: sp.StrictGreaterThan,
            ast.GtE: sp.GreaterThan,
            ast.Eq: sp.Eq,
            ast.NotEq: sp.Ne,
        }[op](lhs.expr, rhs.expr, evaluate=False)
        a, b = self.walk(args[1]), self.walk(args[2])
        expr = sp.Piecewise((a.expr, rel), (b.expr, True), evaluate=False)
        return _Walk(expr, {**lhs.free, **rhs.free, **a.free, **b.free})

    def _call_sum(self, node, args):
        if len(args) < 2:
            raise self.err(node, "sum() takes an expression and one or more indices: sum(expr, i, ...)")
        body, limits, free = self._bind(args, "sum", "sum() sums over index names, as in sum(x[n, i], n)")
        if body == 0:  # sum(0 * x[i], i): SymPy leaves a sum of zeros unevaluated, and 1 / it is no 1 / 0
            return _Walk(sp.Integer(0), free, const=True)
        summed = sp.Sum(body, *limits)
        moved = _conditions_moved(body, summed.function if isinstance(summed, sp.Sum) else summed)
        if moved:
            raise self.err(
                node,
                f"a where() comparing {moved} inside a sum over {moved} inside this sum() is not supported "
                "(SymPy moves it out of that sum): give the inner sum a statement of its own",
            )
        return _Walk(summed, free)

    def _call_window_max(self, node, args):
        body, limits, free = self._bind(
            args,
            "max",
            "max(expr, kh, kw) is the largest value over index names, as in max(x[n, S*i + kh], kh)",
        )
        return _Walk(WindowMax(body, *limits), free)

    def _bind(self, args, fname: str, usage: str):
        """Walk `args[0]` with the indices of `args[1:]` bound: names (over their full range) or explicit
        limits (l, -1, 0). Returns the body, the limits (a placeholder upper limit for each index whose
        size is not known yet) and the body's free indices."""
        bound = args[1:]
        frame: dict[str, _IndexVar] = {}
        names = []
        for a in bound:
            limits = None
            if isinstance(a, ast.Tuple):
                if len(a.elts) != 3 or not isinstance(a.elts[0], ast.Name):
                    raise self.err(a, f"limits are written (index, first, last), as in (l, -1, 0): {usage}")
                limits = tuple(self.limit(e) for e in a.elts[1:])
                if all(x.is_Integer for x in limits) and limits[0] > limits[1]:
                    raise self.err(
                        a, f"the range runs from {limits[0]} down to {limits[1]}: write the first one first"
                    )
                a = a.elts[0]
            if not isinstance(a, ast.Name) or a.id in FUNCTIONS:
                raise self.err(a, usage)
            if a.id in frame:
                raise self.err(a, f"index {a.id} is bound twice in {fname}()")
            if any(a.id in f for f in self.scope[1:]):
                raise self.err(a, f"index {a.id} is already bound by an enclosing sum() or max()")
            line, col = self.src.at(a)
            var = _IndexVar(a.id, line, col, limits=limits)
            written = getattr(a, "upper", None)  # set by the LaTeX reader alone
            if written is not None:
                var.upper = (self.upper(written[0]), written[1], *self.src.at(written[0]))
            self.index_vars.append(var)
            frame[a.id] = var
            names.append(a)
        self.scope.append(frame)
        body = self.walk(args[0])
        self.scope.pop()
        free = dict(body.free)
        out = []
        for a in names:
            var = frame[a.id]
            if a.id not in body.free:
                what = "summed" if fname == "sum" else "maximised"
                raise self.err(a, f"{fname} over {a.id}, which the {what} expression does not use")
            del free[a.id]
            if var.limits is not None:
                out.append((index(a.id), *var.limits))
            else:
                self.sum_ranges.append((index(a.id), var))
                # the upper limit is filled in once sizes are known: a placeholder for now
                out.append((index(a.id), 0, _placeholder(var)))
        return body.expr, out, free

    def upper(self, node) -> sp.Expr:
        """A LaTeX sum's upper limit over its whole range: whole numbers and names, + - *. A name may be
        the document's own for the size (the handout's K or m), so it is resolved only when it is held to
        the size (`_check_uppers`); an index of the statement is none."""

        def name(n: ast.Name) -> sp.Expr:
            if self.is_index(n.id):
                raise self.err(n, f"a sum's upper limit is a size, not the index {n.id}")
            return sp.Symbol(n.id, real=True)

        return self._whole(node, name, "a sum's upper limit is its index's size (N, or N-1 from 0)")

    def limit(self, node) -> sp.Expr:
        """A limit of an explicit range: whole numbers, sizes and constants, + - *."""
        why = "a limit is a whole number, a size or a constant, with + - *"

        def name(n: ast.Name) -> sp.Expr:
            if n.id in FUNCTIONS:
                raise self.err(n, why)
            self.check_name(n.id, n)
            self.resolve_constant(n.id, n)
            return sp.Symbol(n.id, real=True)

        return self._whole(node, name, why)

    def _whole(self, node, name, why: str) -> sp.Expr:
        """An expression of whole numbers and names (each read by `name`) with + - *; else `why`."""
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int)
            and not isinstance(node.value, bool)
        ):
            return sp.Integer(node.value)
        if isinstance(node, ast.Name):
            return name(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self._whole(node.operand, name, why)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult):
            a, b = self._whole(node.left, name, why), self._whole(node.right, name, why)
            return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}[type(node.op)]
        raise self.err(node, why)


def _placeholder(var: _IndexVar) -> sp.Symbol:
    """The upper limit of a sum before sizes are known: one per index variable, since two sums of one
    statement may sum indices of one name over axes of different sizes."""
    return sp.Symbol(f"_open_{var.name}_{id(var)}")


def _condition_scopes(expr: sp.Basic, bound: frozenset = frozenset()) -> set:
    """(comparison, the summed indices enclosing it that it uses) for every comparison of a where()."""
    out = set()
    if isinstance(expr, sp.Sum):
        bound = bound | {lim[0] for lim in expr.limits}
    if isinstance(expr, sp.Piecewise):
        for _, cond in expr.args:
            for rel in cond.atoms(sp.core.relational.Relational) | ({cond} if cond.is_Relational else set()):
                out.add((rel, frozenset(bound & rel.free_symbols)))
    for a in expr.args:
        out |= _condition_scopes(a, bound)
    return out


def _conditions_moved(before: sp.Basic, after: sp.Basic) -> str:
    """An index whose sum a where()'s comparison was moved out of when SymPy's Sum folded the where()
    outwards (piecewise_fold does not see that a sum binds its index), or ''."""
    was = _condition_scopes(before)
    for rel, scope in _condition_scopes(after):
        lost = [s for old_rel, old in was if old_rel == rel for s in old - scope]
        if lost and not any(old_rel == rel and old == scope for old_rel, old in was):
            return str(lost[0])
    return ""


def _raised(e: sp.Expr):
    """The numbers SymPy raises to y when it takes e**y: e itself, each factor of a product and each
    branch of a where(), which it distributes the power over ((100 * v[n])**1e300 holds 100**1e300)."""
    if e.is_Number:
        yield e
    elif e.is_Mul:
        for factor in e.args:
            yield from _raised(factor)
    elif isinstance(e, sp.Piecewise):
        for branch, _ in e.args:
            yield from _raised(branch)


def _has_index(e: sp.Expr) -> bool:
    return any(s.is_integer and not s.is_nonnegative for s in e.free_symbols)


def _windowed(args) -> bool:
    """max(expr, kh, kw) over indices rather than max(a, b) of two values: more than two arguments, a
    range (l, -1, 0), or a second argument that is a name the first one uses in a subscript."""
    if len(args) < 2:
        return False
    if len(args) > 2 or isinstance(args[1], ast.Tuple):
        return True
    if not isinstance(args[1], ast.Name):
        return False
    name = args[1].id
    for node in ast.walk(args[0]):
        if isinstance(node, ast.Subscript):
            if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node.slice)):
                return True
    return False


def _text(src: Source, node: ast.expr) -> str:
    """A node's source text, shortened for a one-line message."""
    lines = src.lines[node.lineno - 1 : node.end_lineno]
    if not lines:
        return "this expression"
    if len(lines) == 1:
        text = lines[0].encode("utf-8")[node.col_offset : node.end_col_offset].decode("utf-8", "replace")
    else:
        text = lines[0].encode("utf-8")[node.col_offset :].decode("utf-8", "replace") + " ..."
    text = " ".join(text.split())
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(node: ast.AST) -> str:
    return {
        "Attribute": "an attribute",
        "Lambda": "a lambda",
        "Constant": "a constant",
        "JoinedStr": "a string",
        "List": "a list",
        "Tuple": "a tuple",
        "Dict": "a dict",
        "Set": "a set",
        "BoolOp": "'and' / 'or'",
        "IfExp": "an if-expression",
        "ListComp": "a comprehension",
        "GeneratorExp": "a generator",
        "Starred": "a starred expression",
        "Slice": "a slice",
        "NamedExpr": "':='",
        "Await": "await",
        "Yield": "yield",
    }.get(type(node).__name__, type(node).__name__)


def _op_text(op: ast.AST) -> str:
    return {
        "FloorDiv": "//",
        "Mod": "%",
        "LShift": "<<",
        "RShift": ">>",
        "BitOr": "|",
        "BitAnd": "&",
        "Is": "is",
        "IsNot": "is not",
        "In": "in",
        "NotIn": "not in",
        "Not": "not",
        "Invert": "~",
        "UAdd": "unary +",
    }.get(type(op).__name__, type(op).__name__)


# ---------------------------------------------------------------------------------------------------------
# Sizes: a union-find over tensor axes.


class _Axes:
    def __init__(self):
        self.parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(self, a):
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


# ---------------------------------------------------------------------------------------------------------
# The loader.


_Parsed = Parsed


def _shape_part(text: str, line: int, file: str | None):
    """For an [inputs] line declaring a shape, `X: (N, D)` or `X: (N, D), onehot(d)`: (name, the shape's
    node, its Source, the domain's node or None). None for any other line."""
    colon = text.find(":")
    eq = split_assignment(text)
    if colon < 0 or (0 <= eq < colon) or not text[colon + 1 :].lstrip().startswith("("):
        return None
    node, src = parse_tail(text, colon + 1, line, file)
    if isinstance(node, ast.Tuple) and node.elts and isinstance(node.elts[0], ast.Tuple):
        if len(node.elts) != 2:
            raise src.error(node, "expected a shape and a domain: X: (N, D), normal")
        return text[:colon].strip(), node.elts[0], src, node.elts[1]
    return text[:colon].strip(), node, src, None


def _dims(sizes) -> str:
    return " x ".join(s or "?" for s in sizes) if sizes else "a scalar"


def _statements(line: Line, file: str | None) -> list:
    """The statements of one logical line: a Python-syntax statement, or the LaTeX statements it holds
    (read once the names they use are known: `_Loader._latex`)."""
    if latexin.is_latex(line.text):
        return latexin.parse(line, file)
    return [_parse_statement(line, file)]


def _parse_statement(line: Line, file: str | None) -> _Parsed:
    p = python_statement(line, file, FUNCTIONS)
    if p.target and reserved(p.target):
        raise DerivationError(f"{reserved(p.target)} and cannot be defined", line.number, 1, file)
    return p


class _Loader:
    def __init__(self, text: str, file: str | None, name: str):
        self.file, self.name = file, name
        self.header, self.sections = split_sections(text, file)
        self.tensors: dict[str, Tensor] = {}
        self.arity: dict[str, tuple[int, int, int]] = {}  # name -> (arity, line, col) of first use
        self.inputs: list[str] = []
        self.given_inputs: set[str] = set()  # the inputs [inputs] names (set once it is read)
        self.defined_at: dict[str, int] = {}
        self.axes = _Axes()
        self.sizes: dict[str, sp.Symbol] = {}
        # LaTeX sums' upper limits (the index, the limit, the size it must state), see _check_uppers
        self.uppers: list[tuple[_IndexVar, sp.Expr, sp.Expr]] = []
        self.class_name: dict[tuple[str, int], str] = {}  # axis class root -> its size's name
        # [sizes] is read before the forward: a name set there that is not a size is an integer constant
        self.sizes_lines = self._sizes_lines()
        self.base = self._indexing()
        self.constant_refs: list[tuple[str, int, int]] = []  # names in subscripts and limits, with places

    def err(self, message, line, col=1):
        return DerivationError(message, line, col, self.file)

    def load(self) -> Derivation:
        if "forward" not in self.sections:
            raise self.err("missing section [forward]", max(1, len(self.sections) and 1))
        if "gradients" not in self.sections:
            raise self.err("missing section [gradients]", self.sections["forward"][0])
        forward_lines = logical_lines(self.sections["forward"][1], self.file)
        if not forward_lines:
            raise self.err("section [forward] defines nothing", self.sections["forward"][0])
        self.declared = self._declared_shapes()
        self.symbols = self._symbols_section()
        self.unchecked: list[tuple[int, int, str]] = []
        parsed = [s for ln in forward_lines for s in _statements(ln, self.file)]
        if not parsed:  # only LaTeX layout and remarks
            raise self.err("section [forward] defines nothing", forward_lines[0].number)
        self.parsed_forward = parsed
        walks = self._forward_pass(parsed)
        self._name_sizes(walks)
        forward = [self._finish(p, w, None) for p, w in zip(parsed, walks, strict=True)]
        output = parsed[-1].target
        upstream = "d" + output
        if upstream in self.tensors:
            raise self.err(
                f"{upstream} is the upstream gradient of the output {output} and cannot be a forward name", 1
            )
        out_shape = self.tensors[output].shape
        if out_shape:
            self.tensors[upstream] = Tensor(upstream, out_shape, "upstream")
        self._check_input_names()
        fixed_values, domains = self._inputs_section()
        self.given_inputs = {*self.declared, *fixed_values, *domains}
        fixed_sizes, relations, constants = self._sizes_section()
        self._forward_sizes_known(forward, {*fixed_sizes, *relations})
        gradients = self._gradients(output, upstream)
        self._check_uppers(fixed_sizes)
        self._no_division_by_zero_names(forward + gradients)
        return Derivation(
            name=self.name,
            file=self.file,
            header=self.header,
            forward=forward,
            gradients=gradients,
            tensors=self.tensors,
            inputs=self.inputs,
            output=output,
            upstream=upstream,
            sizes=self.sizes,
            fixed_sizes=fixed_sizes,
            size_relations=relations,
            constants=constants,
            fixed_values=fixed_values,
            domains=domains,
            unchecked=self.unchecked,
        )

    def _forward_sizes_known(self, forward: list[Statement], given: set[str]) -> None:
        """Refuse a forward that ranges over a size no input's shape has and [sizes] does not give: the
        forward could not make its arrays (`y[q] = sum(delta(q, 2*j) * h[j], j)`: how long is y?)."""
        known = {s.name for name in self.inputs for s in self.tensors[name].shape} | given
        for st in forward:
            used = set().union(*(r.free_symbols for r in st.ranges.values()), st.rhs.free_symbols)
            for name in sorted(s.name for s in used if s.name in self.sizes and s.name not in known):
                index = next((str(i) for i, r in st.ranges.items() if r == self.sizes[name]), None)
                over = f"{st.target}'s index {index} ranges over it" if index else f"{st.target} sums over it"
                raise self.err(
                    f"size {name} is set by no input of the forward ({over}): give it in [sizes], as "
                    f"{name} = an expression of the inputs' sizes, or a number",
                    st.line,
                    1,
                )

    def _no_division_by_zero_names(self, statements: list[Statement]) -> None:
        """Refuse a statement that divides by a name whose value is 0 everywhere (g0 = dy * 0, then
        1 / g0): a division by zero as much as `x / 0` is, which the generated code, holding g0's value,
        would print as SymPy's complex infinity."""
        zero: dict[str, int] = {}  # name -> the line that makes it 0
        for st in statements:
            if st.rhs.has(sp.I):
                raise self.err(
                    f"{st.target} is not a real number (but where it is 0): SymPy writes it {st.rhs} (a square "
                    "root or fractional power of a value that is never positive)",
                    st.line,
                    1,
                )
            reps = {
                a: sp.Integer(0)
                for a in st.rhs.atoms(sp.Indexed, sp.Symbol)
                # a tensor's name, not an index of the same name (sum(W[k, p], k, p) beside a tensor p)
                if (a.base.label.name if isinstance(a, sp.Indexed) else a.name) in zero and not a.is_integer
            }
            names = sorted({(a.base.label.name if isinstance(a, sp.Indexed) else a.name) for a in reps})
            which = ", ".join(f"{n} (0 everywhere, line {zero[n]})" for n in names)
            try:
                value = st.rhs.xreplace(reps) if reps else st.rhs
            except (TypeError, ValueError):  # SymPy refuses min(..., sqrt(-1/1000)) of the zeros put in
                value = sp.nan
            if value.has(sp.zoo, sp.nan, sp.I):
                raise self.err(
                    f"{st.target} is not a real number anywhere (a division by zero, log(0) or the square root "
                    f"of a negative number): it reads {which}",
                    st.line,
                    1,
                )
            if value == 0:
                zero[st.target] = st.line

    # -- forward --------------------------------------------------------------------------------------

    def _forward_pass(self, parsed: list[_Parsed]) -> list[tuple[_Walk, _Converter]]:
        walks = []
        self.bare_names: list[tuple[str, int, int]] = []
        self.used_at: dict[str, int] = {}
        for k, p in enumerate(parsed):
            if isinstance(p, latexin.Tex):
                p = parsed[k] = self._latex(p, forward=True)
            if not p.steps:
                raise self.err("this forward line holds no formula", p.line)
            if p.jacobian is not None:
                raise self.err(
                    "a Jacobian statement belongs in [gradients]", p.jacobian.line, p.jacobian.column
                )
            if len(p.steps) > 1:
                raise self.err(
                    "a chain of '=' steps belongs in [gradients]: a forward line defines a name once",
                    p.steps[1].line,
                    p.steps[1].column,
                )
            if p.target in self.defined_at:
                raise self.err(
                    f"{p.target} is defined twice (first on line {self.defined_at[p.target]})", p.line
                )
            if p.target in self.used_at:
                raise self.err(
                    f"{p.target} is used on line {self.used_at[p.target]} before it is defined here", p.line
                )
            self._forward_matrix(p)
            conv = self._converter(p, self._forward_name(p), self._forward_tensor(p))
            walk = conv.walk(p.rhs)
            self._free_indices_match(p, walk)
            changed = True
            while changed:  # an index that only a delta holds ranges over its partner's axis
                changed = False
                for a, b, _ in conv.deltas:
                    for x, y in ((a, b), (b, a)):
                        if not x.occurrences and y.occurrences:
                            x.occurrences.append(y.occurrences[0])
                            changed = True
            for var in conv.index_vars:
                if var.limits is not None:
                    continue
                occ = var.occurrences
                if not occ and var.shifted:
                    # only shifted subscripts read it: it ranges over the size named after it (I for i),
                    # which [sizes] fixes or relates to the others
                    var.occurrences = occ = [_Occurrence("#" + var.name.upper(), 0, var.line, var.col)]
                if not occ:
                    raise self.err(
                        f"the range of index {var.name} cannot be inferred: it subscripts no tensor",
                        var.line,
                        var.col,
                    )
                for o in occ[1:]:
                    self.axes.union((occ[0].name, occ[0].axis), (o.name, o.axis))
            for a, b, _ in conv.deltas:  # a Kronecker delta pairs two indices of one size, as in [gradients]
                first_a, first_b = a.occurrences[0], b.occurrences[0]
                self.axes.union((first_a.name, first_a.axis), (first_b.name, first_b.axis))
            for axis, (iname, _, _) in enumerate(p.target_indices):
                first = walk.free[iname].occurrences[0]
                self.axes.union((p.target, axis), (first.name, first.axis))
            self.tensors[p.target] = Tensor(p.target, (), "forward")  # the shape is set once sizes are named
            self.arity[p.target] = (len(p.target_indices), p.line, 1)
            self.defined_at[p.target] = p.line
            walks.append((walk, conv))
        return walks

    def _forward_matrix(self, p: _Parsed):
        """A forward statement in matrix notation (`Y = X @ W.T + b`) becomes index notation in place:
        its target takes the indices of the translated right-hand side. Declared shapes ([inputs]
        `X: (N, D)`) and earlier forward statements give the shapes; an undeclared input is a scalar."""
        hints = self.hints

        def shape_of(name):
            if name in self.declared:
                return self.declared[name][0]
            return hints.get(name) or None

        sizes = frozenset(n for shape, _ in self.declared.values() for n in shape)
        taken = frozenset(FUNCTIONS) | set(self.declared) | set(hints) | sizes
        shapes = matrix.Shapes(shape_of, sizes, False, taken)
        step = p.steps[-1]
        if p.target_indices or not matrix.uses_matrix_notation(step.rhs, shapes):
            hints[p.target] = tuple(i.upper() for i, _, _ in p.target_indices)
            return
        term = matrix.translate(step.rhs, step.src, shapes)
        step.rhs = term.expr
        p.target_indices = [(i, p.line, 1) for i, _ in term.axes]
        p.source = p.source or p.text
        hints[p.target] = tuple(size for _, size in term.axes)

    def _undeclared_scalar(self, name: str | None, sizes: tuple | None = None) -> str:
        """Why a gradient's variable has no axes when [inputs] does not give its shape: a bias a student
        adds to X @ W is a scalar to [forward] unless declared (the hint ends the error's line)."""
        t = self.tensors.get(name) if name is not None else None
        if t is None or t.shape or t.role != "input" or name in self.given_inputs:
            return ""
        example = (
            f", as `{name}: ({', '.join(str(s) for s in sizes)})`" if sizes and None not in sizes else ""
        )
        return (
            f" ({name} is not in [inputs], so [forward] made it a scalar: declare its shape there{example})"
        )

    def _declared_shapes(self) -> dict[str, tuple[tuple[str, ...], int]]:
        """Shapes declared in [inputs] (`X: (N, D)`, `b: (K,)`, `t: (N, K), onehot(k)`): name -> (size
        names, line). Read before the forward, whose matrix statements need them."""
        self.hints: dict[str, tuple] = {}
        out: dict[str, tuple[tuple[str, ...], int]] = {}
        given: dict[str, int] = {}
        for line in logical_lines(self.sections.get("inputs", (0, []))[1], self.file):
            shape = _shape_part(line.text, line.number, self.file)
            if shape is None:
                continue
            name, node, src, _ = shape
            self._given_once(name, given, line.number)
            elts = node.elts if isinstance(node, ast.Tuple) else [node]
            sizes = []
            for e in elts:
                if not isinstance(e, ast.Name) or not _NAME.match(e.id) or e.id in FUNCTIONS:
                    raise src.error(e, "a shape lists size names: X: (N, D)")
                sizes.append(e.id)
            out[name] = (tuple(sizes), line.number)
        return out

    def _converter(self, p: _Parsed, resolve_name, resolve_tensor, src: Source | None = None) -> _Converter:
        src = src or p.src

        def resolve_constant(name, node):
            line, col = src.at(node)
            self.constant_refs.append((name, line, col))

        targets = [n for n, _, _ in p.target_indices or ()]
        return _Converter(src, resolve_name, resolve_tensor, targets, resolve_constant, self.base)

    def _forward_name(self, p: _Parsed):
        def resolve(name, node):
            if name in FUNCTIONS:
                raise p.src.error(node, f"{name} is a function: call it as {name}(...)")
            line, col = p.src.at(node)
            known = self.arity.get(name)
            if known is not None and known[0] > 0:
                raise p.src.error(node, f"{name} has {known[0]} indices but is used without them")
            self.bare_names.append((name, line, col))
            self.used_at.setdefault(name, line)
            return sp.Symbol(name, real=True)

        return resolve

    def _forward_tensor(self, p: _Parsed):
        def record(name, arity, node):
            line, col = p.src.at(node)
            if name in FUNCTIONS:
                raise p.src.error(node, f"{name} is a function name and cannot be a tensor")
            known = self.arity.get(name)
            if known is not None and known[0] != arity:
                raise p.src.error(
                    node, f"{name} is used with {arity} indices here but {known[0]} on line {known[1]}"
                )
            if known is None:
                self.arity[name] = (arity, line, col)
            self.used_at.setdefault(name, line)
            if name not in self.tensors:
                self.inputs.append(name)
                self.tensors[name] = Tensor(name, (), "input")

        return record

    def _free_indices_match(self, p: _Parsed, walk: _Walk, target_shape_known: bool = False):
        """Free indices on the right are those on the left. Where the target's shape is known (a gradient
        has its variable's shape), a left index may be absent on the right: the value does not vary
        along that axis."""
        left = {n for n, _, _ in p.target_indices}
        for name, var in walk.free.items():
            if name not in left:
                raise self.err(f"free index {name} on the right is not on the left", var.line, var.col)
        for name, line, col in p.target_indices:
            if name not in walk.free and not target_shape_known:
                raise self.err(f"index {name} on the left is not used on the right", line, col)

    def _name_sizes(self, walks):
        """Name every size by the upper-case form of the first index ranging over it (or by a declared
        shape, for an axis that only shifted subscripts read), then give every forward tensor its shape
        and sort the bare names into sizes, constants and scalar inputs."""
        classes: dict[tuple[str, int], str] = {}
        owner: dict[str, tuple[str, int]] = {}
        self._declared_sizes(classes, owner)
        for _, conv in walks:
            for var in sorted(conv.index_vars, key=lambda v: (v.line, v.col)):
                if var.limits is not None:
                    continue
                root = self.axes.find((var.occurrences[0].name, var.occurrences[0].axis))
                if root in classes:
                    continue
                size_name = var.name.upper()
                if size_name in owner:
                    raise self.err(
                        f"index {var.name} ranges over a new size, but {size_name} already names another size: "
                        "rename the index",
                        var.line,
                        var.col,
                    )
                classes[root] = size_name
                owner[size_name] = root
        self.class_name = classes
        self.sizes = {n: size(n) for n in owner}
        self._check_constant_refs()
        for name, t in list(self.tensors.items()):
            arity = self.arity[name][0]
            shape = []
            for k in range(arity):
                root = self.axes.find((name, k))
                if root not in classes:
                    line, col = self.arity[name][1:]
                    unnamed = iter(n for n in ("H", "W", "D", "E", "F", "G") if n not in self.sizes)
                    example = [classes.get(self.axes.find((name, m))) or next(unnamed) for m in range(arity)]
                    raise self.err(
                        f"the size of axis {k + 1} of {name} cannot be inferred: only shifted subscripts read it; "
                        f"declare its shape in [inputs], as in {name}: ({', '.join(example)}{',' * (arity == 1)})",
                        line,
                        col,
                    )
                shape.append(self.sizes[classes[root]])
            self.tensors[name] = Tensor(name, tuple(shape), t.role)
        for _, conv in walks:
            for var in conv.index_vars:
                if var.limits is None:
                    var.size = self._occurrence_size(var.occurrences[0])
        for name, line, col in self.bare_names:
            if name in self.sizes and name in self.tensors:
                raise self.err(f"{name} names both a size and a tensor: rename one", line, col)
            if name in self.tensors and self.arity[name][0] > 0:  # w used bare before w[n] in one statement
                arity = self.arity[name][0]
                raise self.err(
                    f"{name} has {arity} ind{'ex' if arity == 1 else 'ices'} but is used without them",
                    line,
                    col,
                )
            if name not in self.sizes and name not in self.tensors and name not in self.sizes_lines:
                self.inputs.append(name)
                self.tensors[name] = Tensor(name, (), "input")
                self.arity[name] = (0, line, col)

    def _declared_sizes(self, classes, owner):
        """Declared shapes name their sizes: axes declared with one size name are one size, and it
        takes that name. A declaration that contradicts the forward is an error."""
        for name, (sizes, line) in self.declared.items():
            if name in self.tensors and self.tensors[name].role == "forward":
                raise self.err(f"{name} is defined in [forward]: only inputs take a declared shape", line)
            if name not in self.arity:
                raise self.err(f"{name} is not an input of the forward", line)
            if self.arity[name][0] != len(sizes):
                raise self.err(
                    f"{name} is declared with {len(sizes)} axes but has {self.arity[name][0]} in [forward]",
                    line,
                )
            for k, size_name in enumerate(sizes):
                if size_name in owner and self.axes.find(owner[size_name]) != self.axes.find((name, k)):
                    self.axes.union(owner[size_name], (name, k))
                owner.setdefault(size_name, (name, k))
        for name, (sizes, line) in self.declared.items():
            for k, size_name in enumerate(sizes):
                root = self.axes.find((name, k))
                if classes.get(root, size_name) != size_name:
                    raise self.err(
                        f"{name} axis {k} is declared {size_name}, but the forward makes it the size "
                        f"{classes[root]} too: one size cannot have two names",
                        line,
                    )
                classes[root] = size_name
        for size_name, axis in list(owner.items()):
            owner[size_name] = self.axes.find(axis)

    def _occurrence_size(self, o: _Occurrence) -> sp.Symbol:
        return self.sizes[self.class_name[self.axes.find((o.name, o.axis))]]

    def _check_constant_refs(self):
        for name, line, col in self.constant_refs:
            if name in self.tensors:
                raise self.err(
                    f"{name} is a tensor: a subscript or a limit holds indices, sizes and constants",
                    line,
                    col,
                )
            if name not in self.sizes and name not in self.sizes_lines:
                raise self.err(
                    f"{name} is not an index, a size or a constant: an index must be the target's or bound "
                    f"by sum() or max(); a constant is fixed in [sizes] ({name} = 1)",
                    line,
                    col,
                )

    def _finish(self, p: _Parsed, wc, of) -> Statement:
        walk, conv = wc
        expr = self._close(walk.expr, conv)
        indices = tuple(index(n) for n, _, _ in p.target_indices)
        ranges = {index(name): walk.free[name].size for name, _, _ in p.target_indices}
        return Statement(p.target, indices, expr, p.line, 1, p.text, of, ranges, source=p.source)

    def _close(self, expr: sp.Expr, conv: _Converter, ranges: dict[int, sp.Symbol] | None = None) -> sp.Expr:
        """Replace bare size and constant names by their symbols and fill each sum's upper limit with its
        size (from `ranges` by id of the index variable, else the size the forward gave the index)."""
        subs = {sp.Symbol(n, real=True): s for n, s in self.sizes.items()}
        subs.update({sp.Symbol(n, real=True): constant(n) for n in self.sizes_lines if n not in self.sizes})
        limits = {}
        for _, var in conv.sum_ranges:
            size = ranges[id(var)] if ranges is not None else var.size
            assert size is not None, "size inference gives every summed index its size before closing"
            limits[_placeholder(var)] = size - 1
            if var.upper is not None:
                self.uppers.append((var, var.upper[0].xreplace(subs), size))
        return expr.xreplace(subs).xreplace(limits)

    def _check_uppers(self, fixed_sizes: Mapping[str, int]) -> None:
        """A LaTeX sum from 0 or 1 runs over its index's whole range: its upper limit must say so (N from
        1, N-1 from 0), else it states another sum (^{j}, ^{2}, N+1 terms) than the one checked."""
        values = {self.sizes[n]: v for n, v in fixed_sizes.items() if n in self.sizes}
        known = set(self.sizes.values()) | {constant(n) for n in self.sizes_lines if n not in self.sizes}
        for var, upper, extent in self.uppers:
            written, low, line, col = var.upper  # type: ignore[misc]
            if not upper.free_symbols <= known:
                continue  # the document's own name for the size (\sum_{k=1}^{K}, the classes it calls J)
            last = extent - 1 + low
            if sp.simplify((upper - last).xreplace(values)) != 0:
                raise self.err(
                    f"the sum over {var.name} runs over its whole range, {low} to {last}: its upper limit "
                    f"{written} says otherwise (a sum between two numbers starts below 0 or above 1, "
                    "as \\sum_{l=-1}^{0})",
                    line,
                    col,
                )

    def _check_input_names(self):
        for name in self.inputs:
            if name in self.sizes:
                line, col = self.arity[name][1:]
                raise self.err(f"{name} names both a size and a tensor: rename one", line, col)

    # -- [inputs] and [sizes] ---------------------------------------------------------------------------

    def _inputs_section(self) -> tuple[dict[str, sp.Rational], dict[str, Domain]]:
        fixed: dict[str, sp.Rational] = {}
        domains: dict[str, Domain] = {}
        if "inputs" not in self.sections:
            return fixed, domains
        given: dict[str, int] = {}  # name -> the line that gave its value or domain: a second would win
        for line in logical_lines(self.sections["inputs"][1], self.file):
            text = line.text
            eq = split_assignment(text)
            colon = text.find(":")
            if eq >= 0 and (colon < 0 or eq < colon):
                name = text[:eq].strip()
                self._known_input(name, line)
                self._given_once(name, given, line.number)
                if self.tensors[name].shape:
                    raise self.err(
                        f"{name} is a tensor: '= number' fixes scalars only; give a domain with ':'",
                        line.number,
                    )
                node, src = parse_tail(text, eq + 1, line.number, self.file)
                fixed[name] = self._constant(node, src)
            elif colon >= 0:
                name = text[:colon].strip()
                self._known_input(name, line)
                node, src = parse_tail(text, colon + 1, line.number, self.file)
                shape = _shape_part(text, line.number, self.file)
                if shape is not None:  # a declared shape (read before the forward), then perhaps a domain
                    node = shape[3]
                if node is not None:  # a shape alone is held once by _declared_shapes
                    self._given_once(name, given, line.number)
                    domains[name] = self._domain(name, node, src)
            else:
                raise self.err("expected 'name = number' or 'name: domain'", line.number)
        return fixed, domains

    def _given_once(self, name: str, given: dict[str, int], line: int) -> None:
        """An input's shape, or its value or domain, given on a second line of [inputs] would silently
        replace the first: an error naming both lines."""
        if name in given:
            raise self.err(f"{name} is given twice in [inputs] (first on line {given[name]})", line)
        given[name] = line

    def _known_input(self, name, line):
        if not _NAME.match(name):
            raise self.err(f"'{name}' is not a name", line.number)
        if name not in self.inputs:
            raise self.err(f"{name} is not an input of the forward", line.number)

    def _constant(self, node, src) -> sp.Rational:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self._constant(node.operand, src)
        if isinstance(node, ast.Constant):
            return number(node, src)
        raise src.error(node, "expected a number")

    def _domain(self, name, node, src) -> Domain:
        kind = node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else None
        if isinstance(node, ast.Name):
            kind = node.id
        if kind not in DOMAINS:
            raise src.error(
                node, "unknown domain: domains are normal, positive, uniform(a, b), simplex(k), onehot(k)"
            )
        shape = self.tensors[name].shape
        if kind in ("normal", "positive"):
            if not isinstance(node, ast.Name):
                raise src.error(node, f"{kind} takes no arguments")
            return Domain(kind)
        if not isinstance(node, ast.Call):
            raise src.error(node, f"{kind} needs arguments")
        if kind == "uniform":
            if len(node.args) != 2:
                raise src.error(node, "uniform takes two numbers: uniform(a, b)")
            low, high = (self._constant(a, src) for a in node.args)
            if not low < high:
                raise src.error(node, "uniform(a, b) needs a < b")
            low, high = Fraction(int(low.p), int(low.q)), Fraction(int(high.p), int(high.q))
            problem = limits.uniform_problem(low, high, DENOMINATOR)
            if problem:
                raise src.error(node, f"uniform(a, b) {problem}")
            return Domain(kind, low, high)
        if len(node.args) != 1 or not isinstance(node.args[0], ast.Name):
            raise src.error(node, f"{kind} takes one index name: {kind}(k)")
        if not shape:
            raise src.error(node, f"{name} is a scalar: {kind} needs a tensor")
        axis = self._axis_of(name, node.args[0].id)
        if axis is None:
            raise src.error(node.args[0], f"{name} is never indexed by {node.args[0].id} in [forward]")
        return Domain(kind, axis=axis)

    def _axis_of(self, name: str, idx: str) -> int | None:
        for s in self.parsed_forward:
            for node in ast.walk(s.rhs):
                if (
                    isinstance(node, ast.Subscript)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == name
                ):
                    slots = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
                    for k, slot in enumerate(slots):
                        if isinstance(slot, ast.Name) and slot.id == idx:
                            return k
        return None

    def _indexing(self) -> int:
        """0, or 1 for `indexing: 1-based`: a report's formula counts positions from 1 (x_1 is x[0])."""
        value = self.header.get("indexing", "0-based")
        if value not in ("0-based", "1-based"):
            raise self.err(f"indexing is 0-based or 1-based, not {value!r}", 1)
        return int(value[0])

    def _sizes_lines(self) -> dict[str, tuple[Line, int]]:
        """The names [sizes] sets, with their lines and the offset of their '=': read before the forward,
        so that the forward knows which names are constants."""
        out: dict[str, tuple[Line, int]] = {}
        if "sizes" not in self.sections:
            return out
        for line in logical_lines(self.sections["sizes"][1], self.file):
            eq = split_assignment(line.text)
            if eq < 0:
                raise self.err(
                    "expected 'N = number' or 'I = (H + 2*P - KH) / S + 1' in [sizes]", line.number
                )
            name = line.text[:eq].strip()
            if not _NAME.match(name):
                raise self.err(f"'{name}' is not a name", line.number)
            if name in out:
                raise self.err(
                    f"{name} is set twice in [sizes] (first on line {out[name][0].number})", line.number
                )
            if reserved(name):
                raise self.err(f"{reserved(name)}: rename it", line.number)
            out[name] = (line, eq)
        return out

    def _sizes_section(self) -> tuple[dict[str, int], dict[str, sp.Expr], dict[str, int]]:
        """Fixed sizes, sizes related to others (floor division, as the libraries compute output sizes)
        and integer constants such as a stride or a padding."""
        fixed: dict[str, int] = {}
        relations: dict[str, sp.Expr] = {}
        constants: dict[str, int] = {}
        used = {n for n, _, _ in self.constant_refs} | {n for n, _, _ in self.bare_names}
        for name, (line, eq) in self.sizes_lines.items():
            node, src = parse_tail(line.text, eq + 1, line.number, self.file)
            if name not in self.sizes:
                if name in self.tensors:
                    raise self.err(f"{name} is a tensor, not a size or a constant", line.number)
                if name not in used and not any(name in _names(r) for r, _ in self.sizes_lines.values()):
                    known = ", ".join(sorted(self.sizes)) or "none"
                    raise self.err(
                        f"{name} is not a size of this derivation (sizes: {known}) nor a constant it uses",
                        line.number,
                    )
                value = self._constant(node, src)
                if not (value.is_Integer and value >= 0):
                    raise self.err(f"constant {name} must be a whole number >= 0", line.number, eq + 2)
                if value > limits.MAX_SIZE:
                    raise src.error(
                        node,
                        f"constant {name} = {value} is above the largest the checks take, {limits.MAX_SIZE}",
                    )
                constants[name] = int(value)
                continue
            if isinstance(node, ast.Constant | ast.UnaryOp):
                value = self._constant(node, src)
                if not (value.is_Integer and value >= 1):
                    raise self.err(f"size {name} must be a whole number >= 1", line.number, eq + 2)
                if value > limits.MAX_SIZE:
                    raise src.error(
                        node,
                        f"size {name} = {value} is above the largest size the checks take, {limits.MAX_SIZE}",
                    )
                fixed[name] = int(value)
            else:
                relations[name] = self._relation(name, node, src)
        self._order_relations(relations)
        self._relations_hold(fixed, relations, constants)
        free_without_axis = [
            n for n in self.sizes if n not in fixed and n not in relations and not self._on_an_axis(n)
        ]
        if free_without_axis:
            n = free_without_axis[0]
            raise self.err(
                f"size {n} is the range of {n.lower()}, which only shifted subscripts use and no tensor has as an "
                f"axis: fix it in [sizes] ({n} = 3)",
                self.sections.get("sizes", self.sections["forward"])[0],
            )
        return fixed, relations, constants

    def _relations_hold(
        self, fixed: dict[str, int], relations: dict[str, sp.Expr], constants: dict[str, int]
    ) -> None:
        """Each relation divides by a positive number (a stride S = 0 divides by zero), and some sizes up
        to MAX_SIZE make every related size at least 1 (I = L - 40 cannot be sampled): else an error at
        its line, rather than a failure of the sampler."""
        values: dict[sp.Expr, sp.Expr] = {constant(k): sp.Integer(v) for k, v in constants.items()}
        values.update({self.sizes[k]: sp.Integer(v) for k, v in fixed.items()})
        for name, relation in relations.items():
            for f in relation.atoms(sp.floor):
                divisor = sp.fraction(sp.together(f.args[0]))[1].xreplace(values)
                if divisor.is_number and divisor <= 0:
                    raise self.err(
                        f"size {name} divides by {divisor}: a stride is at least 1",
                        self.sizes_lines[name][0].number,
                    )
        free = [s for n, s in self.sizes.items() if n not in fixed and n not in relations]
        windows = shrinking(relations.values(), values)
        low: str | None = None
        for v in range(1, limits.MAX_SIZE + 1):  # windows at 2, the smallest drawn; the other sizes at v
            at = dict(values) | {s: sp.Integer(2 if s in windows else v) for s in free}
            low = None
            for name, relation in relations.items():
                value = int(relation.xreplace(at))
                at[self.sizes[name]] = sp.Integer(value)
                low = low or (name if value < 1 else None)
            if low is None:
                return
        assert low is not None, "the loop returns unless a relation stays below 1"
        raise self.err(
            f"size {low} is below 1 for every size up to {limits.MAX_SIZE}: no sample can be drawn",
            self.sizes_lines[low][0].number,
        )

    def _on_an_axis(self, size_name: str) -> bool:
        return any(size_name == s.name for t in self.tensors.values() for s in t.shape)

    def _relation(self, name: str, node, src) -> sp.Expr:
        """`(H + 2*P - KH) / S + 1`: whole numbers, sizes and constants with + - * and / or // (both
        divide and round down, as the libraries compute an output size)."""

        def walk(n):
            if isinstance(n, ast.Constant):
                if isinstance(n.value, bool) or not isinstance(n.value, int):
                    raise src.error(n, "a size relation holds whole numbers, sizes and constants")
                return sp.Integer(n.value)
            if isinstance(n, ast.Name):
                if n.id == name:
                    raise src.error(n, f"size {name} cannot be defined by itself")
                if n.id in self.sizes:
                    return self.sizes[n.id]
                if n.id in self.sizes_lines:
                    return constant(n.id)
                raise src.error(n, f"{n.id} is not a size or a constant of [sizes]")
            if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
                return -walk(n.operand)
            if isinstance(n, ast.BinOp) and isinstance(
                n.op, ast.Add | ast.Sub | ast.Mult | ast.Div | ast.FloorDiv
            ):
                a, b = walk(n.left), walk(n.right)
                if isinstance(n.op, ast.Div | ast.FloorDiv):
                    return sp.floor(a / b)
                return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}[type(n.op)]
            raise src.error(
                n, f"{_describe(n)} is not allowed in a size relation: use + - * / and parentheses"
            )

        return walk(node)

    def _order_relations(self, relations: dict[str, sp.Expr]) -> None:
        """Sort the relations so that each comes after those it uses; a cycle is an error."""
        done: dict[str, sp.Expr] = {}
        pending = dict(relations)
        while pending:
            ready = [n for n, r in pending.items() if not ({s.name for s in r.free_symbols} & set(pending))]
            if not ready:
                n = next(iter(pending))
                raise self.err(
                    f"the size relations of {', '.join(pending)} depend on each other",
                    self.sizes_lines[n][0].number,
                )
            for n in ready:
                done[n] = pending.pop(n)
        relations.clear()
        relations.update(done)

    # -- [gradients] ------------------------------------------------------------------------------------

    def _gradients(self, output: str, upstream: str) -> list[Statement]:
        out: list[Statement] = []
        lines = logical_lines(self.sections["gradients"][1], self.file)
        if not lines:
            raise self.err("section [gradients] has no statements", self.sections["gradients"][0])
        for p in (s for ln in lines for s in _statements(ln, self.file)):
            if isinstance(p, latexin.Tex):
                p = self._latex(p, forward=False, output=output, statements=out)
                if not p.steps:  # every step of it holds a derivative operator or the like
                    continue
            if p.jacobian is not None and not self._is_gradient_form(p, output):
                out += self._jacobian_statements(p, output, upstream)
                continue
            # a report restates a gradient (an index form, then `\Rightarrow` its matrix form): checked
            # again under its own name; later statements read the first
            restated = p.latex and p.target in self.tensors and self.tensors[p.target].role == "gradient"
            if not restated:
                self._check_new_name(p, upstream)
            of = p.target[1:] if p.target.startswith("d") and len(p.target) > 1 else None
            if of is not None and (
                of not in self.tensors or self.tensors[of].role not in ("input", "forward")
            ):
                # d + an unknown name is far more often a typo for a gradient than a helper
                raise self.err(
                    f"{p.target} is not the gradient of an input or intermediate (there is no {of}); "
                    "name a helper without a leading 'd'",
                    p.line,
                )
            if of is None and len(p.steps) > 1:
                step = p.steps[1]
                raise self.err(
                    f"a chain of steps needs a checked target (dNAME or a Jacobian); {p.target} is a helper",
                    step.line,
                    step.column,
                )
            n = len(p.steps)
            for k, step in enumerate(p.steps, start=1):
                target = p.target if k == n else step_name(p.target, k)
                if restated:
                    target = next(
                        step_name(p.target, m)
                        for m in range(1000, 10**6)
                        if step_name(p.target, m) not in self.tensors
                    )
                chain = (k, n) if n > 1 else None
                again = p.line if restated else 0
                out.append(self._claim(p, step, target, of, output, upstream, chain=chain, restated=again))
        if not any(s.checked for s in out):
            raise self.err(
                "[gradients] has no statement dNAME for an input or intermediate NAME, and no Jacobian",
                lines[0].number,
            )
        return out

    def _latex(self, tex, forward: bool, output: str | None = None, statements=()) -> _Parsed:
        """A LaTeX statement read against the names known at its place in the file."""
        if forward:

            def rank(name):
                if name in self.declared:
                    return len(self.declared[name][0])
                return self.arity[name][0] if name in self.arity else None

            # the axes of the inputs and what [sizes] sets (a window's KH, a stride S, read before)
            sizes = frozenset(
                {n for shape, _ in self.declared.values() for n in shape} | set(self.sizes_lines)
            )
            names = latexin.Names(rank, sizes, self.symbols, None, True)
        else:

            def rank(name):
                return len(self.tensors[name].shape) if name in self.tensors else None

            loss = output if output is not None and not self.tensors[output].shape else None
            jacobians = {
                (s.jacobian.of, s.jacobian.wrt): (
                    s.target,
                    tuple(i.name for i in s.jacobian.of_indices),
                    tuple(i.name for i in s.jacobian.wrt_indices),
                )
                for s in statements
                if s.jacobian is not None
                and s.jacobian.named
                and s.chain in (None, (s.chain[1], s.chain[1]) if s.chain else None)
            }
            names = latexin.Names(rank, frozenset(self.sizes), self.symbols, loss, False, jacobians)
        p = latexin.read(tex, names)
        if p.target and reserved(p.target):
            raise self.err(f"{reserved(p.target)} and cannot be defined", p.line)
        self.unchecked += [(line, col, f"not checked: {why}") for line, col, why in p.unchecked]
        return p

    def _symbols_section(self) -> dict[tuple, str]:
        """[symbols]: `LaTeX symbol = name` lines, for symbols the rules do not resolve."""
        out = {}
        for line in logical_lines(self.sections.get("symbols", (0, []))[1], self.file):
            eq = line.text.rfind("=")
            name = line.text[eq + 1 :].strip() if eq > 0 else ""
            if not _NAME.match(name):
                raise self.err("expected 'LaTeX symbol = name' in [symbols]", line.number)
            if reserved(name) and name not in FUNCTIONS:
                raise self.err(f"{reserved(name)}: map the symbol to another name", line.number, eq + 2)
            key = latexin.symbol_key(line.text[:eq], line, self.file)
            if key in out:
                raise self.err(f"{line.text[:eq].strip()} is mapped twice in [symbols]", line.number)
            out[key] = name
        return out

    def _check_new_name(self, p: _Parsed, upstream: str, name: str | None = None):
        """A gradient statement defines a new name: not the upstream gradient, a size, or a name in use."""
        name = name or p.target
        if name == upstream:
            raise self.err(f"{upstream} is the upstream gradient and cannot be defined", p.line)
        if name in self.tensors:
            role = self.tensors[name].role
            what = {"input": "an input", "forward": "defined in [forward]"}.get(role, "defined twice")
            raise self.err(f"{name} is {what}: a gradient statement cannot redefine it", p.line)
        if name in self.sizes:
            raise self.err(f"{name} names a size", p.line)

    def _is_gradient_form(self, p: _Parsed, output: str) -> bool:
        """`dL/dW[i,j] = ...`, with L the loss (the scalar output, or a name the forward does not define):
        the gradient dW written as a quotient; it becomes that gradient statement."""
        jac = p.jacobian
        assert jac is not None, "asked of a Jacobian statement"
        loss = jac.of == output and not self.tensors[output].shape
        if not (loss or (jac.of == "L" and "L" not in self.tensors)) or p.target:
            return False
        p.target = "d" + jac.wrt
        p.target_indices = list(jac.wrt_indices or [])
        p.bare_target = jac.wrt_indices is None
        p.jacobian = None
        return True

    def _jacobian_statements(self, p: _Parsed, output: str, upstream: str) -> list[Statement]:
        """`dy[n,k]/dx[p,m] = expr` (each step of a chain of them): the target's indices are the distinct
        letters of numerator and denominator, in order; each letter ranges over its axis of y or x."""
        jac = p.jacobian
        assert jac is not None, "called for a Jacobian statement"
        where = (jac.line, jac.column)
        y, x = jac.of, jac.wrt
        if y not in self.tensors or self.tensors[y].role != "forward":
            raise self.err(f"d{y}/d{x}: {y} is not defined in [forward]", *where)
        if x not in self.tensors or self.tensors[x].role not in ("input", "forward"):
            raise self.err(f"d{y}/d{x}: {x} is not an input or intermediate", *where)
        if jac.of_indices is None and not self.tensors[y].shape:
            jac.of_indices = []  # a scalar takes no indices
        if jac.wrt_indices is None and not self.tensors[x].shape:
            jac.wrt_indices = []
        if jac.of_indices is None and jac.wrt_indices is None:  # matrix notation: all entries, y's axes first
            used: set[str] = set()
            taken = self._gradient_shapes().taken
            jac.of_indices = [
                (matrix.fresh_index(s.name, used, taken), *where) for s in self.tensors[y].shape
            ]
            jac.wrt_indices = [
                (matrix.fresh_index(s.name, used, taken), *where) for s in self.tensors[x].shape
            ]
        if jac.of_indices is None or jac.wrt_indices is None:
            raise self.err(f"d{y}/d{x} needs indices on both sides, as in d{y}[n,k]/d{x}[n,m]", *where)
        letters: dict[str, tuple[int, int, sp.Symbol]] = {}
        for name, indices in ((y, jac.of_indices), (x, jac.wrt_indices)):
            shape = self.tensors[name].shape
            if len(indices) != len(shape):
                raise self.err(f"{name} has {len(shape)} indices, not {len(indices)}", *where)
            for (letter, line, col), s in zip(indices, shape, strict=True):
                if letter in letters and letters[letter][2] != s:
                    raise self.err(
                        f"index {letter} ranges over {letters[letter][2]} in {y} but over {s} in {x}",
                        line,
                        col,
                    )
                letters.setdefault(letter, (line, col, s))
        target = p.target
        if not target:  # unnamed: d{y}_d{x}, numbered when the pair has another statement already
            target = f"d{y}_d{x}"
            k = 1
            while target in self.tensors:
                k += 1
                target = f"d{y}_d{x}{k}"
        self._check_new_name(p, upstream, target)
        p.target_indices = [(letter, line, col) for letter, (line, col, _) in letters.items()]
        claim = Jacobian(
            y,
            tuple(index(i) for i, _, _ in jac.of_indices),
            x,
            tuple(index(i) for i, _, _ in jac.wrt_indices),
            named=bool(p.target),
        )
        shape = tuple(s for _, _, s in letters.values())
        n = len(p.steps)
        out = []
        for k, step in enumerate(p.steps, start=1):
            name = target if k == n else step_name(target, k)
            chain = (k, n) if n > 1 else None
            out.append(self._claim(p, step, name, None, output, upstream, chain, claim, shape))
        return out

    def _claim(
        self,
        p: _Parsed,
        step: Step,
        target: str,
        of: str | None,
        output: str,
        upstream: str,
        chain: tuple[int, int] | None = None,
        jacobian: Jacobian | None = None,
        target_shape: tuple[sp.Symbol, ...] | None = None,
        restated: int = 0,
    ) -> Statement:
        """One statement of [gradients] from one step: a gradient dv (of = v), a helper, or a Jacobian."""
        scalar_upstream = not self.tensors[output].shape
        src = step.src
        rhs, source = step.rhs, p.source
        want = self.tensors[of].shape if of is not None else target_shape
        shapes = self._gradient_shapes()
        if matrix.uses_matrix_notation(rhs, shapes) or (p.bare_target and want):
            rhs, indices, sizes = self._matrix_step(p, step, target, of, want, shapes)
            p = replace(p, target_indices=indices)
            source = p.source or p.text
            if want is None and all(s in self.sizes for s in sizes):  # a helper: the shape it was given
                target_shape = tuple(self.sizes[s] for s in sizes)
        else:
            rhs = matrix.embed(rhs, src, shapes)

        def resolve(name, node):
            if name in FUNCTIONS:
                raise src.error(node, f"{name} is a function: call it as {name}(...)")
            if name in self.sizes:
                return self.sizes[name]
            if name in self.sizes_lines:
                return constant(name)
            if name == upstream and scalar_upstream:
                return sp.Integer(1)
            t = self.tensors.get(name)
            if t is None:
                raise src.error(node, f"undefined name {name}")
            if t.shape:
                raise src.error(node, f"{name} has {len(t.shape)} indices but is used without them")
            return sp.Symbol(name, real=True)

        def tensor(name, arity, node):
            if name in FUNCTIONS:
                raise src.error(node, f"{name} is a function name and cannot be a tensor")
            if name == upstream and scalar_upstream:
                raise src.error(node, f"{upstream} is the scalar upstream gradient 1 and takes no indices")
            t = self.tensors.get(name)
            if t is None:
                if name in self.sizes:
                    raise src.error(node, f"{name} is a size and takes no indices")
                raise src.error(node, f"undefined name {name}")
            if len(t.shape) != arity:
                raise src.error(node, f"{name} has {len(t.shape)} indices, not {arity}")

        conv = self._converter(p, resolve, tensor, src)
        walk = conv.walk(rhs)
        self._check_constant_refs()
        if of is not None:
            target_shape = self.tensors[of].shape
            if len(target_shape) != len(p.target_indices):
                hint = self._undeclared_scalar(of)
                raise self.err(f"{p.target} must have {len(target_shape)} indices, like {of}{hint}", p.line)
        self._free_indices_match(p, walk, target_shape is not None)
        ranges = self._index_ranges(p, conv, walk, target_shape)
        absent = dict(zip((n for n, _, _ in p.target_indices), target_shape or (), strict=False))
        shape = tuple(
            ranges[id(walk.free[n])] if n in walk.free else absent[n] for n, _, _ in p.target_indices
        )
        if target_shape is not None:
            for k, (got, exp) in enumerate(zip(shape, target_shape, strict=True)):
                if got != exp:
                    name, line, col = p.target_indices[k]
                    where = f"axis {k} of {of} has size {exp}" if of else f"its axis has size {exp}"
                    raise self.err(f"index {name} of {p.target} ranges over {got}, but {where}", line, col)
        role = "gradient" if of else "jacobian" if jacobian else "helper"
        self.tensors[target] = Tensor(target, shape, role)
        expr = self._close(walk.expr, conv, ranges)
        indices = tuple(index(n) for n, _, _ in p.target_indices)
        return Statement(
            target,
            indices,
            expr,
            step.line if chain else p.line,
            step.column if chain else 1,
            p.text,
            of,
            dict(zip(indices, shape, strict=True)),
            jacobian,
            chain,
            source if chain is None or chain[0] == 1 else "",
            restated,
        )

    def _gradient_shapes(self) -> matrix.Shapes:
        def shape_of(name):
            t = self.tensors.get(name)
            return tuple(s.name for s in t.shape) if t is not None and t.shape else None

        taken = frozenset(FUNCTIONS) | set(self.tensors) | set(self.sizes)
        return matrix.Shapes(shape_of, frozenset(self.sizes), True, taken)

    def _matrix_step(self, p: _Parsed, step: Step, target: str, of, want, shapes):
        """A step in matrix notation as index notation, the target's indices (its own letters where it has
        them, else one per axis of the result) and the result's sizes. A gradient has the shape of its
        variable (denominator layout); a result of another shape is an error that says which."""
        letters = [n for n, _, _ in p.target_indices] or None
        term = matrix.translate(step.rhs, step.src, shapes, letters)
        got = tuple(size for _, size in term.axes)
        where = (step.line, step.column)
        if letters is not None and len(letters) != term.rank:
            raise self.err(
                f"this matrix expression has {term.rank} axes ({_dims(got)}), but {step_of(target)} has "
                f"{len(letters)} indices",
                *where,
            )
        if want is not None:
            expected = tuple(s.name for s in want)
            name = step_of(target) if of is not None else "the Jacobian"
            if of is not None:
                what = f"its variable {of}"
            else:
                assert p.jacobian is not None, "a statement without a variable is a Jacobian"
                what = f"d{p.jacobian.of}/d{p.jacobian.wrt}"
            if len(got) != len(expected):
                hint = self._undeclared_scalar(of, got)
                raise self.err(f"{name} is {_dims(got)}, but {what} is {_dims(expected)}{hint}", *where)
            if got != expected and got == expected[::-1] and of is not None:
                raise self.err(
                    f"{name} is {_dims(got)}, but {of} is {_dims(expected)}: a gradient has the shape of its "
                    "variable (denominator layout), and this is its transpose (numerator layout)",
                    *where,
                )
            if got != expected:
                raise self.err(f"{name} is {_dims(got)}, but {what} is {_dims(expected)}", *where)
        indices = p.target_indices or [(i, p.line, 1) for i, _ in term.axes]
        return term.expr, indices, got

    def _index_ranges(self, p: _Parsed, conv: _Converter, walk: _Walk, target_shape) -> dict[int, sp.Symbol]:
        """The size each index variable of a gradient statement ranges over, by id of the variable.

        An index that subscripts tensors ranges over their axes (which must agree). One that does not
        (it appears only in deltas or shifted subscripts, and perhaps on the left) takes its range from
        the target's axis when it is a target index whose axis is known (`target_shape`), else from its
        partner in a delta, else from the size named after it (kh over KH, as in the forward). An index
        with explicit limits, sum(e, (l, -1, 0)), has no size."""
        ranges: dict[int, sp.Symbol] = {}
        for var in conv.index_vars:
            if var.limits is not None or not var.occurrences:
                continue
            first = var.occurrences[0]
            s0 = self.tensors[first.name].shape[first.axis]
            for o in var.occurrences[1:]:
                s1 = self.tensors[o.name].shape[o.axis]
                if s1 != s0:
                    raise self.err(
                        f"index {var.name} ranges over axes of different sizes: {s0} ({first.name} axis {first.axis}) "
                        f"and {s1} ({o.name} axis {o.axis})",
                        o.line,
                        o.col,
                    )
            ranges[id(var)] = s0
        if target_shape is not None:
            for (name, _, _), s in zip(p.target_indices, target_shape, strict=True):
                target_var = walk.free.get(name)
                if target_var is not None and not target_var.occurrences:
                    ranges[id(target_var)] = s
        changed = True
        while changed:
            changed = False
            for a, b, _ in conv.deltas:
                for x, y in ((a, b), (b, a)):
                    if id(x) not in ranges and id(y) in ranges:
                        ranges[id(x)] = ranges[id(y)]
                        changed = True
        for var in conv.index_vars:
            if var.limits is not None:
                continue
            if id(var) not in ranges and var.shifted and var.name.upper() in self.sizes:
                ranges[id(var)] = self.sizes[var.name.upper()]
            if id(var) not in ranges:
                raise self.err(
                    f"the range of index {var.name} cannot be inferred: it subscripts no tensor"
                    + (" plainly and no size is named after it" if var.shifted else ""),
                    var.line,
                    var.col,
                )
            var.size = ranges[id(var)]
        for a, b, node in conv.deltas:
            if ranges[id(a)] != ranges[id(b)]:
                raise conv.src.error(
                    node,
                    f"delta({a.name}, {b.name}) pairs index {a.name} over {ranges[id(a)]} with "
                    f"index {b.name} over {ranges[id(b)]}",
                )
        return ranges


def _names(line: Line) -> set[str]:
    """The names a [sizes] line's right-hand side mentions (its text after '=')."""
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", line.text.split("=", 1)[1]))


def parse(text: str, file: str | None = None, name: str = "derivation") -> Derivation:
    """Parse derivation text; `file` is only used in error messages."""
    d = _Loader(text, file, name).load()
    d.text = text
    return d
