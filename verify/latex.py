"""LaTeX for derivations: formulas as a person writes them, and a document with the verification results.

`derivation_latex(d)` renders one derivation as a fragment (a section with its forward definitions and
gradients); `main(args)` checks derivations and writes them, with a verification table each, as one
standalone document (`python -m verify latex`), compiled to PDF on request.

The printer works on the SymPy expressions the language produces, not on the source text, so what is
printed is what was checked. SymPy's canonical order of terms and factors is not the order a person
writes, so sums and products are laid out here: positive terms first, constants before tensors,
bracketed factors and sums last, and a constant factor split off as a fraction when the numerator is tall.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import sympy as sp
from sympy.printing.latex import LatexPrinter

from . import primitives
from .catalogue import load, paths
from .comparison import Result
from .model import Derivation, DerivationError, Statement, step_of
from .report import DerivationReport, Report, colour_for

GREEK = frozenset(
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau upsilon phi "
    "chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega".split()
)
ACCENTS = {"hat": r"\hat", "bar": r"\bar", "tilde": r"\tilde"}
INSTALL_HINT = "to build the PDF, install TeX: apt-get install texlive-latex-base texlive-latex-extra latexmk"
TEX_TIMEOUT_S = 300

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


# Characters a course note holds that pdflatex with T1 and utf8 cannot set as text: math in text.
_MATH_TEXT = {
    "∂": r"\partial", "→": r"\to", "←": r"\leftarrow", "⇒": r"\Rightarrow", "≤": r"\leq", "≥": r"\geq",
    "≠": r"\neq", "≈": r"\approx", "×": r"\times", "·": r"\cdot", "∑": r"\sum", "∏": r"\prod",
    "√": r"\surd", "∞": r"\infty", "∈": r"\in", "±": r"\pm", "−": "-", "∇": r"\nabla", "⊙": r"\odot",
    "²": "^2", "³": "^3", "¹": "^1", "⁻": "^-", "ᵀ": "^T",
}  # fmt: skip
_GREEK_CAPITALS = {"Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega"}
# Greek letters LaTeX writes as Latin ones (it has no \Alpha, no \omicron)
_LATIN_LOOKALIKE = {
    "Alpha": "A", "Beta": "B", "Epsilon": "E", "Zeta": "Z", "Eta": "H", "Iota": "I", "Kappa": "K", "Mu": "M",
    "Nu": "N", "Omicron": "O", "Rho": "P", "Tau": "T", "Chi": "X", "omicron": "o",
}  # fmt: skip


def escape(text: str) -> str:
    """Plain text from a derivation file, safe to place in a LaTeX paragraph and to compile with
    pdflatex: Greek letters and common math symbols as math, accents of T1 as they are, any other
    character as its code point (U+0302), rather than an error of the PDF build."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) if ord(ch) < 128 else _non_ascii(ch) for ch in text)


def _non_ascii(ch: str) -> str:
    if ch in _MATH_TEXT:
        return rf"\ensuremath{{{_MATH_TEXT[ch]}}}"
    name = unicodedata.name(ch, "")
    greek = re.fullmatch(r"GREEK (SMALL|CAPITAL) LETTER (?:FINAL )?([A-Z]+)", name)  # no tonos, no dialytika
    if greek:
        letter = greek[2].capitalize().replace("Lamda", "Lambda")
        if greek[1] == "SMALL":
            letter = letter.lower()
        if letter in _LATIN_LOOKALIKE:
            return _LATIN_LOOKALIKE[letter]
        if greek[1] == "SMALL" or letter in _GREEK_CAPITALS:
            return rf"\ensuremath{{\{letter}}}"
    if ord(ch) < 0x180 and unicodedata.category(ch).startswith(("L", "S", "P", "Z")):
        return ch  # Latin-1 and Latin Extended-A: T1 sets them
    return rf"\texttt{{[U+{ord(ch):04X}]}}"


# ---------------------------------------------------------------------------------------------------------
# Names.


@dataclass(frozen=True)
class Name:
    """How a tensor or scalar name prints: `base` carries an optional superscript and a label subscript
    that is part of the name (x_in); index subscripts join the label."""

    base: str
    sup: str = ""
    label: str = ""

    def with_indices(self, indices: str = "") -> str:
        sub = ",".join(part for part in (self.label, indices) if part)
        return self.base + (f"^{{{self.sup}}}" if self.sup else "") + (f"_{{{sub}}}" if sub else "")


