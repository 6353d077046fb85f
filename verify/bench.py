"""python -m verify bench [--json FILE] [--quick]: the generated backward passes against references.

For every catalogue derivation, at batch 512 and 1024 features (1000 classes for softmax and the
losses; the MLP is 512 x 1024 -> 1024 -> 1024 -> 1000; the linear layers 1024 -> 1024), in float64,
the median time of the generated `backward` in each backend beside a reference computing the same
gradients:

- numpy: the generated NumPy backward / the hand-written backward of the matching layer in
  `implementations/numpy` (the layer the `numpy` oracle uses; its forward runs once, untimed);
- torch: the generated PyTorch backward, eager and under `torch.compile` / `torch.autograd.grad` of the
  library op (`verify.library.torch_ops`) with the upstream gradient, the graph built once and kept
  (`retain_graph`), so that only the backward is timed;
- jax: the generated JAX backward under `jax.jit` / the function `jax.vjp` returns for the library op
  (`verify.library.jax_ops`), under `jax.jit`; both waited for with `block_until_ready`.

The generated backward computes every written gradient, intermediates' adjoints included (batchnorm's
dxhat, dvar and dmu; the MLP's per-layer deltas); a reference computes what its layer or autograd
computes. Compile time (torch.compile, XLA) is excluded and reported apart; warm-up calls come first.
Each figure is a median over timed batches of calls, all the functions of one derivation timed in
alternating rounds so that background load on a shared machine shifts them alike. Every backend gets
one thread (GRADVERIFY_BENCH_THREADS=n for n), and glibc is told to keep freed memory
(`keep_freed_memory`; GRADVERIFY_BENCH_MALLOC=default to leave it). GRADVERIFY_BENCH_DTYPES=float64,float32
adds float32 figures (entries with "dtype": "float32", never counted against the goals, which are
stated for float64). Finally the cold wall time of `python -m verify all` in a subprocess.

`--json FILE` writes {"entries": [{"name", "what": "backward", "backend", "generated_s", "reference",
"reference_s", "ratio", ...}], "verify_all_s"} (DESIGN.md section 4), ratio = generated_s / reference_s.
Extra keys: "variant" (torch: "eager" or "compiled"), "dtype", "goal" (whether this ratio is the one
the speed goal is stated for), "compile_s", and a top-level "machine".
"""

from __future__ import annotations

import inspect
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import catalogue as cat
from . import codegen
from .catalogue import load
from .catalogue import paths as catalogue
from .model import Derivation

ROOT = Path(__file__).resolve().parent.parent
GOAL = 1.2  # issue 4: each generated backward at most 1.2x its reference

FULL = {"N": 512, "I": 1024, "J": 1024, "K": 1000, "C": 1000}
QUICK = {"N": 8, "I": 16, "J": 12, "K": 10, "C": 10}
SIZES = {  # per derivation, where the default size names mean something else
    "mlp": (
        {"N": 512, "I": 1024, "J": 1024, "K": 1024, "C": 1000},
        {"N": 8, "I": 16, "J": 12, "K": 14, "C": 10},
    ),
}


@dataclass
class Timing:
    """One function to time: `fn()` runs it to completion."""

    label: str
    fn: Callable[[], object]
    compile_s: float | None = None
    samples: list[float] = field(default_factory=list)
    per_batch: int = 1

    @property
    def median(self) -> float:
        return float(np.median(self.samples))


@dataclass
class Pair:
    backend: str
    variant: str
    generated: str  # Timing labels
    reference: str
    reference_name: str
    inputs_only: str | None = None  # the generated backward computing the input gradients alone


# -- inputs ---------------------------------------------------------------------------------------


def sizes_for(d: Derivation, quick: bool) -> dict[str, int]:
    full, small = SIZES.get(d.name, (FULL, QUICK))
    chosen = small if quick else full
    return {name: chosen.get(name, chosen["J"]) for name in d.sizes}


