"""LaTeX statements, as pasted from a report, read into the index-notation `ast` the parser walks.

A statement line is LaTeX when it starts with a backslash or holds a LaTeX command (`\\frac`,
`\\partial`, `\\sum`, any backslash and a letter), `_{`, `^{` or `&`. One line may hold an aligned chain:
each `=` is a step, `&` and `\\\\` only lay it out, a row that starts with `\\text`, `\\quad` or a cases
block is a remark, as is what follows `&&` in a row, and a row with its own left-hand side or
`\\Rightarrow` starts a new statement.

The text is parsed by the grammar of `latexgrammar` (never evaluated, never given to SymPy's LaTeX
parser), then each symbol is resolved against the derivation's names (see `Symbol.candidates`):

- fonts (`\\mathbf`, `\\boldsymbol`) are dropped; Greek letters are their names (`\\epsilon` is `eps` or
  `epsilon`); `\\mathit{logits}` is `logits`;
- accents: `\\hat{x}` is `xhat`, `\\tilde{x}` is `xtilde` or `xt`, `\\bar{x}` is `xbar`;
- `\\sigma^2` is `var`; a layer label `W^{(1)}` (or `x^N` where `xN` exists) is appended when that
  name exists (`W1`), else dropped; a label subscript `x_{\\mathrm{in}}` is `x_in`, a numbered one
  `x_1` is `x1`, a `\\mathcal` one (`\\mu_{\\mathcal{B}}`) is dropped;
- letters in a subscript are indices (`W_{ij}` has two, `x_{n,kk}` two with commas); a position may be
  computed from integers, sizes and indices, `x_{n,c,S i+kh-P}` or `K_{(l+2)(m+2)}` (one bracket a
  position), in a formula (a target, a sum's or a maximum's subscript name their indices); letters
  that spell a size or an enclosing index are that name (`KH`, `kh`), else one name each (`S i`);
- `\\max_{kh,kw}` is the maximum over those indices of the rest of the product (a windowed maximum);
  `\\sum_{l=-1}^{0}` runs between the numbers written when the lower one is not 0 or 1 (from 0 or 1 a
  sum runs over its index's whole range, and the parser holds its upper limit to that range);
- `\\frac{\\partial L}{\\partial W_{ij}}` (L, `\\mathcal{L}` or `\\ell`: the loss) is the gradient dW,
  `\\frac{\\partial y_k}{\\partial x_m}` a Jacobian entry, `\\delta_{ij}` the Kronecker delta,
  `\\mathbb{1}` a vector of ones, `\\text{diag}` diag, `e^{x}` exp (unless e is a name), `\\sigma(x)`
  the sigmoid (unless sigma is a name), `X^T` the transpose.

The optional `[symbols]` section maps the rest: `\\tilde{x}^{(N)} = xt`, `m = N`. An unknown or
ambiguous symbol is one error naming the candidates. A formula with a tensor written without indices
is matrix notation (juxtaposition and `\\cdot` of two tensors are matrix products, `\\odot` and `\\circ`
elementwise); with indices it is index notation (juxtaposition multiplies).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .. import limits
from ..model import DerivationError
from ..text import ENVIRONMENTS, Line, Source, check_tree
from .latexgrammar import parser
from .statements import JacobianTarget, Parsed, Step

_Node = TypeVar("_Node", bound=ast.AST)
Index = tuple[str | ast.expr, int, int]  # a subscript's index (name, line, col), or a computed position
Named = tuple[str, int, int]  # an index that is a name
_LATEX_MARK = re.compile(r"\\[A-Za-z]|_\{|\^\{|&")


def is_latex(text: str) -> bool:
    """Whether a statement is written in LaTeX (no statement of the index language holds these)."""
    return text.lstrip().startswith("\\") or bool(_LATEX_MARK.search(text))


GREEK = frozenset(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi pi rho "
    "sigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi "
    "Omega ell".split()
)
FUNCTIONS = {"exp": "exp", "log": "log", "ln": "log", "tanh": "tanh", "max": "max", "min": "min"}
WORD_FUNCTIONS = {"diag": "diag", "softplus": "softplus", "sigmoid": "sigmoid", "exp": "exp", "log": "log"}
TRANSPOSE = frozenset({"T", "top", "intercal", "mathsf{T}", "mathrm{T}"})
LOSSES = frozenset({"L", "ell"})


class Juxtapose(ast.MatMult):
    """A product written by juxtaposition or `\\cdot` in matrix notation: a matrix product of two
    tensors, a scalar multiple when one side is a scalar; a column times a row is their outer product."""


class Unchecked(Exception):
    """A step that is not a formula (a derivative operator, an unstated Jacobian entry): reported as not
    checked, with this reason, rather than given a verdict."""

    def __init__(self, message: str, line: int, column: int):
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


# ---------------------------------------------------------------------------------------------------------
# Layout: the same text, with what only lays it out blanked (columns stay where they were).


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + "".join(c if c == "\n" else " " for c in text[start:end]) + text[end:]


def layout(text: str) -> str:
    """Blank math delimiters, environments, tags, alignment marks, remark rows and the row breaks of a
    chain; keep a row break before a row with its own left-hand side (a new statement), as a separator."""
    for pattern in (
        r"\$",
        rf"\\(begin|end)\s*\{{({ENVIRONMENTS})\}}",
        r"\\(tag\*?|label)\s*\{[^{}]*\}",
    ):
        for m in reversed(list(re.finditer(pattern, text))):
            text = _blank(text, m.start(), m.end())
    rows = _rows(text)
    for start, end in rows:
        # `&& \text{...}` (the LaTeX printer's "(helper)") and `\quad \text{where ...}`: remarks to the row's end
        aside_at = re.search(r"&\s*&|\\q?quad\s*\\text(?![A-Za-z])", text[start:end])
        if aside_at:
            text = _blank(text, start + aside_at.start(), end)
    aside = False  # inside a remark that has its own `&=` steps (`\text{part A} &= ...`)
    for k, (start, end) in enumerate(rows):
        row = text[start:end]
        content = row.lstrip(" \t\n&")
        aligned = row.lstrip(" \t\n").startswith("&")
        # the `\\` before the row (empty before the first)
        sep = (rows[k - 1][1], start) if k else (start, start)
        remark = re.match(r"\\(quad|qquad|text|begin\s*\{cases\}|neq?|because|mathrm)(?![A-Za-z])", content)
        if not aligned and re.match(r"\\text(?![A-Za-z])", content):  # `\text{part A} &= ...`
            text, aside = _blank(text, sep[0], end), True
        elif k and re.match(r"=", content) and aside:
            text = _blank(text, sep[0], end)
        elif k and re.match(
            r"(=|\\(Rightarrow|implies|Longrightarrow|Leftrightarrow|iff|therefore)(?![A-Za-z]))", content
        ):
            text = _blank(text, *sep)
            aside = aside and content.startswith("=")
        elif k and remark:
            text = _blank(text, sep[0], end)
        elif k and not content.strip():
            text = _blank(text, *sep)
        else:
            aside = False
    # alignment marks outside cases; a final full stop or comma
    depth = 0
    out = list(text)
    for m in re.finditer(r"\\begin\s*\{cases\}|\\end\s*\{cases\}|&", text):
        if m.group().startswith("\\begin"):
            depth += 1
        elif m.group().startswith("\\end"):
            depth -= 1
        elif depth == 0:
            out[m.start()] = " "
    text = "".join(out)
    stop = re.search(r"[.,]\s*$", text)
    if stop:
        text = _blank(text, stop.start(), stop.start() + 1)
    return text


def _rows(text: str) -> list[tuple[int, int]]:
    """Spans of the rows of a chain: split at `\\\\` outside braces and cases blocks."""
    rows, start, depth, k = [], 0, 0, 0
    while k < len(text):
        if text.startswith("\\begin", k) and re.match(r"\\begin\s*\{cases\}", text[k:]):
            depth += 1
        elif text.startswith("\\end", k) and re.match(r"\\end\s*\{cases\}", text[k:]):
            depth -= 1
        elif text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
        elif text.startswith("\\\\", k) and depth == 0:
            rows.append((start, k))
            spacing = re.match(r"\\\\(\s*\[[^\]]*\])?", text[k:])  # \\[1ex]: a row break with space
            assert spacing is not None, "text[k:] starts with the row break"
            start = k = k + spacing.end()
            continue
        elif text[k] == "\\":
            k += 2
            continue
        k += 1
    rows.append((start, len(text)))
    return rows


# ---------------------------------------------------------------------------------------------------------
# Parsing.


@dataclass
class Tex:
    """One parsed LaTeX statement: its sides (the target first) as Lark trees, and where it is."""

    sides: list[Tree]
    text: str
    line: int
    src: Source


def parse(line: Line, file: str | None) -> list[Tex]:
    """The LaTeX statements of one logical line (more than one when `\\Rightarrow` or a row with its own
    left-hand side starts another)."""
    text = layout(line.text)
    src = Source(line.text, line.number, 1, file)
    if not text.strip():  # only layout: `\end{align*}` on a line of its own
        return []
    try:
        tree = parser().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, text, src) from None
    except RecursionError:
        raise _too_deep(src, line.number) from None
    out = []
    for statement in tree.children:
        if isinstance(statement, Tree):
            out.append(
                Tex([c for c in statement.children if isinstance(c, Tree)], line.text, line.number, src)
            )
    return out


def _syntax_error(e: UnexpectedInput, text: str, src: Source) -> DerivationError:
    line, column = getattr(e, "line", 1), getattr(e, "column", 1)
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        lines = text.rstrip().split("\n")
        line, column = len(lines), len(lines[-1]) + 1
        what = "the formula ends too early (an unclosed bracket or brace?)"
    elif isinstance(e, UnexpectedToken):
        what = f"unexpected '{e.token}' in LaTeX"
    elif isinstance(e, UnexpectedCharacters):
        ch = text.split("\n")[line - 1][column - 1 : column]
        # a control character (a NUL) is named, never echoed into the one-line message
        what = f"unexpected character {repr(ch) if ch.isprintable() else f'U+{ord(ch):04X}'} in LaTeX"
    else:
        what = "cannot read this LaTeX"
    if line < 1 or column < 1:
        line, column = 1, 1
    where = src.at(_at(line, column, src))
    return DerivationError(what, where[0], where[1], src.file)


def _at(line: int, column: int, src: Source, end: tuple[int, int] | None = None) -> ast.AST:
    """A node at a (1-based) line and character column of the statement's text, for ast positions."""
    node = ast.Constant(value=0)
    node.lineno = line
    node.col_offset = len(src.lines[line - 1][: column - 1].encode("utf-8")) if line <= len(src.lines) else 0
    end_line, end_col = end or (line, column)
    node.end_lineno = end_line
    node.end_col_offset = (
        len(src.lines[end_line - 1][: end_col - 1].encode("utf-8")) if end_line <= len(src.lines) else 0
    )
    return node


