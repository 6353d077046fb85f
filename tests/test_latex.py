"""LaTeX output: reviewed text for three derivations, no SymPy artefacts in any catalogue entry, names and
layout as a person writes them, wrong gradients shown as wrong, the `latex` command's exits, and the
whole catalogue document compiling."""

import re
import shutil
from pathlib import Path

import pytest

from verify import check, load
from verify.catalogue import paths as catalogue
from verify.cli import main as cli_main
from verify.latex import compile_pdf, derivation_latex, document, escape, expression_latex, symbol_name

GOLDEN = Path(__file__).parent / "golden"
FAST = ("exact", "fd")  # no framework imports: the oracles that keep these tests quick

WRONG = """title: Square, with the factor 2 missing
[forward]
y[n,i] = x[n,i]**2

[gradients]
dx[n,i] = dy[n,i] * x[n,i]
"""


@pytest.mark.parametrize("name", ["softmax", "batchnorm", "layernorm"])
def test_golden(name):
    """derivation_latex reproduces, character for character, the reviewed LaTeX in tests/golden."""
    assert derivation_latex(load(name)) == (GOLDEN / f"{name}.tex").read_text(encoding="utf-8")


ARTEFACTS = (
    "Idx",
    "Indexed",
    r"\operatorname",
    r"\mathtt",
    "sigmoid",
    "KroneckerDelta",
    "Piecewise",
    r"\text{for}",  # SymPy's own Piecewise wording
    r"\substack",  # SymPy's multi-index sum with ranges
    "=0}",  # a lower summation limit
    " - 1}",  # an upper summation limit N - 1
    r"\leq n",
)


@pytest.mark.parametrize("path", catalogue(), ids=lambda p: p.stem)
def test_no_sympy_artefacts(path):
    """No catalogue entry's formulas show SymPy internals (Idx, Indexed, operatorname or mathtt function
    names, summation ranges, x_{n,j} subscripts), no gradient or upstream name is printed raw instead of
    as a derivative, every statement is printed, and the braces balance."""
    d = load(path)
    tex = derivation_latex(d)
    formulas = "".join(re.findall(r"\\begin\{align\*\}(.*?)\\end\{align\*\}", tex, re.S))
    assert formulas.count("&=") == len(d.forward) + len(d.gradients)
    for artefact in ARTEFACTS:
        assert artefact not in formulas, artefact
    assert not re.search(r"(?<!\\sum)_\{[a-z](,[a-z])+\}", formulas), "commas between one-letter indices"
    for name, t in d.tensors.items():
        if t.role in ("gradient", "upstream"):
            assert not re.search(rf"(?<![\\a-zA-Z]){name}_\{{", tex), name
            assert f"{{{name}}}" not in tex, name
    unescaped = re.sub(r"\\[{}]", "", tex)
    assert unescaped.count("{") == unescaped.count("}")


def test_names_map_to_usual_symbols():
    """Names become the symbols a person writes: hats, Greek, sigma squared for var, layer superscripts,
    labels after an underscore, italic words for the rest."""
    assert symbol_name("xhat").with_indices("nj") == r"\hat{x}_{nj}"
    assert symbol_name("muhat").with_indices() == r"\hat{\mu}"
    assert symbol_name("gamma").with_indices("j") == r"\gamma_{j}"
    assert symbol_name("eps").with_indices() == r"\epsilon"
    assert symbol_name("var").with_indices("j") == r"\sigma^{2}_{j}"
    assert symbol_name("W1").with_indices("ji") == r"W^{(1)}_{ji}"
    assert symbol_name("h12").with_indices("nj") == r"h^{(12)}_{nj}"
    assert symbol_name("x_in").with_indices("n") == r"x_{\mathrm{in},n}"
    assert symbol_name("Sigma").with_indices() == r"\Sigma"
    assert symbol_name("logits").with_indices("nk") == r"\mathit{logits}_{nk}"


