"""The jax oracle: `jax.vjp` of the generated JAX forward, under `jax.jit`, in float64 (scoped with
`jax.enable_x64`, so the caller's JAX keeps its own setting)."""

from __future__ import annotations

from .. import catalogue, codegen
from .framework import Framework, Run, pair_key

# The checks run each function once on a few dozen numbers, so XLA's compile time is all that counts:
# without LLVM's expensive passes it compiles about 3x faster, and one thread suffices. These flags are
# process-wide and only take effect before jax is first imported, so only processes of the tool's own
# (the command line, its worker processes) set them; `python -m verify bench` keeps XLA's defaults.
FAST_COMPILES = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)


def fast_compiles(environ) -> None:
    """Add FAST_COMPILES to XLA_FLAGS in `environ` (once): for a process the tool owns, before jax is
    imported."""
    flags = environ.get("XLA_FLAGS", "")
    if FAST_COMPILES not in flags:
        environ["XLA_FLAGS"] = (flags + " " + FAST_COMPILES).strip()


class Jax(Framework):
    name = module = "jax"

    def compute(self, values) -> Run:
        import jax
        import jax.numpy as jnp

        d = self.d
        with jax.enable_x64(True):
            values = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in values.items()}
            gen, shifted = self.programs()
            op = self.op.fn if self.op else None
            namespace = catalogue.jax_namespace() if op else None

            def d_shape(name, values):
                sources = (self.size_source[s.name] for s in d.shape(name))
                return tuple(values[src].shape[axis] for src, axis in sources)

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
                jacs = {}
                for of, wrt in self.pairs:  # jax.jacrev of `of` in the input, or in the intermediate's shift
                    if wrt in d.inputs:
                        at, where = values[wrt], {}
                    else:
                        at, where = shifts[wrt], {codegen.shift_name(wrt): None}

                    def value_of(v, of=of, wrt=wrt, where=where):
                        moved = {k: v for k in where} if where else {wrt: v}
                        named = {codegen.shift_name(k): s for k, s in shifts.items()}
                        return shifted(**{**values, **named, **moved})[of]

                    jacs[pair_key(of, wrt)] = jax.jacrev(value_of)(at)
                return (
                    y,
                    op(namespace, {**values, **self.settings}) if op else None,
                    written,
                    {**g_in, **g_shift},
                    jacs,
                )

            return Run(*jax.jit(everything)(values))
