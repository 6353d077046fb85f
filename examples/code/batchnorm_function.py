"""Batch normalisation in training mode as a torch.autograd.Function with a hand-written backward pass.

Correct: every gradient it returns is the true one."""

# check: BatchNorm --against batchnorm
# expect: status verified
# expect: forward pass
# expect: dx verified
# expect: dgamma verified
# expect: dbeta verified
# expect: dvar skip

import torch


class BatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma, beta, eps=1e-5):
        mu = x.mean(dim=0)
        var = x.var(dim=0, unbiased=False)
        xhat = (x - mu) / torch.sqrt(var + eps)
        ctx.save_for_backward(xhat, gamma, var)
        ctx.eps = eps
        return gamma * xhat + beta

    @staticmethod
    def backward(ctx, dy):
        xhat, gamma, var = ctx.saved_tensors
        n = dy.shape[0]
        dxhat = dy * gamma
        dx = (n * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0)) / (n * torch.sqrt(var + ctx.eps))
        return dx, (dy * xhat).sum(0), dy.sum(0), None
