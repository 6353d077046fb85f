"""The oracles. Each one computes, for every checked gradient on every sample, the written formula's
value and its own reference value; one comparison routine and one tolerance table judge them all.

- exact: SymPy's derivative of the forward, propagated in 50-digit arithmetic (no generated code).
- fd:    central finite differences of the generated NumPy forward, float64.
- numpy: the hand-written backward of the matching module in implementations/numpy (catalogue only).
- jax:   jax.vjp of the generated JAX forward; catalogue forwards also against the jax library op.
- torch: torch.autograd of the generated PyTorch forward; catalogue forwards also against torch.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import mpmath
import numpy as np

from . import codegen
from .evaluate import DIGITS, adjoints, local_derivatives
from .lang import CATALOGUE, Derivation
from .sampling import Sample

ORACLES = ("exact", "fd", "numpy", "jax", "torch")


@dataclass(frozen=True)
class Tolerance:
    """|written - reference| <= atol * max(1, max|reference|) + rtol * |reference|, elementwise."""

    rtol: float
    atol: float


TOLERANCES = {
    "exact": Tolerance(1e-30, 1e-30),
    "fd": Tolerance(1e-6, 1e-7),
    "numpy": Tolerance(1e-9, 1e-11),
    "jax": Tolerance(1e-9, 1e-11),
    "torch": Tolerance(1e-9, 1e-11),
}


@dataclass
class Result:
    """One oracle's verdict on one gradient (or on the forward), worst over all samples.

    max_rel_err is normwise: max |written - reference| / max |reference|."""

    status: str  # pass | fail | skip
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    worst_index: list[int] | None = None
    written: float | None = None
    reference: float | None = None
    sizes: dict[str, int] | None = None
    reason: str = ""

    def to_json(self) -> dict:
        out = {
            "status": self.status,
            "max_abs_err": self.max_abs_err,
            "max_rel_err": self.max_rel_err,
            "worst_index": self.worst_index,
        }
        if self.written is not None:
            out["written"] = self.written
            out["reference"] = self.reference
        if self.sizes is not None:
            out["sizes"] = self.sizes
        if self.reason:
            out["reason"] = self.reason
        return out


class Skip(Exception):
    """An oracle that cannot run here: the message is the reason."""


@dataclass
class Comparison:
    """Accumulates the worst disagreement over samples for one gradient and one oracle."""

    tol: Tolerance
    result: Result = field(default_factory=lambda: Result("pass", 0.0, 0.0))
    arrays: tuple | None = None  # (written, reference, sample) of the first failing sample

    def add(self, written, reference, sample: Sample) -> None:
        w, r = _as_array(written), _as_array(reference)
        if w.shape != r.shape:
            self.result = Result(
                "fail", reason=f"shape {w.shape} but the reference has {r.shape}", sizes=sample.sizes
            )
            return
        scalar = w.shape == ()
        w, r = w.reshape(-1) if scalar else w, r.reshape(-1) if scalar else r
        with mpmath.workdps(DIGITS):
            diff = np.abs(w - r)
            mag = np.abs(r)
            scale = max(1.0, float(mag.max())) if mag.size else 1.0
            bound = self.tol.atol * scale + self.tol.rtol * mag
            bad = ~_finite(w) | (diff > bound)
        worst = np.unravel_index(int(np.argmax(diff.astype(float))), diff.shape) if diff.size else ()
        max_abs = float(diff.max()) if diff.size else 0.0
        # normwise: the largest error over the largest reference value, so near-zero entries don't blow up
        max_rel = max_abs / max(float(mag.max()) if mag.size else 0.0, 1e-300)
        failed = bool(bad.any()) or not np.isfinite(max_abs)
        current = self.result
        if current.status == "fail" and not failed:
            return
        if failed and current.status != "fail" or max_abs >= (current.max_abs_err or 0.0):
            self.result = Result(
                "fail" if failed else "pass",
                max_abs,
                max_rel,
                [] if scalar else [int(i) for i in worst],
                float(w[worst]) if diff.size else None,
                float(r[worst]) if diff.size else None,
                dict(sample.sizes),
            )
            if failed and self.arrays is None:
                self.arrays = (w, r, sample)


def _as_array(v):
    return v if isinstance(v, np.ndarray) and v.dtype == object else np.asarray(_to_numpy(v), dtype=object)


def _to_numpy(v):
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return np.asarray(v, dtype=np.float64) if not (isinstance(v, np.ndarray) and v.dtype == object) else v


def _finite(a) -> np.ndarray:
    return (
        np.vectorize(lambda x: bool(mpmath.isfinite(x)), otypes=[bool])(a)
        if a.size
        else np.ones(a.shape, bool)
    )


# -----------------------------------------------------------------------------------------------------


class Oracle:
    """One reference. `gradients` yields (gradient name, written value, reference value) for a sample;
    `forward` yields (label, generated output, library output) where the oracle has a library op."""

    name = ""

    def __init__(self, d: Derivation):
        self.d = d

    def unavailable(self) -> str | None:
        return None

    @classmethod
    def available_here(cls) -> bool:
        """Whether the oracle's framework is installed (without importing it)."""
        module = getattr(cls, "module", "")
        return not module or importlib.util.find_spec(module) is not None

    def forward(self, sample: Sample):
        return []

    def gradients(self, sample: Sample):
        raise NotImplementedError


