"""Derivation text into statements: comments, headers, sections, continuation lines, and the map from
positions inside a parsed fragment back to the file's line and column.

Formula text is untrusted. A fragment is parsed with Python's `ast` module only (never evaluated), and
every problem is a `DerivationError` carrying the line and column where it was found.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from fractions import Fraction

import sympy as sp

from . import limits
from .model import DerivationError

SECTIONS = ("forward", "gradients", "inputs", "sizes", "symbols")
HEADER_KEYS = ("title", "source", "notes", "indexing")


@dataclass(frozen=True)
class Line:
    number: int  # 1-based line of the statement's first line
    text: str  # the logical statement, physical lines joined by newlines, comments removed


def physical_lines(text: str) -> list[str]:
    """The lines of a file as editors and `file:line` messages count them: split at line feeds only
    (a carriage return before one, or alone, ends a line too). A form feed, a vertical tab or U+2028 is
    a character inside its line, where Python's `splitlines` would start a new line and shift every
    later line number."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


# LaTeX's display environments: their rows are one statement, laid out (`notation.latexin.layout`)
ENVIRONMENTS = r"aligned|align\*?|split|equation\*?|gathered|gather\*?|multline\*?|eqnarray\*?"
_ENVIRONMENT = re.compile(rf"\\(begin|end)\s*\{{({ENVIRONMENTS})\}}")


def logical_lines(lines: list[tuple[int, str]], file: str | None) -> list[Line]:
    """Join physical lines into statements: a statement goes on while a bracket or a LaTeX display
    environment (`\\begin{aligned}` ... `\\end{aligned}`, pasted as a report has it, unindented) is
    open, or the next line is indented."""
    out: list[Line] = []
    parts: list[str] = []
    start, depth, inside = 0, 0, 0
    opened: tuple[int, int, str] | None = None  # where the outermost open environment begins
    for number, text in lines:
        if not text.strip():
            continue
        if parts and (depth > 0 or inside > 0 or text[:1] in " \t"):
            parts.append(text)
        else:
            if parts:
                out.append(Line(start, "\n".join(parts)))
            if text[:1] in " \t":
                raise DerivationError("unexpected indentation", number, 1, file)
            start, parts, depth, inside = number, [text], 0, 0
        for m in _ENVIRONMENT.finditer(text):
            if m.group(1) == "begin" and inside <= 0:
                opened = (number, m.start() + 1, m.group(2))
            inside += 1 if m.group(1) == "begin" else -1
        for ch in text:
            depth += ch in "([{"
            depth -= ch in ")]}"
            if depth < 0:
                raise DerivationError(f"unmatched '{ch}'", number, text.index(ch) + 1, file)
    if inside > 0 and opened is not None:
        line, column, name = opened
        raise DerivationError(f"\\begin{{{name}}} is never ended: add \\end{{{name}}}", line, column, file)
    if parts:
        out.append(Line(start, "\n".join(parts)))
    if len(out) > limits.MAX_STATEMENTS:
        extra = out[limits.MAX_STATEMENTS].number
        raise DerivationError(f"more than {limits.MAX_STATEMENTS} statements in one section", extra, 1, file)
    return out


def split_sections(text: str, file: str | None):
    header: dict[str, str] = {}
    sections: dict[str, tuple[int, list[tuple[int, str]]]] = {}
    current: str | None = None
    last_key: str | None = None
    for number, raw in enumerate(physical_lines(text), start=1):
        line = raw.split("#", 1)[0].rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("[") and stripped.endswith("]") and line[:1] == "[":
            name = stripped[1:-1].strip()
            if name not in SECTIONS:
                raise DerivationError(
                    f"unknown section [{name}]: sections are " + ", ".join(f"[{s}]" for s in SECTIONS),
                    number,
                    1,
                    file,
                )
            if name in sections:
                raise DerivationError(
                    f"section [{name}] appears twice (first on line {sections[name][0]})", number, 1, file
                )
            sections[name] = (number, [])
            current = name
            continue
        if current is None:
            if line[:1] in " \t" and last_key is not None:
                header[last_key] += " " + stripped
                continue
            key, colon, value = line.partition(":")
            if not colon or key.strip() not in HEADER_KEYS:
                raise DerivationError(
                    "expected a header line 'title: ...', 'source: ...' or 'notes: ...' or a section such as [forward]",
                    number,
                    1,
                    file,
                )
            last_key = key.strip()
            header[last_key] = value.strip()
            continue
        sections[current][1].append((number, line))
    return header, sections


def _char_col(line_text: str, byte_col: int) -> int:
    return len(line_text.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))


class Source:
    """Maps ast positions inside one parsed fragment back to the file's line and column (1-based)."""

    def __init__(self, text: str, line: int, column: int, file: str | None, prefix: int = 0):
        self.lines = text.split("\n")
        self.line, self.column, self.file, self.prefix = line, column, file, prefix

    def at(self, node: ast.AST) -> tuple[int, int]:
        lineno = getattr(node, "lineno", 1)
        col = _char_col(self.lines[lineno - 1], getattr(node, "col_offset", 0))
        if lineno == 1:
            return self.line, self.column + col - self.prefix
        return self.line + lineno - 1, col + 1

    def error(self, node: ast.AST, message: str) -> DerivationError:
        line, col = self.at(node)
        return DerivationError(message, line, col, self.file)


