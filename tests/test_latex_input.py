"""LaTeX input: the LaTeX that `show --latex` prints reads back as the same derivation (for every
catalogue entry), symbols resolve by the documented rules or a [symbols] section, and every error in
LaTeX points at its line and at the column within the LaTeX."""

import re

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verify import load
from verify.catalogue import paths as catalogue
from verify.latex import derivation_latex
from verify.model import DerivationError
from verify.notation import latexin
from verify.text import split_sections


def aligned_blocks(tex: str) -> list[str]:
    """The align* environments of a LaTeX fragment, as printed."""
    return re.findall(r"\\begin\{align\*\}.*?\\end\{align\*\}", tex, re.S)


def read_back(path) -> str:
    """A derivation file whose [forward] and [gradients] are the two align* blocks that show --latex
    prints for `path`, pasted as they are; its `indexing:` header (1-based positions), [inputs] and
    [sizes] are the original's."""
    forward, gradients = aligned_blocks(derivation_latex(load(path)))
    text = path.read_text(encoding="utf-8")
    _, sections = split_sections(text, None)
    kept = [
        f"[{name}]\n" + "\n".join(t for _, t in sections[name][1])
        for name in ("inputs", "sizes")
        if name in sections
    ]
    header = re.findall(r"^indexing:.*$", text.split("[forward]")[0], re.M)
    return "\n".join([*header, "[forward]", forward, "[gradients]", gradients, *kept]) + "\n"


def signature(d):
    """Everything that makes a derivation what it is: each statement's target, indices, right-hand side
    (SymPy's structure), what it claims, and every tensor's role and shape."""
    statements = [
        (s.target, s.indices, sp.srepr(s.rhs), s.of, s.jacobian, s.chain) for s in d.forward + d.gradients
    ]
    tensors = {name: (t.role, t.shape) for name, t in d.tensors.items()}
    return statements, tensors, set(d.inputs), d.output, d.sizes, d.fixed_values, d.domains


@pytest.mark.parametrize("path", catalogue(), ids=lambda p: p.stem)
def test_show_latex_reads_back_as_the_same_derivation(path):
    """Pasting the printed align* blocks into a .deriv file gives back the derivation they print."""
    assert signature(load(read_back(path))) == signature(load(path))


CHAIN = r"""[forward]
Y_{mn} = \sum_k X_{mk} W_{nk} + B_{n}
[gradients]
J_{mnk} = \frac{\partial Y_{mn}}{\partial X_{mk}} = W_{nk}
\frac{\partial L}{\partial X_{ij}} = \sum_{m,n} \frac{\partial L}{\partial Y_{mn}} \frac{\partial Y_{mn}}{\partial X_{ij}}
  = \sum_{n} \frac{\partial L}{\partial Y_{in}} W_{nj}
"""


def test_chain_and_jacobian_render_and_read_back():
    """A named Jacobian and a chain print as LaTeX that reads back: `J = dY/dX &= ...` and `&= step`
    rows. A Jacobian entry inside a formula is the named Jacobian (with a delta off its block)."""
    d = load(CHAIN)
    text = "[forward]\n" + "\n".join(aligned_blocks(derivation_latex(d))[0:1]) + "\n[gradients]\n"
    text += aligned_blocks(derivation_latex(d))[1] + "\n"
    assert signature(load(text)) == signature(d)
    step1 = d.gradients[1]
    assert "delta(i, m)" in str(step1.rhs).replace("KroneckerDelta", "delta") or step1.rhs.has(
        sp.KroneckerDelta
    )


SIGMA = r"""[forward]
\mu_{j} = \frac{1}{N} \sum_n x_{nj}
\sigma^2_j = \frac{1}{N} \sum_n (x_{nj} - \mu_j)^2
\hat{x}_{nj} = \frac{x_{nj} - \mu_j}{\sqrt{\sigma_j^2 + \epsilon}}
[gradients]
\frac{\partial L}{\partial \sigma^2_j} = -\frac{1}{2} \sum_n \frac{\partial L}{\partial \hat{x}_{nj}} (x_{nj} - \mu_j) (\sigma^2_j + \epsilon)^{-\frac{3}{2}}
"""


def test_symbols_resolve_by_the_rules():
    """\\sigma^2 defines and reads var, \\hat{x} xhat, \\epsilon eps, \\mu mu; a power after a
    subscript reads the same as before it."""
    d = load(SIGMA)
    assert [s.target for s in d.forward] == ["mu", "var", "xhat"]
    assert d.inputs == ["x", "eps"]
    assert d.gradients[0].target == "dvar"