def symbol_name(name: str) -> Name:
    """The usual symbol for a name: xhat is x-hat, Greek names are Greek, var is sigma squared, a trailing
    number is a layer superscript (W1 is W^(1)), x_in is x with the label 'in'."""
    if name == "var":
        return Name(r"\sigma", "2")
    if name == "eps":
        return Name(r"\epsilon")
    split = re.fullmatch(r"(.*?)(\d*)", name)
    assert split is not None, "every name is a head and perhaps digits"
    head, digits = split.groups()
    if head and digits:
        inner = symbol_name(head)
        if not inner.sup:
            return Name(inner.base, f"({digits})", inner.label)
    head, _, label = name.partition("_")
    if head and label:
        inner = symbol_name(head)
        if not inner.label:
            return Name(inner.base, inner.sup, r"\mathrm{" + escape(label) + "}")
    for suffix, accent in ACCENTS.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            inner = symbol_name(name[: -len(suffix)])
            if inner == Name(inner.base) and _is_single_symbol(inner.base):
                return Name(f"{accent}{{{inner.base}}}")
    if name in GREEK:
        return Name("\\" + name)
    if len(name) == 1:
        return Name(name)
    return Name(r"\mathit{" + escape(name) + "}")


def _is_single_symbol(tex: str) -> bool:
    return len(tex) == 1 or (tex[1:] in GREEK and tex[0] == "\\")


def subscript(indices) -> str:
    """Index names as one subscript: xnj-style when every index is one letter, with commas otherwise; a
    shifted subscript as written, index terms first (S i + kh - P)."""
    names = [escape(str(i)) if isinstance(i, sp.Symbol) else _shifted(i) for i in indices]
    return ("" if all(len(n) == 1 for n in names) else ",").join(names)


def _shifted(e: sp.Expr) -> str:
    """S i + kh - P: terms with an index first, positive before negative, a multiple before a bare index;
    in each term the coefficient before the index."""

    def indexed(t):
        return any(s.is_integer and not s.is_nonnegative for s in t.free_symbols)

    terms = sorted(
        sp.Add.make_args(e), key=lambda t: (not indexed(t), t.could_extract_minus_sign(), not t.is_Mul)
    )
    out = ""
    for t in terms:
        negative = t.could_extract_minus_sign()
        factors = sorted(sp.Mul.make_args(-t if negative else t), key=indexed)
        out += ("-" if negative else "+" if out else "") + " ".join(escape(str(f)) for f in factors)
    return out


def number_latex(value: sp.Rational) -> str:
    """A fixed input value: 10^{-5} for a power of ten, a decimal when it terminates, a fraction otherwise."""
    value = sp.Rational(value)
    if value < 0:
        return "-" + number_latex(-value)
    if value.is_Integer:
        return str(value)
    if value.p == 1 and _power_of_ten(value.q):
        return f"10^{{-{len(str(value.q)) - 1}}}"
    q = int(value.q)
    while q % 2 == 0:
        q //= 2
    while q % 5 == 0:
        q //= 5
    if q == 1:
        return str(Decimal(int(value.p)) / Decimal(int(value.q)))
    return rf"\frac{{{value.p}}}{{{value.q}}}"


def _power_of_ten(n) -> bool:
    return str(n).startswith("1") and set(str(n)[1:]) <= {"0"}


# ---------------------------------------------------------------------------------------------------------
# The printer.


def _split_sign(e: sp.Expr) -> tuple[bool, sp.Expr]:
    """(negative, e without its sign) for a product or sum written with a leading minus; sums of several
    terms keep their signs inside."""
    if e.is_Number:
        return (True, -e) if e < 0 else (False, e)
    if isinstance(e, sp.Sum):
        negative, body = _split_sign(e.function)
        return (negative, sp.Sum(body, *e.limits)) if negative else (False, e)
    if e.is_Mul:
        negative, factors = False, []
        for f in e.args:
            n, p = _split_sign(f)
            negative ^= n
            factors.append(p)
        return (negative, sp.Mul(*factors)) if negative else (False, e)
    return False, e


def _parens(tex: str) -> str:
    """Brackets that grow only around tall content (fractions, sums, cases)."""
    if any(mark in tex for mark in (r"\frac", r"\sum", "cases")):
        return rf"\left({tex}\right)"
    return f"({tex})"


def _is_division(f: sp.Expr) -> bool:
    return f.is_Pow and f.exp.could_extract_minus_sign()