def _place(node: _Node, tree, src: Source) -> _Node:
    """Put `node` at the place of a Lark tree or token in the statement's text."""
    line, col, end = _span(tree)
    return ast.copy_location(node, _at(line, col, src, end))


def _span(tree) -> tuple[int, int, tuple[int, int]]:
    if isinstance(tree, Token):
        line, column, end_line, end_column = tree.line, tree.column, tree.end_line, tree.end_column
        assert line is not None and column is not None, "the parser's tokens carry their positions"
        assert end_line is not None and end_column is not None, "the parser's tokens carry their positions"
        return line, column, (end_line, end_column)
    meta = tree.meta
    if getattr(meta, "empty", True):
        return 1, 1, (1, 1)
    return meta.line, meta.column, (meta.end_line, meta.end_column)


def source_of(tree, text: str) -> str:
    """The LaTeX a tree was read from (with the opening brackets before it, which the tree leaves out)."""
    if isinstance(tree, Token):
        return str(tree)
    meta = tree.meta
    lines = text.split("\n")
    if getattr(meta, "empty", True):
        return ""
    if meta.line == meta.end_line:
        start = meta.column - 1
        opening = re.search(r"(\\left\s*)?((\\[{]|[\[({])\s*)?$", lines[meta.line - 1][:start])
        start = opening.start() if opening else start
        return lines[meta.line - 1][start : meta.end_column - 1]
    parts = [lines[meta.line - 1][meta.column - 1 :]] + lines[meta.line : meta.end_line - 1]
    return "\n".join(parts + [lines[meta.end_line - 1][: meta.end_column - 1]])


# ---------------------------------------------------------------------------------------------------------
# Symbols.


@dataclass(frozen=True)
class Symbol:
    """A symbol as written, without its indices: base letter or word, accent, labels, layer, and
    whether it is sigma squared. `key` identifies it for [symbols]."""

    base: str
    accent: str = ""
    labels: tuple[str, ...] = ()
    layer: str = ""
    squared: bool = False  # \sigma^2 (the superscript read as part of the name `var`)
    calligraphic: bool = False

    @property
    def key(self) -> tuple:
        return (self.base, self.accent, self.labels, self.layer, self.squared)

    def candidates(self) -> list[list[str]]:
        """Names this symbol may stand for, in tiers: the first tier with exactly one existing name wins,
        and a tier with two is ambiguous. Decorations are kept in the first tier and labels and layers
        dropped in the next."""
        heads = [self.base]
        if self.base in ("epsilon", "varepsilon"):
            heads = ["eps", "epsilon"]
        if self.base == "varphi":
            heads = ["phi"]
        if self.squared:
            heads = ["var"] if self.base == "sigma" else [f"{self.base}2", f"{self.base}sq"]
        accented = []
        for h in heads:
            accented += {
                "": [h],
                "hat": [h + "hat", h + "_hat"],
                "tilde": [h + "tilde", h + "t", h + "_tilde"],
                "bar": [h + "bar", h + "_bar"],
            }[self.accent]
        decorated = accented
        for label in self.labels:
            decorated = [f"{n}_{label}" for n in decorated] + [f"{n}{label}" for n in decorated]
        if self.layer:
            decorated = [f"{n}{self.layer}" for n in decorated] + [f"{n}_{self.layer}" for n in decorated]
        tiers = [decorated]
        if self.labels or self.layer:
            tiers.append(accented)
        return tiers

    @property
    def canonical(self) -> str:
        """The name a symbol defines in [forward] (the first candidate: `\\hat{x}` defines xhat)."""
        return self.candidates()[0][0]

    def latex(self) -> str:
        base = "\\" + self.base if self.base in GREEK else self.base
        if self.accent:
            base = f"\\{self.accent}{{{base}}}"
        if self.squared:
            base += "^2"
        if self.layer:
            base += f"^{{({self.layer})}}"
        if self.labels:
            base += "_{" + ",".join(self.labels) + "}"
        return base


@dataclass
class Indexed:
    """A factor read as a symbol: the symbol, its index subscripts (name, line, col), a power and
    whether it is transposed."""

    symbol: Symbol
    indices: list[Index] | None  # a computed position: x_{n,S i+k-P}
    power: Tree | None
    transposed: bool
    tree: Tree


@dataclass
class Names:
    """What the derivation knows at a statement: every name's rank (None for a size), the sizes,
    [symbols], the scalar loss's name (or None), and whether names not found become new inputs
    ([forward]) or are errors ([gradients])."""

    rank: Callable[[str], int | None]  # tensor rank; 0 for a scalar; None when not a name
    sizes: frozenset[str]
    symbols: dict[tuple, str]
    loss: str | None
    forward: bool
    jacobians: dict[tuple[str, str], tuple[str, tuple[str, ...], tuple[str, ...]]] = field(
        default_factory=dict
    )

    def exists(self, name: str) -> bool:
        return self.rank(name) is not None or name in self.sizes


