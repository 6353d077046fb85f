"""Random sizes and inputs for the checks.

Sizes are small, at least 2 and pairwise distinct (so that a swapped index cannot pass by coincidence),
and differ between draws. Values are exact rationals: multiples of 1/256 for `normal`, `positive` and
`uniform` (so the float64 copy is exact), exact fractions summing to 1 for `simplex`. A draw is kept
only when every max, min, abs and where sits at least `MARGIN` away from its kink, and draws are
repeated until, where possible, every such site takes both of its branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import mpmath
import numpy as np

from . import limits
from .exacteval import DIGITS, concrete_shape, contracted, elements, run_all
from .model import NORMAL, Derivation, DerivationError, Domain

DRAWS = 2
MARGIN = Fraction(1, 32)
ATTEMPTS = 40
DENOMINATOR = 256


@dataclass(frozen=True)
class Sample:
    """One draw: sizes, and every input and the upstream gradient as exact values and as float64."""

    seed: int
    sizes: dict[str, int]
    exact: dict[str, object]  # object arrays of mpf (exactly the rationals drawn) or an mpf
    values: dict[str, object]  # float64 arrays or floats
    forward: dict[str, object]  # every forward value and written gradient, high precision


def _sizes(d: Derivation, rng: np.random.Generator, avoid: dict[str, int] | None) -> dict[str, int]:
    free = [n for n in d.sizes if n not in d.fixed_sizes]
    pool = np.arange(2, 2 + len(free) + 2)
    for _ in range(20):
        chosen = rng.choice(pool, size=len(free), replace=False)
        sizes = {**{n: int(v) for n, v in zip(free, chosen, strict=True)}, **d.fixed_sizes}
        if avoid is None or not free or sizes != avoid:
            return sizes
    return sizes


def rationals(
    domain: Domain, shape: tuple[int, ...], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Values from a domain as integer numerators over denominators (broadcastable to `shape`): multiples
    of 1/DENOMINATOR for `normal`, `positive` and `uniform`; weights over their slice's total for
    `simplex`; zeros and ones for `onehot`. The one description of every domain: the checks take the
    exact fractions, the benchmark the same draws as float64."""
    if domain.kind == "normal":
        return np.round(rng.normal(size=shape) * DENOMINATOR).astype(np.int64), np.array(DENOMINATOR)
    if domain.kind == "positive":
        return rng.integers(DENOMINATOR // 2, 2 * DENOMINATOR + 1, size=shape), np.array(DENOMINATOR)
    if domain.kind == "uniform":
        lo, hi = int(np.ceil(domain.low * DENOMINATOR)), int(np.floor(domain.high * DENOMINATOR))
        return rng.integers(lo, hi + 1, size=shape), np.array(DENOMINATOR)
    axis = domain.axis
    if domain.kind == "simplex":
        weights = rng.integers(1, 17, size=shape)
        return weights, weights.sum(axis=axis, keepdims=True)
    # onehot: one 1 per slice along the axis
    hot = rng.integers(shape[axis], size=shape[:axis] + (1,) + shape[axis + 1 :])
    return (np.indices(shape)[axis] == hot).astype(np.int64), np.array(1)


def float_values(domain: Domain, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A float64 draw from a domain (the same values `exact_values` would give as fractions)."""
    numerators, denominators = rationals(domain, shape, rng)
    return numerators / denominators


def exact_values(domain: Domain, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """An exact draw from a domain, as an object array of Fractions."""
    numerators, denominators = rationals(domain, shape, rng)
    denominators = np.broadcast_to(denominators, shape)
    out = np.empty(shape, dtype=object)
    for e in elements(shape):
        out[e] = Fraction(int(numerators[e]), int(denominators[e]))
    return out


class _Kinks:
    """Watches every kink site during an evaluation: how close it came, and which sides it took."""

    def __init__(self):
        self.closest = None
        self.sides: dict[object, set[int]] = {}

    def __call__(self, kind, site, value):
        a = abs(value)
        self.closest = a if self.closest is None else min(self.closest, a)
        self.sides.setdefault(site, set()).add(1 if value > 0 else -1)

    def covered(self) -> bool:
        return all(len(s) == 2 for s in self.sides.values())


def draw(d: Derivation, seed: int, avoid: dict[str, int] | None = None) -> Sample:
    """One sample: the first draw (from `seed` onwards) that keeps clear of every kink, preferring one
    on which every kink site takes both branches."""
    best = None
    spent = 0
    for attempt in range(ATTEMPTS):
        rng = np.random.default_rng([seed, attempt])
        sizes = _sizes(d, rng, avoid)
        spent += check_evaluations(d, sizes)
        if spent > limits.MAX_DRAWING and attempt > 0:
            break
        exact: dict[str, object] = {}
        for name in d.inputs:
            shape = concrete_shape(d, name, sizes)
            if name in d.fixed_values:
                v = d.fixed_values[name]
                exact[name] = Fraction(int(v.p), int(v.q))
            elif shape:
                exact[name] = exact_values(d.domain(name), shape, rng)
            else:
                exact[name] = exact_values(d.domain(name), (1,), rng)[0]
        if d.upstream in d.tensors:
            exact[d.upstream] = exact_values(NORMAL, concrete_shape(d, d.upstream, sizes), rng)
        mp_values = {k: _to_mp(v) for k, v in exact.items()}
        kinks = _Kinks()
        values = run_all(d, mp_values, sizes, observe=kinks)
        sample = Sample(seed, sizes, mp_values, {k: _to_float(v) for k, v in exact.items()}, values)
        clear = kinks.closest is None or kinks.closest >= mpmath.mpf(MARGIN.numerator) / MARGIN.denominator
        finite = all(_finite(v) for v in values.values())
        if clear and finite and kinks.covered():
            return sample
        if clear and finite and best is None:
            best = sample
    if best is None:
        raise ValueError(
            f"{d.name}: no sample keeps clear of every kink and stays finite in {ATTEMPTS} draws"
        )
    return best


def samples(d: Derivation, seed: int, count: int = DRAWS) -> list[Sample]:
    out: list[Sample] = []
    for k in range(count):
        out.append(draw(d, seed * 1000 + k, avoid=out[-1].sizes if out else None))
    return out


def _to_mp(v):
    with mpmath.workdps(DIGITS):
        if isinstance(v, np.ndarray):
            out = np.empty(v.shape, dtype=object)
            for e in elements(v.shape):
                out[e] = mpmath.mpf(v[e].numerator) / v[e].denominator
            return out
        return mpmath.mpf(v.numerator) / v.denominator


def _to_float(v):
    if isinstance(v, np.ndarray):
        return np.array([float(x) for x in v.ravel()], dtype=np.float64).reshape(v.shape)
    return float(v)


def _finite(v) -> bool:
    if isinstance(v, np.ndarray):
        return all(mpmath.isfinite(x) for x in v.ravel())
    return bool(mpmath.isfinite(v))


def check_evaluations(d: Derivation, sizes: dict[str, int]) -> int:
    """The number of steps an exact evaluation of every statement at `sizes` takes; a DerivationError at
    the costliest statement when that is more than MAX_EVALUATIONS (nested sums multiply: twelve sums
    over sizes of 2 to 13 are billions of terms)."""
    at = {d.sizes[k]: v for k, v in sizes.items()}
    counts = {}
    for st in d.forward + d.gradients:
        count = limits.evaluations(contracted(st.rhs), at)
        for s in d.shape(st.target):
            count *= at[s]
        counts[st.target] = (count, st)
    total = sum(c for c, _ in counts.values())
    if total > limits.MAX_EVALUATIONS:
        count, st = max(counts.values(), key=lambda cs: cs[0])
        shown = ", ".join(f"{k} = {v}" for k, v in sizes.items())
        raise DerivationError(
            f"too large to check exactly at sizes {shown}: about {total:.2g} evaluations, more than "
            f"{limits.MAX_EVALUATIONS:.2g}, {count:.2g} of them in {st.target}: nest fewer sums or fix smaller sizes",
            st.line,
            st.column,
            d.file,
        )
    return total