def draw_inputs(d: Derivation, sizes: dict[str, int], seed: int = 0) -> dict[str, object]:
    """Float64 inputs from each input's domain and the upstream gradient (absent for a scalar loss)."""
    rng = np.random.default_rng(seed)
    values: dict[str, object] = {}
    for name in d.inputs:
        if name in d.fixed_values:
            values[name] = float(d.fixed_values[name])
            continue
        shape = tuple(sizes[s.name] for s in d.shape(name))
        dom = d.domains.get(name)
        kind = dom.kind if dom else ("normal" if shape else "uniform")
        if kind == "normal":
            v = rng.standard_normal(shape)
            if name.startswith("W") and len(shape) == 2:
                # scaled as a LeCun initialisation, so that the MLP's logits stay finite: an exp that
                # overflows would time inf and NaN arithmetic
                v /= np.sqrt(shape[1])
        elif kind == "positive":
            v = rng.uniform(0.5, 2.0, shape)
        elif kind == "uniform":
            low, high = (float(dom.low), float(dom.high)) if dom and dom.low is not None else (0.5, 2.0)
            v = rng.uniform(low, high, shape)
        elif kind == "simplex":
            w = rng.uniform(0.5, 2.0, shape)
            v = w / w.sum(axis=dom.axis, keepdims=True)
        else:  # onehot
            v = np.zeros(shape)
            hot = rng.integers(shape[dom.axis], size=shape[: dom.axis] + shape[dom.axis + 1 :])
            np.put_along_axis(v, np.expand_dims(hot, dom.axis), 1.0, axis=dom.axis)
        values[name] = float(v) if not shape else v
    out_shape = tuple(sizes[s.name] for s in d.shape(d.output))
    if out_shape:
        values[d.upstream] = rng.standard_normal(out_shape)
    return values


def _kwargs(fn, values: dict) -> dict:
    names = inspect.signature(fn).parameters
    return {k: v for k, v in values.items() if k in names}


# -- the hand-written NumPy backward passes ------------------------------------------------------------


def hand_backward(name: str, v: dict) -> Callable[[], object]:
    """The backward pass of the layer the `numpy` oracle uses (implementations/numpy/catalogue.py),
    after one untimed forward. Returns a function that runs only the backward."""
    from implementations.numpy import hw1
    from implementations.numpy import modules as M
    from implementations.numpy.mlp import MLP

    if name in ("linear", "linear_column"):
        layer = M.LinearModule(v["W"].shape[1], v["W"].shape[0])
        layer.params["weight"], layer.params["bias"] = v["W"], v["b"]
        if name == "linear":
            layer.forward(v["x"])
            return lambda: layer.backward(v["dy"])
        layer.forward(v["x"][None, :])
        return lambda: layer.backward(v["dy"][None, :])
    if name == "linear_cmu":
        from implementations.numpy.catalogue import _Upstream

        w = v["W"]
        net = hw1.MLP(w.shape[0], w.shape[1], [], [hw1.Identity()], lambda a, b: w, lambda n: v["b"],
                      _Upstream(v["dy"]), lr=0.0)  # fmt: skip
        net.forward(v["x"])
        return lambda: net.backward(v["dy"])
    if name == "identity":
        act = hw1.Identity()
        act(v["x"])
        return lambda: v["dy"] * act.derivative()
    activations = {
        "relu": M.ReLUModule,
        "elu": M.ELUModule,
        "sigmoid": M.SigmoidModule,
        "tanh": M.TanhModule,
        "softmax": M.SoftMaxModule,
        "leaky_relu": lambda: M.LeakyReLUModule(float(v["a"])),
    }
    if name in activations:
        module = activations[name]()
        module.forward(v["x"])
        return lambda: module.backward(v["dy"])
    if name == "cross_entropy":
        loss = M.CrossEntropyModule()
        return lambda: loss.backward(v["x"], v["t"])
    if name == "softmax_cross_entropy":
        criterion = hw1.SoftmaxCrossEntropy()
        criterion(v["x"], v["t"])
        return lambda: v["dl"][:, None] * criterion.derivative()
    if name == "softmax_cross_entropy_mean":
        softmax, loss = M.SoftMaxModule(), M.CrossEntropyModule()
        p = softmax.forward(v["x"])
        return lambda: softmax.backward(loss.backward(p, v["t"]))
    if name in ("batchnorm", "layernorm"):
        cls = M.BatchNormModule if name == "batchnorm" else M.LayerNormModule
        layer = cls(v["x"].shape[1], eps=float(v["eps"]))
        layer.params["gamma"], layer.params["beta"] = v["gamma"], v["beta"]
        layer.forward(v["x"])
        return lambda: layer.backward(v["dy"])
    if name == "mlp":
        w1, w2, w3 = v["W1"], v["W2"], v["W3"]
        net = MLP(w1.shape[1], [w1.shape[0], w2.shape[0]], w3.shape[0], activation="relu")
        linears = [m for m in net.modules if isinstance(m, M.LinearModule)]
        for layer, k in zip(linears, "123", strict=True):
            layer.params["weight"], layer.params["bias"] = v[f"W{k}"], v[f"b{k}"]
        loss = M.CrossEntropyModule()
        p = net.forward(v["x"])
        return lambda: net.backward(loss.backward(p, v["t"]))
    raise KeyError(f"no hand-written NumPy backward for {name}")


