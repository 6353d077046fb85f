"""Jupyter: derivations show as formulas, reports as a coloured verification table, and a cell magic
checks a derivation written in the cell.

    %load_ext verify

    %%deriv my_layer --oracle exact --oracle fd
    [forward]
    y[n,j] = sum(W[j,i] * x[n,i], i) + b[j]
    [gradients]
    dx[n,i] = sum(dy[n,j] * W[j,i], j)

`Derivation._repr_latex_` and `Report._repr_html_` call the two functions below; IPython is imported only
by the magic, so nothing here is needed outside a notebook.
"""

from __future__ import annotations

import argparse
import shlex
from html import escape

from .check import check
from .comparison import Result
from .model import Derivation, DerivationError
from .parse import parse
from .report import Report

# Verdict colours (background, text): green for pass, red for wrong, amber where nothing was decided.
COLOURS = {
    "pass": ("#d8f3dc", "#1b4332"),
    "verified": ("#d8f3dc", "#1b4332"),
    "fail": ("#ffd6d6", "#7a0010"),
    "wrong": ("#ffd6d6", "#7a0010"),
    "invalid": ("#ffd6d6", "#7a0010"),
    "error": ("#ffd6d6", "#7a0010"),
    "inconclusive": ("#fff3bf", "#5c4400"),
    "skip": ("#eeeeee", "#555555"),
}


def formulas_latex(d: Derivation) -> str:
    """The forward definitions and the written gradients as one aligned display, for MathJax."""
    from .latex import DerivationPrinter

    p = DerivationPrinter(d)
    rows = [rf"{p.target(st)} &= {p.doprint(st.rhs)}" for st in d.forward]
    rows += [rf"{p.target(st)} &= {p.doprint(st.rhs)}" for st in d.gradients]
    return "$$\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}$$"


def _cell(text: str, status: str, title: str = "") -> str:
    background, colour = COLOURS.get(status, ("#ffffff", "#000000"))
    tip = f' title="{escape(title)}"' if title else ""
    return f'<td style="background:{background};color:{colour};text-align:center"{tip}>{escape(text)}</td>'


def _oracle_cell(r: Result | None) -> str:
    if r is None:
        return "<td></td>"
    text = f"{r.max_rel_err:.1e}" if r.max_rel_err is not None else str(r.status)
    if r.status not in ("pass", "fail"):
        text = str(r.status)
    return _cell(text, str(r.status), r.reason)


def report_html(report: Report) -> str:
    """The verification table: a row per gradient, the largest normwise relative error per oracle
    (hover for a skip's or an inconclusive result's reason), the verdict coloured; diagnoses below."""
    proofs = ["proof"] if report.proved else []
    head = "".join(
        f"<th>{escape(h)}</th>" for h in ("derivation", "gradient", *report.oracles, "verdict", *proofs)
    )
    rows, notes = [], []
    for d in report.derivations:
        if d.error is not None:
            cells = "<td></td>" * len(report.oracles)
            rows.append(f"<tr><td>{escape(d.name)}</td><td>-</td>{cells}{_cell('invalid', 'invalid')}</tr>")
            notes.append(str(d.error))
            continue
        for g in d.gradients:
            cells = "".join(_oracle_cell(g.oracles.get(o)) for o in report.oracles)
            verdict = _cell(str(g.status), str(g.status))
            if proofs:  # the prover's outcome, its conditions or residue on hover (check(..., prove=True))
                proof = g.proof
                verdict += (
                    _cell(str(proof.status).replace("-", " "), "", proof.summary()) if proof else "<td></td>"
                )
            rows.append(f"<tr><td>{escape(d.name)}</td><td>{escape(g.name)}</td>{cells}{verdict}</tr>")
            if g.diagnosis:
                notes.append(f"{d.name}: {g.name} (line {g.line}): {g.diagnosis}")
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    caption = (
        "<p><small>numbers: largest normwise relative error of the written gradient per oracle</small></p>"
    )
    listed = "".join(f"<li><code>{escape(n)}</code></li>" for n in notes)
    return table + caption + (f"<ul>{listed}</ul>" if listed else "") + f"<p>{escape(report.summary())}</p>"


def _magic_arguments(line: str) -> argparse.Namespace:
    from .oracles import ORACLES

    parser = argparse.ArgumentParser(prog="%%deriv", add_help=False)
    parser.add_argument("name", nargs="?", default="cell")
    parser.add_argument("--oracle", action="append", choices=ORACLES)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(shlex.split(line))


def deriv(line: str, cell: str):
    """The %%deriv cell magic: show the cell's derivation as formulas, check it, and return the report
    (shown as its table). A cell that does not parse shows its one-line error."""
    from IPython.display import display

    args = _magic_arguments(line)
    try:
        d = parse(cell, file=f"<cell {args.name}>", name=args.name)
    except DerivationError as e:
        return _Error(str(e))
    display(d)
    return check(d, oracles=args.oracle, seed=args.seed)


class _Error:
    """A parse error in a cell: one line, in red."""

    def __init__(self, text: str):
        self.text = text

    def _repr_html_(self) -> str:
        return f'<pre style="color:#7a0010">{escape(self.text)}</pre>'

    def __repr__(self) -> str:
        return self.text


def load_ipython_extension(ipython) -> None:
    ipython.register_magic_function(deriv, magic_kind="cell", magic_name="deriv")
