"""Diagnosis of a wrong gradient: where it is worst, and the shape of the error when it has a simple one
(a multiple of the true gradient, its transpose, a missing delta over the batch index)."""

from __future__ import annotations

from itertools import permutations

import mpmath
import numpy as np

from . import jacobians
from .comparison import Result
from .model import Derivation
from .oracles import Exact


def diagnose(d: Derivation, name: str, arrays, exact: Exact | None, results: dict[str, Result]) -> str:
    failing = [(k, r) for k, r in results.items() if r.status == "fail"]
    if arrays is None:  # no numbers to diagnose: a value that is not real, or the wrong shape
        by_reason: dict[str, list[str]] = {}
        for k, r in failing:
            if r.reason:
                by_reason.setdefault(r.reason, []).append(k)
        return "; ".join(f"{why} ({', '.join(names)})" for why, names in by_reason.items()) or "wrong"
    written, reference, sample = arrays
    w = np.array([float(x) for x in np.ravel(written)]).reshape(np.shape(written))
    r = np.array([float(x) for x in np.ravel(reference)]).reshape(np.shape(reference))
    st = d.statement(name)
    parts = []
    block = jacobians.block_mismatch(st, reference, 1e-9) if st.jacobian is not None else ""
    shape = block or _error_shape(d, name, w, r, sample, exact)
    if shape:
        parts.append(shape)
    k, res = failing[0]
    if res.worst_index is not None:
        idx = ", ".join(map(str, res.worst_index))
        where = f"{st.claim}[{idx}]" if res.worst_index else st.claim
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
    return [p for p in permutations(range(n)) if p != tuple(range(n))]


def _mixes_samples(d: Derivation, name: str, sample, exact: Exact | None) -> str:
    """Whether the error lives only on entries that couple different samples: with the upstream
    gradient kept for one sample alone, the written gradient is right on that sample's own slice and
    wrong on the others'. That is a missing delta over the batch index."""
    of = d.statement(name).of
    if exact is None or d.upstream not in sample.exact or of is None:
        return ""
    up_shape = d.shape(d.upstream)
    batch = up_shape[0]
    axis = next((k for k, s in enumerate(d.shape(name)) if s == batch), None)
    if axis is None or sample.sizes[batch.name] < 2:
        return ""
    upstream = np.array(sample.exact[d.upstream], dtype=object)
    upstream[1:] = mpmath.mpf(0)
    values, adj = exact.adjoints_with(sample, upstream)
    err = np.abs(np.array([float(x) for x in np.ravel(values[name] - adj[of])]).reshape(np.shape(adj[of])))
    own = np.take(err, [0], axis=axis)
    rest = np.delete(err, 0, axis=axis)
    scale = max(1.0, float(np.max(np.abs(np.array([float(x) for x in np.ravel(adj[of])])))))
    if own.max() <= 1e-12 * scale and rest.max() > 1e-9 * scale:
        return f"differs only on entries that mix different samples (a missing delta over {batch.name.lower()}, the batch index?)"
    return ""