def catalogue_name(d: Derivation) -> str | None:
    if d.file is None:
        return None
    path = Path(d.file).resolve()
    return path.stem if path.parent == CATALOGUE and path.suffix == ".deriv" else None


class Exact(Oracle):
    name = "exact"

    def __init__(self, d):
        super().__init__(d)
        self.derivatives = local_derivatives(d)

    def gradients(self, sample):
        upstream = sample.exact.get(self.d.upstream, mpmath.mpf(1))
        adj = adjoints(self.d, sample.forward, sample.sizes, upstream, self.derivatives)
        for g in self.d.checked:
            yield g.target, sample.forward[g.target], adj[g.of]

    def adjoints_with(self, sample, upstream):
        """The written and true gradients for another upstream gradient: for diagnosis."""
        from .evaluate import run_all

        values = run_all(self.d, {**sample.exact, self.d.upstream: upstream}, sample.sizes)
        return values, adjoints(self.d, values, sample.sizes, upstream, self.derivatives)


def _loss(d: Derivation, out, upstream):
    return float(np.sum(upstream * out)) if upstream is not None else float(out)


class FiniteDifferences(Oracle):
    name = "fd"
    step = 2.0**-17

    def gradients(self, sample):
        d = self.d
        gen = codegen.compile_derivation(d, "numpy")
        values = {
            k: np.array(v, dtype=np.float64) if isinstance(v, np.ndarray) else v
            for k, v in sample.values.items()
        }
        fwd = gen.forward(**values)
        written = gen.backward(**values, **fwd)
        upstream = values.get(d.upstream)
        for g in d.checked:
            v = g.of
            if v in d.inputs:
                f = codegen.compile_derivation(d, "numpy").forward
                base = dict(values)
            else:
                f = codegen.forward_given(d, "numpy", (v,))
                base = {**values, v: fwd[v]}
            yield g.target, written[g.target], self._central(f, base, v, upstream)

    def _central(self, f, base, v, upstream):
        d = self.d
        x0 = np.array(base[v], dtype=np.float64)
        grad = np.zeros(x0.shape)
        for e in np.ndindex(*x0.shape):
            h = self.step * max(1.0, abs(float(x0[e])))
            plus, minus = x0.copy(), x0.copy()
            plus[e] += h
            minus[e] -= h
            lp = _loss(d, f(**{**base, v: plus if x0.shape else float(plus)})[d.output], upstream)
            lm = _loss(d, f(**{**base, v: minus if x0.shape else float(minus)})[d.output], upstream)
            grad[e] = (lp - lm) / (2 * h)
        return grad


@dataclass
class _Run:
    """Everything a framework oracle computes for one sample, in one pass."""

    output: object  # the generated forward's output
    library: object  # the library op's output, or None
    written: dict  # every written gradient, by gradient name
    refs: dict  # the framework's adjoint of every input and intermediate checked, by its name


class _Framework(Oracle):
    """jax and torch: differentiate the generated forward with the framework's autodiff.

    The adjoints of inputs and of intermediates all come from one vector-Jacobian product of a forward
    with a zero shift added to each intermediate checked (see lower.forward_program)."""

    module = ""

    def __init__(self, d):
        super().__init__(d)
        self.runs: dict[int, _Run] = {}
        name = catalogue_name(d)
        ops = self.library() if self.unavailable() is None else {}
        self.op = ops.get(name) if name else None
        order = [st.target for st in d.forward]
        self.inputs = [g.of for g in d.checked if g.of in d.inputs]
        self.intermediates = tuple(sorted({g.of for g in d.checked if g.of not in d.inputs}, key=order.index))
        # where each size can be read off an input, to shape the zero shifts before the forward runs
        self.size_source = {s.name: (n, k) for n in reversed(d.inputs) for k, s in enumerate(d.shape(n))}

    def unavailable(self):
        if importlib.util.find_spec(self.module) is None:
            return f"{self.module} is not installed (pip install 'gradverify[{self.module}]')"
        return None

    def run(self, sample) -> _Run:
        if id(sample) not in self.runs:
            self.runs[id(sample)] = self.compute(self.tensors(sample.values))
        return self.runs[id(sample)]

    def forward(self, sample):
        if self.op is None:
            return []
        r = self.run(sample)
        return [(self.op[0], r.output, r.library)]

    def gradients(self, sample):
        r = self.run(sample)
        for g in self.d.checked:
            yield g.target, r.written[g.target], r.refs[g.of]

    def programs(self):
        gen = codegen.compile_derivation(self.d, self.name)
        shifted = codegen.forward_given(self.d, self.name, shifted=self.intermediates)
        return gen, shifted