# -- one derivation --------------------------------------------------------------------------------


def _wrt(d: Derivation) -> list[str]:
    """The inputs with a written gradient: what autograd and jax.vjp differentiate with respect to."""
    return [g.of for g in d.checked if g.of in d.inputs]


def backward_functions(d: Derivation, backend: str):
    """The generated backward (every written gradient), and, where the derivation also writes adjoints
    of intermediates (batchnorm's dxhat, dvar, dmu; the MLP's deltas), a backward that returns only the
    input gradients, as autograd and jax.vjp do: None otherwise."""
    full = codegen.compile_derivation(d, backend)._backward
    wanted = tuple(g.target for g in d.checked if g.of in d.inputs)
    if len(wanted) == len(d.checked):
        return full, None
    return full, codegen.backward_only(d, backend, wanted)


def timings_for(
    d: Derivation, values: dict, compiled: bool, log
) -> tuple[dict[str, Timing], list[Pair], list[str]]:
    timings: dict[str, Timing] = {}
    pairs: list[Pair] = []
    skipped: list[str] = []

    def add(label, fn, compile_s=None):
        timings[label] = Timing(label, fn, compile_s)

    gen_np = codegen.compile_derivation(d, "numpy")
    forward = gen_np.forward(**values)
    everything = {**values, **forward}

    # numpy
    bwd, only = backward_functions(d, "numpy")
    kw = _kwargs(bwd, everything)
    add("numpy generated", lambda: bwd(**kw))
    if only:
        kw_only = _kwargs(only, everything)
        add("numpy inputs only", lambda: only(**kw_only))
    add("numpy hand", hand_backward(d.name, values))
    pairs.append(
        Pair("numpy", "", "numpy generated", "numpy hand", "hand-written numpy", only and "numpy inputs only")
    )

    # torch
    try:
        add_torch(d, values, everything, compiled, add, pairs, skipped, log)
    except ImportError as e:
        skipped.append(f"torch: {e}")
    # jax
    try:
        add_jax(d, values, everything, add, pairs, log)
    except ImportError as e:
        skipped.append(f"jax: {e}")
    return timings, pairs, skipped


