"""What the bench times for one catalogue derivation: its sizes and inputs, its generated backward in each
backend, and the reference beside each.

Sizes are FULL (QUICK with --quick) unless the derivation's catalogue record fixes its own
(`bench_sizes`, `bench_quick_sizes`). Inputs are drawn from each input's domain as the checks draw
them (`sampling.float_values`). The references come from the catalogue record: the backward of the
hand-written NumPy module the `numpy` oracle checks (its `verify.code` target's `prepare`: built and
run forward once, untimed), and `torch.autograd` and `jax.vjp` of its library ops. Each of these reads
what its forward kept (relu's mask, softplus's sigmoid, the module's cache), so the generated backward
timed is the one whose forward keeps what it reads of it alone (`codegen.compile_derivation(...,
saved=True)`), run on that backend's own forward values. A reference the derivation lacks (no
hand-written module, no library op, a framework not installed, torch.compile failing) is reported as
skipped with the reason, never raised.
"""

from __future__ import annotations

import functools
import inspect
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import catalogue, codegen, sampling
from ..exacteval import concrete_shape
from ..model import NORMAL, Derivation
from ..oracles.base import Skip
from ..oracles.handwritten import HandWritten
from .harness import Schedule, Timing, measure

FULL = {"N": 512, "I": 1024, "J": 1024, "K": 1000, "C": 1000}
QUICK = {"N": 8, "I": 16, "J": 12, "K": 10, "C": 10}
BACKENDS = ("numpy", "torch", "jax")


@dataclass(frozen=True)
class Pair:
    """A generated backward and the reference it is compared with (Timing labels)."""

    backend: str
    variant: str
    generated: str
    reference: str
    reference_name: str
    inputs_only: str | None = None  # the generated backward computing the input gradients alone
    goal: bool = True  # whether the speed goal is judged on this pair (else it is for information)


@dataclass(frozen=True)
class Skipped:
    """A reference (or variant) the bench could not time for a derivation, and why."""

    what: str  # "numpy", "torch", "torch.compile", "jax"
    reason: str

    def __str__(self) -> str:
        return f"{self.what}: {self.reason}"


@dataclass
class Plan:
    """Everything timed for one derivation: the functions by label, the pairs compared, what was skipped."""

    timings: dict[str, Timing] = field(default_factory=dict)
    pairs: list[Pair] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def add(self, label: str, fn: Callable[[], object], compile_s: float | None = None) -> None:
        self.timings[label] = Timing(label, fn, compile_s)

    def add_compiled(self, label: str, compiled: Callable[[], object]) -> None:
        """Time `compiled()` once as its compilation (its first call), then add it."""
        start = time.perf_counter()
        compiled()
        self.add(label, compiled, time.perf_counter() - start)

    def add_generated(
        self, d: Derivation, backend: str, args: dict, label: str, wrap=None, saved: bool = True
    ) -> str | None:
        """Add `d`'s generated backward in `backend` (reading what its forward saved, or with `saved`
        false computing everything from the inputs and forward values), called on `args`, under `label`,
        and where there is one the backward of the input gradients alone under `label + " inputs only"`
        (that label is returned, else None). `wrap` (torch.compile, jax.jit) makes the function timed of
        each; a wrapped function's first call is timed apart, as its compilation."""
        full, only = backward_functions(d, backend, saved)
        if f"{backend} floor" not in self.timings:  # one per backend: eager and compiled share it
            floor = traffic_floor(backend, full, _kwargs(full, args))
            if floor is not None:
                self.add(f"{backend} floor", floor)
        for name, fn in ((label, full), (f"{label} inputs only", only)):
            if fn is None:
                continue
            kw = _kwargs(fn, args)
            if wrap is None:
                self.add(name, functools.partial(fn, **kw))
            else:
                self.add_compiled(name, functools.partial(wrap(fn), **kw))
        return only and f"{label} inputs only"


