"""The LaTeX a report's formulas are written in, parsed into a small tree (`verify.notation.latextree`)
with Lark and a grammar of our own. Nothing here knows the derivation's names: `latexin` resolves them.

What is read: an expression with sums and signs; products by juxtaposition or `\\cdot \\times * \\odot
\\circ`, divisions by `/ \\oslash`; `\\frac`, `\\sqrt`, sub- and superscripts; symbols (letters, Greek
commands, `\\mathbf`-style fonts, accents `\\hat \\tilde \\bar`, `\\mathit{word}`); `\\text{...}` words;
brackets of every kind (`\\left( \\right)` and `\\big` sizes are only sizes); `\\left| x \\right|`;
`\\begin{cases}`;
relations `= < > \\le \\ge \\neq` inside brackets and cases; a chain `a = b = c` (a definition may also
be written `\\leftarrow` or `:=`); `\\Rightarrow` between statements. Spacing commands are ignored.
"""

from __future__ import annotations

from functools import cache

from lark import Lark

GRAMMAR = r"""
start: IMPLIES? statement (_sep statement)*
_sep: IMPLIES | ROWSEP
statement: expr (EQ expr)*

expr: sign? term (sign term)*
sign: PLUS | MINUS
term: factor (mulop? factor)*
mulop: MULOP | STAR | SLASH

factor: primary script*
script: SUB scriptarg -> sub
      | SUP scriptarg -> sup
?scriptarg: LETTER -> token
          | NUMBER -> token
          | CMD -> token
          | TEXT -> token
          | FONT bracegroup -> font
          | bracegroup

?primary: LETTER -> letter
        | CMD -> command
        | NUMBER -> number
        | TEXT -> text
        | SUM -> summation
        | FRAC bracegroup bracegroup -> frac
        | SQRT bracegroup -> sqrt
        | UNDERBRACE bracegroup -> underbrace
        | ACCENT accentarg -> accent
        | FONT bracegroup -> font
        | "(" items ")" -> paren
        | "[" items "]" -> bracket
        | LBRACE items RBRACE -> curly
        | bracegroup
        | LVERT expr RVERT -> abs
        | BEGIN_CASES cases END_CASES -> cases

?accentarg: bracegroup | LETTER -> letter | CMD -> command
bracegroup: "{" items? "}"
items: item ("," item)*
item: expr (rel expr)?
rel: EQ | RELOP
cases: case (ROWSEP case)* ROWSEP?
case: expr AMP item?

IMPLIES.5: /\\(Rightarrow|implies|Longrightarrow|Leftrightarrow|iff|therefore)(?![A-Za-z])/
FRAC.5: /\\[dt]?frac(?![A-Za-z])/
SQRT.5: /\\sqrt(?![A-Za-z])/
UNDERBRACE.5: /\\(underbrace|overbrace)(?![A-Za-z])/
SUM.5: /\\sum(?![A-Za-z])/
ACCENT.5: /\\(hat|tilde|bar|widehat|widetilde|overline|vec)(?![A-Za-z])/
FONT.5: /\\(mathbf|boldsymbol|bm|mathcal|mathbb|mathbfit|pmb|mathscr)(?![A-Za-z])/
TEXT.6: /\\(text|mathrm|operatorname|mathit|textrm|textit|textbf|mathsf|mbox)\s*\{[^{}]*\}/
MULOP.5: /\\(cdot|times|odot|circ|oslash|ast)(?![A-Za-z])/
RELOP.5: /\\(geq?|leq?|neq?|geqslant|leqslant|gt|lt)(?![A-Za-z])/ | "<" | ">"
BEGIN_CASES.6: /\\begin\s*\{cases\}/
END_CASES.6: /\\end\s*\{cases\}/
LBRACE.5: /\\\{|\\lbrace(?![A-Za-z])/
RBRACE.5: /\\\}|\\rbrace(?![A-Za-z])/
LVERT.8: /\\left\s*(\||\\vert(?![A-Za-z]))|\\lvert(?![A-Za-z])/
RVERT.8: /\\right\s*(\||\\vert(?![A-Za-z]))|\\rvert(?![A-Za-z])/
ROWSEP.5: /\\\\(\s*\[[^\]]*\])?/
CMD: /\\[A-Za-z]+/
LETTER: /[A-Za-z]/
NUMBER: /\d+(\.\d+)?/
EQ.6: "=" | ":=" | /\\(leftarrow|gets|coloneqq|triangleq)(?![A-Za-z])/
PLUS: "+"
MINUS: "-"
STAR: "*"
SLASH: "/"
SUB: "_"
SUP: "^"
AMP: "&"

SPACING.7: /\\(quad|qquad|displaystyle|textstyle|scriptstyle|limits|nolimits|left\.|right\.|left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|big|Big|bigg|Bigg|nonumber|notag)(?![A-Za-z])/
THINSPACE.7: /\\[,;:! ]/
%ignore SPACING
%ignore THINSPACE
%ignore /\s+/
"""


@cache
def parser() -> Lark:
    """The LALR parser (built once): deterministic, and fast enough for every line of a file."""
    return Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)