def test_sigma_squared_is_a_power_where_sigma_is_a_name_and_var_is_not():
    """\\sigma^2 falls back to sigma squared when no `var` exists but `sigma` does (it was an internal
    error: the fallback power was a token made without a position)."""
    forward = "[forward]\ny[n] = x[n] * sigma**2\n[gradients]\n"
    latex = load(
        forward + r"\frac{\partial L}{\partial x_n} = \frac{\partial L}{\partial y_n} \sigma^2" + "\n"
    )
    index = load(forward + "dx[n] = dy[n] * sigma**2\n")
    assert latex.gradients[0].rhs == index.gradients[0].rhs


def test_symbols_section_maps_the_rest():
    """[symbols] maps a symbol the rules do not resolve (the CMU handout's u_B for the mean, m for the
    batch size) to a name."""
    text = r"""[forward]
mu[j] = sum(x[n,j], n) / N
y[n,j] = x[n,j] - mu[j]
[gradients]
\frac{\partial L}{\partial u_{\mathcal{B},j}} = -\sum_{i=1}^{m} \frac{\partial L}{\partial y_{ij}}
[symbols]
u = mu
m = N
"""
    d = load(text)
    assert d.gradients[0].target == "dmu"
    assert str(d.gradients[0].rhs) == "-Sum(dy[i, j], (i, 0, N - 1))"


@pytest.mark.parametrize(
    "gradient,line,column,message",
    [
        (r"\frac{\partial L}{\partial x_{n}} = \zeta_n", 6, 37, r"unknown symbol \zeta: no name zeta here"),
        (r"\frac{\partial L}{\partial x_{n}} = \tilde{x}_n", 6, 37, "ambiguous: it may be xtilde or xt"),
        (
            r"\frac{\partial L}{\partial x_{n}} = \frac{\partial L}{\partial y_{n}} \cdot",
            6,
            76,
            "ends too early",
        ),
        (r"\frac{\partial L}{\partial x_{n}} = 2 \sum_n", 6, 39, "a sum needs a summand"),
        # a control character is named, never echoed into the one-line message
        ("\\frac{\\partial L}{\\partial x_{n}} = 2 \0 y_n", 6, 39, "unexpected character U+0000 in LaTeX"),
        (
            "\\frac{\\partial L}{\\partial x_{n}}\n  = 2 \\frac{\\partial L}{\\partial y_{n}} \\zeta",
            7,
            41,
            "unknown symbol",
        ),
    ],
)
def test_latex_errors_point_into_the_latex(gradient, line, column, message):
    """A LaTeX error is one line `file:line:col: message`, the column counted within the LaTeX."""
    text = (
        f"[forward]\nxt[n] = x[n]\nxtilde[n] = 2 * x[n]\ny[n] = xt[n] * xtilde[n]\n[gradients]\n{gradient}\n"
    )
    with pytest.raises(DerivationError) as e:
        load(text)
    assert (e.value.line, e.value.column) == (line, column), str(e.value)
    assert message in e.value.message


LINEAR_DW = r"\frac{\partial L}{\partial W_{ji}} = \sum_{n%s} \frac{\partial L}{\partial Y_{nj}} X_{ni}"


@pytest.mark.parametrize(
    "limits, message",
    [
        ("=1}^{N", None),
        ("=0}^{N-1", None),
        ("}^{N", None),
        ("=1}^{m", None),  # the document's own name for the batch size, not one of the derivation's
        ("=1}^{j", "a sum's upper limit is a size, not the index j"),
        ("=1}^{J", "its whole range, 1 to N: its upper limit J says otherwise"),
        ("=1}^{2", "its whole range, 1 to N: its upper limit 2 says otherwise"),
        ("=0}^{N", "its whole range, 0 to N - 1: its upper limit N says otherwise"),
        ("=1}^{1.5", "a sum's upper limit is its index's size"),
    ],
)
def test_a_sum_from_0_or_1_is_held_to_its_upper_limit(limits, message):
    """A LaTeX sum from 0 or 1 runs over its index's whole range: an upper limit that says so (N from 1,
    N-1 from 0, a name the derivation does not know) reads as written; one that states another range
    (an index, another size, a number, N+1 terms) is an error at the limit, never checked as the whole
    range (a triangular or off-by-one sum would otherwise verify)."""
    text = "[forward]\nY_{nj} = \\sum_i X_{ni} W_{ji}\n[gradients]\n" + LINEAR_DW % limits + "\n"
    if message is None:
        assert str(load(text).gradients[0].rhs) == "Sum(X[n, i]*dY[n, j], (n, 0, N - 1))"
        return
    with pytest.raises(DerivationError) as e:
        load(text)
    assert message in e.value.message and e.value.line == 4, str(e.value)