def traffic_floor(backend: str, backward, kwargs: dict) -> Callable[[], object] | None:
    """The cheapest code that reads what a generated backward reads and writes what it writes, where
    that is plain: a backward returning one array, each array it takes of that array's shape (an
    elementwise layer's), has as its floor the sum of those arrays, one pass (under jax.jit for JAX).
    Its time over the reference's is a ratio no code computing the written formula from these arguments
    can go below. None for any other backward."""
    out = backward(**kwargs)
    arrays = [v for v in kwargs.values() if getattr(v, "ndim", 0)]
    if len(out) != 1 or not arrays:
        return None
    shape = tuple(next(iter(out.values())).shape)
    if any(tuple(a.shape) != shape for a in arrays):
        return None
    if backend == "jax":
        import jax

        summed = jax.jit(lambda *a: functools.reduce(operator.add, a))
        return lambda: jax.block_until_ready(summed(*arrays))
    return lambda: functools.reduce(operator.add, arrays)


# -- sizes and inputs ---------------------------------------------------------------------------------


def sizes_for(d: Derivation, quick: bool) -> dict[str, int]:
    """Every size of `d`: the record's bench sizes over the defaults; a name neither has is as wide as J;
    sizes the derivation fixes (a pooling window) or relates to others (a convolution's output) as it
    says."""
    record = catalogue.entry(d.name)
    chosen = {**QUICK, **record.bench_quick_sizes} if quick else {**FULL, **record.bench_sizes}
    free = {name: chosen.get(name, chosen["J"]) for name in d.sizes if name not in d.size_relations}
    return d.complete_sizes(free)


def draw_inputs(d: Derivation, sizes: dict[str, int], seed: int = 0) -> dict[str, np.ndarray | float]:
    """Float64 inputs from each input's domain, as the checks draw them, weight matrices LeCun-scaled,
    and the upstream gradient (absent for a scalar loss)."""
    rng = np.random.default_rng(seed)
    values: dict[str, np.ndarray | float] = {}
    for name in d.inputs:
        if name in d.fixed_values:
            values[name] = float(d.fixed_values[name])
            continue
        shape = concrete_shape(d, name, sizes)
        drawn = sampling.float_values(d.domain(name), shape, rng)
        values[name] = drawn if shape else float(drawn)
    lecun_scale(d, values)
    out_shape = concrete_shape(d, d.output, sizes)
    if out_shape:
        values[d.upstream] = sampling.float_values(NORMAL, out_shape, rng)
    return values


def lecun_scale(d: Derivation, values: dict[str, np.ndarray | float]) -> None:
    """Divide each normal weight matrix W... by the square root of its second axis, as a LeCun
    initialisation does, so that the MLP's logits stay finite at bench sizes: an exp that overflows
    would time inf and NaN arithmetic."""
    for name, value in values.items():
        if (
            name.startswith("W")
            and isinstance(value, np.ndarray)
            and value.ndim == 2
            and d.domain(name).kind == "normal"
        ):
            values[name] = value / np.sqrt(value.shape[1])


def settings(d: Derivation) -> dict[str, int]:
    """What a library op takes besides the inputs: the constants and fixed sizes of [sizes] (stride,
    padding, a pooling window)."""
    return {**d.constants, **d.fixed_sizes}


def _kwargs(fn, values: dict) -> dict:
    names = inspect.signature(fn).parameters
    return {k: v for k, v in values.items() if k in names}


def _wrt(d: Derivation) -> list[str]:
    """The inputs with a written gradient: what autograd and jax.vjp differentiate with respect to."""
    return [g.of for g in d.checked if g.of in d.inputs]


def backward_functions(d: Derivation, backend: str, saved: bool = True):
    """The generated backward (every written gradient), and, where the derivation also writes adjoints
    of intermediates (batchnorm's dxhat, dvar, dmu; the MLP's deltas), a backward that returns only the
    input gradients, as autograd and jax.vjp do: None otherwise."""
    full = codegen.compile_derivation(d, backend, saved=saved)._backward
    wanted = tuple(g.target for g in d.checked if g.of in d.inputs)
    if len(wanted) == len(d.checked):
        return full, None
    return full, codegen.backward_only(d, backend, wanted, saved=saved)


def forward_values(d: Derivation, backend: str, inputs: dict, saved: bool = True) -> dict:
    """The inputs and everything the generated forward in `backend` returns (what it saved for the
    backward too, with `saved`), run once, untimed."""
    return {**inputs, **codegen.compile_derivation(d, backend, saved=saved).forward(**inputs)}