class Reader:
    """Reads one LaTeX statement's trees into `Parsed`, resolving symbols against `names`."""

    def __init__(self, tex: Tex, names: Names):
        self.tex, self.names, self.src = tex, names, tex.src
        self.bound: list[set[str]] = []  # the indices of the sums enclosing the formula being read
        self.free: set[str] = set()  # the target's indices, which a formula's positions may name

    def err(self, tree, message) -> DerivationError:
        line, col, _ = _span(tree)
        return self.src.error(_at(line, col, self.src), message)

    # -- symbols --------------------------------------------------------------------------------------

    def symbol(self, factor: Tree) -> Indexed | None:
        """The factor as a symbol with its scripts, or None when it is not one."""
        primary, scripts = factor.children[0], factor.children[1:]
        sym = self._base(primary)
        if sym is None:
            return None
        labels, power, transposed, layer, squared = list(sym.labels), None, False, "", False
        indices: list[Index] | None = None
        two = None  # the script `2` of \sigma^2, read as part of the name `var`
        for script in scripts:
            arg = script.children[1]
            if script.data == "sub":
                found_labels, found = self._subscript(arg)
                labels += found_labels
                if found:
                    if indices is not None:
                        raise self.err(script, "two index subscripts on one symbol")
                    indices = found
            else:
                text = self._plain(arg) or ""
                if text in TRANSPOSE:
                    transposed = True
                elif re.fullmatch(r"\((\w+)\)", text):
                    layer = text[1:-1]
                elif sym.base == "sigma" and text == "2" and not squared and power is None:
                    squared, two = True, arg
                elif text and re.fullmatch(r"[A-Za-z]\w*", text) and self.names.exists(sym.base + text):
                    layer = text
                else:
                    if power is not None:
                        raise self.err(script, "two powers on one symbol: bracket it")
                    power = arg
        symbol = Symbol(sym.base, sym.accent, tuple(labels), layer, squared, sym.calligraphic)
        if (
            squared
            and not self._resolves(symbol)
            and self._resolves(Symbol(sym.base, sym.accent, tuple(labels), layer))
        ):
            symbol = Symbol(sym.base, sym.accent, tuple(labels), layer)
            power = two  # sigma is a name and var is not: sigma squared, the `2` where it is written
        return Indexed(symbol, indices, power, transposed, factor)

    def _resolves(self, symbol: Symbol) -> bool:
        return symbol.key in self.names.symbols or any(
            self.names.exists(n) for t in symbol.candidates() for n in t
        )

    def _base(self, primary) -> Symbol | None:
        if primary.data == "letter":
            return Symbol(str(primary.children[0]))
        if primary.data == "command":
            name = str(primary.children[0])[1:]
            return Symbol(name) if name in GREEK else None
        if primary.data == "text":
            word = _text_word(primary.children[0])
            return Symbol(word) if word and word.isidentifier() and word not in WORD_FUNCTIONS else None
        if primary.data == "accent":
            inner = primary.children[1]
            inner_sym = self._base(self._single(inner)) if isinstance(inner, Tree) else None
            accent = str(primary.children[0])[1:].replace("wide", "").replace("overline", "bar")
            if inner_sym is None or accent not in ("hat", "tilde", "bar") or inner_sym.accent:
                return None if inner_sym is None else Symbol(inner_sym.base, inner_sym.accent)
            return Symbol(inner_sym.base, accent, inner_sym.labels)
        if primary.data == "font":
            font = str(primary.children[0])[1:]
            inner = self._single(primary.children[1])
            if inner is None:
                return None
            inner_sym = self._base(inner)
            if inner_sym is not None and font == "mathcal":
                return Symbol(inner_sym.base, inner_sym.accent, inner_sym.labels, calligraphic=True)
            return inner_sym
        if primary.data == "bracegroup":
            inner = self._single(primary)
            return self._base(inner) if inner is not None else None
        return None

    def _single(self, tree) -> Tree | None:
        """The one primary of a group `{x}` (a brace group holding one factor without scripts)."""
        if isinstance(tree, Tree) and tree.data in ("letter", "command", "accent", "font", "text", "number"):
            return tree
        if not isinstance(tree, Tree) or tree.data != "bracegroup" or not tree.children:
            return None
        items = tree.children[0].children
        if len(items) != 1 or len(items[0].children) != 1:
            return None
        expr = items[0].children[0]
        if len(expr.children) != 1 or len(expr.children[0].children) != 1:
            return None
        factor = expr.children[0].children[0]
        return factor.children[0] if len(factor.children) == 1 else None

    def _plain(self, arg) -> str | None:
        """A script's text when it is plain: a letter, a number, a command name, `(1)`, `T`."""
        if isinstance(arg, Tree) and arg.data == "token":
            tok = str(arg.children[0])
            return tok[1:] if tok.startswith("\\") else tok
        text = re.sub(r"\s+", "", source_of(arg, self.tex.text))
        if text.startswith("{") and text.endswith("}"):
            text = text[1:-1]
        return text.lstrip("\\") if text.startswith("\\") and text[1:].isalpha() else text

    def _subscript(self, arg) -> tuple[list[str], list[Index]]:
        """(labels, indices) of a subscript: letters are indices (each letter one, unless commas
        separate multi-letter ones); numbers and \\mathrm{...} words are labels; \\mathcal labels are
        dropped."""
        if isinstance(arg, Tree) and arg.data == "token":
            tok = _token(arg)
            if tok.type == "LETTER":
                return [], [(str(tok), *self._pos(tok))]
            if tok.type == "NUMBER":
                return [str(tok)], []
            if tok.type == "TEXT":
                return [_text_word(tok)], []
            name = str(tok)[1:]
            if name in GREEK:
                return [], [(name, *self._pos(tok))]
            raise self.err(arg, f"cannot read the subscript {tok}")
        if isinstance(arg, Tree) and arg.data == "font":
            return [], []  # \mathcal{B}: a label dropped
        items = arg.children[0].children if arg.children else []
        labels: list[str] = []
        indices: list[Index] = []
        for item in items:
            if len(item.children) > 1:
                raise self.err(item, "a relation in a subscript (only a sum's subscript may hold i=1)")
            expr = item.children[0]
            if _is_affine(expr):  # x_{n,S i+kh-P}: a position computed from indices
                line, col = self.src.at(_at(*_span(expr)[:2], self.src))
                indices.append((self._index_expr(expr), line, col))
                continue
            factors = [
                f
                for t in expr.children
                if isinstance(t, Tree) and t.data == "term"
                for f in t.children
                if isinstance(f, Tree) and f.data == "factor"
            ]
            letters: list[Index] = []
            for f in factors:
                p = f.children[0]
                if p.data == "paren" and len(f.children) == 1 and len(_items(p)) == 1:
                    # K_{(l+2)(m+2)}: each bracket one index, a position computed from indices
                    inner = _items(p)[0]
                    if len(inner.children) > 1:
                        raise self.err(inner, "a relation in a subscript")
                    line, col = self.src.at(_at(*_span(p)[:2], self.src))
                    letters.append((self._index_expr(inner.children[0]), line, col))
                elif p.data == "letter" and len(f.children) == 1:
                    letters.append((str(p.children[0]), *self._pos(p.children[0])))
                elif p.data == "command" and str(p.children[0])[1:] in GREEK and len(f.children) == 1:
                    letters.append((str(p.children[0])[1:], *self._pos(p.children[0])))
                elif p.data == "number":
                    labels.append(str(p.children[0]))
                elif p.data == "text":
                    labels.append(_text_word(p.children[0]))
                elif p.data == "font":
                    pass  # \mathcal{B}: dropped
                else:
                    raise self.err(f, f"cannot read '{source_of(f, self.tex.text)}' as an index or a label")
            spelled = [n for n, _, _ in letters if isinstance(n, str)]
            if len(items) > 1 and letters and len(spelled) == len(letters):
                indices.append(("".join(spelled), letters[0][1], letters[0][2]))
            else:
                indices += letters
        return labels, indices

    def _index_expr(self, expr: Tree) -> ast.expr:
        """An index position as written in a subscript, `S i+kh-P` or `l+2`: integers, the indices of
        the enclosing sums and maximums and the sizes, added, subtracted and multiplied. A run of
        letters is one name when it spells a bound index or a size (`kh`, `KH`), else a product of
        one-letter names (`S i`)."""
        return self._signed(expr, self._index_term)

    def _index_term(self, term: Tree) -> ast.expr:
        parts: list[ast.expr] = []
        letters: list[Tree] = []
        for child in term.children + [None]:
            if child is not None and _bare_letter(child):
                letters.append(child)
                continue
            parts += self._letter_run(letters)
            letters = []
            if child is None:
                break
            if child.data == "mulop" and str(child.children[0]) in ("\\cdot", "*", "\\times"):
                continue
            p = child.children[0] if child.data == "factor" else child
            if (
                child.data == "factor"
                and len(child.children) == 1
                and p.data == "number"
                and str(p.children[0]).isdigit()
            ):
                parts.append(self._number(_token(p)))
            elif (
                child.data == "factor"
                and len(child.children) == 1
                and p.data == "paren"
                and len(_items(p)) == 1
            ):
                parts.append(self._index_expr(_items(p)[0].children[0]))
            else:
                raise self.err(child, f"cannot read '{source_of(child, self.tex.text)}' in an index position")
        out = parts[0]
        for value in parts[1:]:
            out = _place(ast.BinOp(left=out, op=ast.Mult(), right=value), term, self.src)
        return out

    def _letter_run(self, letters: list[Tree]) -> list[ast.expr]:
        """Juxtaposed letters in an index position: the longest prefix spelling a bound index or a size
        is one name, a letter alone is its own."""
        known = set().union(self.free, self.names.sizes, *self.bound)
        text = "".join(_bare_letter(f) or "" for f in letters)
        out: list[ast.expr] = []
        k = 0
        while k < len(letters):
            length = _spelled(text[k:], known) or 1
            out.append(_place(ast.Name(id=text[k : k + length], ctx=ast.Load()), letters[k], self.src))
            k += length
        return out

    def _pos(self, tok) -> tuple[int, int]:
        return self.src.at(_at(tok.line, tok.column, self.src))

    def resolve(self, ix: Indexed, defining: bool = False) -> str:
        """The derivation's name for a symbol (see the module's rules); in [forward], a symbol that
        names nothing yet is a new input (or, `defining`, the target) with its canonical name."""
        sym = ix.symbol
        if sym.key in self.names.symbols:
            return self.names.symbols[sym.key]
        if defining:
            return sym.canonical
        tiers = sym.candidates()
        for tier in tiers:
            found = list(dict.fromkeys(n for n in tier if self.names.exists(n)))
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise self.err(
                    ix.tree,
                    f"{sym.latex()} is ambiguous: it may be {' or '.join(found)}; map it in [symbols]",
                )
        if self.names.forward:
            return sym.canonical
        tried = ", ".join(dict.fromkeys(n for t in tiers for n in t))
        raise self.err(
            ix.tree,
            f"unknown symbol {sym.latex()}: no name {tried} here; map it in [symbols]{self._gradient_hint(ix)}",
        )

    def _gradient_hint(self, ix: Indexed) -> str:
        """For a `d` that names nothing, written before a name (`dS`, the plain-text gradient): that LaTeX
        reads it as d times S, and how to write the gradient there."""
        meta = getattr(ix.tree, "meta", None)
        if ix.symbol.latex() != "d" or meta is None or getattr(meta, "empty", True):
            return ""
        line = self.tex.text.split("\n")[meta.end_line - 1]
        after = re.match(r"([A-Za-z][A-Za-z0-9]*)(_\{[^{}]*\}|_[A-Za-z0-9])?", line[meta.end_column - 1 :])
        if after is None:
            return ""
        name, read = after.group(1), after.group()
        return (
            f" (in a LaTeX line d{name} is d times {name}: write its gradient as "
            f"\\frac{{\\partial L}}{{\\partial {read}}}, or the line in plain text)"
        )

    # -- expressions ----------------------------------------------------------------------------------

    def expression(self, tree: Tree, matrix: bool) -> ast.expr:
        """An `expr` tree as Python ast: index notation, or matrix notation when `matrix`."""
        self.matrix = matrix
        return self._expr(tree)

    def _expr(self, tree: Tree) -> ast.expr:
        return self._signed(tree, self._term)

    def _signed(self, tree: Tree, term: Callable[[Tree], ast.expr]) -> ast.expr:
        """An `expr` tree's signed terms, each read by `term`, added and subtracted."""
        out: ast.expr | None = None
        sign = None
        for child in tree.children:
            if child.data == "sign":
                sign = str(child.children[0])
                continue
            value = term(child)
            if out is None:
                out = (
                    _place(ast.UnaryOp(op=ast.USub(), operand=value), child, self.src)
                    if sign == "-"
                    else value
                )
            else:
                op = ast.Sub() if sign == "-" else ast.Add()
                out = _place(ast.BinOp(left=out, op=op, right=value), child, self.src)
            sign = None
        assert out is not None, "the grammar gives an expression a term"
        return out

    def _term(self, tree: Tree) -> ast.expr:
        items: list[tuple[str | None, Tree]] = []
        op = None
        for child in tree.children:
            if child.data == "mulop":
                op = str(child.children[0])
                continue
            items.append((op, child))
            op = None
        return self._product(items)

    def _product(self, items: list[tuple[str | None, Tree]]) -> ast.expr:
        out: ast.expr | None = None
        k = 0
        while k < len(items):
            op, factor = items[k]
            primary = factor.children[0]
            if primary.data == "summation":
                value = self._sum(factor, items[k + 1 :])
                k = len(items)
            elif (
                primary.data == "command"
                and str(primary.children[0]) == "\\max"
                and [s.data for s in factor.children[1:]] == ["sub"]
            ):
                value = self._window_max(factor, items[k + 1 :])
                k = len(items)
            elif run := self._size_run(items, k):
                letters = "".join(_bare_letter(f) or "" for _, f in items[k : k + run])
                value = _place(ast.Name(id=letters, ctx=ast.Load()), factor, self.src)
                k += run
            elif (fn := self._function(factor)) is not None:
                if k + 1 >= len(items):
                    raise self.err(factor, f"{source_of(factor, self.tex.text)} needs an argument")
                value = self._scripted(self._call(fn, factor, items[k + 1][1]), factor.children[1:], factor)
                k += 2
            else:
                value = self._factor(factor)
                k += 1
            out = value if out is None else self._times(out, op, value, factor)
        assert out is not None, "a term has a factor, a sum a summand"
        return out

    def _size_run(self, items: list[tuple[str | None, Tree]], k: int) -> int:
        """How many juxtaposed bare letters from item k on spell a size of two letters or more (`KH` in
        `\\frac{1}{KH KW}`), the longest first; 0 when none do."""
        text = ""
        for op, factor in items[k:]:
            letter = _bare_letter(factor)
            if letter is None or (text and op is not None):
                break
            text += letter
        return _spelled(text, self.names.sizes)

    def _window_max(self, factor: Tree, rest: list[tuple[str | None, Tree]]) -> ast.expr:
        """\\max_{kh,kw} over the rest of the product: the maximum over those indices (a windowed
        maximum), `max(body, kh, kw)`."""
        if not rest:
            raise self.err(factor, "a maximum needs an expression after it")
        indices = self._subscript(factor.children[1].children[1])[1]
        if not indices:
            raise self.err(factor, "a windowed maximum needs its indices below it: \\max_{p,q}")
        named = self._names(indices, factor, "a maximum's subscript") or []
        body = self._over({i for i, _, _ in named}, rest)
        names = [self._slot(i, factor) for i, _, _ in named]
        func = _place(ast.Name(id="max", ctx=ast.Load()), factor, self.src)
        return _place(ast.Call(func=func, args=[body, *names], keywords=[]), factor, self.src)

    def _over(self, indices: set[str], rest: list[tuple[str | None, Tree]]) -> ast.expr:
        """The rest of a product, read inside one more sum or maximum, over `indices`."""
        self.bound.append(indices)
        try:
            return self._product([(None, rest[0][1]), *rest[1:]])
        finally:
            self.bound.pop()

    def _times(self, left: ast.expr, op: str | None, right: ast.expr, where) -> ast.expr:
        operator: ast.operator
        if op in ("/", "\\oslash"):
            operator = ast.Div()
        elif op in (None, "\\cdot") and self.matrix:
            operator = Juxtapose()
        else:
            operator = ast.Mult()
        return _place(ast.BinOp(left=left, op=operator, right=right), where, self.src)

    def _function(self, factor: Tree) -> str | None:
        """The function a factor names, when it is one applied to the next factor: \\exp, \\log, \\max,
        \\text{diag}, \\sigma (the sigmoid, unless sigma is a name). `\\tanh^2 x` is (tanh x)^2, as
        reports write it: a whole power above \\tanh, \\exp, \\log or \\ln (never `^{-1}`, an inverse)."""
        primary = factor.children[0]
        if primary.data == "command" and len(factor.children) == 2 and factor.children[1].data == "sup":
            name, power = str(primary.children[0])[1:], self._plain(factor.children[1].children[1])
            whole = power is not None and power.isdigit() and int(power) > 0
            return FUNCTIONS[name] if whole and name in FUNCTIONS and name not in ("max", "min") else None
        if len(factor.children) > 1:
            return None
        if primary.data == "command":
            name = str(primary.children[0])[1:]
            if name in FUNCTIONS:
                return FUNCTIONS[name]
            if (
                name == "sigma"
                and not self.names.exists("sigma")
                and Symbol("sigma").key not in self.names.symbols
            ):
                return "sigmoid"
        if primary.data == "text":
            word = _text_word(primary.children[0])
            if word in WORD_FUNCTIONS and not self.names.exists(word):
                return WORD_FUNCTIONS[word]
        return None

    def _call(self, fn: str, head: Tree, arg: Tree) -> ast.expr:
        primary = arg.children[0]
        if primary.data == "paren" and len(arg.children) == 1:
            args = [self._item(i) for i in _items(primary)]
        else:
            args = [self._factor(arg)]
        name = _place(ast.Name(id=fn, ctx=ast.Load()), head, self.src)
        return _place(ast.Call(func=name, args=args, keywords=[]), head, self.src)

    def _item(self, item: Tree) -> ast.expr:
        if len(item.children) > 1:
            raise self.err(item, "a relation here is not a formula")
        return self._expr(item.children[0])

    def _sum(self, factor: Tree, rest: list[tuple[str | None, Tree]]) -> ast.expr:
        """\\sum_{i} (or _{i,j}, _{ij}, _{i=1}^{N}) over the rest of the product."""
        if not rest:
            raise self.err(factor, "a sum needs a summand after it")
        has_index = any(s.data == "sub" for s in factor.children[1:])
        if self.matrix and not has_index:  # \sum x: every entry of x
            body = self._product([(None, rest[0][1]), *rest[1:]])
            func = _place(ast.Name(id="sum", ctx=ast.Load()), factor, self.src)
            return _place(ast.Call(func=func, args=[body], keywords=[]), factor, self.src)
        if self.matrix:
            raise self.err(
                factor, "a sum over an index in matrix notation: write the indices, or sum(A, axis=0)"
            )
        indices: list[Index] = []
        limits: dict[str, tuple[int, int]] = {}  # \sum_{l=-1}^{0}: an index's own limits, as written
        whole: dict[str, int] = {}  # \sum_{n=1}^{N}: over the whole range, from 0 or 1 as written
        sups = [s for s in factor.children[1:] if s.data == "sup"]
        high = self._plain(sups[0].children[1]) if len(sups) == 1 else None
        for script in factor.children[1:]:
            if script.data == "sup":
                continue  # the upper limit: the index's whole range, unless the lower one is its own
            arg = script.children[1]
            if isinstance(arg, Tree) and arg.data == "bracegroup" and arg.children:
                kept = []  # the items without their lower limits, read together: commas part names
                for item in arg.children[0].children:
                    if len(item.children) == 3:  # i = 1: the lower limit, 1 or 0 (the whole range)
                        low = re.sub(r"\s+", "", source_of(item.children[2], self.tex.text))
                        # (a node's source may start at the brace before it)
                        name = re.sub(r"[\s{}]", "", source_of(item.children[0], self.tex.text))
                        if low not in ("0", "1"):
                            # another lower limit: the sum runs between the two numbers written
                            if not (re.fullmatch(r"-?\d+", low) and high and re.fullmatch(r"-?\d+", high)):
                                raise self.err(
                                    item,
                                    f"a sum from {low} runs between two whole numbers (\\sum_{{l=-1}}^{{0}}); "
                                    "from 0 or 1 it runs over its index's whole range",
                                )
                            limits[name] = (int(low), int(high))
                        else:
                            whole[name] = int(low)
                        item = Tree("item", [item.children[0]], item.meta)
                    kept.append(item)
                written = [re.sub(r"[\s{}]", "", source_of(i.children[0], self.tex.text)) for i in kept]
                if len(kept) == 1 and limits and re.fullmatch(r"[A-Za-z]+", written[0]):
                    # \sum_{kh=-1}^{0}: the name before the limit is one index, however many letters
                    line, col = self.src.at(_at(*_span(kept[0])[:2], self.src))
                    indices.append((written[0], line, col))
                else:
                    indices += self._subscript(Tree("bracegroup", [Tree("items", kept)], arg.meta))[1]
            else:
                indices += self._subscript(arg)[1]
        if not indices:
            raise self.err(factor, "a sum needs its index below it: \\sum_{n}")
        summed = self._names(indices, factor, "a sum's subscript") or []
        # an index summed again inside a sum over it (\sum_i a_i (\sum_i b_i)) is a new index there
        enclosing = set().union(*self.bound) if self.bound else set()
        renamed = {}
        for name, _, _ in summed:
            if name in enclosing:
                renamed[name] = next(
                    f"{name}{k}"
                    for k in range(2, 100)
                    if f"{name}{k}" not in enclosing and not self.names.exists(f"{name}{k}")
                )
        body = self._over({renamed.get(i, i) for i, _, _ in summed}, rest)
        if renamed:
            body = _rename_indices(body, renamed, self.names)
        names: list[ast.expr] = []
        for i, _, _ in summed:
            slot: ast.expr = _place(ast.Name(id=renamed.get(i, i), ctx=ast.Load()), factor, self.src)
            if i in limits:
                bounds = [_place(ast.Constant(value=v), factor, self.src) for v in limits[i]]
                slot = _place(ast.Tuple(elts=[slot, *bounds], ctx=ast.Load()), factor, self.src)
            elif high is not None and (i in whole or len(summed) == 1 and not whole):
                # the parser holds the upper limit to the index's range: ^{j}, ^{2} or N+1 terms is
                # another sum than the whole range this one runs over (\sum_n^N counts from 1)
                slot.upper = (self._upper(sups[0]), whole.get(i, 1))  # type: ignore[attr-defined]
            names.append(slot)
        if (
            isinstance(body, ast.Call)
            and isinstance(body.func, ast.Name)
            and body.func.id == "sum"
            and any(isinstance(a, ast.Tuple) for a in [*names, *body.args[1:]])
        ):
            # \sum_{l=-1}^{0}\sum_{m=-1}^{0}: one sum over both, as the language writes it
            names += body.args[1:]
            body = body.args[0]
        func = _place(ast.Name(id="sum", ctx=ast.Load()), factor, self.src)
        return _place(ast.Call(func=func, args=[body, *names], keywords=[]), factor, self.src)

    def _upper(self, sup: Tree) -> ast.expr:
        """A sum's upper limit as an expression, placed at its superscript; the parser holds it to whole
        numbers and sizes (`_Converter.upper`)."""
        text = self._plain(sup.children[1]) or ""
        try:
            upper = ast.parse(text, mode="eval").body
        except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: a NUL character
            raise self.err(
                sup, f"a sum's upper limit is its index's size (N, or N-1 from 0), not {text}"
            ) from None
        for node in ast.walk(upper):
            if isinstance(node, ast.Name):  # [symbols] m = N: the handout's batch size is N
                node.id = self.names.symbols.get(Symbol(node.id).key, node.id)
            if isinstance(node, ast.expr):
                _place(node, sup, self.src)
        return upper

    def _factor(self, factor: Tree) -> ast.expr:
        primary, scripts = factor.children[0], factor.children[1:]
        kind = primary.data
        if kind == "frac":
            value = self._frac(primary, factor)
        elif kind == "number" and not scripts:
            return self._number(_token(primary))
        elif kind == "number":
            value = self._number(_token(primary))
        elif kind == "font" and self._plain(primary.children[1]) == "1":
            return self._ones(factor)
        elif kind == "underbrace":  # \underbrace{x}_{\text{label}}: x, its label dropped
            return self._group(primary.children[1])
        elif kind in ("paren", "bracket", "curly", "bracegroup"):
            items = _items(primary)
            if len(items) != 1:
                raise self.err(primary, "a bracket holding several expressions is not a value")
            value = self._item(items[0])
        elif kind == "sqrt":
            value = self._call_sqrt(primary)
        elif kind == "abs":
            name = _place(ast.Name(id="abs", ctx=ast.Load()), primary, self.src)
            value = _place(
                ast.Call(func=name, args=[self._expr(primary.children[1])], keywords=[]), primary, self.src
            )
        elif kind == "cases":
            value = self._cases(primary)
        elif (
            kind == "letter"
            and str(primary.children[0]) == "e"
            and not self.names.exists("e")
            and self._power_of(scripts)
        ):
            name = _place(ast.Name(id="exp", ctx=ast.Load()), primary, self.src)
            exponent = self._script_value(self._power_of(scripts))
            return _place(ast.Call(func=name, args=[exponent], keywords=[]), factor, self.src)
        else:
            ix = self.symbol(factor)
            if ix is None:
                raise self.err(
                    factor, f"cannot read '{source_of(factor, self.tex.text)}' as part of a formula"
                )
            return self._symbol_value(ix)
        return self._scripted(value, scripts, factor)

    def _power_of(self, scripts):
        sups = [s for s in scripts if s.data == "sup"]
        return sups[0].children[1] if len(sups) == 1 and len(scripts) == 1 else None

    def _scripted(self, value: ast.expr, scripts, factor: Tree) -> ast.expr:
        """A bracket's or a fraction's scripts: `(...)^T`, `(...)^{2}`, `[...]_{ij}` (a matrix part
        indexed)."""
        for script in scripts:
            arg = script.children[1]
            if script.data == "sub":
                labels, indices = self._subscript(arg)
                if labels or not indices:
                    raise self.err(script, "a bracket's subscript names indices: [A]_{ij}")
                named = self._names(indices, script, "a bracket's subscript") or []
                slots: list[ast.expr] = [
                    _place(ast.Name(id=i, ctx=ast.Load()), script, self.src) for i, _, _ in named
                ]
                index = (
                    slots[0]
                    if len(slots) == 1
                    else _place(ast.Tuple(elts=slots, ctx=ast.Load()), script, self.src)
                )
                value = _place(ast.Subscript(value=value, slice=index, ctx=ast.Load()), script, self.src)
            elif self._plain(arg) in TRANSPOSE:
                value = _place(ast.Attribute(value=value, attr="T", ctx=ast.Load()), script, self.src)
            else:
                power = self._script_value(arg)
                value = _place(ast.BinOp(left=value, op=ast.Pow(), right=power), script, self.src)
        return value

    def _script_value(self, arg) -> ast.expr:
        if isinstance(arg, Tree) and arg.data == "token":
            tok = _token(arg)
            if tok.type == "NUMBER":
                return self._number(tok)
            if tok.type == "LETTER":
                return self._symbol_value(Indexed(Symbol(str(tok)), None, None, False, arg))
            raise self.err(arg, f"cannot read the exponent {tok}")
        if isinstance(arg, Tree) and arg.data == "bracegroup" and arg.children:
            items = arg.children[0].children
            if len(items) == 1:
                return self._item(items[0])
        raise self.err(arg, "cannot read this exponent")

    def _number(self, tok: Token) -> ast.expr:
        text = str(tok)
        value = int(text) if text.isdigit() else float(text)
        return _place(ast.Constant(value=value), tok, self.src)

    def _call_sqrt(self, primary: Tree) -> ast.expr:
        name = _place(ast.Name(id="sqrt", ctx=ast.Load()), primary, self.src)
        return _place(
            ast.Call(func=name, args=[self._group(primary.children[1])], keywords=[]), primary, self.src
        )

    def _group(self, group: Tree) -> ast.expr:
        items = group.children[0].children if group.children else []
        if len(items) != 1:
            raise self.err(group, "expected one expression in braces")
        return self._item(items[0])

    def _ones(self, factor: Tree) -> ast.expr:
        """\\mathbb{1} (or \\mathbf{1}): a vector of ones; \\mathbb{1}_N has N entries, plain \\mathbb{1}
        takes its size from what it multiplies."""
        if not self.matrix:
            raise self.err(factor, "a vector of ones in index notation: write 1, or use matrix notation")
        args: list[ast.expr] = []
        transposed = False
        for script in factor.children[1:]:
            text = self._plain(script.children[1])
            if script.data == "sup" and text in TRANSPOSE:
                transposed = True
            elif script.data == "sub" and text in self.names.sizes:
                args.append(_place(ast.Name(id=text, ctx=ast.Load()), script, self.src))
            else:
                raise self.err(script, "\\mathbb{1} takes a size below it (\\mathbb{1}_N) and ^T")
        func = _place(ast.Name(id="ones", ctx=ast.Load()), factor, self.src)
        value: ast.expr = _place(ast.Call(func=func, args=args, keywords=[]), factor, self.src)
        if transposed:
            value = _place(ast.Attribute(value=value, attr="T", ctx=ast.Load()), factor, self.src)
        return value

    def _symbol_value(self, ix: Indexed) -> ast.expr:
        sym = ix.symbol
        if (
            sym.base == "delta"
            and not sym.accent
            and ix.indices
            and len(ix.indices) == 2
            and not self._resolves(sym)
        ):
            names = [self._slot(i, ix.tree) for i, _, _ in ix.indices]
            func = _place(ast.Name(id="delta", ctx=ast.Load()), ix.tree, self.src)
            return _place(ast.Call(func=func, args=names, keywords=[]), ix.tree, self.src)
        name = self.resolve(ix)
        value = self._named(name, ix.indices, ix.tree)
        if ix.transposed:
            value = _place(ast.Attribute(value=value, attr="T", ctx=ast.Load()), ix.tree, self.src)
        if ix.power is not None:
            value = _place(
                ast.BinOp(left=value, op=ast.Pow(), right=self._script_value(ix.power)), ix.tree, self.src
            )
        return value

    def _names(self, indices: list[Index] | None, where, what: str) -> list[Named] | None:
        """The indices, each a name; a computed position where only names may stand (`what`: where that
        is) is an error."""
        if indices is None:
            return None
        named = [(i, line, col) for i, line, col in indices if isinstance(i, str)]
        if len(named) != len(indices):
            raise self.err(
                where, f"{what} names its indices: a position such as S i+k-P is read only in a formula"
            )
        return named

    def _slot(self, index: str | ast.expr, where) -> ast.expr:
        """An index subscript as the parser takes it: a name, or the position an affine one computes."""
        if isinstance(index, str):
            return _place(ast.Name(id=index, ctx=ast.Load()), where, self.src)
        return index

    def _named(self, name: str, indices, where) -> ast.expr:
        node = _place(ast.Name(id=name, ctx=ast.Load()), where, self.src)
        if indices:
            slots = [self._slot(i, where) for i, _, _ in indices]
            index = (
                slots[0]
                if len(slots) == 1
                else _place(ast.Tuple(elts=slots, ctx=ast.Load()), where, self.src)
            )
            return _place(ast.Subscript(value=node, slice=index, ctx=ast.Load()), where, self.src)
        return node

    # -- fractions: quotients and partial derivatives --------------------------------------------------

    def partial(self, frac: Tree) -> tuple[Tree | list[Tree] | None, Tree] | None:
        """For `\\frac{\\partial A}{\\partial B}`: (A's factor or None for a bare operator, B's factor);
        None when the fraction is not a derivative."""
        num, den = (self._factors(g) for g in frac.children[1:])
        if not den or not _is_partial(den[0]):
            if num and _is_partial(num[0]):
                raise self.err(frac, "a derivative needs \\partial in its denominator too")
            return None
        if not num or not _is_partial(num[0]):
            raise self.err(frac, "a derivative needs \\partial in its numerator too")
        if len(den) != 2:
            raise self.err(frac, "the denominator of a derivative is \\partial and one symbol")
        top: Tree | list[Tree] | None = None
        if len(num) > 1:
            # a symbol, or \partial(x - mu): the derivative of an expression
            top = num[1] if self.symbol(num[1]) is not None else num[1:]
        if len(num) > 3 or (len(num) == 3 and num[2].children[0].data != "paren"):
            top = num[1:]  # \partial h(X_mn): a function of an expression
        return top, den[1]

    def _factors(self, group: Tree) -> list[Tree]:
        items = group.children[0].children if group.children else []
        if len(items) != 1 or len(items[0].children) != 1:
            return []
        expr = items[0].children[0]
        if len([c for c in expr.children if c.data == "term"]) != 1 or expr.children[0].data == "sign":
            return []
        return [f for f in expr.children[0].children if f.data == "factor"]

    def is_loss(self, factor: Tree) -> bool:
        ix = self.symbol(factor)
        if ix is None or ix.indices:
            return False
        if ix.symbol.key in self.names.symbols:
            return self.names.symbols[ix.symbol.key] == self.names.loss
        if self.names.loss is not None and ix.symbol.canonical == self.names.loss:
            return True
        tensor = any(self.names.rank(n) for t in ix.symbol.candidates() for n in t)
        return (ix.symbol.base in LOSSES or ix.symbol.calligraphic) and ix.symbol.base != "" and not tensor

    def _frac(self, frac: Tree, factor: Tree) -> ast.expr:
        parts = self.partial(frac)
        if parts is None:
            num, den = (self._group(g) for g in frac.children[1:])
            return _place(ast.BinOp(left=num, op=ast.Div(), right=den), frac, self.src)
        top, bottom = parts
        if top is None or isinstance(top, list):
            line, col, _ = _span(frac)
            where = self.src.at(_at(line, col, self.src))
            raise Unchecked("it holds a derivative operator, not a formula", *where)
        wrt = self.symbol(bottom)
        if wrt is None:
            raise self.err(bottom, "the denominator of a derivative is \\partial and one symbol")
        if self.is_loss(top):
            name = "d" + self.resolve(wrt)
            return self._named(name, wrt.indices, frac)
        of = self.symbol(top)
        if of is None:
            raise self.err(top, "the numerator of a derivative is \\partial and one symbol")
        return self._jacobian_entry(of, wrt, frac)

    def _jacobian_entry(self, of: Indexed, wrt: Indexed, frac: Tree) -> ast.expr:
        """An entry dy_k/dx_m inside a formula: the Jacobian stated and named earlier for that pair
        (its block letters turned into deltas where the entry's indices differ); otherwise the step
        is not checked."""
        of_indices = self._names(of.indices, frac, "a Jacobian entry")
        wrt_indices = self._names(wrt.indices, frac, "a Jacobian entry")
        y, x = self.resolve(of), self.resolve(wrt)
        line, col, _ = _span(frac)
        where = self.src.at(_at(line, col, self.src))
        stated = self.names.jacobians.get((y, x))
        if stated is None or of_indices is None or wrt_indices is None:
            raise Unchecked(f"it holds d{y}/d{x}, which no named Jacobian statement states", *where)
        name, y_letters, x_letters = stated
        if len(of_indices) != len(y_letters) or len(wrt_indices) != len(x_letters):
            raise self.err(frac, f"d{y}/d{x} takes {len(y_letters)} and {len(x_letters)} indices")
        binding: dict[str, str] = {}
        deltas = []
        for letter, (given, _, _) in zip(y_letters + x_letters, of_indices + wrt_indices, strict=True):
            if letter in binding and binding[letter] != given:
                deltas.append((binding[letter], given))
            binding.setdefault(letter, given)
        order = list(dict.fromkeys(y_letters + x_letters))
        value = self._named(name, [(binding[letter], 0, 0) for letter in order], frac)
        for a, b in deltas:
            func = _place(ast.Name(id="delta", ctx=ast.Load()), frac, self.src)
            args: list[ast.expr] = [_place(ast.Name(id=i, ctx=ast.Load()), frac, self.src) for i in (a, b)]
            call = _place(ast.Call(func=func, args=args, keywords=[]), frac, self.src)
            value = _place(ast.BinOp(left=call, op=ast.Mult(), right=value), frac, self.src)
        return value

    # -- cases ----------------------------------------------------------------------------------------

    def _cases(self, primary: Tree) -> ast.expr:
        rows = [c for c in primary.children[1].children if isinstance(c, Tree) and c.data == "case"]
        pieces = []
        for row in rows:
            value = self._expr(row.children[0])
            cond = self._condition(row.children[2]) if len(row.children) > 2 else None
            pieces.append((value, cond, row))
        if len(pieces) < 2:
            raise self.err(primary, "a cases block needs two rows or more")
        out = pieces[-1][0]
        for value, cond, row in reversed(pieces[:-1]):
            if cond is None:
                raise self.err(row, "every row of a cases block but the last needs a condition")
            func = _place(ast.Name(id="where", ctx=ast.Load()), row, self.src)
            out = _place(ast.Call(func=func, args=[cond, value, out], keywords=[]), row, self.src)
        return out

    def _condition(self, item: Tree) -> ast.expr | None:
        """`\\text{if } x_{ni} > 0` as a comparison; `\\text{otherwise}` as None."""
        if len(item.children) == 1:
            return None
        left, rel, right = item.children
        left = _drop_words(left)
        if left is None:
            raise self.err(item, "expected a condition such as x > 0")
        op = {
            ">": ast.Gt, "<": ast.Lt, "\\ge": ast.GtE, "\\geq": ast.GtE, "\\geqslant": ast.GtE,
            "\\le": ast.LtE, "\\leq": ast.LtE, "\\leqslant": ast.LtE, "=": ast.Eq, "\\ne": ast.NotEq,
            "\\neq": ast.NotEq, "\\gt": ast.Gt, "\\lt": ast.Lt,
        }[str(rel.children[0])]  # fmt: skip
        compare = ast.Compare(left=self._expr(left), ops=[op()], comparators=[self._expr(right)])
        return _place(compare, item, self.src)


