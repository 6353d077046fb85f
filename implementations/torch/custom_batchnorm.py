"""Batch normalisation in training mode, in the three forms of UvA Deep Learning Practical 1.

Statistics are taken over the batch axis, per feature, with the biased variance (1/N) and eps inside the
square root; there are no running statistics, so every call normalises with the current batch:

    mu[j]     = sum_n x[n,j] / N
    var[j]    = sum_n (x[n,j] - mu[j])**2 / N
    xhat[n,j] = (x[n,j] - mu[j]) / sqrt(var[j] + eps)
    y[n,j]    = gamma[j] * xhat[n,j] + beta[j]

Shapes: input and output (N, J) with J = n_neurons; gamma and beta (J,).
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


class CustomBatchNormAutograd(AffineNorm):
    """BatchNorm written with tensor operations only; autograd derives the backward pass."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self.check_input_shape(input)
        mu = input.mean(dim=0)
        var = ((input - mu) ** 2).mean(dim=0)
        xhat = (input - mu) / torch.sqrt(var + self.eps)
        return self.gamma * xhat + self.beta


class CustomBatchNormManualFunction(torch.autograd.Function):
    """BatchNorm with a hand-written backward pass.

    The backward formulas are those of derivations/batchnorm.deriv (dbeta, dgamma, dxhat and the compact
    closed form of dx), which `python -m verify check derivations/batchnorm.deriv` verifies against SymPy,
    finite differences, JAX and torch.autograd.
    """

    @staticmethod
    def forward(ctx, input: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5):
        mu = input.mean(dim=0)
        var = ((input - mu) ** 2).mean(dim=0)
        inv_std = 1.0 / torch.sqrt(var + eps)
        xhat = (input - mu) * inv_std
        # needs_input_grad has 3 entries when eps is left at its default, 4 when it is passed.
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
            N = dy.shape[0]
            dxhat = dy * gamma
            dx = (N * dxhat - dxhat.sum(dim=0) - xhat * (dxhat * xhat).sum(dim=0)) * (inv_std / N)
        return dx, dgamma, dbeta, None


class CustomBatchNormManualModule(AffineNorm):
    """BatchNorm as a module whose backward pass is CustomBatchNormManualFunction's hand-written one."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self.check_input_shape(input)
        return CustomBatchNormManualFunction.apply(input, self.gamma, self.beta, self.eps)