# -- the functions timed, per backend --------------------------------------------------------------------


def plan_for(d: Derivation, values: dict, compiled: bool, log) -> Plan:
    """The generated backward passes of `d` in every backend beside their references."""
    plan = Plan()
    add_numpy(d, values, plan)
    record = catalogue.entry(d.name)
    for backend, add in (("torch", add_torch), ("jax", add_jax)):
        op = record.library(backend)
        if op is None:
            plan.skipped.append(
                Skipped(backend, f"the catalogue record of {d.name} has no {backend} library op")
            )
            continue
        try:
            add(d, op, values, plan, compiled, log)
        except ImportError as e:
            plan.skipped.append(Skipped(backend, str(e)))
    return plan


def add_numpy(d: Derivation, values: dict, plan: Plan) -> None:
    try:
        target = HandWritten(d).target()  # the numpy oracle's module, or its reason for skipping
    except Skip as e:
        plan.skipped.append(Skipped("numpy", str(e)))
        return
    everything = forward_values(d, "numpy", values)
    only = plan.add_generated(d, "numpy", everything, "numpy generated")
    expected = np.asarray(everything[d.output], dtype=np.float64)
    # the layer runs in the inputs' format (float32 figures time a float32 layer), its settings (stride,
    # padding, a pooling window) with them
    dtype = next((str(v.dtype) for v in values.values() if isinstance(v, np.ndarray) and v.dtype.kind == "f"),
                 "float64")  # fmt: skip
    plan.add("numpy hand", target.prepare({**values, **settings(d)}, expected, dtype).backward)
    plan.pairs.append(Pair("numpy", "", "numpy generated", "numpy hand", "hand-written numpy", only))