def _rename_indices(node: ast.expr, renamed: dict[str, str], names: Names) -> ast.expr:
    """`node` with the index names in `renamed` replaced (names of tensors and scalars are left alone)."""

    class Rename(ast.NodeTransformer):
        def visit_Name(self, n):
            if n.id in renamed and names.rank(n.id) is None:
                return ast.copy_location(ast.Name(id=renamed[n.id], ctx=n.ctx), n)
            return n

    return Rename().visit(node)


def _bare_letter(factor) -> str | None:
    """The letter a factor is, when it is one letter with no script; else None."""
    if factor.data == "factor" and len(factor.children) == 1 and factor.children[0].data == "letter":
        return str(factor.children[0].children[0])
    return None


def _spelled(text: str, known) -> int:
    """How many leading letters of `text` spell a name in `known`: the longest such name of two letters
    or more, 0 when there is none."""
    return next((n for n in range(len(text), 1, -1) if text[:n] in known), 0)


def _is_affine(expr: Tree) -> bool:
    """Whether a subscript item is a computed position (`S i+kh-P`, `-l`, `2i`) rather than index
    letters: a sign or several terms, or a number leading letters."""
    terms = [c for c in expr.children if isinstance(c, Tree) and c.data == "term"]
    if len(expr.children) != 1 or len(terms) != 1:
        return True
    factors = terms[0].children
    first = factors[0]
    return len(factors) > 1 and first.data == "factor" and first.children[0].data == "number"


