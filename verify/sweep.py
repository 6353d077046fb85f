"""Sweeps of the catalogue: many seeds, and the edge cases where a float64 check is hardest, to show that
no correct formula is called wrong (a false alarm) and that every generated mistake is caught.

    python -m verify.sweep seeds --first 0 --last 999 --oracle exact --oracle fd --oracle numpy
    python -m verify.sweep seeds --first 0 --last 99                 (all five oracles)
    python -m verify.sweep edges --seeds 20
    python -m verify.sweep mutants --oracle exact   (also counts the diagnoses: kinds named, fixes)

`--only NAME` (repeatable) restricts a sweep to those catalogue entries.

Each prints one line per finding and a summary, and exits 1 when a correct formula came out wrong (or
a mutant did not), 0 otherwise. The test suite runs the same functions at a size that fits CI
(tests/test_sweeps.py).

The edge cases (`edges`), each a variant of a catalogue file:
- every size fixed to 1 in turn (N = 1: a batch of one);
- a small fixed constant (eps) set to 1e-8 with the first size fixed to 2 (batch norm at N = 2, where
  xhat is +-1 whatever x is, so that the gradient with respect to x is nearly zero);
- every tensor input drawn within 4% of a constant (batch and layer norm on near-constant inputs);
- inputs that are the argument of an exp drawn near 950 (logits that overflow a naive softmax).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import sympy as sp

from . import mutate, sampling
from .catalogue import load, paths
from .check import check
from .comparison import Status
from .oracles import ORACLES
from .parse import parse


@dataclass(frozen=True)
class Edge:
    """A variant of a catalogue derivation: `label` names the catalogue entry and the change."""

    label: str
    text: str
    path: Path

    def derivation(self):
        """The variant, parsed as if it were the catalogue file: the numpy oracle and the library ops
        of its entry apply to it as they do to the file."""
        return parse(self.text, str(self.path), self.path.stem)


def _one_fits(d, size: str) -> bool:
    """Whether `size` = 1 leaves every size [sizes] computes at least 1 (the others as large as drawn)."""
    if not d.size_relations:
        return True
    free = {n: 6 for n in d.sizes if n not in d.fixed_sizes and n not in d.size_relations}
    return min(d.complete_sizes({**d.fixed_sizes, **free, size: 1}).values()) >= 1


def edges(path: Path) -> list[Edge]:
    d = load(path)
    text = path.read_text(encoding="utf-8")
    out = []
    for size in d.sizes:
        # a size [sizes] computes (a convolution's output) is not set, nor one whose 1 leaves a computed
        # size below 1 (a 2 x 2 kernel's valid output of an input 1 high)
        if size not in d.fixed_sizes and size not in d.size_relations and _one_fits(d, size):
            out.append(Edge(f"{d.name} {size}=1", add(text, "sizes", f"{size} = 1"), path))
    small = [n for n, v in d.fixed_values.items() if 0 < abs(v) < sp.Rational(1, 100)]
    batch = next((s.name for n in d.inputs for s in d.shape(n)), None)
    for name in small:
        variant = re.sub(rf"^{name}\s*=.*$", f"{name} = 1e-8", text, flags=re.M)
        if batch is not None and batch not in d.fixed_sizes:
            variant = add(variant, "sizes", f"{batch} = 2")
        out.append(Edge(f"{d.name} {name}=1e-8 {batch}=2", variant, path))
    # an input a windowed maximum reads is drawn spread out (one clear maximum per window): never near-constant
    spread = sampling.windowed_inputs(d)
    drawn = [
        n
        for n in d.inputs
        if d.shape(n) and n not in d.domains and n not in d.fixed_values and n not in spread
    ]
    if drawn:
        lines = [
            f"{n}: uniform(0.96, 1.04)" for n in drawn
        ]  # the narrowest range of 16 sample values and more
        out.append(Edge(f"{d.name} within 4% of 1", add(text, "inputs", *lines), path))
    logits = _exp_arguments(d)
    if logits:
        lines = [f"{n}: uniform(949, 951)" for n in logits]
        out.append(Edge(f"{d.name} logits near 950", add(text, "inputs", *lines), path))
    return out


def _exp_arguments(d) -> list[str]:
    """Inputs read directly inside the argument of an exp in the forward, with no declared domain."""
    found = []
    for st in d.forward:
        for e in st.rhs.atoms(sp.exp):
            for read in e.args[0].atoms(sp.Indexed):
                name = read.base.label.name
                if name in d.inputs and name not in d.domains and name not in found:
                    found.append(name)
    return found


def add(text: str, section: str, *lines: str) -> str:
    """`text` with `lines` added to its `[section]`, which is created at the end if there is none."""
    header = f"[{section}]"
    if re.search(rf"^\[{section}\]\s*$", text, flags=re.M):
        return re.sub(rf"^\[{section}\]\s*$", header + "\n" + "\n".join(lines), text, count=1, flags=re.M)
    return text.rstrip("\n") + f"\n\n{header}\n" + "\n".join(lines) + "\n"


@dataclass
class Tally:
    """What a sweep found: counts of gradient and oracle statuses, and every finding worth a line."""

    counts: Counter
    findings: list[str]
    bad: int = 0  # false alarms (or uncaught mutants)

    def add(self, label: str, report) -> None:
        for d in report.derivations:
            if d.error is not None:
                self.counts["invalid"] += 1
                self.findings.append(f"{label}: invalid: {d.error}")
                self.bad += 1
                continue
            for g in d.gradients:
                self.counts[f"gradient {g.status}"] += 1
                if g.status == Status.WRONG:
                    self.bad += 1
                    self.findings.append(f"{label}: FALSE ALARM {d.name} {g.name}: {g.diagnosis}")
                for name, r in g.oracles.items():
                    self.counts[f"{name} {r.status}"] += 1
                    if r.status in (Status.INCONCLUSIVE, Status.ERROR):
                        self.findings.append(f"{label}: {d.name} {g.name} {name} {r.status}: {r.reason}")
                        self.bad += r.status == Status.ERROR or not r.reason


def _paths(only: tuple[str, ...] = ()) -> list[Path]:
    """The catalogue's files, or those named in `only` (a sweep resumed for entries added later)."""
    unknown = set(only) - {p.stem for p in paths()}
    if unknown:
        raise SystemExit(f"python -m verify.sweep: no catalogue entry {', '.join(sorted(unknown))}")
    return [p for p in paths() if not only or p.stem in only]