def add_torch(d, values, everything, compiled, add, pairs, skipped, log):
    import torch

    def tensor(x):
        return torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x

    tv = {k: tensor(x) for k, x in everything.items()}
    bwd, only = backward_functions(d, "torch")
    kw = _kwargs(bwd, tv)
    add("torch generated", lambda: bwd(**kw))
    if only:
        kw_only = _kwargs(only, tv)
        add("torch inputs only", lambda: only(**kw_only))
    # the library op under autograd, the graph built once
    record = cat.entry(d.name).torch
    ns = cat.torch_namespace()

    def op(v):
        return record.fn(ns, v)

    leaves = {n: tensor(values[n]).clone().requires_grad_(True) for n in _wrt(d)}
    inputs = {k: tensor(x) for k, x in values.items()}
    out = op({**inputs, **leaves})
    upstream = inputs.get(d.upstream)
    if upstream is None:
        upstream = torch.ones_like(out)
    wrt = list(leaves.values())
    add("torch autograd", lambda: torch.autograd.grad(out, wrt, upstream, retain_graph=True))
    pairs.append(
        Pair(
            "torch",
            "eager",
            "torch generated",
            "torch autograd",
            "torch.autograd",
            only and "torch inputs only",
        )
    )
    if not compiled:
        return
    try:
        fn = torch.compile(bwd)
        start = time.perf_counter()
        fn(**kw)
        add("torch compiled", lambda: fn(**kw), time.perf_counter() - start)
        if only:
            fn_only = torch.compile(only)
            start = time.perf_counter()
            fn_only(**kw_only)
            add("torch compiled inputs only", lambda: fn_only(**kw_only), time.perf_counter() - start)
        pairs.append(
            Pair(
                "torch", "compiled", "torch compiled", "torch autograd", "torch.autograd",
                only and "torch compiled inputs only",
            )
        )  # fmt: skip
    except Exception as e:  # a missing C++ compiler, an unsupported op: reported, never fatal
        skipped.append(f"torch.compile: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        log(f"  torch.compile failed for {d.name}: {skipped[-1]}")


def add_jax(d, values, everything, add, pairs, log):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def array(x):
        return jnp.asarray(x) if isinstance(x, np.ndarray) else x

    jv = {k: array(x) for k, x in everything.items()}
    full, only = backward_functions(d, "jax")
    kw = _kwargs(full, jv)
    bwd = jax.jit(full)
    start = time.perf_counter()
    jax.block_until_ready(bwd(**kw))
    add("jax generated", lambda: jax.block_until_ready(bwd(**kw)), time.perf_counter() - start)
    if only:
        kw_only = _kwargs(only, jv)
        bwd_only = jax.jit(only)
        start = time.perf_counter()
        jax.block_until_ready(bwd_only(**kw_only))
        add(
            "jax inputs only", lambda: jax.block_until_ready(bwd_only(**kw_only)), time.perf_counter() - start
        )

    record = cat.entry(d.name).jax
    ns = cat.jax_namespace()

    def op(v):
        return record.fn(ns, v)

    inputs = {k: array(x) for k, x in values.items()}
    leaves = {n: inputs[n] for n in _wrt(d)}
    out, pullback = jax.vjp(lambda p: op({**inputs, **p}), leaves)
    upstream = inputs.get(d.upstream)
    if upstream is None:
        upstream = jnp.ones_like(out)
    apply = jax.jit(lambda f, ct: f(ct))  # the pullback is a pytree: its residuals are arguments
    start = time.perf_counter()
    jax.block_until_ready(apply(pullback, upstream))
    add("jax vjp", lambda: jax.block_until_ready(apply(pullback, upstream)), time.perf_counter() - start)
    pairs.append(Pair("jax", "jit", "jax generated", "jax vjp", "jax.vjp", only and "jax inputs only"))


# -- timing ----------------------------------------------------------------------------------------


def measure(timings: list[Timing], budget_s: float, rounds: int, warmup: int) -> None:
    """Median seconds per call of each function. Calls are grouped in batches of at least ~2 ms (a
    batch's mean is one sample), and the functions take turns, one round of batches each at a time."""
    for t in timings:
        for _ in range(warmup):
            t.fn()
        start = time.perf_counter()
        t.fn()
        once = max(time.perf_counter() - start, 1e-7)
        t.per_batch = max(1, int(0.002 / once))
        t.batches_per_round = max(1, int(budget_s / rounds / (once * t.per_batch)))
        t.batches_per_round = min(t.batches_per_round, 50)
    for _ in range(rounds):
        for t in timings:
            for _ in range(t.batches_per_round):
                start = time.perf_counter()
                for _ in range(t.per_batch):
                    t.fn()
                t.samples.append((time.perf_counter() - start) / t.per_batch)


def limit_threads(n: int) -> dict:
    """Give every backend the same `n` threads: BLAS (threadpoolctl), PyTorch intra- and inter-op, and
    XLA's CPU client (only before jax is first imported). On a shared 2-core machine one thread each is
    what gives stable medians: a parallel region waits for its slowest thread, and any thread may lose
    its core to another process for a whole scheduler time slice."""
    done: dict = {"threads": n}
    try:
        from threadpoolctl import threadpool_limits

        done["_blas_limit"] = threadpool_limits(n)
    except ImportError:
        done["blas_threads"] = "threadpoolctl not installed: BLAS threads left at their default"
    if "jax" not in sys.modules:
        flags = (
            f"--xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'} intra_op_parallelism_threads={n}"
        )
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
    else:
        done["xla_threads"] = "jax was already imported: XLA threads left at their default"
    try:
        import torch

        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:
            pass  # already set, or parallel work already ran in this process
    except ImportError:
        pass
    return done


def keep_freed_memory() -> str:
    """Have glibc keep freed memory for reuse instead of returning it to the kernel.

    By default glibc gives 4 MiB arrays back to the kernel when a few such temporaries are freed
    together (they then sit above its trim threshold), and the next call page-faults every page in
    again: measured here, that made one NumPy statement with two live temporaries 5-10x slower than its
    operations timed one by one, by an amount that depends on the allocator's history rather than on
    the code. With freed memory kept, as a long-running training process or a caching allocator keeps
    it, the medians measure arithmetic and memory traffic. GRADVERIFY_BENCH_MALLOC=default leaves the
    allocator as it is."""
    if os.environ.get("GRADVERIFY_BENCH_MALLOC", "") == "default":
        return "default (GRADVERIFY_BENCH_MALLOC=default)"
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        if libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 1 << 30):
            return "glibc mallopt: mmap threshold 32 MiB, trim threshold 1 GiB (freed memory kept)"
        return "default (mallopt refused)"
    except (OSError, AttributeError):
        return "default (not glibc)"