def _token(tree: Tree) -> Token:
    """The token of a tree that holds one (`number`, `letter`, `command`, a script's `token`)."""
    tok = tree.children[0]
    assert isinstance(tok, Token), f"the grammar's {tree.data} holds a token"
    return tok


def _items(group: Tree) -> list[Tree]:
    """The comma-separated items of a bracket or brace group."""
    found = [c for c in group.children if isinstance(c, Tree) and c.data == "items"]
    return found[0].children if found else []


def _is_partial(factor: Tree) -> bool:
    p = factor.children[0]
    return p.data == "command" and str(p.children[0]) == "\\partial" and len(factor.children) == 1


def _text_word(tok) -> str:
    m = re.search(r"\{([^{}]*)\}", str(tok))
    return m.group(1).strip() if m else ""


def _drop_words(expr: Tree) -> Tree | None:
    """A condition's left side without its words (`\\text{if }`, `\\text{for }`)."""
    terms = [c for c in expr.children if c.data == "term"]
    if not terms:
        return expr
    first = terms[0]
    kept = [f for f in first.children if not (f.data == "factor" and f.children[0].data == "text")]
    if not kept:
        return None
    return Tree(
        expr.data, [Tree("term", kept, first.meta) if c is first else c for c in expr.children], expr.meta
    )


