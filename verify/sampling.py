"""Random sizes and inputs for the checks.

Sizes are small, at least 2 and pairwise distinct (so that a swapped index cannot pass by coincidence),
distinct from every size fixed in `[sizes]` too, and differ between draws. A convolution or pooling (a
derivation with shifted subscripts or a windowed maximum) has too many sizes for that to stay small:
there the sizes of each tensor's axes are pairwise distinct, from 2 to 5 (6 for those a relation reads); sizes related to others in
[sizes] (`I = (H + 2*P - KH) / S + 1`) are computed, must come out at least 1 and are at least 2 where
the window allows it (several windows along each axis), and the first draw has windows that do not tile
the input evenly (every such division leaves a remainder) where the stride allows it. Values are exact rationals: multiples of 1/256 for `normal`, `positive` and `uniform` (so the
float64 copy is exact), exact fractions summing to 1 for `simplex`; inputs that declare no domain are
drawn from the one the forward needs (`verify.domains`); an input that a windowed maximum reads is a
shuffle of distinct values 1/16 apart, so that every window has one largest value, clear of the others.

A draw is kept only when the forward is real and finite at it (a draw where a logarithm's argument is
negative is redrawn, not judged) and every max, min, abs and where of the forward sits at least `MARGIN`
away from its kink, where the derivative jumps; draws are repeated until, where possible, every kink site,
of the forward and of the written gradients, takes both of its branches. A condition in a written
gradient needs no margin: `where(y > 0, dy, 0)` with y = max(x, 0) is exactly 0 wherever x < 0, and that
is right.

Those far draws cannot see a threshold moved a little off its kink (`where(x > 0.01, dy, 0)` for ReLU).
So besides them, `near` draws place elements of every kink of the forward `NEAR` away on each side, by
moving one input element the kink depends on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import mpmath
import numpy as np
import sympy as sp

from . import domains, limits
from .exacteval import (
    DIGITS,
    Evaluator,
    adjoints,
    concrete_shape,
    contracted,
    derivatives_of,
    elements,
    run_all,
    run_statement,
    size_values,
)
from .model import NORMAL, Derivation, DerivationError, Domain, WindowMax

DRAWS = 2
MARGIN = Fraction(1, 32)
NEAR = Fraction(1, 1024)  # a threshold moved further than this off its kink is caught by the near draw
ATTEMPTS = 40
DENOMINATOR = 256
PLACE = Fraction(1, 2**24)  # the grid a moved input element lands on: float64 holds it exactly
PROBE = Fraction(1, 64)  # the secant's first step
SOURCES = 16  # input elements tried per kink element
# how far a moved element may go from its draw: a clip at 6 (ReLU6) is in reach, an outlier no further
REACH = 8


@dataclass(frozen=True)
class Sample:
    """One draw: sizes, and every input and the upstream gradient as exact values and as float64.
    `near` says it places kinks close on purpose; `cache` keeps what is computed from it once
    (`verify.rounding`'s bounds)."""

    seed: int
    sizes: dict[str, int]
    exact: dict[str, np.ndarray | mpmath.mpf]  # object arrays of mpf (exactly the rationals drawn) or an mpf
    values: dict[str, np.ndarray | float]  # float64 arrays or floats
    forward: dict[str, np.ndarray | mpmath.mpf]  # every forward value and written gradient, high precision
    near: bool = False
    cache: dict = field(default_factory=dict, compare=False, repr=False)


def _sizes(
    d: Derivation, rng: np.random.Generator, avoid: dict[str, int] | None, uneven: bool = False
) -> dict[str, int]:
    if d.windowed or d.size_relations:  # a related size is computed, never drawn
        return _window_sizes(d, rng, avoid, uneven)
    free = [n for n in d.sizes if n not in d.fixed_sizes]
    taken = set(d.fixed_sizes.values())
    pool = [v for v in range(2, 2 + len(free) + 2 + len(taken)) if v not in taken][: len(free) + 2]
    for _ in range(20):
        chosen = rng.choice(pool, size=len(free), replace=False)
        sizes = {**{n: int(v) for n, v in zip(free, chosen, strict=True)}, **d.fixed_sizes}
        if avoid is None or not free or sizes != avoid:
            return sizes
    return sizes


def _window_sizes(
    d: Derivation, rng: np.random.Generator, avoid: dict[str, int] | None, uneven: bool
) -> dict[str, int]:
    """Sizes distinct within each tensor's axes; related sizes computed and at least 1, preferably at
    least 2 (several windows along each axis: a 1 x 1 output hides a stride or an offset, since its one
    window reads the same entries whatever they are); with `uneven`, preferably every division of a
    relation leaving a remainder."""
    free = [n for n in d.sizes if n not in d.fixed_sizes and n not in d.size_relations]
    groups = [{s.name for s in t.shape} for t in d.tensors.values()]
    widest = max((len(g) for g in groups), default=1)
    pool = list(range(2, 2 + max(widest, 4)))
    # the sizes a relation reads (H, W) go one higher: distinct sizes of x (N C H W) then leave both H
    # and W room for two 3 x 3 windows at stride 2 and no padding
    related = {s.name for r in d.size_relations.values() for s in r.free_symbols} & set(free)
    grows = related - d.window_sizes()  # what the lift raises: a window's size drawn higher gains nothing
    best, best_score, too_large = None, (False, False), None
    for attempt in range(400):
        # a window wider than the pool (a 7-tap kernel, no padding) needs larger inputs: after 200 draws
        # without one, the sizes the relations read are drawn higher, up to the largest the checks take
        lift = 0 if attempt < 200 or best or too_large else min((attempt - 199) // 20 * 4, limits.MAX_SIZE)
        sizes = dict(d.fixed_sizes)
        for n in rng.permutation(free):
            taken = {sizes[m] for g in groups if n in g for m in g if m in sizes}
            allowed = [*pool, pool[-1] + 1] if n in related else pool
            allowed = [v + lift for v in allowed] if n in grows else allowed
            choices = [v for v in allowed if v not in taken] or allowed
            sizes[str(n)] = int(rng.choice(choices))
        sizes = d.complete_sizes(sizes)
        values = size_values(d, sizes)
        if min(sizes.values(), default=1) < 1 or sizes == avoid:
            continue
        try:
            check_evaluations(d, sizes)
        except DerivationError:  # more than the exact oracle can afford: the draw reports it if all are
            too_large = too_large or sizes
            continue
        score = (
            all(sizes[name] >= 2 for name in d.size_relations),
            not uneven
            or all(_remainder(f, values) for r in d.size_relations.values() for f in r.atoms(sp.floor)),
        )
        if all(score):
            return sizes
        if best is None or score > best_score:
            best, best_score = sizes, score
        if attempt >= 199 and (best or too_large):
            break
    found = best or too_large
    if found is None:
        raise ValueError("no sizes make every related size at least 1")
    return found


def _remainder(floor: sp.floor, values) -> bool:
    """Whether a floor division leaves a remainder at these sizes (or cannot: a division by 1)."""
    _, denominator = sp.fraction(sp.together(floor.args[0]))
    if int(denominator.xreplace(values)) == 1:
        return True
    return not floor.args[0].xreplace(values).is_integer


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
        assert domain.low is not None and domain.high is not None, "a uniform domain has its bounds"
        lo, hi = math.ceil(domain.low * DENOMINATOR), math.floor(domain.high * DENOMINATOR)
        return rng.integers(lo, hi + 1, size=shape), np.array(DENOMINATOR)
    axis = domain.axis
    assert axis is not None, f"a {domain.kind} domain has its axis"
    if domain.kind == "simplex":
        weights = rng.integers(1, 17, size=shape)
        return weights, weights.sum(axis=axis, keepdims=True)
    # onehot: one 1 per slice along the axis
    hot = rng.integers(shape[axis], size=shape[:axis] + (1,) + shape[axis + 1 :])
    return (np.indices(shape)[axis] == hot).astype(np.int64), np.array(1)


def spread(domain: Domain, shape: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values 1/16 apart, shuffled (numerators over DENOMINATOR): for an input a windowed maximum
    reads, so that the largest value of every window stands 1/16 clear of the rest. `positive` ones
    start at 1/2; others are centred on 0."""
    count = int(np.prod(shape))
    step = DENOMINATOR // 16
    numerators = rng.permutation(count).reshape(shape) * step
    offset = DENOMINATOR // 2 if domain.kind == "positive" else -(count // 2) * step
    return numerators + offset, np.array(DENOMINATOR)


def windowed_inputs(d: Derivation) -> set[str]:
    """The inputs that a windowed maximum reads."""
    out = set()
    for st in d.forward:
        for w in st.rhs.atoms(WindowMax):
            out |= {a.base.label.name for a in w.function.atoms(sp.Indexed)} & set(d.inputs)
    return out


def float_values(domain: Domain, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A float64 draw from a domain (the same values `exact_values` would give as fractions)."""
    numerators, denominators = rationals(domain, shape, rng)
    return numerators / denominators


def exact_values(
    domain: Domain, shape: tuple[int, ...], rng: np.random.Generator, spread_out: bool = False
) -> np.ndarray:
    """An exact draw from a domain, as an object array of Fractions (`spread_out`: see `spread`)."""
    if spread_out and domain.kind in ("normal", "positive"):
        numerators, denominators = spread(domain, shape, rng)
    else:
        numerators, denominators = rationals(domain, shape, rng)
    denominators = np.broadcast_to(denominators, shape)
    out = np.empty(shape, dtype=object)
    for e in elements(shape):
        out[e] = Fraction(int(numerators[e]), int(denominators[e]))
    return out


def _key(env) -> tuple:
    return tuple(sorted((s.name, int(v)) for s, v in env.items()))


class _Kinks:
    """Watches every kink site during an evaluation: each element's kink argument in the forward, and
    which sides every site (forward and gradients) took."""

    def __init__(self, d: Derivation):
        self.forward_targets = {st.target for st in d.forward}
        self.forward: dict[tuple, mpmath.mpf] = {}  # (statement target, site, element) -> kink argument
        self.windows: list = []  # the gap between each window's two largest values
        self.sides: dict[object, set[int]] = {}
        self.where: dict[object, tuple[str, int]] = {}  # site -> (statement target, line)

    def __call__(self, st, kind, site, value, env):
        if kind == "window":  # never negative, and no single element moves it: kept clear, not placed
            self.windows.append(value)
            return
        if st.target in self.forward_targets:
            self.forward[st.target, site, _key(env)] = value
        self.sides.setdefault(site, set()).add(1 if value > 0 else -1)
        self.where.setdefault(site, (st.target, st.line))

    def closest(self):
        return min([*(abs(v) for v in self.forward.values()), *self.windows], default=None)

    def closest_in(self) -> str | None:
        """The forward statement (its target) holding the kink argument closest to zero."""
        if not self.forward:
            return None
        return min(self.forward.items(), key=lambda kv: abs(kv[1]))[0][0]

    def covered(self) -> bool:
        return all(len(s) == 2 for s in self.sides.values())


def _evaluate(d: Derivation, seed: int, sizes, exact) -> tuple[Sample, _Kinks]:
    mp_values = {k: _to_mp(v) for k, v in exact.items()}
    kinks = _Kinks(d)
    values = run_all(d, mp_values, sizes, observe=kinks)
    sample = Sample(seed, sizes, mp_values, {k: _to_float(v) for k, v in exact.items()}, values)
    return sample, kinks


def _not_real(d: Derivation, sample: Sample) -> tuple[str, str] | None:
    """The first input or forward value that is not a real finite number: (its name, it in words);
    None if none."""
    for name in [*sample.exact, *(st.target for st in d.forward)]:
        v = sample.forward[name]
        for e in elements(np.shape(v)):
            x = v[e] if e else v
            if not mpmath.isfinite(x):
                index = f"[{', '.join(map(str, e))}]" if e else ""
                return name, f"{name}{index} = {mpmath.nstr(x, 3)}"
    return None


class NoSample(DerivationError, ValueError):
    """No draw qualifies, at the forward statement that failed the draws: an invalid derivation where the
    forward is not real, `undecided` where it only could not keep every kink clear (a max pool of ReLU
    outputs ties zeros in some window at nearly every draw): nothing is wrong with the file then."""

    undecided = False


def draw(d: Derivation, seed: int, avoid: dict[str, int] | None = None) -> Sample:
    """One sample: the first draw (from `seed` onwards) where the forward is real and finite and keeps
    clear of every kink of the forward, preferring one on which every kink site takes both branches."""
    sample, _, kinks = _draw(d, seed, avoid)
    _keep_sides(sample, kinks)
    return sample


def _keep_sides(sample: Sample, kinks: _Kinks) -> None:
    """The sides each condition took at this sample, by (statement, line, condition): one-sided over
    every draw, a condition's other branch was never compared (`one_sided`)."""
    sample.cache["sides"] = {
        (*kinks.where[site], str(site)): frozenset(sides) for site, sides in kinks.sides.items()
    }


def one_sided(draws: list[Sample]) -> list[tuple[str, int, str, int]]:
    """(statement, line, condition, the one side) of each condition that took one side at every draw."""
    seen: dict[tuple, set[int]] = {}
    for sample in draws:
        for key, sides in sample.cache.get("sides", {}).items():
            seen.setdefault(key, set()).update(sides)
    return [(*key, next(iter(sides))) for key, sides in seen.items() if len(sides) == 1]


def _draw(d: Derivation, seed: int, avoid: dict[str, int] | None) -> tuple[Sample, dict, _Kinks]:
    """`draw`, with the drawn values as Fractions and the kinks it saw."""
    best = None
    not_real = near_kink = None
    blame: str | None = None  # the forward statement that failed the first draw
    spent = 0
    spread_out = windowed_inputs(d)
    for attempt in range(ATTEMPTS):
        rng = np.random.default_rng([seed, attempt])
        sizes = _sizes(d, rng, avoid, uneven=avoid is None)
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
                exact[name] = exact_values(domains.of(d, name), shape, rng, name in spread_out)
            else:
                exact[name] = exact_values(domains.of(d, name), (1,), rng)[0]
        if d.upstream in d.tensors:
            exact[d.upstream] = exact_values(NORMAL, concrete_shape(d, d.upstream, sizes), rng)
        sample, kinks = _evaluate(d, seed, sizes, exact)
        problem = _not_real(d, sample)
        if problem is not None:
            blame = blame or problem[0]
            not_real = not_real or problem[1]
            continue
        closest = kinks.closest()
        if closest is not None and closest < _mp(MARGIN):
            blame = blame or kinks.closest_in()
            near_kink = near_kink or closest
            continue
        if kinks.covered():
            return sample, exact, kinks
        best = best or (sample, exact, kinks)
    if best is None:
        if not_real is not None and near_kink is None:
            why = f"the forward is not real and finite at any of {ATTEMPTS} draws (first: {not_real})"
        elif not_real is None:
            why = f"no draw of {ATTEMPTS} keeps every kink of the forward {MARGIN} away from it"
        else:
            why = (
                f"no draw of {ATTEMPTS} is real and finite and keeps clear of every kink (first: {not_real})"
            )
        at = next((st for st in d.forward if st.target == blame), d.forward[0])
        failed = NoSample(f"no valid sample: {why}", at.line, at.column, d.file)
        failed.undecided = not_real is None
        raise failed
    return best


def samples(d: Derivation, seed: int, count: int = DRAWS) -> list[Sample]:
    """`count` far draws, then a near draw where the forward has kinks."""
    out: list[Sample] = []
    for k in range(count):
        out.append(draw(d, seed * 1000 + k, avoid=out[-1].sizes if out else None))
    placed = near(d, seed * 1000 + count, avoid=out[-1].sizes if out else None)
    return out + ([placed] if placed is not None else [])


# -----------------------------------------------------------------------------------------------------
# Near draws: elements of each kink of the forward placed NEAR away on either side.


def near(d: Derivation, seed: int, avoid=None) -> Sample | None:
    """A draw with, for every kink site of the forward, one element NEAR above its kink and one NEAR
    below, each placed by moving one input element it depends on; every other kink keeps NEAR / 2 away.
    The elements placed are, where possible, ones the loss depends on (a mask's mistake on an element
    whose adjoint is zero changes nothing). None when the forward has no kinks or none could be placed."""
    sample, exact, kinks = _draw(d, seed, avoid)
    sites = list(dict.fromkeys((target, site) for target, site, _ in kinks.forward))
    if not sites:
        return None
    upstream = sample.exact.get(d.upstream, mpmath.mpf(1))
    adj = adjoints(d, sample.forward, sample.sizes, upstream, derivatives_of(d))
    statements = {st.target: st for st in d.forward}

    def idle(key) -> bool:
        """Whether the loss does not depend on the element of the kink's statement (its adjoint is 0)."""
        target, _, element = key
        named = dict(element)
        idx = tuple(named[i.name] for i in statements[target].indices)
        return (adj[target][idx] if idx else adj[target]) == 0

    placed: list[tuple] = []
    budget = _Placing(limits.MAX_PLACING, _forward_steps(d, sample.sizes))
    for target, site in sites:
        for side in (1, -1):
            elements_here = [(k, v) for k, v in kinks.forward.items() if k[:2] == (target, site)]
            key = min(elements_here, key=lambda kv: (kv[1] * side <= 0, idle(kv[0]), abs(kv[1])))[0]
            moved = _place(d, sample, exact, key, side, placed, budget)
            if moved is not None:
                exact = moved
                placed.append((key, side))
    if not placed:
        return None
    sample, kinks = _evaluate(d, seed, sample.sizes, exact)
    if _not_real(d, sample) is not None:  # a moved element broke a later statement
        return None
    placed_sample = Sample(seed, sample.sizes, sample.exact, sample.values, sample.forward, near=True)
    _keep_sides(placed_sample, kinks)
    return placed_sample


@dataclass
class _Placing:
    """What the near draw may still spend on evaluating the forward (`left` steps; one evaluation costs
    `cost`), so that a forward with a long sum and many kink sites cannot run for minutes."""

    left: int
    cost: int

    def spend(self) -> bool:
        """Take one evaluation; False (and nothing taken) when it is no longer affordable."""
        if self.cost > self.left:
            return False
        self.left -= self.cost
        return True


def _forward_steps(d: Derivation, sizes: dict[str, int]) -> int:
    """The steps of one exact evaluation of the forward at `sizes` (as `check_evaluations` counts them)."""
    at = size_values(d, sizes)
    return sum(limits.evaluations(contracted(st.rhs), at) * _elements(d, st.target, at) for st in d.forward)


def _elements(d: Derivation, name: str, at) -> int:
    """How many elements tensor `name` has (`at`: `size_values`)."""
    return math.prod(at[s] for s in d.shape(name))


def _place(d: Derivation, sample: Sample, exact, key, side, placed, budget: _Placing) -> dict | None:
    """The inputs with one element moved so that the kink argument `key` is NEAR * side, every kink
    placed before stays placed and every other one keeps NEAR / 2 away; None if no input element
    does it within the `budget`."""
    target, sizes = side * _mp(NEAR), sample.sizes
    if not budget.spend():
        return None
    found = _forward_kinks(d, sizes, exact)
    if found is None or key not in found:
        return None
    for name, idx in _sources(d, sample, key)[:SOURCES]:
        start = _get(exact, name, idx)
        before = (start, found[key])
        at = start + PROBE
        for _ in range(6):  # secant steps: the first lands where the kink is affine in the element
            if abs(at - start) > REACH or not _in_domain(domains.of(d, name), at):
                break
            moved = _set(exact, name, idx, at)
            if not budget.spend():
                return None
            kinks = _forward_kinks(d, sizes, moved)
            if kinks is None:
                break
            value = kinks.get(key)
            # the kink is no longer evaluated (its where() branch is not taken, a factor became 0), or
            # the moved element left the forward's domain
            if value is None or not mpmath.isfinite(value):
                break
            if abs(value - target) <= _mp(NEAR) / 4:
                if _settled(kinks, [*placed, (key, side)]):
                    return moved
                break
            if value == before[1]:
                break
            slope = (value - before[1]) / _mp(at - before[0])
            step = float((target - value) / slope)
            if not math.isfinite(step):
                break
            before, at = (at, value), _on_grid(at + Fraction(step))
    return None


def _on_grid(x: Fraction) -> Fraction:
    return round(x / PLACE) * PLACE


def _in_domain(domain: Domain, x: Fraction) -> bool:
    if domain.kind == "positive":
        return x > 0
    if domain.kind == "uniform":
        assert domain.low is not None and domain.high is not None, "a uniform domain has its bounds"
        return domain.low <= x <= domain.high
    return domain.kind == "normal"


def _get(exact, name, idx):
    return exact[name][idx] if idx else exact[name]


def _set(exact, name, idx, value) -> dict:
    out = dict(exact)
    if idx:
        out[name] = exact[name].copy()
        out[name][idx] = value
    else:
        out[name] = value
    return out


def _forward_kinks(d: Derivation, sizes, exact) -> dict | None:
    """Every forward kink argument at these inputs, or None where the forward (up to its last kink) is
    not real and finite."""
    values = {k: _to_mp(v) for k, v in exact.items()}
    kinks = _Kinks(d)
    kinked = [k for k, st in enumerate(d.forward) if st.rhs.has(*KINKS)]
    with mpmath.workdps(DIGITS):
        for st in d.forward[: kinked[-1] + 1 if kinked else 0]:
            values[st.target] = run_statement(st, d, values, sizes, kinks)
            if not all(mpmath.isfinite(x) for x in np.ravel(values[st.target])):
                return None
    return kinks.forward


def _settled(kinks: dict, placed) -> bool:
    """Whether every placed kink element is within a factor 2 of NEAR on its side and every other one
    at least NEAR / 2 away from its kink."""
    near = _mp(NEAR)
    sides = dict(placed)
    for k, v in kinks.items():
        if k in sides:
            if not near / 2 <= v * sides[k] <= 2 * near:
                return False
        elif abs(v) < near / 2:
            return False
    return True


def _sources(d: Derivation, sample: Sample, key) -> list[tuple[str, tuple]]:
    """The input elements a forward kink argument depends on, nearest first: those its statement reads,
    then those the forward values it reads are computed from. Only inputs drawn from a continuous domain
    (normal, positive, uniform) and not fixed can move."""
    target, site, element = key
    statements = {st.target: st for st in d.forward}
    ev = Evaluator(sample.forward, size_values(d, sample.sizes))
    symbols = {s.name: s for s in statements[target].indices}
    symbols.update({s.name: s for s in site.free_symbols if isinstance(s, sp.Symbol)})
    env = {symbols[name]: value for name, value in element if name in symbols}
    ev.reads = set()
    with mpmath.workdps(DIGITS):
        ev(site.args[0] if len(site.args) == 1 else site.args[0] - site.args[1], env)
    frontier = sorted(ev.reads)
    found, seen = [], set()
    while frontier:
        name, idx = frontier.pop(0)
        if (name, idx) in seen:
            continue
        seen.add((name, idx))
        if name in statements:
            st = statements[name]
            ev.reads = set()
            with mpmath.workdps(DIGITS):
                ev(st.rhs, dict(zip(st.indices, idx, strict=True)))
            frontier += sorted(ev.reads)
        elif name in d.inputs and name not in d.fixed_values and domains.of(d, name).kind in MOVABLE:
            found.append((name, idx))
    return found


MOVABLE = ("normal", "positive", "uniform")
KINKS = (sp.Max, sp.Min, sp.Abs, sp.core.relational.Relational)


def _mp(x: Fraction):
    return mpmath.mpf(x.numerator) / x.denominator


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


def check_evaluations(d: Derivation, sizes: dict[str, int]) -> int:
    """The number of steps an exact evaluation of every statement at `sizes` takes; a DerivationError at
    the costliest statement when that is more than MAX_EVALUATIONS (nested sums multiply: twelve sums
    over sizes of 2 to 13 are billions of terms)."""
    at = size_values(d, sizes)
    parts = derivatives_of(d)  # the forward statements' local derivatives
    counts = {}
    for st in d.forward + d.gradients:
        rhs = contracted(st.rhs)
        count = limits.evaluations(rhs, at)
        if st.target in parts:
            # the reverse accumulation evaluates the statement again and, for each element it reads,
            # the local derivative: a derivative holding the statement's sums multiplies their costs
            read = limits.reads(rhs, d.tensors, at)
            count += count + sum(
                min(read.get(name, 0), _elements(d, name, at)) * limits.evaluations(der, at)
                for name, _, der in parts[st.target]
            )
        counts[st.target] = (count * _elements(d, st.target, at), st)
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