POWERS = """[forward]
var[j] = sum(x[n,j]**2, n) / N
y[j] = var[j]**2 + (var[j] + eps)**(-3/2)
[gradients]
dvar[j] = dy[j]
"""


def test_powers_of_sigma_squared_are_bracketed():
    """A power of var never stacks two superscripts: (sigma^2_j)^2, and a negative power of a sum is a
    fraction with the power in the denominator."""
    d = load(POWERS)
    rhs = expression_latex(d, d.statement("y").rhs)
    assert r"(\sigma^{2}_{j})^{2}" in rhs
    assert r"\frac{1}{(\sigma^{2}_{j} + \epsilon)^{3/2}}" in rhs


def test_functions_and_cases_read_as_written():
    """sigmoid is sigma(.), max and min keep the variable first, where is a cases environment with 'if'
    and 'otherwise', and the delta is a subscripted delta."""
    leaky = derivation_latex(load("leaky_relu"))
    assert r"\max(x_{ni}, 0) + a \min(x_{ni}, 0)" in leaky
    assert r"\begin{cases} \displaystyle \frac{\partial L}{\partial y_{ni}} & \text{if } x_{ni} > 0" in leaky
    assert r"\text{otherwise} \end{cases}" in leaky
    assert r"y_{ni} &= \sigma(x_{ni})" in derivation_latex(load("sigmoid"))
    assert r"\delta_{km}" in derivation_latex(load("softmax"))


def test_scalar_loss_and_e_as_an_index():
    """With a scalar output the loss is named by it and has no upstream term; where e is an index the
    exponential is written exp(.) so that e^... is not read as a power of the index."""
    tex = derivation_latex(load("mlp"))
    assert (
        r"\frac{\partial L}{\partial W^{(1)}_{ji}} &= \sum_{n} \frac{\partial L}{\partial h^{(1)}_{nj}} \, x_{ni}"
        in tex
    )
    assert r"p_{nc} &= \frac{\exp(z_{nc})}{\sum_{e} \exp(z_{ne})}" in tex
    assert r"L &= - \frac{1}{N} \sum_{n,c} t_{nc} \log p_{nc}" in tex
    assert "e^{" in derivation_latex(load("softmax"))


def test_multi_letter_indices_are_separated_by_commas():
    """Subscripts run together when every index is one letter and take commas when one is longer."""
    d = load("[forward]\ny[n, kk] = 2 * x[n, kk]\n[gradients]\ndx[n, kk] = 2 * dy[n, kk]\n")
    tex = derivation_latex(d)
    assert r"\frac{\partial L}{\partial x_{n,kk}} &= 2 \frac{\partial L}{\partial y_{n,kk}}" in tex
    assert r"\mathbb{R}^{N \times KK}" in tex


def test_escape_covers_every_special_character():
    """Text from a file (titles, notes, diagnoses) cannot break the document."""
    assert escape(r"a_b & 50% #1 $x$ {y} ~z ^w \v") == (
        r"a\_b \& 50\% \#1 \$x\$ \{y\} \textasciitilde{}z \textasciicircum{}w \textbackslash{}v"
    )


def test_wrong_gradient_is_rendered_wrong_with_its_diagnosis():
    """A wrong gradient is marked wrong in its formula, its table row and the verdict, with the
    diagnosis, and the document never calls it verified."""
    d = load(WRONG)
    report = check([d], oracles=FAST)
    assert report.derivations[0].status == "wrong"
    tex = document([d], report)
    assert r"\section{Square, with the factor 2 missing (wrong)}" in tex
    assert r"\frac{\partial L}{\partial y_{ni}} \, x_{ni} && \text{\textbf{wrong}}" in tex
    assert r"\textbf{Verdict: wrong.}" in tex
    assert "is 0.5 times the true gradient" in tex
    assert r"\textbf{fail}" in tex
    assert "verified: every gradient" not in tex
    row = next(line for line in tex.splitlines() if line.startswith(r"$\partial L / \partial x$ &"))
    assert row.endswith(r"\textbf{wrong} \\")