# ---------------------------------------------------------------------------------------------------------
# Statements.


def _only_factor(expr: Tree) -> Tree | None:
    """The single factor of an expression that is one (no sign, no sum, no product)."""
    if len(expr.children) != 1 or expr.children[0].data != "term":
        return None
    term = expr.children[0]
    return term.children[0] if len(term.children) == 1 else None


@dataclass
class _Claim:
    """What a side of a chain says as a left-hand side: a gradient dv (with indices or bare), a
    Jacobian, or a plain name."""

    kind: str  # gradient | jacobian | name
    name: str = ""
    indices: list[tuple[str, int, int]] | None = None
    jacobian: JacobianTarget | None = None


class StatementReader(Reader):
    def claim(self, side: Tree) -> _Claim | None:
        """The side read as a left-hand side, or None when it is an expression."""
        factor = _only_factor(side)
        if factor is None:
            return None
        primary, scripts = factor.children[0], factor.children[1:]
        if primary.data == "frac" and not scripts and (parts := self.partial(primary)) is not None:
            top, bottom = parts
            wrt = self.symbol(bottom)
            if top is None or isinstance(top, list) or wrt is None:
                return None
            wrt_indices = self._names(wrt.indices, bottom, "a derivative's variable")
            if self.is_loss(top):
                return _Claim("gradient", "d" + self.resolve(wrt), wrt_indices)
            of = self.symbol(top)
            if of is None:
                return None
            of_indices = self._names(of.indices, top, "a derivative's function")
            line, col = self.src.at(_at(*_span(primary)[:2], self.src))
            target = JacobianTarget(self.resolve(of), of_indices, self.resolve(wrt), wrt_indices, line, col)
            return _Claim("jacobian", jacobian=target)
        if primary.data in ("paren", "bracegroup") and not scripts and len(_items(primary)) == 1:
            item = _items(primary)[0]
            return self.claim(item.children[0]) if len(item.children) == 1 else None  # (\sigma^2) = ...
        if (
            primary.data == "bracegroup"
            and len(scripts) == 1
            and (inner := self._unbrace(primary)) is not None
        ):
            primary = inner  # {\Big[ dL/dW \Big]}_{ij}
        if primary.data in ("bracket", "paren", "curly") and len(scripts) == 1 and scripts[0].data == "sub":
            items = _items(primary)
            inner = (
                _only_factor(items[0].children[0])
                if len(items) == 1 and len(items[0].children) == 1
                else None
            )
            if inner is not None and inner.children[0].data == "frac" and len(inner.children) == 1:
                claim = self.claim(items[0].children[0])
                if claim is not None and claim.kind == "gradient" and claim.indices is None:
                    labels, indices = self._subscript(scripts[0].children[1])
                    if labels:
                        raise self.err(scripts[0], "the subscript of [dL/dW]_{ij} names indices")
                    named = self._names(indices, scripts[0], "the subscript of [dL/dW]_{ij}")
                    return _Claim("gradient", claim.name, named)
            return None
        ix = self.symbol(factor)
        if ix is None or ix.power is not None or ix.transposed:
            return None
        named = [(i, line, col) for i, line, col in ix.indices or [] if isinstance(i, str)]
        if ix.indices is not None and len(named) != len(ix.indices):
            return None  # x_{i-1} = ...: not a left-hand side
        written = named if ix.indices is not None else None
        if ix.symbol.key in self.names.symbols:
            return _Claim("name", self.names.symbols[ix.symbol.key], written)
        return _Claim("name", ix.symbol.canonical, written)

    def _unbrace(self, group: Tree) -> Tree | None:
        """The bracket inside braces `{[...]}`, or None."""
        items = _items(group)
        if len(items) != 1 or len(items[0].children) != 1:
            return None
        factor = _only_factor(items[0].children[0])
        if factor is None or len(factor.children) != 1 or factor.children[0].data not in ("bracket", "paren"):
            return None
        return factor.children[0]

    def statement(self) -> Parsed:
        sides = self.tex.sides
        line, col, _ = _span(sides[0])
        first = self.src.at(_at(line, col, self.src))
        if len(sides) < 2:
            raise DerivationError("expected a definition 'target = formula'", *first, self.src.file)
        claim = self.claim(sides[0])
        if claim is None:
            raise self.err(sides[0], "the left-hand side must be a symbol, dL/dv or a Jacobian dy/dx")
        steps_trees = sides[1:]
        jacobian = claim.jacobian
        if claim.kind == "name" and len(steps_trees) > 1:
            second = self.claim(steps_trees[0])
            if second is not None and second.kind == "jacobian":
                jacobian, steps_trees = second.jacobian, steps_trees[1:]
        name = claim.name if claim.kind != "jacobian" else ""
        indices = claim.indices if claim.kind != "jacobian" else []
        self.free = {i for i, _, _ in indices or []}
        steps, unchecked = [], []
        for side in steps_trees:
            again = self.claim(side)
            if again is not None and _same(again, claim):
                continue  # the target restated: dL/dW_ij = dL/dW_ij
            try:
                rhs = self._step(side)
            except Unchecked as u:
                unchecked.append((u.line, u.column, u.message))
                continue
            line, col, _ = _span(side)
            where = self.src.at(_at(line, col, self.src))
            steps.append(Step(rhs, self.src, *where))
        parsed = Parsed(
            name,
            list(indices or []),
            first[0],
            1,
            self.tex.text,
            steps,
            jacobian,
            latex=True,
            bare_target=claim.kind != "jacobian" and indices is None,
            source=source_of(Tree("statement", sides, _meta(sides[0], sides[-1])), self.tex.text),
        )
        parsed.unchecked = unchecked
        return parsed

    def _step(self, side: Tree) -> ast.expr:
        """A side as index notation, or as matrix notation when it names tensors without indices."""
        self.bound = []
        return self.expression(side, matrix=self._matrix_form(side))

    def _matrix_form(self, side: Tree) -> bool:
        """Whether a side is matrix notation: it names a tensor without indices, a vector of ones, a
        transpose or a sum without an index, and nothing with indices."""
        indexed = matrix = False
        for factor in side.iter_subtrees():
            if factor.data != "factor":
                continue
            primary, scripts = factor.children[0], factor.children[1:]
            subs = [s for s in scripts if s.data == "sub"]
            sups = [self._plain(s.children[1]) for s in scripts if s.data == "sup"]
            if primary.data == "summation":
                indexed, matrix = indexed or bool(subs), matrix or not subs
                continue
            if primary.data == "font" and self._plain(primary.children[1]) == "1":
                matrix = True
                continue
            if primary.data in ("paren", "bracket", "curly", "bracegroup", "frac") and subs:
                indexed = True
            if any(t in TRANSPOSE for t in sups):
                matrix = True
            ix = self.symbol(factor) if primary.data not in ("frac", "summation") else None
            if ix is None:
                continue
            if ix.indices:
                indexed = True
            elif ix.symbol.base != "delta":
                try:
                    matrix = matrix or bool(self.names.rank(self.resolve(ix)))
                except DerivationError:
                    pass  # an unknown symbol: reported where it is read
        return matrix and not indexed