REPORT_CONVOLUTION = r"""indexing: 1-based
[forward]
Y_{ij} = \sum_{l=-1}^{0} \sum_{m=-1}^{0} K_{(l+2)(m+2)} X_{(i-l)(j-m)}
[gradients]
\frac{\partial L}{\partial X_{rs}} = \sum_{i,j} \frac{\partial L}{\partial Y_{ij}} K_{(i-r+2)(j-s+2)}
\frac{\partial L}{\partial K_{ab}} = \sum_{i,j} \frac{\partial L}{\partial Y_{ij}} X_{(i-a+2)(j-b+2)}
[inputs]
X: (H, W)
K: (KH, KW)
[sizes]
KH = 2
KW = 2
I = H - 1
J = W - 1
"""


def test_report_convolution_in_its_own_latex_is_the_catalogue_entry():
    """The UvA report's bonus formula as it writes its subscripts, one bracketed position per axis
    (K_{(l+2)(m+2)} X_{(i-l)(j-m)}), with its sums from -1 to 0, reads as conv2d_flipped."""
    from verify.catalogue import load as load_entry

    assert signature(load(REPORT_CONVOLUTION)) == signature(load_entry("conv2d_flipped"))


@pytest.mark.parametrize(
    "forward,column,message",
    [
        (r"Y_{ij} = \sum_{l=-1} K_{l+2} X_{i-l,j}", 16, "runs between two whole numbers"),
        (r"Y_{ij} = \sum_{l=2}^{N} K_{l} X_{i-l,j}", 16, "runs between two whole numbers"),
        (r"Y_{ij} = \sum_{l} K_{l+\alpha} X_{i-l,j}", 24, r"cannot read '\alpha' in an index position"),
        (r"Y_{ij} = \max_{l+1} X_{i-l,j}", 10, "a maximum's subscript names its indices"),
        (r"Y_{ij} = \sum_{l+1} X_{i-l,j}", 10, "a sum's subscript names its indices"),
        (r"Y_{i+1,j} = X_{ij}", 1, "the left-hand side must be a symbol"),
    ],
)
def test_window_latex_errors_point_into_the_latex(forward, column, message):
    """Positions computed in subscripts are read in a formula only: a sum's or a maximum's subscript and
    a left-hand side name their indices; a sum from another number than 0 or 1 runs between two whole
    numbers; anything but integers, sizes and indices in a position is an error at its column."""
    text = f"[forward]\n{forward}\n[gradients]\ndX[i,j] = dY[i,j]\n[inputs]\nX: (H, W)\nK: (KH)\n[sizes]\nKH = 2\n"
    with pytest.raises(DerivationError) as e:
        load(text)
    assert (e.value.line, e.value.column) == (2, column), str(e.value)
    assert message in e.value.message


def test_size_names_of_several_letters_are_one_size():
    """`\frac{1}{KH KW}` divides by the sizes KH and KW that [sizes] sets, not by K^2 H W; `S i` in a
    subscript is S times i, `kh` there the index the maximum binds."""
    d = load(
        "[forward]\n"
        r"y_{ncij} = \frac{1}{KH KW} \max_{kh,kw} x_{n,c,S i+kh-P,S j+kw-P}"
        "\n"
        "[gradients]\ndx[n,c,h,w] = 0\n[inputs]\nx: (N, C, H, W)\n"
        "[sizes]\nI = (H + 2*P - KH) / S + 1\nJ = (W + 2*P - KW) / S + 1\nKH = 3\nKW = 3\nS = 2\nP = 1\n"
    )
    rhs = d.forward[0].rhs
    assert {s.name for s in rhs.free_symbols} >= {"KH", "KW"}
    assert "K" not in {s.name for s in rhs.free_symbols}


def test_a_sum_between_numbers_may_name_an_index_of_several_letters():
    r"""`\sum_{kh=-1}^{1}` sums one index kh from -1 to 1 (not k times h), in a forward and inside a
    gradient's sum."""
    d = load(
        "[forward]\n"
        r"Y_{i} = \sum_{kh=-1}^{1} X_{i+kh}"
        "\n"
        "[gradients]\n"
        r"\frac{\partial L}{\partial X_{h}} = \sum_{i} \frac{\partial L}{\partial Y_{i}} \sum_{kh=-1}^{1} \delta_{h,i+kh}"
        "\n[inputs]\nX: (H)\n[sizes]\nI = H\n"
    )
    for statement in (d.forward[0], d.gradients[0]):
        limits = {(str(v), lo, hi) for total in statement.rhs.atoms(sp.Sum) for v, lo, hi in total.limits}
        assert ("kh", -1, 1) in limits, limits


