"""What the custom BatchNorm and LayerNorm layers share, written once for the axis `dim` they normalise.

Both standardise x (N x J) along one axis, with the biased variance and eps inside the square root, then
scale and shift per feature; BatchNorm takes the statistics over the batch (dim 0, per feature),
LayerNorm over the features (dim 1, per sample):

    mu     = mean of x along dim
    var    = mean of (x - mu)**2 along dim
    xhat   = (x - mu) / sqrt(var + eps)
    y[n,j] = gamma[j] * xhat[n,j] + beta[j]

There are no running statistics, so every call normalises with the statistics of its own input. Each
layer comes in the three forms of UvA Deep Learning Practical 1: a module autograd differentiates
(`AffineNormAutograd`), a `torch.autograd.Function` with a hand-written backward (`AffineNormFunction`)
and a module wrapping that Function (`AffineNormManualModule`). `custom_batchnorm` and
`custom_layernorm` subclass each with their axis.

The hand-written backward is the formulas of derivations/batchnorm.deriv and derivations/layernorm.deriv
(dbeta, dgamma, dxhat and the closed form of dx), which `python -m verify` verifies against SymPy,
finite differences, JAX and torch.autograd. With M values per statistic (N or J):

    dbeta[j]  = sum_n dy[n,j]
    dgamma[j] = sum_n dy[n,j] xhat[n,j]
    dxhat     = dy * gamma
    dx        = (M dxhat - sum(dxhat) - xhat sum(dxhat xhat)) / (M sqrt(var + eps)), sums along dim
"""

import torch
from torch import nn


class AffineNorm(nn.Module):
    """What every custom normalisation module holds: gamma (ones) and beta (zeros) per feature, eps, and
    the input shape check. Subclasses say how they normalise."""

    def __init__(self, n_neurons: int, eps: float = 1e-5):
        super().__init__()
        self.n_neurons = n_neurons
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(n_neurons))
        self.beta = nn.Parameter(torch.zeros(n_neurons))

    def check_input_shape(self, input: torch.Tensor) -> None:
        if input.dim() != 2 or input.shape[1] != self.n_neurons:
            raise ValueError(f"expected input of shape (batch, {self.n_neurons}), got {tuple(input.shape)}")


class AffineNormAutograd(AffineNorm):
    """The layer written with tensor operations only; autograd derives the backward pass. A subclass
    names its axis: `class CustomBatchNormAutograd(AffineNormAutograd, dim=0)`."""

    dim: int  # the axis the statistics are taken along

    def __init_subclass__(cls, dim: int | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if dim is not None:
            cls.dim = dim

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self.check_input_shape(input)
        mu = input.mean(dim=self.dim, keepdim=True)
        var = ((input - mu) ** 2).mean(dim=self.dim, keepdim=True)
        xhat = (input - mu) / torch.sqrt(var + self.eps)
        return self.gamma * xhat + self.beta


class AffineNormFunction(torch.autograd.Function):
    """The layer with a hand-written backward pass: `apply(input, gamma, beta, eps=1e-5)`. A subclass sets
    its axis `dim` as a class attribute (torch's Function metaclass takes no class keywords)."""

    dim: int  # the axis the statistics are taken along

    @classmethod
    def apply(cls, input: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5):
        # forward is a staticmethod and cannot see the subclass: its axis goes in as one more argument.
        return super().apply(input, gamma, beta, eps, cls.dim)

    @staticmethod
    def forward(ctx, input: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float, dim: int):
        mu = input.mean(dim=dim, keepdim=True)
        var = ((input - mu) ** 2).mean(dim=dim, keepdim=True)
        inv_std = 1.0 / torch.sqrt(var + eps)
        xhat = (input - mu) * inv_std
        ctx.dim = dim
        needs_input, needs_gamma = ctx.needs_input_grad[:2]
        # dbeta needs only dy; dgamma needs xhat; dx needs xhat, gamma and 1/sqrt(var + eps).
        if needs_input:
            ctx.save_for_backward(xhat, gamma, inv_std)
        elif needs_gamma:
            ctx.save_for_backward(xhat)
        return gamma * xhat + beta

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        needs_input, needs_gamma, needs_beta = ctx.needs_input_grad[:3]
        dx = dgamma = dbeta = None
        if needs_beta:
            dbeta = dy.sum(dim=0)
        if needs_gamma:
            xhat = ctx.saved_tensors[0]
            dgamma = (dy * xhat).sum(dim=0)
        if needs_input:
            xhat, gamma, inv_std = ctx.saved_tensors
            dim = ctx.dim
            M = dy.shape[dim]
            dxhat = dy * gamma
            dx = (
                M * dxhat
                - dxhat.sum(dim=dim, keepdim=True)
                - xhat * (dxhat * xhat).sum(dim=dim, keepdim=True)
            ) * (inv_std / M)
        return dx, dgamma, dbeta, None, None


class AffineNormManualModule(AffineNorm):
    """The layer as a module whose backward pass is its `function`'s hand-written one. A subclass names
    it: `class CustomBatchNormManualModule(AffineNormManualModule, function=CustomBatchNormManualFunction)`."""

    function: type[AffineNormFunction]

    def __init_subclass__(cls, function: type[AffineNormFunction] | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if function is not None:
            cls.function = function

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self.check_input_shape(input)
        return self.function.apply(input, self.gamma, self.beta, self.eps)