def _same(a: _Claim, b: _Claim) -> bool:
    if a.kind != b.kind:
        return False
    if a.kind == "jacobian":
        x, y = a.jacobian, b.jacobian
        assert x is not None and y is not None, "a jacobian claim holds its JacobianTarget"
        return (x.of, x.wrt) == (y.of, y.wrt) and _letters(x.of_indices) == _letters(y.of_indices)
    return a.name == b.name and _letters(a.indices) == _letters(b.indices)


def _meta(first: Tree, last: Tree):
    """The meta of a span from the start of `first` to the end of `last`."""
    meta = type(first.meta)()
    meta.empty = False
    meta.line, meta.column = first.meta.line, first.meta.column
    meta.end_line, meta.end_column = last.meta.end_line, last.meta.end_column
    return meta


def _letters(indices) -> list[str] | None:
    return None if indices is None else [i for i, _, _ in indices]


def read(tex: Tex, names: Names) -> Parsed:
    """One LaTeX statement as a `Parsed`, its symbols resolved against `names`. Steps that are not
    formulas are left out and listed in `Parsed.unchecked` with the reason. Each step is held to the
    limits on length and nesting of any formula (`check_tree`), before anything walks it recursively."""
    try:
        p = StatementReader(tex, names).statement()
    except RecursionError:  # the reader walks the LaTeX tree recursively: 300 nested \left( is too deep
        raise _too_deep(tex.src, tex.line) from None
    for step in p.steps:
        check_tree(step.rhs, step.src)
    return p


def _too_deep(src: Source, line: int) -> DerivationError:
    return DerivationError(
        f"expression nested too deeply (more than {limits.MAX_DEPTH} levels)", line, 1, src.file
    )


def symbol_key(text: str, line: Line, file: str | None) -> tuple:
    """The key of a [symbols] entry's left side (`\\tilde{x}^{(N)}`), as `Symbol.key`."""
    tex = parse(Line(line.number, text), file)
    sides = tex[0].sides if tex else []
    factor = _only_factor(sides[0]) if len(sides) == 1 else None
    ix = (
        StatementReader(tex[0], Names(lambda n: None, frozenset(), {}, None, True)).symbol(factor)
        if factor
        else None
    )
    if ix is None or ix.indices:
        raise DerivationError(f"'{text.strip()}' is not one LaTeX symbol", line.number, 1, file)
    return ix.symbol.key
