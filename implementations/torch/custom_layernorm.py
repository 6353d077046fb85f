"""Layer normalisation, in the three forms of UvA Deep Learning Practical 1 (2020).

Statistics are taken per sample over the features, with the biased variance (1/J) and eps inside the
square root; gamma and beta are per feature:

    mu[n]     = sum_j x[n,j] / J
    var[n]    = sum_j (x[n,j] - mu[n])**2 / J
    xhat[n,j] = (x[n,j] - mu[n]) / sqrt(var[n] + eps)
    y[n,j]    = gamma[j] * xhat[n,j] + beta[j]

Shapes: input and output (N, J) with J = n_neurons; gamma and beta (J,).
"""

import torch

from implementations.torch.custom_batchnorm import AffineNorm


class CustomLayerNormAutograd(AffineNorm):
    """LayerNorm written with tensor operations only; autograd derives the backward pass."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self.check_input_shape(input)
        mu = input.mean(dim=1, keepdim=True)
        var = ((input - mu) ** 2).mean(dim=1, keepdim=True)
        xhat = (input - mu) / torch.sqrt(var + self.eps)
        return self.gamma * xhat + self.beta


class CustomLayerNormManualFunction(torch.autograd.Function):
    """LayerNorm with a hand-written backward pass.

    The backward formulas are those of derivations/layernorm.deriv (dbeta, dgamma, dxhat and the closed
    form of dx), which `python -m verify check derivations/layernorm.deriv` verifies against SymPy,
    finite differences, JAX and torch.autograd.
    """

    @staticmethod
    def forward(ctx, input: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5):
        mu = input.mean(dim=1, keepdim=True)
        var = ((input - mu) ** 2).mean(dim=1, keepdim=True)
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
            J = dy.shape[1]
            dxhat = dy * gamma
            dx = (
                J * dxhat - dxhat.sum(dim=1, keepdim=True) - xhat * (dxhat * xhat).sum(dim=1, keepdim=True)
            ) * (inv_std / J)
        return dx, dgamma, dbeta, None


class CustomLayerNormManualModule(AffineNorm):
    """LayerNorm as a module whose backward pass is CustomLayerNormManualFunction's hand-written one."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self.check_input_shape(input)
        return CustomLayerNormManualFunction.apply(input, self.gamma, self.beta, self.eps)