def add_torch(d: Derivation, op: catalogue.LibraryOp, values, plan: Plan, compiled: bool, log):
    import torch

    def tensor(x):
        return torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x

    tv = forward_values(d, "torch", {k: tensor(x) for k, x in values.items()})
    only = plan.add_generated(d, "torch", tv, "torch generated")
    # the library op under autograd, the graph built once
    namespace = catalogue.torch_namespace()
    leaves = {n: tensor(values[n]).clone().requires_grad_(True) for n in _wrt(d)}
    inputs = {k: tensor(x) for k, x in values.items()}
    out = op.fn(namespace, {**inputs, **leaves, **settings(d)})
    upstream = inputs.get(d.upstream)
    if upstream is None:
        upstream = torch.ones_like(out)
    wrt = list(leaves.values())
    plan.add("torch autograd", lambda: torch.autograd.grad(out, wrt, upstream, retain_graph=True))
    plan.pairs.append(Pair("torch", "eager", "torch generated", "torch autograd", "torch.autograd", only))
    if not compiled:
        return
    try:
        only = plan.add_generated(d, "torch", tv, "torch compiled", wrap=torch.compile)
        plan.pairs.append(
            Pair("torch", "compiled", "torch compiled", "torch autograd", "torch.autograd", only)
        )
    except Exception as e:  # a missing C++ compiler, an unsupported op: reported, never fatal
        plan.skipped.append(
            Skipped("torch.compile", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        )
        log(f"  torch.compile failed for {d.name}: {plan.skipped[-1]}")


def add_jax(d: Derivation, op: catalogue.LibraryOp, values, plan: Plan, compiled: bool, log):
    """jax.jit always compiles: `compiled` and `log` concern torch.compile only."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def array(x):
        return jnp.asarray(x) if isinstance(x, np.ndarray) else x

    def jitted(fn):
        under_jit = jax.jit(fn)
        return lambda **kw: jax.block_until_ready(under_jit(**kw))

    inputs = {k: array(x) for k, x in values.items()}
    only = plan.add_generated(d, "jax", forward_values(d, "jax", inputs), "jax generated", wrap=jitted)
    namespace = catalogue.jax_namespace()
    leaves = {n: inputs[n] for n in _wrt(d)}
    out, pullback = jax.vjp(lambda p: op.fn(namespace, {**inputs, **p, **settings(d)}), leaves)
    upstream = inputs.get(d.upstream)
    if upstream is None:
        upstream = jnp.ones_like(out)
    apply = jax.jit(lambda f, ct: f(ct))  # the pullback is a pytree: its residuals are arguments
    plan.add_compiled("jax vjp", lambda: jax.block_until_ready(apply(pullback, upstream)))
    plan.pairs.append(Pair("jax", "jit", "jax generated", "jax vjp", "jax.vjp", only))
    # That pullback and the generated backward both read what their forward saved (relu's mask,
    # softplus's sigmoid). For information, both from the inputs as well: the generated backward that
    # computes everything from the inputs and forward values, beside jax.vjp as one jitted function of
    # the inputs and the upstream gradient. Every input is an argument, so that XLA folds none.
    plain_label, plain_only = "jax generated", only
    if codegen.compile_derivation(d, "jax", saved=True).saved:  # else the same code: timed once
        plain = forward_values(d, "jax", inputs, saved=False)
        plain_label = "jax generated from inputs"
        plain_only = plan.add_generated(d, "jax", plain, plain_label, wrap=jitted, saved=False)
    rest = {k: v for k, v in inputs.items() if k not in leaves}
    whole = jax.jit(lambda p, r, ct: jax.vjp(lambda q: op.fn(namespace, {**r, **q, **settings(d)}), p)[1](ct))
    plan.add_compiled("jax vjp from inputs", lambda: jax.block_until_ready(whole(leaves, rest, upstream)))
    plan.pairs.append(
        Pair("jax", "from inputs", plain_label, "jax vjp from inputs", "jax.vjp", plain_only, goal=False)
    )


# -- one derivation timed --------------------------------------------------------------------------------


def time_derivation(
    d: Derivation, values: dict, sizes: dict[str, int], dtype: str, compiled: bool, schedule: Schedule, log
) -> tuple[list[dict], list[Skipped]]:
    """Time one derivation's generated backward passes and their references: one JSON entry per pair,
    and what was skipped."""
    plan = plan_for(d, values, compiled, log)
    for backend in BACKENDS:
        # Each backend's thread pool spins for a while after its work: alternating between
        # backends would time one pool against another's spinning threads on a 2-core machine.
        measure([t for label, t in plan.timings.items() if label.startswith(backend)], schedule)
        time.sleep(schedule.pause_s)
    entries = []
    for p in plan.pairs:
        g, r = plan.timings[p.generated], plan.timings[p.reference]
        entry = {
            "name": d.name,
            "what": "backward",
            "backend": p.backend,
            "generated_s": g.median,
            "reference": p.reference_name,
            "reference_s": r.median,
            "ratio": g.median / r.median,
            "dtype": dtype,
            "sizes": sizes,
            "samples": len(g.samples),
        }
        if p.variant:
            entry["variant"] = p.variant
        if g.compile_s is not None:
            entry["compile_s"] = g.compile_s
        floor = plan.timings.get(f"{p.backend} floor")
        if floor is not None:
            entry["floor_s"] = floor.median
            entry["floor_ratio"] = floor.median / r.median
        if p.inputs_only:
            only = plan.timings[p.inputs_only].median
            entry["inputs_only_s"] = only
            entry["inputs_only_ratio"] = only / r.median
        # The reference computes the input gradients alone: the goal compares the same outputs, where
        # the written backward also returns adjoints of intermediates (batchnorm's dxhat, N x J, besides
        # dvar and dmu) that no reference computes.
        entry["goal_ratio"] = entry.get("inputs_only_ratio", entry["ratio"])
        # the goals are stated for float64; float32 figures are for information
        if dtype != "float64" or not p.goal:
            entry["goal"] = False
        elif p.backend == "torch":
            entry["goal"] = None  # decided by _torch_goal once eager and compiled are both timed
        else:
            entry["goal"] = True
        entries.append(entry)
    _torch_goal(entries)
    return entries, plan.skipped


def _torch_goal(entries) -> None:
    """The generated PyTorch code is offered eager and compiled (issue 4: the library's normalisation
    backward is one fused kernel, so fusion is needed to match it): the goal ratio is the better of the
    two, both are printed."""
    torch = [e for e in entries if e["backend"] == "torch" and e["goal"] is None]
    best = min(torch, key=lambda e: e["goal_ratio"], default=None)
    for e in torch:
        e["goal"] = e is best
