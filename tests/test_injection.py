"""No text of a derivation file runs as code: not a header, not the file name, not any section.

Each attempt writes a marker file if any part of it is ever executed (by the checks, which compile the
generated code, or by `codegen`, whose output a user may run). The marker must never appear, and the
generated module shown to users must stay valid Python whose only statement before the imports is the
docstring."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import verify
from verify import codegen

ROOT = Path(__file__).resolve().parent.parent
BODY = "[forward]\ny[n,i] = x[n,i] * 2\n[gradients]\ndx[n,i] = 2 * dy[n,i]\n"


def payloads(marker: Path) -> list[str]:
    """Texts that would create `marker` if they reached exec, eval or a docstring of generated code."""
    call = f"__import__('os').system('touch {marker}')"
    return [
        f'"""; {call}; """',
        f"'''; {call}; '''",
        f'\\"""; {call}',
        f'"; {call}; "',
        f"{{{call}}}",
        f"\n{call}",
    ]


@pytest.mark.parametrize("key", ["title", "source", "notes"])
def test_header_cannot_run_code(tmp_path, key):
    """A header value holding quotes and code is data: checking and generating code run none of it."""
    marker = tmp_path / "ran"
    for payload in payloads(marker):
        one_line = payload.replace("\n", " ")
        text = f"{key}: {one_line}\n{BODY}"
        report = verify.check(text, oracles=("exact", "fd"))
        assert report.exit_code == 0, report.table()
        for backend in ("numpy",):
            shown = codegen.display_source(verify.load(text), backend)
            tree = ast.parse(shown)  # still valid Python
            first = tree.body[0]
            assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            if key == "title":
                assert one_line in first.value.value  # the title is kept, as a string
    assert not marker.exists()


def test_file_name_cannot_run_code(tmp_path):
    """A file named like code is checked and its code generated without running the name."""
    marker = tmp_path / "ran"
    for k, payload in enumerate(payloads(marker)[:4]):
        folder = tmp_path / f"d{k}"
        folder.mkdir()
        path = folder / (payload.replace("/", "_").replace("\n", " ") + ".deriv")
        path.write_text(BODY)
        report = verify.check(str(path), oracles=("exact", "fd"))
        assert report.exit_code == 0, report.table()
        ast.parse(codegen.display_source(verify.load(str(path)), "numpy"))
    assert not marker.exists()


def assert_refused(tmp_path, sections: dict[str, str]) -> None:
    """`verify check` on a file of these sections exits 2 with one line on stderr and no traceback."""
    text = "".join(f"[{name}]\n{body}\n" for name, body in sections.items())
    path = tmp_path / "evil.deriv"
    path.write_text(text)
    r = subprocess.run(
        [sys.executable, "-m", "verify", "check", str(path), "--oracle", "exact", "--oracle", "fd"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize(
    "section,line",
    [
        ("forward", "y[n,i] = x[n,i] * {payload}"),
        ("gradients", "dx[n,i] = dy[n,i] * {payload}"),
        ("inputs", "x: {payload}"),
        ("sizes", "N = {payload}"),
    ],
)
def test_section_text_cannot_run_code(tmp_path, section, line):
    """Code in any section is an invalid input (exit 2, one line), never executed."""
    marker = tmp_path / "ran"
    call = f"__import__('os').system('touch {marker}')"
    sections = {
        "forward": "y[n,i] = x[n,i] * 2",
        "gradients": "dx[n,i] = 2 * dy[n,i]",
        "inputs": "",
        "sizes": "",
    }
    sections[section] = line.format(payload=call)
    assert_refused(tmp_path, sections)
    assert not marker.exists()


LATEX_AND_MATRIX = [
    ("forward", r"y_{{ni}} = x_{{ni}} \cdot \text{{{call}}}"),
    ("forward", r"y_{{ni}} = \mathit{{{call}}}_{{ni}}"),
    ("forward", r"\mathit{{__import__}}_{{ni}} = x_{{ni}}"),
    ("gradients", r"\frac{{\partial L}}{{\partial x_{{ni}}}} = \operatorname{{{call}}}(y_{{ni}})"),
    (
        "gradients",
        r"\frac{{\partial L}}{{\partial x_{{ni}}}} = 2 \frac{{\partial L}}{{\partial y_{{ni}}}} & {call}",
    ),
    ("gradients", r"\frac{{\partial L}}{{\partial \mathbf{{x}}}} = {call}"),
    ("gradients", "dx = {call} @ dy"),
    ("gradients", "dx = (dy.T @ {call}).T"),
    ("gradients", "dx = sum(dy, axis={call})"),
    ("gradients", "dx = 2 * dy.__class__"),
    ("symbols", r"\tilde{{x}} = {call}"),
    ("symbols", r"\mathit{{q}} = __import__"),
]


@pytest.mark.parametrize("section,line", LATEX_AND_MATRIX)
def test_latex_and_matrix_text_cannot_run_code(tmp_path, section, line):
    """Code inside LaTeX (text, operator names, symbols, alignment) or matrix notation is an invalid
    input (exit 2, one line), never executed: both front-ends only parse, and what they produce is the
    same whitelisted index notation."""
    marker = tmp_path / "ran"
    call = f"__import__('os').system('touch {marker}')"
    sections = {
        "forward": "y[n,i] = x[n,i] * 2",
        "gradients": "dx[n,i] = 2 * dy[n,i]",
        "inputs": "x: (N, I)",
        "symbols": "",
    }
    sections[section] = line.format(call=call)
    assert_refused(tmp_path, sections)
    assert not marker.exists()