class DerivationPrinter(LatexPrinter):
    """Prints one derivation's expressions: subscripts without ranges, sums with their index below,
    partial derivatives for gradients, usual symbols for names."""

    def __init__(self, d: Derivation):
        super().__init__()
        self.d = d
        scalar_output = not d.shape(d.output)
        if scalar_output:
            self.loss = symbol_name(d.output).with_indices()
        else:
            self.loss = r"\mathcal{L}" if "L" in d.tensors else "L"
        # e^{...} reads as exp only while e is not also an index or a name of this derivation.
        names = {s.name for st in d.forward + d.gradients for s in st.rhs.atoms(sp.Symbol)} | set(d.tensors)
        self.exp_as_power = "e" not in names

    # -- names ------------------------------------------------------------------------------------------

    def partial(self, of: str, indices: str = "", inline: bool = False) -> str:
        """dL/dv: a fraction in formulas, a slash in running text."""
        v = symbol_name(of).with_indices(indices)
        return (
            rf"\partial {self.loss} / \partial {v}"
            if inline
            else rf"\frac{{\partial {self.loss}}}{{\partial {v}}}"
        )

    def is_gradient(self, name: str) -> bool:
        t = self.d.tensors.get(name)
        return t is not None and t.role in ("gradient", "upstream")

    def tensor(self, name: str, indices: str = "") -> str:
        if self.is_gradient(name):
            return self.partial(name[1:], indices)
        return symbol_name(name).with_indices(indices)

    def target(self, st: Statement) -> str:
        """The left-hand side: dL/dv for a gradient, the fraction of partials for a Jacobian (after its
        name when it has one), the name for the rest; empty for a chain's later steps."""
        if st.chain is not None and st.chain[0] > 1:
            return ""
        indices = subscript(st.indices)
        if st.jacobian is not None:
            jac = st.jacobian
            y = symbol_name(jac.of).with_indices(subscript(jac.of_indices))
            x = symbol_name(jac.wrt).with_indices(subscript(jac.wrt_indices))
            quotient = rf"\frac{{\partial {y}}}{{\partial {x}}}"
            return (
                f"{symbol_name(step_of(st.target)).with_indices(indices)} = {quotient}"
                if jac.named
                else quotient
            )
        if st.of:
            return self.partial(st.of, indices)
        return symbol_name(st.target).with_indices(indices)

    def claim_inline(self, st: Statement) -> str:
        """What a statement claims, in running text: dL/dv or dy/dx with slashes."""
        if st.jacobian is not None:
            of, wrt = symbol_name(st.jacobian.of).with_indices(), symbol_name(st.jacobian.wrt).with_indices()
            return rf"\partial {of} / \partial {wrt}"
        assert st.of is not None, "a claim that is not a Jacobian is a gradient dv, which names its v"
        return self.partial(st.of, inline=True)

    def _print_Indexed(self, e):
        return self.tensor(e.base.label.name, subscript(e.indices))

    def _print_Symbol(self, e):
        if e.name in self.d.tensors:
            return self.tensor(e.name)
        return escape(e.name)  # a size or an index, printed as written

    def _print_KroneckerDelta(self, e):
        return rf"\delta_{{{subscript(e.args)}}}"

    # -- sums and products ------------------------------------------------------------------------------

    def _print_Sum(self, e):
        negative, e = _split_sign(e)
        limits, body = [], e
        while isinstance(body, sp.Sum):
            limits += list(body.limits)
            body = body.function
        body_tex = self._print(body)
        if body.is_Add or body.is_Piecewise:
            body_tex = _parens(body_tex)
        sign = "- " if negative else ""
        return sign + self._over(r"\sum", limits) + " " + body_tex

    def _over(self, operator: str, limits) -> str:
        """\\sum_{i,j} over whole ranges; an explicit range as \\sum_{l=-1}^{0}."""
        whole = [i for i, lo, hi in limits if lo == 0 and (hi + 1).is_Symbol]
        tex = rf"{operator}_{{{','.join(escape(i.name) for i in whole)}}}" if whole else ""
        for i, lo, hi in limits:
            if i not in whole:
                tex += rf"{operator}_{{{escape(i.name)}={self._print(lo)}}}^{{{self._print(hi)}}}"
        return tex

    def _print_WindowMax(self, e):
        return self._over(r"\max", e.limits) + " " + self._print(e.function)

    def _print_Add(self, e, order=None):
        terms = [_split_sign(t) for t in self._as_ordered_terms(e, order=order)]
        terms.sort(key=lambda t: (t[0], -len(_free_indices(t[1])), not t[1].has(sp.Sum), sp.count_ops(t[1])))
        tex = ""
        for k, (negative, term) in enumerate(terms):
            if k == 0:
                tex += "- " if negative else ""
            else:
                tex += " - " if negative else " + "
            term_tex = self._print(term)
            if term.is_Add or term.is_Relational:
                term_tex = _parens(term_tex)
            tex += term_tex
        return tex

    def _print_Mul(self, e):
        return self._product(e)

    def _product(self, e: sp.Expr) -> str:
        """A product laid out by hand: sign first, constants, then tensors, then bracketed factors, sums
        last (a sum runs to the end of the product). With a denominator, a numerator holding a sum, a case
        split or a derivative becomes (constants / denominator) times the rest."""
        negative, e = _split_sign(e)
        coeff, factors = e.as_coeff_mul() if e.is_Mul else (sp.Integer(1), (e,))
        numer = [sp.Integer(coeff.p)] if coeff.p != 1 else []
        denom = [sp.Integer(coeff.q)] if coeff.q != 1 else []
        for f in factors:
            if _is_division(f):
                denom.append(f.base ** (-f.exp))
            else:
                numer.append(f)
        numer.sort(key=self._order)
        denom.sort(key=self._order)
        sign = "- " if negative else ""
        if not denom:
            return sign + self._factors(numer)
        if any(self._tall(f) for f in numer):
            constant = [f for f in numer if self._rank(f) <= 1]
            rest = [f for f in numer if self._rank(f) > 1]
            frac = rf"\frac{{{self._factors(constant)}}}{{{self._factors(denom)}}}"
            return sign + frac + " " + self._factors(rest, alone=False)
        return sign + rf"\frac{{{self._factors(numer)}}}{{{self._factors(denom)}}}"

    def _factors(self, factors: list[sp.Expr], alone: bool = True) -> str:
        """Factors side by side; a sum of terms or a case split is bracketed unless it stands alone, and a
        sum over an index that a later factor also names is bracketed so that it ends where it should."""
        if not factors:
            return "1"
        texts = []
        for k, f in enumerate(factors):
            tex = self._print(f)
            bracket = (f.is_Add or f.is_Piecewise) and (len(factors) > 1 or not alone)
            if isinstance(f, sp.Sum) and k < len(factors) - 1:
                later = set().union(*(g.atoms(sp.Symbol) for g in factors[k + 1 :]))
                bracket = bool({limit[0] for limit in f.limits} & later)
            texts.append(_parens(tex) if bracket else tex)
        out = texts[0]
        for before, tex in zip(texts, texts[1:], strict=False):
            # a thin space keeps a derivative's fraction bar from running into the next factor
            thin = before.startswith(r"\frac") and not tex.startswith((r"\sum", "(", r"\left("))
            out += (r" \, " if thin else " ") + tex
        return out

    def _order(self, f: sp.Expr) -> tuple[int, bool]:
        """The sort key of a factor: its rank, then capitals (matrices, by convention) before other
        tensors, so that W_ji x_i reads as matrix times vector."""
        rank = self._rank(f)
        base = f.base if f.is_Pow else f
        lower = isinstance(base, sp.Indexed) and not base.base.label.name[:1].isupper()
        return rank, rank == 3 and lower

    def _rank(self, f: sp.Expr) -> int:
        """Where a factor goes in a product: numbers, scalars and sizes, derivatives, tensors, functions,
        case splits, bracketed sums of terms, and sums over an index last."""
        base = f.base if f.is_Pow else f
        if base.is_Number:
            return 0
        if isinstance(base, sp.Symbol):
            return 2 if self.is_gradient(base.name) else 1
        if isinstance(base, sp.Indexed):
            return 2 if self.is_gradient(base.base.label.name) else 3
        if isinstance(base, sp.KroneckerDelta):
            return 3
        if base.is_Piecewise:
            return 5
        if base.is_Add:
            return 6
        if isinstance(base, sp.Sum):
            return 7
        return 4

    def _tall(self, f: sp.Expr) -> bool:
        """Whether a factor would make a fraction's numerator tall: a sum, a case split, a derivative or a
        division inside it."""
        if f.has(sp.Sum, sp.Piecewise) or any(_is_division(p) for p in f.atoms(sp.Pow)):
            return True
        names = {a.base.label.name for a in f.atoms(sp.Indexed)} | {s.name for s in f.atoms(sp.Symbol)}
        return any(self.is_gradient(n) for n in names)

    def _print_Pow(self, e):
        if _is_division(e):
            return self._product(e)
        if e.exp == sp.Rational(1, 2):
            return rf"\sqrt{{{self._print(e.base)}}}"
        exp_tex = f"{e.exp.p}/{e.exp.q}" if e.exp.is_Rational and not e.exp.is_Integer else self._print(e.exp)
        base_tex = self._print(e.base)
        simple = isinstance(e.base, sp.Symbol | sp.Indexed) or (e.base.is_Integer and e.base > 0)
        if not simple or "^" in base_tex or r"\frac" in base_tex:
            base_tex = _parens(base_tex)
        return f"{base_tex}^{{{exp_tex}}}"

    # -- functions --------------------------------------------------------------------------------------

    def _call(self, function: str, *args: sp.Expr) -> str:
        texts = [self._print(a) for a in args]
        return function + _parens(", ".join(texts))

    def _print_Piecewise(self, e):
        rows, tall = [], []
        for value, cond in e.args:
            when = r"\text{otherwise}" if cond == sp.true else rf"\text{{if }} {self._print(cond)}"
            value_tex = self._print(value)
            # display style, so that derivatives and sums in a case are as large as outside it; array
            # rows do not space tall content apart, so the gaps are set by hand
            rows.append(rf"\displaystyle {value_tex} & {when}")
            tall.append(any(mark in value_tex for mark in (r"\frac", r"\sum")))
        tex = rows[0]
        for k, row in enumerate(rows[1:], start=1):
            tex += [r" \\ ", r" \\[1ex] ", r" \\[2ex] "][tall[k - 1] + tall[k]] + row
        return r"\begin{cases} " + tex + r" \end{cases}"