def test_latex_lines_are_recognised():
    """A statement is LaTeX when it holds a LaTeX command, `_{`, `^{` or `&`; index notation never does."""
    assert latexin.is_latex(r"\frac{\partial L}{\partial W} = X")
    assert latexin.is_latex("y_{n} = x_{n}")
    assert not latexin.is_latex("dW[i, j] = sum(dy[n, i] * x[n, j], n)")


LATEX_TOKENS = [
    r"\frac", "{", "}", "(", ")", "[", "]", r"\left(", r"\right)", r"\left[", r"\right]", "_", "^", "x", "y",
    "W", "i", "j", "n", r"\partial", "L", r"\sum", "=", "+", "-", r"\cdot", r"\odot", r"\oslash", "&", r"\\",
    r"\hat", r"\tilde", r"\mathbf", r"\sigma", "2", "T", r"\top", r"\delta", r"\exp", r"\log", r"\sqrt",
    r"\mathbb{1}", r"\text{diag}", r"\begin{cases}", r"\end{cases}", r"\text{if }", ">", "0", ",",
    r"\Rightarrow", r"\epsilon", "1", "/", r"\underbrace", r"\quad", r"\mathcal", r"\left|", r"\right|", " ",
    "\n ", "$$", r"\begin{aligned}", r"\end{aligned}", r"\tag{1}", ".", "@", ".T", "dy", "x[n,i]",
    r"\max", "S", "k", "h", "-1", "_{n,S i+k-1}", "_{(i-1)(k+2)}", "_{k=-1}^{0}",
]  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(LATEX_TOKENS), min_size=1, max_size=30), st.booleans(), st.booleans())
def test_latex_soup(tokens, in_forward, as_gradient):
    """Whatever LaTeX comes in, reading it gives a derivation or one one-line DerivationError."""
    line = "".join(tokens)
    if as_gradient:
        line = r"\frac{\partial L}{\partial x_{ni}} = " + line
    forward, gradients = ("y[n,i] = x[n,i] * 2", "dx[n,i] = 2 * dy[n,i]")
    forward, gradients = (line, gradients) if in_forward else (forward, line)
    try:
        load(f"[forward]\n{forward}\n[gradients]\n{gradients}\n")
    except DerivationError as e:
        assert "\n" not in str(e)


DY = r"\frac{\partial L}{\partial y_{n}}"


@pytest.mark.parametrize(
    "rhs, message",
    [
        ("{" * 3000 + DY + "}" * 3000, "nested too deeply"),
        (r"\left(" * 300 + DY + r"\right)" * 300, "nested too deeply"),
        (DY + " " + "2^{" * 300 + "1" + "}" * 300, "nested too deeply"),
        (r"\frac{1}{" * 300 + DY + "}" * 300, "nested too deeply"),
        (DY + " + 0" * 500, "expression too long: more than 1000"),
    ],
    ids=["braces", "left-right", "powers", "fractions", "terms"],
)
def test_latex_within_the_limits_of_any_formula(rhs, message):
    """A LaTeX statement is held to the limits on nesting and length that plain notation has (text.py
    check_tree), before any recursive walk: one error at its line, never a RecursionError (exit 4)."""
    text = f"[forward]\ny[n] = x[n]\n[gradients]\n\\frac{{\\partial L}}{{\\partial x_{{n}}}} = {rhs}\n"
    with pytest.raises(DerivationError) as e:
        load(text)
    assert message in e.value.message and e.value.line == 4, str(e.value)


def test_a_plain_text_gradient_in_a_latex_line_says_how_to_write_it():
    """`dS_{nk}` on the right of a LaTeX line is d times S_{nk}, and d names nothing: the error, at the d,
    says so and gives the gradient as LaTeX writes it, so the student sees why d is unknown."""
    text = (
        "[forward]\nZ[n,k] = sum(X[n,d] * W[d,k], d)\nS[n,k] = sigmoid(Z[n,k])\n[gradients]\n"
        "\\frac{\\partial L}{\\partial Z_{nk}} = dS_{nk} S_{nk} (1 - S_{nk})\n"
    )
    with pytest.raises(DerivationError) as e:
        load(text)
    assert (e.value.line, e.value.column) == (5, 38)
    assert "unknown symbol d" in str(e.value)
    assert "dS is d times S: write its gradient as \\frac{\\partial L}{\\partial S_{nk}}" in str(e.value)
