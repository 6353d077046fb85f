"""examples/tour.ipynb runs headless from top to bottom, and what it shows is what a notebook user sees:
a derivation as LaTeX, a report as an HTML table, the %%deriv magic's diagnosis of a wrong formula."""

from pathlib import Path

import pytest

nbclient = pytest.importorskip(
    "nbclient", reason="nbclient is not installed (pip install 'gradverify[test]')"
)
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def executed():
    nb = nbformat.read(ROOT / "examples" / "tour.ipynb", as_version=4)
    # run from the checkout's root, so the kernel imports this checkout's verify
    nbclient.NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(ROOT)}}).execute()
    return nb


def outputs(nb, mime):
    return [
        o["data"][mime]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if mime in o.get("data", {})
    ]


def test_no_cell_fails(executed):
    """Every code cell runs without an error output."""
    errors = [
        o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o["output_type"] == "error"
    ]
    assert not errors, errors


def test_derivation_shows_as_latex(executed):
    """The loaded batch norm shows as aligned formulas with its partial derivatives."""
    latex = outputs(executed, "text/latex")
    assert any(r"\begin{aligned}" in t and r"\frac{\partial" in t for t in latex), latex


def test_report_shows_as_a_table_with_verdicts(executed):
    """Reports show as HTML tables with coloured verdicts, and the magic's wrong formula is diagnosed."""
    html = outputs(executed, "text/html")
    assert any("<table>" in t and "verified" in t for t in html)
    assert any("wrong" in t and "N times the true gradient" in t for t in html), html