def _print_primitive(printer: DerivationPrinter, e: sp.Expr, prim: primitives.Primitive) -> str:
    """A function of `verify.primitives`: its LaTeX operator with the arguments bracketed, or its own code."""
    if callable(prim.latex):
        return prim.latex(printer, e)
    return printer._call(prim.latex, *e.args)


primitives.install(DerivationPrinter, _print_primitive)


def _free_indices(e: sp.Expr) -> set[sp.Symbol]:
    return {s for s in e.free_symbols if isinstance(s, sp.Symbol) and s.is_integer and not s.is_positive}


# ---------------------------------------------------------------------------------------------------------
# One derivation as a LaTeX fragment.


def expression_latex(d: Derivation, expr: sp.Expr) -> str:
    """One right-hand side of `d` in LaTeX."""
    return DerivationPrinter(d).doprint(expr)


def derivation_latex(d: Derivation, report: DerivationReport | None = None) -> str:
    """A section for one derivation: title, source, conventions, forward definitions and gradients. With
    a report, gradients that are not verified are marked in the formulas."""
    p = DerivationPrinter(d)
    status = {g.target: g.status for g in report.gradients} if report else {}
    verdict = "" if report is None or report.status == "verified" else rf" ({escape(report.status)})"
    out = [rf"\section{{{escape(d.title)}{verdict}}}"]
    if "source" in d.header:
        out.append(rf"\noindent\textit{{Source:}} {escape(d.header['source'])}\par")
    if d.file:
        out.append(rf"\noindent\textit{{File:}} \texttt{{{escape(Path(d.file).name)}}}\par")
    if "notes" in d.header:
        out.append(rf"\paragraph{{Conventions.}} {escape(d.header['notes'])}")
    out.append(rf"\paragraph{{Inputs.}} {_inputs_sentence(d, p)}")
    out += [
        r"\subsection*{Forward}",
        _align([(p.target(st), p.doprint(d.as_written(st.rhs)), "") for st in d.forward]),
    ]
    out += [r"\subsection*{Gradients}", _loss_sentence(d, p)]
    rows = []
    for st in d.gradients:
        if not st.checked:
            note = r"\text{(helper)}"
        elif status.get(st.target, "verified") != "verified":
            note = rf"\text{{\textbf{{{status[st.target]}}}}}"
        else:
            note = ""
        rows.append((p.target(st), p.doprint(d.as_written(st.rhs)), note))
    out.append(_align(rows))
    return "\n".join(out) + "\n"


