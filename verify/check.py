"""Checking a derivation: draw samples, run the oracles, judge, diagnose."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mpmath
import numpy as np
import sympy as sp

from . import sampling
from .lang import Derivation, DerivationError, load
from .oracles import ORACLE_CLASSES, ORACLES, TOLERANCES, Comparison, Exact, Result, Skip
from .report import DerivationReport, ForwardReport, GradientReport, Report


def check(path_or_text, oracles=None, seed: int = 0) -> Report:
    """Check one derivation (a path, a catalogue name or the text) or a list of them."""
    items = list(path_or_text) if isinstance(path_or_text, list | tuple) else [path_or_text]
    names = tuple(oracles) if oracles else ORACLES
    unknown = [o for o in names if o not in ORACLE_CLASSES]
    if unknown:
        raise ValueError(f"unknown oracle {unknown[0]!r}: oracles are {', '.join(ORACLES)}")
    elsewhere = _start_elsewhere(items, names, seed)
    reports = []
    for k, item in enumerate(items):
        prepared = _prepare(item, seed)
        if isinstance(prepared, DerivationReport):
            reports.append(prepared)
            continue
        d, draws = prepared
        runs = {}
        for name in names:
            runs[name] = _collect(elsewhere, name, k) or run_oracle(name, d, draws)
        reports.append(_assemble(d, draws, runs, seed))
    return Report(reports, names)


def _prepare(item, seed):
    """The parsed derivation and its samples, or the report of why there are none."""
    try:
        d = item if isinstance(item, Derivation) else load(item)
    except DerivationError as e:
        name = Path(e.file).stem if e.file else "derivation"
        return DerivationReport(name, e.file, "invalid", error=e)
    try:
        return d, sampling.samples(d, seed)
    except ValueError as e:
        err = DerivationError(f"no valid sample: {e}", 0, 0, d.file)
        return DerivationReport(d.name, d.file, "invalid", d.title, error=err)


# The jax oracle's time is almost all XLA compilation on one core. With several derivations to check and
# a second core, it runs in worker processes while this one runs the other oracles: WORKERS of them, each
# with a share of the derivations, so that the three processes keep both cores busy to the end.
PARALLEL_ORACLES = ("jax",)
WORKERS = 2


def _start_elsewhere(items, names, seed) -> dict:
    plain = all(isinstance(i, str | Path) for i in items)
    wanted = [n for n in PARALLEL_ORACLES if n in names and ORACLE_CLASSES[n].available_here()]
    if not wanted or len(items) < 2 or not plain or (os.cpu_count() or 1) < 2:
        return {}
    pool = ProcessPoolExecutor(
        max_workers=WORKERS * len(wanted), mp_context=multiprocessing.get_context("spawn")
    )
    paths = [str(i) for i in items]
    futures = {
        (n, w): pool.submit(_run_everywhere, n, paths[w::WORKERS], seed)
        for n in wanted
        for w in range(WORKERS)
    }
    pool.shutdown(wait=False)
    return futures


def _collect(elsewhere, name: str, k: int):
    """The worker's run of oracle `name` on item k; None (so it runs here) if there is none or it broke."""
    if (name, 0) not in elsewhere:
        return None
    try:
        return elsewhere[name, k % WORKERS].result()[k // WORKERS]
    except Exception:  # a worker that died is no verdict: the oracle runs again in this process
        return None


def _run_everywhere(name: str, items: list[str], seed: int) -> list[OracleRun | None]:
    """One oracle over every derivation, in a worker process: the same samples, drawn from the seed."""
    out = []
    for item in items:
        prepared = _prepare(item, seed)
        if isinstance(prepared, DerivationReport):
            out.append(None)
            continue
        run = run_oracle(name, *prepared)
        out.append(OracleRun(run.results, {}, run.forward))  # arrays and oracle only serve diagnosis here
    return out


@dataclass
class OracleRun:
    """One oracle on one derivation: per gradient its Result and the arrays of its first failing
    sample (for diagnosis), and the forward comparisons."""

    results: dict[str, Result]
    arrays: dict[str, tuple]
    forward: list[ForwardReport]
    oracle: object = None  # the oracle itself, when it ran in this process


def run_oracle(name: str, d: Derivation, draws) -> OracleRun:
    oracle = ORACLE_CLASSES[name](d)

    def every(result):
        return OracleRun({g.target: result for g in d.checked}, {}, [], oracle)

    reason = oracle.unavailable()
    if reason is not None:
        return every(Result("skip", reason=reason))
    comps = {g.target: Comparison(TOLERANCES[name]) for g in d.checked}
    fwd_comps: dict[str, Comparison] = {}
    try:
        for sample in draws:
            for label, generated, library in oracle.forward(sample):
                fwd_comps.setdefault(label, Comparison(TOLERANCES[name])).add(generated, library, sample)
            for g, written, reference in oracle.gradients(sample):
                comps[g].add(written, reference, sample)
    except Skip as e:
        return every(Result("skip", reason=str(e)))
    except Exception as e:  # an oracle that breaks never lets a gradient pass
        return every(Result("fail", reason=f"{name} oracle failed: {type(e).__name__}: {e}"))
    return OracleRun(
        {g: c.result for g, c in comps.items()},
        {g: c.arrays for g, c in comps.items() if c.arrays is not None},
        [ForwardReport(name, label, c.result) for label, c in fwd_comps.items()],
        oracle,
    )


def _assemble(d: Derivation, draws, runs: dict[str, OracleRun], seed: int) -> DerivationReport:
    forward = [f for run in runs.values() for f in run.forward]
    exact = runs["exact"].oracle if "exact" in runs else None
    gradients = []
    wrong_lines: dict[str, int] = {}
    for g in d.checked:
        results = {name: run.results[g.target] for name, run in runs.items()}
        # the exact oracle's arrays diagnose best
        found = [run.arrays[g.target] for name, run in sorted(runs.items(), key=lambda kv: kv[0] != "exact")
                 if g.target in run.arrays]  # fmt: skip
        arrays = found[0] if found else None
        ran = [r for r in results.values() if r.status != "skip"]
        status = "unchecked" if not ran else "verified" if all(r.status == "pass" for r in ran) else "wrong"
        diagnosis = ""
        if status == "wrong":
            diagnosis = diagnose(d, g.target, arrays, exact, results)
            used = _uses(d, g.target) & set(wrong_lines)
            if used:
                first = min(used, key=wrong_lines.get)
                diagnosis += f"; it uses {first} (line {wrong_lines[first]}), which is wrong"
            wrong_lines[g.target] = g.line
        gradients.append(GradientReport(g.target, g.line, status, results, diagnosis))
    bad_forward = any(f.result.status == "fail" for f in forward)
    status = "verified"
    if bad_forward or any(g.status != "verified" for g in gradients):
        status = "wrong"
    return DerivationReport(
        d.name, d.file, status, d.title, None, gradients, forward, seed, [dict(s.sizes) for s in draws]
    )


def _uses(d: Derivation, target: str) -> set[str]:
    st = d.statement(target)
    return {a.base.label.name for a in st.rhs.atoms(sp.Indexed)} | {s.name for s in st.rhs.free_symbols}


# -----------------------------------------------------------------------------------------------------
# Diagnosis: where the written gradient is worst, and the shape of the error when it has a simple one.


def diagnose(d: Derivation, name: str, arrays, exact: Exact | None, results: dict[str, Result]) -> str:
    failing = [(k, r) for k, r in results.items() if r.status == "fail"]
    if arrays is None:
        return "; ".join(f"{k}: {r.reason}" for k, r in failing if r.reason) or "wrong"
    written, reference, sample = arrays
    w = np.array([float(x) for x in np.ravel(written)]).reshape(np.shape(written))
    r = np.array([float(x) for x in np.ravel(reference)]).reshape(np.shape(reference))
    parts = []
    shape = _error_shape(d, name, w, r, sample, exact)
    if shape:
        parts.append(shape)
    k, res = failing[0]
    if res.worst_index is not None:
        idx = ", ".join(map(str, res.worst_index))
        where = f"{name}[{idx}]" if res.worst_index else name
        parts.append(f"worst at {where}: written {res.written:.6g}, true {res.reference:.6g} ({k})")
    elif res.reason:
        parts.append(res.reason)
    return "; ".join(parts)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def _error_shape(d, name, w, r, sample, exact) -> str:
    if not np.any(r) and np.any(w):
        return "the true gradient is zero here and the written one is not"
    if np.any(r):
        c = float(np.vdot(w, r) / np.vdot(r, r))
        if np.linalg.norm(w - c * r) <= 1e-7 * max(np.linalg.norm(w), 1e-300):
            return _multiple(c, sample.sizes)
    if w.ndim >= 2:
        for perm in _permutations(w.ndim):
            if w.shape == tuple(r.shape[p] for p in perm) and np.allclose(
                w, r.transpose(perm), rtol=1e-9, atol=1e-12
            ):
                return "is the transpose of the true gradient"
    mixing = _mixes_samples(d, name, sample, exact)
    return mixing or ""


def _multiple(c: float, sizes: dict[str, int]) -> str:
    if _close(c, 0.0):
        return "is zero where the true gradient is not"
    if _close(c, -1.0):
        return "has the wrong sign"
    for s, v in sizes.items():
        if _close(c, v):
            return f"is {s} times the true gradient (a missing 1/{s}?)"
        if _close(c, 1 / v):
            return f"is 1/{s} of the true gradient (an extra 1/{s}?)"
        if _close(c, -v):
            return f"is -{s} times the true gradient (wrong sign and a missing 1/{s}?)"
        if _close(c, -1 / v):
            return f"is -1/{s} of the true gradient (wrong sign and an extra 1/{s}?)"
    return f"is {c:.6g} times the true gradient"


def _permutations(n):
    from itertools import permutations

    return [p for p in permutations(range(n)) if p != tuple(range(n))]


def _mixes_samples(d: Derivation, name: str, sample, exact: Exact | None) -> str:
    """Whether the error lives only on entries that couple different samples: with the upstream
    gradient kept for one sample alone, the written gradient is right on that sample's own slice and
    wrong on the others'. That is a missing delta over the batch index."""
    if exact is None or d.upstream not in sample.exact:
        return ""
    up_shape = d.shape(d.upstream)
    batch = up_shape[0]
    axis = next((k for k, s in enumerate(d.shape(name)) if s == batch), None)
    if axis is None or sample.sizes[batch.name] < 2:
        return ""
    upstream = np.array(sample.exact[d.upstream], dtype=object)
    upstream[1:] = mpmath.mpf(0)
    values, adj = exact.adjoints_with(sample, upstream)
    of = d.statement(name).of
    err = np.abs(np.array([float(x) for x in np.ravel(values[name] - adj[of])]).reshape(np.shape(adj[of])))
    own = np.take(err, [0], axis=axis)
    rest = np.delete(err, 0, axis=axis)
    scale = max(1.0, float(np.max(np.abs(np.array([float(x) for x in np.ravel(adj[of])])))))
    if own.max() <= 1e-12 * scale and rest.max() > 1e-9 * scale:
        return f"differs only on entries that mix different samples (a missing delta over {batch.name.lower()}, the batch index?)"
    return ""