def test_cli_latex_invalid_input_is_one_line_exit_2(tmp_path, capsys):
    """An input that does not parse gets `file:line:col: message` on stderr, exit 2, no traceback, and
    no document."""
    bad = tmp_path / "bad.deriv"
    bad.write_text("[forward]\ny[n] = x[n] +\n[gradients]\ndx[n] = dy[n]\n", encoding="utf-8")
    out = tmp_path / "out"
    assert cli_main(["latex", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert re.match(rf"{re.escape(str(bad))}:2:\d+: ", err)
    assert "Traceback" not in err
    assert not (out / "gradverify.tex").exists()


def test_cli_latex_writes_document_exit_follows_checks(tmp_path, capsys, monkeypatch):
    """`latex` writes DIR/gradverify.tex with the seed used, exits 1 when a gradient is wrong, and with
    --pdf but no TeX prints what to install on stderr without changing the exit status."""
    wrong = tmp_path / "square.deriv"
    wrong.write_text(WRONG, encoding="utf-8")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out = tmp_path / "out"
    code = cli_main(["latex", "identity", str(wrong), "--out", str(out), "--pdf", "--seed", "3"])
    assert code == 1
    captured = capsys.readouterr()
    assert "apt-get install texlive-latex-base texlive-latex-extra latexmk" in captured.err
    tex = (out / "gradverify.tex").read_text(encoding="utf-8")
    assert r"\section{Identity activation}" in tex
    assert r"\section{Square, with the factor 2 missing (wrong)}" in tex
    assert "Seed 3;" in tex
    assert not (out / "gradverify.pdf").exists()


@pytest.mark.skipif(
    not (shutil.which("latexmk") or shutil.which("pdflatex")), reason="no latexmk or pdflatex on PATH"
)
def test_catalogue_document_compiles(tmp_path):
    """The document for the whole catalogue, with a wrong derivation in it, compiles to a PDF."""
    derivations = [load(p) for p in catalogue()] + [load(WRONG)]
    report = check(derivations, oracles=FAST)
    tex = tmp_path / "gradverify.tex"
    tex.write_text(document(derivations, report), encoding="utf-8")
    assert compile_pdf(tex) is None
    assert tex.with_suffix(".pdf").stat().st_size > 0


@pytest.mark.skipif(
    not (shutil.which("latexmk") or shutil.which("pdflatex")), reason="no latexmk or pdflatex on PATH"
)
def test_any_unicode_in_a_title_or_note_compiles(tmp_path):
    """A file is UTF-8: every Greek letter (tonos and all), math symbols, accents, a CJK character and a
    combining hat in a title or note compile with pdflatex (as math, as they are, or as U+XXXX), where
    the document once stopped at the first sigma."""
    greek = "".join(chr(c) for c in range(0x391, 0x3D0) if c != 0x3A2)
    d = load(f"title: variance σ² of x̂ → ∂L/∂x, 日本\nnotes: {greek} ≤ ≥ × · é ü ñ\n[forward]\ny[n] = x[n]\n"
             "[gradients]\ndx[n] = dy[n]\n")  # fmt: skip
    tex = tmp_path / "gradverify.tex"
    tex.write_text(document([d], check([d], oracles=FAST)), encoding="utf-8")
    assert compile_pdf(tex) is None
    assert r"\ensuremath{\sigma}" in tex.read_text() and "[U+65E5]" in tex.read_text()


@pytest.mark.skipif(
    not (shutil.which("latexmk") or shutil.which("pdflatex")), reason="no latexmk or pdflatex on PATH"
)
def test_tex_failure_is_one_line(tmp_path):
    """When TeX stops on a document, compile_pdf says so in one line with TeX's own first error."""
    tex = tmp_path / "broken.tex"
    tex.write_text("\\documentclass{article}\n\\begin{document}\n\\nosuchmacro\n\\end{document}\n")
    problem = compile_pdf(tex)
    assert problem is not None and "Undefined control sequence" in problem
    assert "\n" not in problem