def _align(rows: list[tuple[str, str, str]]) -> str:
    lines = [f"  {lhs} &= {rhs}" + (f" && {note}" if note else "") for lhs, rhs, note in rows]
    return "\\begin{align*}\n" + " \\\\\n".join(lines) + "\n\\end{align*}"


def _inputs_sentence(d: Derivation, p: DerivationPrinter) -> str:
    """Inputs grouped by shape (x in R^{N x J}; gamma, beta in R^J), fixed scalars with their values and
    the sampling domains that carry meaning (one-hot targets, probability rows)."""
    groups: dict[tuple, list[str]] = {}
    fixed = []
    for name in d.inputs:
        sym = p.tensor(name)
        if name in d.fixed_values:
            fixed.append(f"${sym} = {number_latex(d.fixed_values[name])}$")
            continue
        domain = d.domains.get(name)
        meaning = ""
        if domain is not None and domain.kind in ("onehot", "simplex"):
            assert domain.axis is not None, f"a {domain.kind} domain has its axis"
            along = d.shape(name)[domain.axis].name.lower()
            meaning = f" (one-hot along ${escape(along)}$)" if domain.kind == "onehot" else ""
            meaning = meaning or f" (positive, summing to 1 over ${escape(along)}$)"
        elif domain is not None and domain.kind == "positive":
            meaning = " (positive)"
        groups.setdefault((d.shape(name), meaning), []).append(sym)
    parts = []
    for (shape, meaning), syms in groups.items():
        parts.append(f"${', '.join(syms)} \\in {_space(shape)}${meaning}")
    output = f"${p.tensor(d.output)} \\in {_space(d.shape(d.output))}$"
    return "; ".join(parts + fixed) + f". Output {output}."