def verify_all_seconds(*oracles: str) -> float:
    """Wall time of `python -m verify all` (with these oracles, or all), cold, as a subprocess."""
    start = time.perf_counter()
    flags = [f for o in oracles for f in ("--oracle", o)]
    subprocess.run(
        [sys.executable, "-m", "verify", "all", *flags], cwd=ROOT, capture_output=True, check=False
    )
    return time.perf_counter() - start


def exact_seconds_per_derivation() -> dict[str, float]:
    """The exact oracle's time per catalogue derivation (sampling included), in this process."""
    from .check import check

    out = {}
    for path in catalogue():
        start = time.perf_counter()
        check(str(path), oracles=("exact",))
        out[path.stem] = time.perf_counter() - start
    return out


def machine() -> dict:
    info: dict = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "numpy": np.__version__,
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: p.get(k) for k in ("internal_api", "architecture", "num_threads", "version")}
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    info["OPENBLAS_CORETYPE"] = os.environ.get("OPENBLAS_CORETYPE")
    try:
        import torch

        info["torch"] = f"{torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        pass
    try:
        import jax

        info["jax"] = jax.__version__
    except ImportError:
        pass
    return info


# -- report ----------------------------------------------------------------------------------------


def _ms(s) -> str:
    return "-" if s is None else f"{s * 1e3:.3f}"


def _ratio(r) -> str:
    return "-" if r is None else f"{r:.2f}"


def table(entries: list[dict], sizes: dict[str, dict]) -> str:
    by = {(e["name"], e["backend"], e.get("variant", "")): e for e in entries}
    head = [
        "derivation", "sizes",
        "np gen", "np hand", "np x",
        "pt eager", "pt comp", "autograd", "eager x", "comp x",
        "jax jit", "jax.vjp", "jax x",
    ]  # fmt: skip
    rows = []
    for name in dict.fromkeys(e["name"] for e in entries):
        n, te, tc, j = (
            by.get((name, b, v))
            for b, v in (("numpy", ""), ("torch", "eager"), ("torch", "compiled"), ("jax", "jit"))
        )

        def mark(e):
            if e is None:
                return "-"
            return _ratio(e["ratio"]) + ("*" if e["goal"] and e["ratio"] > GOAL else "")

        size = " ".join(f"{k}={v}" for k, v in sizes[name].items())
        rows.append([
            name, size,
            _ms(n and n["generated_s"]), _ms(n and n["reference_s"]), mark(n),
            _ms(te and te["generated_s"]), _ms(tc and tc["generated_s"]), _ms(te and te["reference_s"]),
            mark(te), mark(tc),
            _ms(j and j["generated_s"]), _ms(j and j["reference_s"]), mark(j),
        ])  # fmt: skip
    text = _grid(head, rows)
    only = [name for name in dict.fromkeys(e["name"] for e in entries) if any(
        "inputs_only_s" in e for e in entries if e["name"] == name)]  # fmt: skip
    if only:
        head = [
            "input gradients only",
            "np gen",
            "np x",
            "pt eager",
            "eager x",
            "pt comp",
            "comp x",
            "jax jit",
            "jax x",
        ]
        rows = []
        for name in only:
            row = [name]
            for b, v in (("numpy", ""), ("torch", "eager"), ("torch", "compiled"), ("jax", "jit")):
                e = by.get((name, b, v)) or {}
                row += [_ms(e.get("inputs_only_s")), _ratio(e.get("inputs_only_ratio"))]
            rows.append(row)
        text += "\n\n" + _grid(head, rows, left=1)
    return text


