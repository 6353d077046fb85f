"""Derivation text into statements: comments, headers, sections, continuation lines, and the map from
positions inside a parsed fragment back to the file's line and column.

Formula text is untrusted. A fragment is parsed with Python's `ast` module only (never evaluated), and
every problem is a `DerivationError` carrying the line and column where it was found.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from fractions import Fraction

import sympy as sp

from .model import DerivationError

SECTIONS = ("forward", "gradients", "inputs", "sizes")
HEADER_KEYS = ("title", "source", "notes")


@dataclass(frozen=True)
class Line:
    number: int  # 1-based line of the statement's first line
    text: str  # the logical statement, physical lines joined by newlines, comments removed


def logical_lines(lines: list[tuple[int, str]], file: str | None) -> list[Line]:
    """Join physical lines into statements: a statement goes on while a bracket is open or the next line
    is indented."""
    out: list[Line] = []
    start, parts, depth = 0, [], 0
    for number, text in lines:
        if not text.strip():
            continue
        if parts and (depth > 0 or text[:1] in " \t"):
            parts.append(text)
        else:
            if parts:
                out.append(Line(start, "\n".join(parts)))
            if text[:1] in " \t":
                raise DerivationError("unexpected indentation", number, 1, file)
            start, parts, depth = number, [text], 0
        for ch in text:
            depth += ch in "([{"
            depth -= ch in ")]}"
            if depth < 0:
                raise DerivationError(f"unmatched '{ch}'", number, text.index(ch) + 1, file)
    if parts:
        out.append(Line(start, "\n".join(parts)))
    return out


def split_sections(text: str, file: str | None):
    header: dict[str, str] = {}
    sections: dict[str, tuple[int, list[tuple[int, str]]]] = {}
    current: str | None = None
    last_key: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
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
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        line, col = src.at(
            ast.Constant(value=0, lineno=e.lineno or 1, col_offset=max((e.offset or 1) - 1, 0))
        )
        msg = (e.msg or "invalid syntax").split(" (", 1)[0]
        raise DerivationError(f"syntax error: {msg}", line, col, src.file) from None
    return tree.body


def number(node: ast.Constant, src: Source) -> sp.Rational:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "a string" if isinstance(value, str) else repr(type(value).__name__)
        raise src.error(node, f"{kind} is not allowed here: only numbers, names and the listed functions")
    if isinstance(value, int):
        return sp.Integer(value)
    literal = ast.get_source_segment("\n".join(src.lines), node) or repr(value)
    try:
        exact = Fraction(literal.replace("_", ""))
    except ValueError:
        exact = Fraction(value)
    return sp.Rational(exact.numerator, exact.denominator)


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
    depth = 0
    for k, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "=" and depth == 0:
            before = text[k - 1] if k else ""
            after = text[k + 1] if k + 1 < len(text) else ""
            if before not in "=<>!" and after != "=":
                return k
    return -1


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
