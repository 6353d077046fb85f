"""Drop-in layers whose backward is the written formula: a `torch.autograd.Function` and a
`jax.custom_vjp` function built from a derivation's generated code.

    Layer = torch_function("derivations/batchnorm.deriv")    # checked first: every gradient verified
    y = Layer.apply(x, gamma, beta)                           # positional inputs, in `Layer.inputs` order

Inputs fixed in the file's [inputs] (such as eps) are not arguments. Inputs with no written gradient
get none (PyTorch: None; JAX: zeros). When the output is a scalar loss the written gradients are for an
upstream gradient of 1, so they are scaled by the upstream gradient that arrives. The forward keeps
for the backward what that reads of it alone (relu's mask, softplus's sigmoid), as autograd does:
`codegen.compile_derivation(..., saved=True)`.
"""

from __future__ import annotations

from .catalogue import load
from .check import check
from .codegen import compile_derivation
from .model import Derivation


class NotVerifiedError(ValueError):
    """The derivation has a gradient that is not verified: no layer is built from it."""


def _prepare(derivation, verify_first: bool):
    d = derivation if isinstance(derivation, Derivation) else load(derivation)
    if verify_first:
        report = check(d, oracles=("exact", "fd"))
        if report.exit_code != 0:
            raise NotVerifiedError(f"{d.name}: not every gradient is verified\n{report.table()}")
    args = [n for n in d.inputs if n not in d.fixed_values]
    grads = {g.of: g.target for g in d.checked if g.of in d.inputs}
    return d, args, grads


def _named(d, args: list[str], tensors) -> dict:
    """The inputs by name, or a TypeError that names the layer's inputs when their count is wrong."""
    if len(tensors) != len(args):
        raise TypeError(f"{d.name} takes {len(args)} inputs ({', '.join(args)}), got {len(tensors)}")
    return dict(zip(args, tensors, strict=True))


def torch_function(derivation, verify_first: bool = True):
    """A torch.autograd.Function subclass: forward is the generated forward, backward the written
    gradients (only those whose `ctx.needs_input_grad` is set are computed)."""
    import torch

    d, args, grads = _prepare(derivation, verify_first)
    gen = compile_derivation(d, "torch", saved=True)
    scalar_output = d.upstream not in d.tensors

    class Layer(torch.autograd.Function):
        inputs = tuple(args)

        @staticmethod
        def forward(ctx, *tensors):
            values = _named(d, args, tensors)
            fwd = gen.forward(**values)
            ctx.save_for_backward(*tensors, *fwd.values())
            ctx.names = [*args, *fwd]
            return fwd[d.output]

        @staticmethod
        def backward(ctx, upstream):
            values = dict(zip(ctx.names, ctx.saved_tensors, strict=True))
            wanted = {n for n, need in zip(args, ctx.needs_input_grad, strict=True) if need}
            if not wanted & set(grads):
                return tuple(None for _ in args)
            if not scalar_output:
                values[d.upstream] = upstream
            written = gen.backward(**values)
            scale = upstream if scalar_output else 1
            return tuple(written[grads[n]] * scale if n in wanted and n in grads else None for n in args)

    Layer.__name__ = Layer.__qualname__ = f"{d.name.title().replace('_', '')}Function"
    return Layer


def jax_function(derivation, verify_first: bool = True):
    """A jax.custom_vjp function of the inputs (in `.inputs` order) whose backward is the written
    gradients; inputs with no written gradient get a zero cotangent."""
    import jax
    import jax.numpy as jnp

    d, args, grads = _prepare(derivation, verify_first)
    gen = compile_derivation(d, "jax", saved=True)
    scalar_output = d.upstream not in d.tensors

    @jax.custom_vjp
    def layer(*tensors):
        return gen.forward(**_named(d, args, tensors))[d.output]

    def layer_fwd(*tensors):
        values = _named(d, args, tensors)
        fwd = gen.forward(**values)
        return fwd[d.output], (values, fwd)

    def layer_bwd(residual, upstream):
        values, fwd = residual
        extra = {} if scalar_output else {d.upstream: upstream}
        written = gen.backward(**values, **fwd, **extra)
        scale = upstream if scalar_output else 1
        return tuple(written[grads[n]] * scale if n in grads else jnp.zeros_like(values[n]) for n in args)

    layer.defvjp(layer_fwd, layer_bwd)
    layer.inputs = tuple(args)
    return layer