def _grid(head: list[str], rows: list[list[str]], left: int = 2) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells):
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def time_derivation(d, values, dtype, size, compiled, schedule, quick, skipped, log) -> list[dict]:
    """Time one derivation's generated backward passes and their references; one entry per pair."""
    budget, rounds, warmup = schedule
    entries = []
    timings, pairs, skipped[d.name] = timings_for(d, values, compiled, log)
    for backend in ("numpy", "torch", "jax"):
        # Each backend's thread pool spins for a while after its work: alternating between
        # backends would time one pool against another's spinning threads on a 2-core machine.
        measure([t for label, t in timings.items() if label.startswith(backend)], budget, rounds, warmup)
        time.sleep(0.05 if quick else 0.5)
    for p in pairs:
        g, r = timings[p.generated], timings[p.reference]
        entry = {
            "name": d.name,
            "what": "backward",
            "backend": p.backend,
            "generated_s": g.median,
            "reference": p.reference_name,
            "reference_s": r.median,
            "ratio": g.median / r.median,
            "dtype": dtype,
            "sizes": size,
            "samples": len(g.samples),
        }
        if p.variant:
            entry["variant"] = p.variant
        if g.compile_s is not None:
            entry["compile_s"] = g.compile_s
        if p.inputs_only:
            only = timings[p.inputs_only].median
            entry["inputs_only_s"] = only
            entry["inputs_only_ratio"] = only / r.median
        # the goals are stated for float64; float32 figures are for information
        if dtype != "float64":
            entry["goal"] = False
        elif p.backend == "torch":
            entry["goal"] = None  # decided by _torch_goal once eager and compiled are both timed
        else:
            entry["goal"] = True
        entries.append(entry)
    _torch_goal(entries)
    return entries


def _torch_goal(entries) -> None:
    """The generated PyTorch code is offered eager and compiled (issue 4: the library's normalisation
    backward is one fused kernel, so fusion is needed to match it): the goal ratio is the better of the
    two, both are printed."""
    torch = [e for e in entries if e["backend"] == "torch" and e["goal"] is None]
    best = min(torch, key=lambda e: e["ratio"], default=None)
    for e in torch:
        e["goal"] = e is best


def run(quick: bool = False, log=print, names: list[str] | None = None, compiled: bool | None = None) -> dict:
    """Time every catalogue entry (or those in `names`); `compiled` defaults to not `quick`."""
    compiled = not quick if compiled is None else compiled
    threads = limit_threads(int(os.environ.get("GRADVERIFY_BENCH_THREADS", "1")))
    load_at_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    allocator = keep_freed_memory()
    if quick:
        from .oracles.jax_vjp import fast_compiles

        fast_compiles(os.environ)  # quick timings are a smoke test: XLA's compile time is what counts there
    budget, rounds, warmup = (0.02, 3, 1) if quick else (1.5, 10, 3)
    dtypes = [t.strip() for t in os.environ.get("GRADVERIFY_BENCH_DTYPES", "float64").split(",") if t.strip()]
    if not dtypes or set(dtypes) - {"float64", "float32"}:
        raise ValueError(f"GRADVERIFY_BENCH_DTYPES: float64 and/or float32, not {dtypes}")
    entries: list[dict] = []
    sizes: dict[str, dict] = {}
    skipped: dict[str, list[str]] = {}
    for path in catalogue():
        d = load(path)
        if names and d.name not in names:
            continue
        sizes[d.name] = sizes_for(d, quick)
        drawn = draw_inputs(d, sizes[d.name])
        for dtype in dtypes:
            values = {k: v.astype(dtype) if isinstance(v, np.ndarray) else v for k, v in drawn.items()}
            log(f"{d.name} {dtype}: {' '.join(f'{k}={v}' for k, v in sizes[d.name].items())}", flush=True)
            schedule = (budget, rounds, warmup)
            entries += time_derivation(
                d, values, dtype, sizes[d.name], compiled, schedule, quick, skipped, log
            )
    result = {
        "entries": entries,
        "verify_all_s": None if quick or names else verify_all_seconds(),
        "verify_all_exact_fd_s": None if quick or names else verify_all_seconds("exact", "fd"),
        "exact_s": None if quick or names else exact_seconds_per_derivation(),
        "quick": quick,
        "machine": {**machine(), "load_average_at_start": load_at_start, "allocator": allocator},
        "skipped": {k: v for k, v in skipped.items() if v},
        "threads": {k: v for k, v in threads.items() if not k.startswith("_")},
    }
    if quick:
        result["verify_all_skipped"] = "--quick does not run python -m verify all"
        result["torch_compile_skipped"] = "--quick does not compile"
    result["table"] = "\n\n".join(
        (f"{dtype}:\n" if len(dtypes) > 1 else "") + table([e for e in entries if e["dtype"] == dtype], sizes)
        for dtype in dtypes
    )
    return result


