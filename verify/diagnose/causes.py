"""Causes read off the numbers: the written gradient compared, at one sample, with what the true gradient
becomes when part of the chain rule is left out.

- a multiple of the true gradient (a missing 1/N, the wrong sign), or its transpose;
- the true gradient with a forward name held constant (`exacteval.adjoints` with that name's dependence on
  its inputs cut): "dx treats var as a constant: it misses the path x -> var -> xhat"; with two names held
  (layer norm's mean and variance), or one dependence of one statement left out (the direct path x -> xhat);
- the true gradient with a statement's local Jacobian cut to its diagonal (a softmax's y(1 - y)), or to
  its per-sample blocks;
- the gradient for an upstream gradient of ones (the upstream factor left out);
- (from the statement itself) right on each sample's own entries and wrong where samples mix, or right
  once the wrong gradients it uses are replaced by the true ones (wrong only through them).

Each comparison is to the precision of the values compared (`Numbers.same`): the written values may be
the statement's own, in 50 digits, or float64 from other code.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from itertools import permutations

import mpmath
import numpy as np
import sympy as sp

from ..exacteval import DIGITS, adjoints, derivatives_of, run_statement
from ..model import Derivation, Statement, summands
from ..sampling import Sample
from .kinds import Kind


@dataclass(frozen=True)
class Cause:
    """What the numbers show. `readers` names the forward statements whose one-step terms of the true
    expansion are missing (a fix adds them); `rewrite` says a fix must write the expansion out."""

    kind: Kind
    message: str
    readers: tuple[str, ...] = ()
    rewrite: bool = False
    weak: bool = False  # a symptom rather than a cause (a multiple by a plain number): a fix may name one


def floats(a) -> np.ndarray:
    return np.array([float(x) for x in np.ravel(a)]).reshape(np.shape(a))


@dataclass
class Numbers:
    """The written and true values of one gradient at one sample, and the precision to compare them to.
    `true` are the true adjoints of every name at the sample (for the causes that need others)."""

    d: Derivation
    st: Statement
    written: np.ndarray  # floats
    true: np.ndarray  # floats
    sample: Sample
    adjoints: dict
    rtol: float
    scale: float = field(init=False)

    def __post_init__(self):
        self.scale = max(1.0, float(np.max(np.abs(self.true)))) if self.true.size else 1.0

    def same(self, a, b=None) -> bool:
        """Whether `a` equals the written values (or `b`) to the precision of the comparison."""
        a = floats(a)
        b = self.written if b is None else floats(b)
        if a.shape != b.shape or not np.all(np.isfinite(a)):
            return False
        return bool(np.max(np.abs(a - b), initial=0.0) <= self.rtol * self.scale)


# -----------------------------------------------------------------------------------------------------
# A multiple, a transpose.


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def shape(w: np.ndarray, r: np.ndarray, sizes: dict[str, int], others: list | None = None) -> Cause | None:
    """A multiple of the true values `r` (sizes name the factor where they can), or their transpose.
    `others`: (the written values' multiple of the true ones, or None where they are none, and the sizes)
    at the check's other draws, where known: a size names the factor only if it does at each of them, so
    that a stray 2 is not called a missing 1/N at a draw where N = 2."""
    if w.size != r.size:
        return None
    if w.shape == r.shape and not np.any(r) and np.any(w):
        return Cause(Kind.UNKNOWN, "the true gradient is zero here and the written one is not", weak=True)
    c = multiple(w, r)
    if c is not None:
        if r.size == 1 and not (others and everywhere(others, lambda at: c)):
            return None  # one number is a multiple of any other: that says nothing
        return _multiple(c, sizes, others or [])
    if w.ndim >= 2:
        for perm in permutations(range(w.ndim)):
            if perm != tuple(range(w.ndim)) and w.shape == tuple(r.shape[p] for p in perm):
                if np.allclose(w, r.transpose(perm), rtol=1e-9, atol=1e-12):
                    return Cause(Kind.TRANSPOSE, "is the transpose of the true gradient")
    return None


def multiple(w: np.ndarray, r: np.ndarray) -> float | None:
    """c where the written values `w` are c times the true `r` (of the same shape, not all zero), else None."""
    if w.shape != r.shape or not np.any(r):
        return None
    c = float(np.vdot(w, r) / np.vdot(r, r))
    if np.linalg.norm(w - c * r) <= 1e-7 * max(float(np.linalg.norm(w)), 1e-300):
        return c
    return None


def everywhere(others: list, factor) -> bool:
    """Whether at each other draw the written values are `factor(that draw's sizes)` times the true ones."""
    return all(k is not None and _close(k, factor(at)) for k, at in others)


def _multiple(c: float, sizes: dict[str, int], others: list) -> Cause:
    if _close(c, 0.0):
        return Cause(Kind.UNKNOWN, "is zero where the true gradient is not", weak=True)
    if _close(c, -1.0) and everywhere(others, lambda at: -1.0):
        return Cause(Kind.SIGN, "has the wrong sign")
    for s, v in sizes.items():
        for factor, text in (
            (lambda n: n, f"is {s} times the true gradient (a missing 1/{s}?)"),
            (lambda n: 1 / n, f"is 1/{s} of the true gradient (an extra 1/{s}?)"),
            (lambda n: -n, f"is -{s} times the true gradient (wrong sign and a missing 1/{s}?)"),
            (lambda n: -1 / n, f"is -1/{s} of the true gradient (wrong sign and an extra 1/{s}?)"),
        ):
            if _close(c, factor(v)) and everywhere(
                others, lambda at, f=factor, s=s: f(at[s]) if s in at else float("nan")
            ):
                return Cause(Kind.SCALE, text)
    if others and not everywhere(others, lambda at: c):
        return Cause(
            Kind.SCALE, f"is {c:.6g} times the true gradient here, another multiple elsewhere", weak=True
        )
    return Cause(Kind.SCALE, f"is {c:.6g} times the true gradient", weak=True)


# -----------------------------------------------------------------------------------------------------
# Parts of the chain rule left out.


class Graph:
    """The forward as a graph: which names each statement reads (with a non-zero local derivative)."""

    def __init__(self, d: Derivation):
        self.d = d
        parts = derivatives_of(d)
        self.reads = {s.target: [n for n, _, _ in parts[s.target]] for s in d.forward}
        self.der = {(s.target, n): (at, der) for s in d.forward for n, at, der in parts[s.target]}
        self.readers: dict[str, list[str]] = {}
        for s in d.forward:
            for n in self.reads[s.target]:
                self.readers.setdefault(n, []).append(s.target)

    def downstream(self, v: str) -> list[str]:
        """Forward names that depend on v, in file order."""
        reached = {v}
        for s in self.d.forward:
            if any(n in reached for n in self.reads[s.target]):
                reached.add(s.target)
        return [s.target for s in self.d.forward if s.target in reached and s.target != v]

    def connected(self, v: str, cut: frozenset) -> bool:
        """Whether the output still depends on v with the edges in `cut` removed."""
        reached = {v}
        for s in self.d.forward:
            if any(n in reached and (s.target, n) not in cut for n in self.reads[s.target]):
                reached.add(s.target)
        return self.d.output in reached

    def path(self, v: str, u: str) -> list[str]:
        """A shortest path of reads from v to u."""
        todo: list[str] = [v]
        back: dict[str, str | None] = {v: None}
        while todo:
            n = todo.pop(0)
            if n == u:
                break
            for r in self.readers.get(n, []):
                if r not in back:
                    back[r] = n
                    todo.append(r)
        out: list[str] = []
        at: str | None = u
        while at is not None:
            out.append(at)
            at = back.get(at)
        return out[::-1]


def _arrow(names) -> str:
    return " -> ".join(names)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


@dataclass(frozen=True)
class _Left:
    """One way of leaving part of the chain rule out, with what it means in words."""

    kind: Kind
    message: str
    cut: frozenset = frozenset()
    keep: object = None
    readers: tuple[str, ...] = ()
    rewrite: bool = False


def _ways(num: Numbers, graph: Graph) -> list[_Left]:
    d, st = num.d, num.st
    v, claim = st.of, st.claim
    if v is None:
        return []
    below = graph.downstream(v)
    inner = [u for u in below if u != d.output]
    out: list[_Left] = []
    seen: set[frozenset] = set()

    def incoming(u):
        return frozenset((u, r) for r in graph.reads[u] if r == v or r in below)

    def add(way: _Left):
        if way.cut in seen or not graph.connected(v, way.cut):
            return  # the same as one before, or nothing left: a zero gradient, which `shape` names
        seen.add(way.cut)
        out.append(way)

    for u in inner:
        paths = [_arrow(graph.path(v, u) + [w]) for w in graph.readers.get(u, []) if w in below]
        if not paths:
            continue  # u reaches nothing that is checked (var0 defined and never read): no path to miss
        direct = (u,) if v in graph.reads[u] else ()
        add(_Left(Kind.MISSING_PATH, f"{claim} treats {u} as a constant: it misses the "
                  f"path{'s' * (len(paths) > 1)} {_and(paths)}", incoming(u), readers=direct))  # fmt: skip
    for s in [v, *below]:
        for r in graph.readers.get(s, []):
            if (r, s) in seen:
                continue
            cut = frozenset({(r, s)})
            if s == v:
                held = [n for n in graph.reads[r] if n != v]
                also = f", with {_and(held)} held" if held else ""
                text = f"{claim} misses the direct path {v} -> {r} ({r}'s own dependence on {v}{also})"
                add(_Left(Kind.MISSING_PATH, text, cut, readers=(r,)))
            else:
                add(
                    _Left(Kind.MISSING_PATH, f"{claim} misses the path {_arrow(graph.path(v, s) + [r])}", cut)
                )
    for u1, u2 in itertools.combinations(inner, 2):
        siblings = any(u1 in graph.reads[w] and u2 in graph.reads[w] for w in graph.reads) or (
            v in graph.reads[u1] and v in graph.reads[u2]
        )
        if siblings:
            both = tuple(u for u in (u1, u2) if v in graph.reads[u])
            paths = [
                _arrow(graph.path(v, u) + [w])
                for u in (u1, u2)
                for w in graph.readers.get(u, [])
                if w in below
            ]
            add(_Left(Kind.MISSING_PATH, f"{claim} treats {u1} and {u2} as constants: it misses the paths "
                      f"{_and(paths)}", incoming(u1) | incoming(u2), readers=both))  # fmt: skip
    out += _structured(num, graph, below)
    return out


def _structured(num: Numbers, graph: Graph, below: list[str]) -> list[_Left]:
    """Local Jacobians cut to their diagonal, or to their blocks along an axis both sides share."""
    d, st = num.d, num.st
    v, claim = st.of, st.claim
    out = []
    statements = {s.target: s for s in d.forward}
    for s in below:
        for r in graph.reads[s]:
            if r != v and r not in below:
                continue
            at, der = graph.der[s, r]
            idx = statements[s].indices
            if (
                d.shape(s) == d.shape(r)
                and len(idx) > 0
                and not all(_pinned(der, a, i) for a, i in zip(at, idx, strict=True))
            ):

                def diagonal(target, e, name, f, s=s, r=r):
                    return target != s or name != r or e == f

                out.append(_Left(Kind.DIAGONAL_ONLY, f"{claim} keeps only the diagonal of the Jacobian d{s}/d{r}: "
                                 f"it leaves out how {s}[{', '.join(i.name for i in idx)}] depends on the other "
                                 f"entries of {r}", keep=diagonal, rewrite=True))  # fmt: skip
                continue
            for p, size in enumerate(d.shape(s)):
                q = next((q for q, other in enumerate(d.shape(r)) if other == size), None)
                if q is None or len(d.shape(r)) < 2 or _pinned(der, at[q], idx[p]):
                    continue

                def blocks(target, e, name, f, s=s, r=r, p=p, q=q):
                    return target != s or name != r or e[p] == f[q]

                letter = idx[p].name
                out.append(_Left(Kind.DIAGONAL_ONLY, f"{claim} keeps only the blocks of the Jacobian d{s}/d{r} "
                                 f"along {letter}: it leaves out how {s}[{letter}, ...] depends on {r} at other "
                                 f"values of {letter}", keep=blocks, rewrite=True))  # fmt: skip
    return out


def _pinned(der: sp.Expr, a: sp.Symbol, i: sp.Symbol) -> bool:
    """Whether every term of a local derivative carries delta(a, i): zero unless the read's index a is i."""
    delta = sp.KroneckerDelta(a, i)
    return all(delta in sp.Mul.make_args(t) for t in summands(der))


def left_out(num: Numbers) -> Cause | None:
    """The first way of leaving part of the chain rule out that gives the written values, if any."""
    d, st, sample = num.d, num.st, num.sample
    if st.of is None:
        return None
    upstream = sample.forward.get(d.upstream, mpmath.mpf(1))
    if d.upstream in d.tensors:
        ones: np.ndarray = np.full(np.shape(np.asarray(upstream, dtype=object)), mpmath.mpf(1), dtype=object)
        if num.same(_adjoint(num, ones)):
            up = d.upstream
            return Cause(Kind.UPSTREAM_MISSING, f"{st.claim} leaves out the upstream gradient {up}: it is the "
                         f"gradient for {up} = 1")  # fmt: skip
    graph = Graph(d)
    for way in _ways(num, graph):
        if num.same(_adjoint(num, upstream, way.cut, way.keep)):
            return Cause(way.kind, way.message, way.readers, way.rewrite)
    return None


def _adjoint(num: Numbers, upstream, cut=frozenset(), keep=None):
    sample = num.sample
    adj = adjoints(num.d, sample.forward, sample.sizes, upstream, derivatives_of(num.d), cut=cut, keep=keep)
    return adj[num.st.of]


# -----------------------------------------------------------------------------------------------------
# From the statement itself.


def propagated(num: Numbers) -> Cause | None:
    """Right once every wrong gradient it reads (directly or through helpers) is replaced by the true one:
    then it is wrong only through them."""
    d, st, sample = num.d, num.st, num.sample
    values = dict(sample.forward)
    replaced = []
    with mpmath.workdps(DIGITS):
        for g in d.gradients:
            if g is st:
                break
            if g.of is not None and g.jacobian is None and g.chain is None and g.of in num.adjoints:
                true = num.adjoints[g.of]
                if not num.same(values[g.target], true):
                    values[g.target] = true
                    replaced.append(g)
            elif g.of is None and g.jacobian is None and replaced:
                values[g.target] = run_statement(g, d, values, sample.sizes)
        names = [g.target for g in replaced if g.target in _reads_through(d, st)]
        if not names:
            return None
        mine = run_statement(st, d, values, sample.sizes)
    if not num.same(mine, num.true):
        return None
    lines = _and([f"{n} (line {d.statement(n).line})" for n in names])
    verb = "is" if len(names) == 1 else "are"
    return Cause(Kind.PROPAGATED, f"right given the true {_and(names)}: it uses {lines}, which {verb} wrong")


def _reads_through(d: Derivation, st: Statement) -> set[str]:
    """The names st reads, and those its helpers read, transitively."""
    out, todo = set(), list(st.reads)
    helpers = {g.target: g for g in d.gradients if g.of is None and g.jacobian is None}
    while todo:
        n = todo.pop()
        if n in out:
            continue
        out.add(n)
        if n in helpers:
            todo += list(helpers[n].reads)
    return out


def mixes_samples(num: Numbers) -> Cause | None:
    """Whether the error lives only on entries that couple different samples: with the upstream
    gradient kept for one sample alone, the written gradient is right on that sample's own slice and
    wrong on the others'. That is a missing delta over the batch index."""
    d, st, sample = num.d, num.st, num.sample
    of = st.of
    if d.upstream not in sample.exact or of is None:
        return None
    batch = d.shape(d.upstream)[0]
    axis = next((k for k, s in enumerate(d.shape(st.target)) if s == batch), None)
    if axis is None or sample.sizes[batch.name] < 2:
        return None
    upstream = np.array(sample.exact[d.upstream], dtype=object)
    upstream[1:] = mpmath.mpf(0)
    values = dict(sample.forward)
    values[d.upstream] = upstream
    with mpmath.workdps(DIGITS):
        for g in d.gradients:
            values[g.target] = run_statement(g, d, values, sample.sizes)
            if g is st:
                break
    adj = adjoints(d, values, sample.sizes, upstream, derivatives_of(d))
    err = np.abs(floats(values[st.target]) - floats(adj[of]))
    own = np.take(err, [0], axis=axis)
    rest = np.delete(err, 0, axis=axis)
    scale = max(1.0, float(np.max(np.abs(floats(adj[of])))))
    if own.max() <= 1e-12 * scale and rest.max() > 1e-9 * scale:
        return Cause(Kind.BATCH_MIXING, "differs only on entries that mix different samples (a missing delta "
                     f"over {batch.name.lower()}, the batch index?)")  # fmt: skip
    return None


__all__ = ["Cause", "Numbers", "floats", "left_out", "mixes_samples", "propagated", "shape"]
