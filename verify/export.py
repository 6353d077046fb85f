"""Drop-in layers whose backward is the written formula: a `torch.autograd.Function` and a
`jax.custom_vjp` function built from a derivation's generated code.

    Layer = torch_function("derivations/batchnorm.deriv")    # checked first: every gradient verified
    y = Layer.apply(x, gamma, beta)                           # positional inputs, in `Layer.inputs` order

Inputs fixed in the file's [inputs] (such as eps) are not arguments. An input with no written gradient
(leaky_relu's slope a, a loss's targets t) is a constant: differentiating the layer with respect to it
raises `NoWrittenGradientError` naming it (PyTorch: when its backward runs with the input's
`needs_input_grad` set; JAX: when grad or vjp traces the layer with the input perturbed), rather than
handing back a zero that would look like a derivative. When the output is a scalar loss the written
gradients are for an upstream gradient of 1, so they are scaled by the upstream gradient that arrives.
The forward keeps for the backward what that reads of it alone (relu's mask, softplus's sigmoid), as
autograd does: `codegen.compile_derivation(..., saved=True)`.
"""

from __future__ import annotations

from .catalogue import load
from .check import check
from .codegen import compile_derivation
from .model import Derivation


class NotVerifiedError(ValueError):
    """The derivation has a gradient that is not verified: no layer is built from it."""


class NoWrittenGradientError(ValueError):
    """A layer is differentiated with respect to an input whose gradient the derivation does not write."""


def _refuse_unwritten(d, args: list[str], grads: dict, differentiated) -> None:
    """Raise NoWrittenGradientError when any input differentiated (a flag per input, in `args` order) has
    no written gradient."""
    missing = [n for n, wanted in zip(args, differentiated, strict=True) if wanted and n not in grads]
    if missing:
        names = ", ".join(missing)
        raise NoWrittenGradientError(
            f"{d.name} writes no gradient for {names}, which is differentiated here: write "
            f"{', '.join('d' + n for n in missing)} in the derivation, or pass {names} as a constant"
        )


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
            _refuse_unwritten(d, args, grads, ctx.needs_input_grad)
            values = dict(zip(ctx.names, ctx.saved_tensors, strict=True))
            wanted = {n for n, need in zip(args, ctx.needs_input_grad, strict=True) if need}
            if not wanted:
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
    gradients. An input with no written gradient gets a zero cotangent only as a constant: tracing the
    layer with it perturbed raises NoWrittenGradientError."""
    import jax
    import jax.numpy as jnp

    d, args, grads = _prepare(derivation, verify_first)
    gen = compile_derivation(d, "jax", saved=True)
    scalar_output = d.upstream not in d.tensors

    @jax.custom_vjp
    def layer(*tensors):
        return gen.forward(**_named(d, args, tensors))[d.output]

    def layer_fwd(*primals):
        # symbolic_zeros: each input comes as a CustomVJPPrimal that says whether it is differentiated. (The
        # one output's cotangent is never a symbolic zero: JAX drops the backward of an unused output.)
        _refuse_unwritten(d, args, grads, [p.perturbed for p in primals])
        values = _named(d, args, [p.value for p in primals])
        fwd = gen.forward(**values)
        return fwd[d.output], (values, fwd)

    def layer_bwd(residual, upstream):
        values, fwd = residual
        extra = {} if scalar_output else {d.upstream: upstream}
        written = gen.backward(**values, **fwd, **extra)
        scale = upstream if scalar_output else 1
        return tuple(written[grads[n]] * scale if n in grads else jnp.zeros_like(values[n]) for n in args)

    layer.defvjp(layer_fwd, layer_bwd, symbolic_zeros=True)
    layer.inputs = tuple(args)
    return layer