def _space(shape: tuple[sp.Symbol, ...]) -> str:
    dims = r" \times ".join(escape(s.name) for s in shape)
    return r"\mathbb{R}" + (f"^{{{dims}}}" if shape else "")


def _loss_sentence(d: Derivation, p: DerivationPrinter) -> str:
    if not d.shape(d.output):
        head = f"The output ${p.loss}$ is the loss."
    else:
        indices = subscript(d.statement(d.output).indices)
        head = (
            f"${p.loss}$ is a scalar loss computed from ${p.tensor(d.output)}$, and "
            f"${p.partial(d.output, indices, inline=True)}$ is the upstream gradient."
        )
    return (
        r"\noindent "
        + head
        + f" Each gradient is the partial derivative of ${p.loss}$ with respect to one input or intermediate, "
        "everything downstream of it depending on it."
    )


# ---------------------------------------------------------------------------------------------------------
# The document.

PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage[T1]{fontenc}
\IfFileExists{lmodern.sty}{\usepackage{lmodern}}{}
\usepackage[utf8]{inputenc}
\usepackage[a4paper,margin=2.2cm]{geometry}
\usepackage{amsmath,amssymb}
\usepackage{booktabs}
\allowdisplaybreaks
\setlength{\jot}{6pt}
\setlength{\emergencystretch}{3em}
\title{Gradient derivations checked by gradverify}
\date{}
"""


def document(derivations: list[Derivation], report: Report) -> str:
    """A standalone document: each derivation with its verification table, after a summary."""
    body = [PREAMBLE, r"\begin{document}", r"\maketitle"]
    body.append(
        rf"\noindent {escape(report.summary())}. In each verification table, a cell is an oracle's verdict on "
        "a gradient and the largest relative error of the written formula against that oracle (normwise, "
        "over all samples)."
    )
    body.append(r"\tableofcontents")
    for d, r in zip(derivations, report.derivations, strict=True):
        body.append(derivation_latex(d, r))
        body.append(verification_latex(d, r, report.oracles))
    body.append(r"\end{document}")
    return "\n".join(body) + "\n"


def verification_latex(d: Derivation, r: DerivationReport, oracles: tuple[str, ...]) -> str:
    """The verification table of one derivation: per gradient and oracle the status and the largest
    relative error, the library forward checks, the verdict with every diagnosis, sizes and seed."""
    p = DerivationPrinter(d)
    proofs = any(g.proof is not None for g in r.gradients)
    head = " & ".join(["", *(escape(o) for o in oracles), "verdict", *(["proof"] if proofs else [])])
    rows = []
    for g in r.gradients:
        st = d.statement(g.target)
        label = f"${p.claim_inline(st)}$" + escape(g.name[len(st.claim) :])  # and " step 2/3", " (line 7)"
        cells = [_cell(g.oracles.get(o)) for o in oracles]
        verdict = "verified" if g.status == "verified" else rf"\textbf{{{escape(g.status)}}}"
        proof = [escape(str(g.proof.status).replace("-", " ")) if g.proof else "--"] if proofs else []
        rows.append(" & ".join([label, *cells, verdict, *proof]))
    out = [
        r"\subsection*{Verification}",
        r"\begin{center}\footnotesize\setlength{\tabcolsep}{4pt}",
        rf"\begin{{tabular}}{{l{'l' * len(oracles)}l{'l' * proofs}}}",
        r"\toprule",
        head + r" \\",
        r"\midrule",
        *(row + r" \\" for row in rows),
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{center}",
    ]
    if r.forward:
        out += [
            r"\begin{center}\footnotesize",
            r"\begin{tabular}{lp{10cm}l}",
            r"\toprule",
            r"oracle & generated forward compared with & \\",
            r"\midrule",
            *(
                rf"{escape(f.oracle)} & \texttt{{{escape(f.against)}}} & {_cell(f.result)} \\"
                for f in r.forward
            ),
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{center}",
        ]
    notes = _reasons(r)
    if notes:
        out.append(r"\noindent Oracles that did not pass, and why:")
        out.append(r"\begin{itemize}")
        out += [rf"\item {note}" for note in notes]
        out.append(r"\end{itemize}")
    out += [rf"\par\noindent\textbf{{Warning:}} {escape(w)}." for w in r.warnings]
    inferred = {name: info["inferred"] for name, info in r.domains.items() if "inferred" in info}
    for name, why in inferred.items():
        out.append(
            rf"\par\noindent ${escape(name)}$ is drawn {escape(r.domains[name]['domain'])} (inferred: {escape(why)})."
        )
    if r.status == "verified":
        out.append(
            r"\par\noindent\textbf{Verdict:} verified: every gradient passed every oracle that decided."
        )
    else:
        out.append(rf"\par\noindent\textbf{{Verdict: {escape(r.status)}.}}")
        out.append(r"\begin{itemize}")
        for g in r.gradients:
            if g.status != "verified":
                mistake = g.mistake
                fix = mistake.fix if mistake is not None else None
                text = g.diagnosis or g.reason or "no oracle decided"
                if mistake is not None and fix is not None:
                    text = text.replace(mistake.fix_phrase(), f"did you mean (line {fix.line}) the fix below")
                kind = f" [{escape(g.mistake.kind)}]" if g.mistake is not None else ""
                of = p.claim_inline(d.statement(g.target))
                out.append(
                    rf"\item ${of}$ (\texttt{{{escape(g.name)}}}, line {g.line}) is {escape(g.status)}{kind}: "
                    rf"{escape(text)}."
                )
                if fix is not None:  # verified by the exact oracle before it was offered
                    target = p.target(d.statement(fix.target))
                    out.append(rf"\[ {target} = {p.doprint(fix.rhs)} \]")
        for f in r.forward:
            if f.result.status == "fail":
                out.append(
                    rf"\item the forward differs from \texttt{{{escape(f.against)}}} ({escape(f.oracle)})."
                )
        out.append(r"\end{itemize}")
    if proofs:
        out += _proofs_latex(d, r, p)
    sizes = "; ".join(", ".join(f"${escape(k)} = {v}$" for k, v in s.items()) for s in r.sizes)
    out.append(rf"\par\noindent Seed {r.seed}; sizes drawn: {sizes}.")
    return "\n".join(out) + "\n"


def _proofs_latex(d: Derivation, r: DerivationReport, p: DerivationPrinter) -> list[str]:
    """What the prover showed for every size: "proved for all N, J; conditions ...", or why not."""
    out = [
        r"\par\noindent\textbf{Proofs for every size} (\texttt{python -m verify prove}):",
        r"\begin{itemize}",
    ]
    for g in r.gradients:
        if g.proof is None:
            continue
        claim = p.claim_inline(d.statement(g.target))
        if g.proof.status == "proved":
            sizes = ", ".join(escape(s) for s in g.proof.sizes)
            text = f"proved for all ${sizes}$" if sizes else "proved"
            if g.proof.fixed:
                text += " (" + ", ".join(f"${escape(f)}$" for f in g.proof.fixed) + " as stated)"
            if g.proof.stated:
                text += "; conditions: " + "; ".join(rf"\texttt{{{escape(c.text)}}}" for c in g.proof.stated)
        elif g.proof.status == "gave-up":
            text = f"gave up: {escape(g.proof.reason)}"
        else:
            text = f"not proved: {escape(g.proof.reason)} (the sampled check says {escape(g.status)})"
        out.append(rf"\item ${claim}$: {text}.")
    return out + [r"\end{itemize}"]


def _cell(res: Result | None) -> str:
    if res is None:
        return ""
    if res.status in ("skip", "inconclusive"):
        return str(res.status)
    if res.status == "error":
        return r"\textbf{error}"
    status = "pass" if res.status == "pass" else r"\textbf{fail}"
    return status if res.max_rel_err is None else f"{status} ${_sci(res.max_rel_err)}$"


def _reasons(r: DerivationReport) -> list[str]:
    """Every oracle result other than pass and fail, with its reason, once for the gradients sharing it."""
    shared: dict[tuple[str, str, str], list[str]] = {}
    for g in r.gradients:
        for oracle, res in g.oracles.items():
            if res.status not in ("pass", "fail"):
                shared.setdefault((oracle, str(res.status), res.reason), []).append(g.name)
    return [
        rf"{escape(oracle)} {escape(status)} for \texttt{{{escape(', '.join(names))}}}: {escape(reason)}"
        for (oracle, status, reason), names in shared.items()
    ]


def _sci(x: float) -> str:
    if x == 0:
        return "0"
    mantissa, exponent = f"{x:.1e}".split("e")
    return mantissa if int(exponent) == 0 else rf"{mantissa} \times 10^{{{int(exponent)}}}"


# ---------------------------------------------------------------------------------------------------------
# python -m verify latex


def main(args, workers=None, progress=None) -> int:
    """Check the named derivations (every catalogue one by default), write DIR/gradverify.tex, and with
    --pdf compile it. Exit status as for checks: 0 all verified, 1 any wrong, 2 any invalid input (then
    nothing is written) or a document TeX fails on. Without TeX, --pdf only prints what to install."""
    from .check import check  # the oracles load only here: show --latex does not need them

    targets = list(args.targets) or [str(path) for path in paths()]
    derivations, errors = [], []
    for target in targets:
        try:
            derivations.append(load(target))
        except DerivationError as e:
            errors.append(str(e))
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 2
    report = check(
        derivations,
        oracles=getattr(args, "oracle", None),
        seed=args.seed,
        prove=getattr(args, "prove", False),
        time_limit=getattr(args, "time_limit", None),
        workers=workers,
        progress=progress,
    )
    invalid = [str(r.error) for r in report.derivations if r.error is not None]
    if invalid:
        print("\n".join(invalid), file=sys.stderr)
        return 2
    out = Path(args.out)
    tex = out / "gradverify.tex"
    try:
        out.mkdir(parents=True, exist_ok=True)
        tex.write_text(document(derivations, report), encoding="utf-8")
    except OSError as e:
        print(f"{out}: cannot write: {(e.strerror or str(e)).lower()}", file=sys.stderr)
        return 2
    print(report.table(colour=colour_for(sys.stdout)))
    print(f"wrote {tex}")
    if args.pdf and not tex_runs(tex.name):
        print(INSTALL_HINT, file=sys.stderr)
    elif args.pdf:
        problem = compile_pdf(tex)
        if problem is not None:
            print(problem, file=sys.stderr)
            return 2
        print(f"wrote {tex.with_suffix('.pdf')}")
    return report.exit_code


def tex_runs(name: str) -> list[list[str]]:
    """The commands that compile `name` to PDF: latexmk, or pdflatex twice (for the table of contents);
    none when TeX is not installed."""
    if shutil.which("latexmk"):
        return [["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", name]]
    if shutil.which("pdflatex"):
        return [["pdflatex", "-interaction=nonstopmode", "-halt-on-error", name]] * 2
    return []


def compile_pdf(tex: Path) -> str | None:
    """Compile `tex` to PDF beside it. Returns None on success, else one line saying what went wrong."""
    runs = tex_runs(tex.name)
    if not runs:
        return INSTALL_HINT
    for command in runs:
        try:
            done = subprocess.run(
                command,
                cwd=tex.parent,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=TEX_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return f"{command[0]} took more than {TEX_TIMEOUT_S} s on {tex}"
        if done.returncode != 0:
            return f"{command[0]} failed on {tex}: {_tex_error(tex.with_suffix('.log'))}"
    return None


def _tex_error(log: Path) -> str:
    """The first error line of a TeX log ('! ...'), or where to look."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"no log at {log}"
    first = next((line for line in text.splitlines() if line.startswith("!")), None)
    return first[1:].strip() if first else f"see {log}"