def _fast_xla_compiles():
    """The checks run each function once on a few dozen numbers, so XLA's compile time is all that
    counts: without LLVM's expensive passes it compiles about 3x faster. Only effective before jax is
    first imported; `python -m verify bench` never comes here, so timings keep XLA's defaults."""
    if "jax" not in sys.modules:
        # one thread: the arrays are tiny and the other oracles run on the other core
        flags = (
            "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
            " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        )
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()


class Jax(_Framework):
    name = module = "jax"

    def library(self):
        _fast_xla_compiles()
        from .library import jax_ops

        return jax_ops()

    def tensors(self, values):
        _fast_xla_compiles()
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        return {k: jnp.asarray(v, dtype=jnp.float64) for k, v in values.items()}

    def compute(self, values):
        import jax
        import jax.numpy as jnp

        d = self.d
        gen, shifted = self.programs()
        op = self.op[1] if self.op else None

        def everything(values):
            # At zero shifts the shifted forward is the forward: it gives every forward value too.
            shifts = {v: jnp.zeros(d_shape(v, values)) for v in self.intermediates}

            def output(wrt, shift):
                named = {codegen.shift_name(k): v for k, v in shift.items()}
                fwd = shifted(**{**values, **wrt, **named})
                return fwd[d.output], fwd

            y, pullback, fwd = jax.vjp(output, {v: values[v] for v in self.inputs}, shifts, has_aux=True)
            written = gen.backward(**values, **fwd)
            g_in, g_shift = pullback(values.get(d.upstream, jnp.ones_like(y)))
            return y, op(values) if op else None, written, {**g_in, **g_shift}

        def d_shape(name, values):
            return tuple(
                values[src].shape[axis] for src, axis in (self.size_source[s.name] for s in d.shape(name))
            )

        return _Run(*jax.jit(everything)(values))


class Torch(_Framework):
    name = module = "torch"

    def library(self):
        from .library import torch_ops

        return torch_ops()

    def tensors(self, values):
        import torch

        return {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}

    def __init__(self, d):
        super().__init__(d)
        if self.unavailable() is None:
            import torch

            # tiny arrays gain nothing from threads, and the jax worker has the other core
            torch.set_num_threads(1)

    def compute(self, values):
        import torch

        d = self.d
        gen, shifted = self.programs()
        fwd = gen.forward(**values)
        written = gen.backward(**values, **fwd)
        leaves = {v: values[v].detach().clone().requires_grad_(True) for v in self.inputs}
        shifts = {v: torch.zeros_like(fwd[v], requires_grad=True) for v in self.intermediates}
        named = {codegen.shift_name(k): v for k, v in shifts.items()}
        out = shifted(**{**values, **leaves, **named})[d.output]
        wrt = list(leaves.values()) + list(shifts.values())
        grads = torch.autograd.grad(
            out, wrt, grad_outputs=values.get(d.upstream, torch.ones_like(out)), allow_unused=True
        )
        refs = {
            name: (g if g is not None else torch.zeros_like(t))
            for name, t, g in zip([*leaves, *shifts], wrt, grads, strict=True)
        }
        library = self.op[1](values) if self.op else None
        return _Run(fwd[d.output], library, written, refs)


class HandWritten(Oracle):
    """The hand-written NumPy backward of the matching module (implementations/numpy/catalogue.py)."""

    name = "numpy"

    def entry(self):
        name = catalogue_name(self.d)
        if name is None:
            raise Skip("not a catalogue derivation: no hand-written module to compare with")
        try:
            from implementations.numpy.catalogue import MODULES, NoModule
        except ImportError as e:
            raise Skip(f"implementations.numpy is not importable: {e}") from None
        entry = MODULES.get(name)
        if entry is None:
            raise Skip(f"{name} has no entry in implementations/numpy/catalogue.py")
        if isinstance(entry, NoModule):
            raise Skip(entry.reason)
        return entry

    def unavailable(self):
        try:
            self.entry()
        except Skip as e:
            return str(e)
        return None

    def run(self, sample):
        entry = self.entry()
        values = {
            k: np.array(v, dtype=np.float64) if isinstance(v, np.ndarray) else v
            for k, v in sample.values.items()
        }
        return entry, values, entry.run(values)

    def forward(self, sample):
        entry, values, (out, _) = self.run(sample)
        gen = codegen.compile_derivation(self.d, "numpy")
        return [(entry.module, gen.forward(**values)[self.d.output], out)]

    def gradients(self, sample):
        entry, values, (_, grads) = self.run(sample)
        gen = codegen.compile_derivation(self.d, "numpy")
        written = gen.backward(**values, **gen.forward(**values))
        for g in self.d.checked:
            if g.target in grads:
                yield g.target, written[g.target], grads[g.target]


ORACLE_CLASSES = {"exact": Exact, "fd": FiniteDifferences, "numpy": HandWritten, "jax": Jax, "torch": Torch}