def summary(result: dict) -> str:
    lines = [result["table"], ""]
    if result.get("quick"):
        lines.append("--quick: small sizes, few repeats, no torch.compile; a smoke run, not a measurement.")
    dtypes = ", ".join(dict.fromkeys(e["dtype"] for e in result["entries"]))
    lines.append(f"ratios: generated / reference, medians from this run; {dtypes}; times in ms.")
    lines.append(
        "np: hand-written NumPy backward; pt: torch.autograd of the library op (eager and torch.compile'd "
        "generated); jax: jax.vjp of the library op, both under jit."
    )
    lines.append(
        f"* misses the goal (at most {GOAL}x, float64); torch goal: the better of eager and compiled."
    )
    lines.append(
        "input gradients only: a generated backward returning only the gradients the reference computes, "
        "without the written adjoints of intermediates; ratio against the same reference."
    )
    goal = [e for e in result["entries"] if e["goal"]]
    for backend in dict.fromkeys(e["backend"] for e in goal):
        mine = [e for e in goal if e["backend"] == backend]
        missed = [f"{e['name']} {e['ratio']:.2f}" for e in mine if e["ratio"] > GOAL]
        lines.append(
            f"goal {backend}: met {len(mine) - len(missed)}/{len(mine)}"
            + (f"; missed: {', '.join(missed)}" if missed else "")
        )
    m = result["machine"]
    blas = m.get("blas")
    blas = (
        ", ".join(f"{b['internal_api']} {b['version']} {b['architecture']}" for b in blas)
        if isinstance(blas, list)
        else blas
    )
    lines.append(
        f"threads per backend: {result['threads']['threads']} (GRADVERIFY_BENCH_THREADS); BLAS: {blas}"
    )
    lines.append(f"allocator: {m['allocator']}")
    va = result["verify_all_s"]
    lines.append(
        f"python -m verify all (cold subprocess): {va:.1f} s; with --oracle exact --oracle fd: "
        f"{result['verify_all_exact_fd_s']:.1f} s"
        if va is not None
        else "python -m verify all: not run (--quick)"
    )
    if result.get("exact_s"):
        slowest = max(result["exact_s"], key=result["exact_s"].get)
        lines.append(
            f"exact oracle per derivation: at most {result['exact_s'][slowest]:.2f} s ({slowest}), "
            f"{sum(result['exact_s'].values()):.1f} s for the catalogue"
        )
    lines.append(
        "load average (1, 5, 15 min) at the start: "
        + " ".join(f"{x:.2f}" for x in result["machine"]["load_average_at_start"] or [])
        + "; at the end: "
        + " ".join(f"{x:.2f}" for x in result["machine"]["load_average"] or [])
    )
    for name, why in result["skipped"].items():
        lines.append(f"{name}: skipped {'; '.join(why)}")
    return "\n".join(lines)


def main(args) -> int:
    result = run(
        quick=bool(getattr(args, "quick", False)), log=lambda *a, **k: print(*a, file=sys.stderr, **k)
    )
    target = getattr(args, "json", None)
    # with --json - the JSON alone goes to standard output, so that it parses; the table to stderr
    print(summary(result), file=sys.stderr if target == "-" else sys.stdout)
    if target:
        text = json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2)
        if target == "-":
            print(text)
        else:
            Path(target).write_text(text + "\n", encoding="utf-8")
    return 0