def parse_fragment(text: str, src: Source) -> ast.expr:
    if len(text) > limits.MAX_STATEMENT_CHARS:
        line, col = src.at(ast.Constant(value=0, lineno=1, col_offset=src.prefix))
        raise DerivationError(
            f"statement longer than {limits.MAX_STATEMENT_CHARS} characters", line, col, src.file
        )
    if "\0" in text:  # ast.parse refuses it with a ValueError that has no position
        lineno = text[: text.index("\0")].count("\n") + 1
        before = text[: text.index("\0")].rsplit("\n", 1)[-1]
        line, col = src.at(ast.Constant(value=0, lineno=lineno, col_offset=len(before.encode("utf-8"))))
        raise DerivationError("a NUL character", line, col, src.file)
    try:
        tree = ast.parse(text, mode="eval")
    except (RecursionError, MemoryError):
        # CPython's parser gives up on a few thousand nested operators (x**2**2**..., - - - x)
        line, col = src.at(ast.Constant(value=0, lineno=1, col_offset=src.prefix))
        raise DerivationError(
            f"expression nested too deeply (more than {limits.MAX_DEPTH} levels)", line, col, src.file
        ) from None
    except SyntaxError as e:
        line, col = src.at(
            ast.Constant(value=0, lineno=e.lineno or 1, col_offset=max((e.offset or 1) - 1, 0))
        )
        msg = (e.msg or "invalid syntax").split(" (", 1)[0]
        if "forgot a comma" in msg:  # Python's guess inside the brackets a statement is parsed in
            msg = (
                "two terms side by side: join them with * (@ for a matrix product), or write the line in "
                "LaTeX, which starts with a command (\\mathbf{X}) or holds one (\\cdot)"
            )
        raise DerivationError(f"syntax error: {msg}", line, col, src.file) from None
    check_tree(tree.body, src)
    return tree.body


# Binary operators that chain left to right at one precedence (`a + b - c`): a chain is one level deep.
_CHAINED = {ast.Add: "+", ast.Sub: "+", ast.Mult: "*", ast.Div: "*"}


def check_tree(tree: ast.expr, src: Source) -> None:
    """Hold one parsed expression to MAX_NODES syntax nodes and MAX_DEPTH levels of nesting, before
    anything walks it recursively. Iterative, so that it cannot overflow the stack itself."""
    count = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, level = stack.pop()
        count += 1
        if count > limits.MAX_NODES:
            raise src.error(
                node, f"expression too long: more than {limits.MAX_NODES} terms, names and operators"
            )
        if level > limits.MAX_DEPTH:
            raise src.error(node, f"expression nested too deeply: more than {limits.MAX_DEPTH} levels")
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr_context | ast.operator | ast.cmpop | ast.unaryop):
                continue
            chained = (
                isinstance(node, ast.BinOp)
                and child is node.left
                and isinstance(child, ast.BinOp)
                and _CHAINED.get(type(child.op), 0) == _CHAINED.get(type(node.op))
            )
            stack.append((child, level if chained else level + 1))


_EXPONENT = re.compile(r"[eE]([+-]?[0-9_]+)\Z")


def number(node: ast.Constant, src: Source) -> sp.Rational:
    """A number literal, read exactly (`1e-5` is 1/100000), within the limits on literals."""
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "a string" if isinstance(value, str) else repr(type(value).__name__)
        raise src.error(node, f"{kind} is not allowed here: only numbers, names and the listed functions")
    literal = _segment(node, src) or repr(value)
    if len(literal) > limits.MAX_LITERAL_CHARS:
        raise src.error(node, f"number literal longer than {limits.MAX_LITERAL_CHARS} characters")
    exponent = _EXPONENT.search(literal) if isinstance(value, float) else None
    # checked on the text first: Fraction('1e999999999') would build a billion-digit integer
    if exponent and abs(int(exponent[1].replace("_", ""))) > limits.MAX_EXPONENT + limits.MAX_LITERAL_CHARS:
        raise src.error(
            node,
            f"the number {literal} is out of range (1e-{limits.MAX_EXPONENT} .. 1e{limits.MAX_EXPONENT})",
        )
    if isinstance(value, int):
        exact = Fraction(value)
    else:
        try:
            exact = Fraction(literal.replace("_", ""))
        except ValueError:
            exact = Fraction(value)
    problem = limits.magnitude_problem(exact)
    if problem:
        raise src.error(node, f"the number {literal} {problem}")
    return sp.Rational(exact.numerator, exact.denominator)


def _segment(node: ast.expr, src: Source) -> str:
    """The text of a one-line node (ast offsets count UTF-8 bytes)."""
    if node.lineno != node.end_lineno:
        return ""
    line = src.lines[node.lineno - 1].encode("utf-8")
    return line[node.col_offset : node.end_col_offset].decode("utf-8", errors="replace")


def parse_tail(text: str, offset: int, line: int, file: str | None) -> tuple[ast.expr, Source]:
    """Parse text[offset:] (which may run over several lines) as one expression.

    It is parsed inside parentheses so that indented continuation lines are legal; the source map puts
    the node columns of the first line back at their place after `offset`."""
    before = text[:offset]
    first_line = line + before.count("\n")
    column = len(before.split("\n")[-1]) + 1
    wrapped = "(" + text[offset:] + ")"
    src = Source(wrapped, first_line, column, file, prefix=1)
    return parse_fragment(wrapped, src), src


def split_assignment(text: str) -> int:
    """The offset of the statement's '=' (not part of == <= >= !=), or -1."""
    found = split_equalities(text)
    return found[0] if found else -1


def split_equalities(text: str) -> list[int]:
    """The offsets of every top-level '=' of a statement (not part of == <= >= !=): one for a
    definition, more for a chain `dW[i,j] = e1 = e2`."""
    out, depth = [], 0
    for k, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "=" and depth == 0:
            before = text[k - 1] if k else ""
            after = text[k + 1] if k + 1 < len(text) else ""
            if before not in "=<>!" and after != "=":
                out.append(k)
    return out