def sweep_seeds(first: int, last: int, oracles, on_line=None, only: tuple[str, ...] = ()) -> Tally:
    """The catalogue under seeds first..last: every finding a line, a false alarm a problem."""
    tally = Tally(Counter(), [])
    items = [load(p) for p in _paths(only)]  # parsed once: what is computed per derivation is computed once
    for seed in range(first, last + 1):
        before = len(tally.findings)
        tally.add(f"seed {seed}", check(items, oracles=oracles, seed=seed))
        for line in tally.findings[before:]:
            (on_line or _quiet)(line)
        verified = tally.counts["gradient verified"]
        (on_line or _quiet)(f"seed {seed} done: {verified} gradients verified so far, {tally.bad} problems")
    return tally


def sweep_edges(seeds: int, oracles, on_line=None, only: tuple[str, ...] = ()) -> Tally:
    """Every edge case of every catalogue entry under seeds 0..seeds-1."""
    tally = Tally(Counter(), [])
    for path in _paths(only):
        for edge in edges(path):
            d = edge.derivation()
            for seed in range(seeds):
                before = len(tally.findings)
                tally.add(f"{edge.label} seed {seed}", check(d, oracles=oracles, seed=seed))
                for line in tally.findings[before:]:
                    (on_line or _quiet)(line)
    return tally


def sweep_mutants(
    oracles, per_statement: int = mutate.PER_STATEMENT, on_line=None, only: tuple[str, ...] = ()
) -> Tally:
    """Every mutant of every catalogue statement must come out wrong (the statement changed, or one that
    uses it) or invalid."""
    tally = Tally(Counter(), [])
    for path in _paths(only):
        d = load(path)
        users = {st.target: {u.target for u in d.gradients if st.target in u.reads} for st in d.gradients}
        for m in mutate.mutants(d, path.read_text(encoding="utf-8"), per_statement):
            tally.counts[f"kind {m.kind}"] += 1
            report = check(m.text, oracles=oracles).derivations[0]
            tally.counts[f"mutant {report.status}"] += 1
            wrong = {g.name for g in report.gradients if g.status == Status.WRONG}
            caught = report.status == "invalid" or wrong & ({m.statement} | users[m.statement])
            _count_diagnosis(tally, report, [m.statement, *sorted(users[m.statement])])
            if not caught:
                tally.bad += 1
                line = f"UNCAUGHT {d.name} {m.kind}: {m.line} ({report.status})"
                tally.findings.append(line)
                (on_line or _quiet)(line)
    return tally


def _count_diagnosis(tally: Tally, report, names: list[str]) -> None:
    """The diagnosis of a mutant's mistake: that of the statement changed when it is wrong, else of the
    first wrong statement that uses it (a helper changed), counted by kind, named (a kind other than
    unknown) and fixed (a fix the exact oracle verified; a rewrite is the true gradient written out by
    one step of the chain rule rather than a small edit of the line)."""
    wrong = {g.name: g for g in report.gradients if g.status == Status.WRONG}
    g = next((wrong[n] for n in names if n in wrong), None)
    if g is None or g.mistake is None:
        return
    tally.counts["diagnosed"] += 1
    tally.counts[f"diagnosis {g.mistake.kind}"] += 1
    tally.counts["diagnosis named"] += g.mistake.kind != "unknown"
    tally.counts["diagnosis fixed"] += g.mistake.fix is not None
    tally.counts["diagnosis fixed by a rewrite"] += g.mistake.fix is not None and g.mistake.fix.rewrite


def _quiet(line: str) -> None:
    pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verify.sweep", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("seeds", help="the catalogue under many seeds")
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--last", type=int, default=99)
    p.add_argument("--oracle", action="append", choices=ORACLES)
    p = sub.add_parser("edges", help="the edge-case variants of the catalogue")
    p.add_argument("--seeds", type=int, default=20, help="seeds 0..SEEDS-1 for each variant")
    p.add_argument("--oracle", action="append", choices=ORACLES)
    p = sub.add_parser("mutants", help="every generated mistake must be caught")
    p.add_argument("--per-statement", type=int, default=mutate.PER_STATEMENT)
    p.add_argument("--oracle", action="append", choices=ORACLES)
    for p in sub.choices.values():
        p.add_argument(
            "--only", action="append", default=[], metavar="NAME", help="only this catalogue entry"
        )
    args = parser.parse_args(argv)
    only = tuple(args.only)
    oracles = tuple(args.oracle or ORACLES)
    start = time.perf_counter()

    def say(line):
        print(line, flush=True)

    if args.what == "seeds":
        tally = sweep_seeds(args.first, args.last, oracles, say, only)
    elif args.what == "edges":
        tally = sweep_edges(args.seeds, oracles, say, only)
    else:
        tally = sweep_mutants(oracles, args.per_statement, say, only)
    for key, n in sorted(tally.counts.items()):
        print(f"{key:28} {n}")
    print(f"{tally.bad} problems; {time.perf_counter() - start:.0f} s")
    return 1 if tally.bad else 0


if __name__ == "__main__":
    sys.exit(main())
