"""Batch normalisation as a torch.autograd.Function whose backward returns dbeta where dgamma belongs and
dgamma where dbeta belongs (apply takes x, gamma, beta). Autograd itself cannot tell: both are vectors
of the same length."""

# check: BatchNormWrongOrder --against batchnorm
# expect: status wrong
# expect: dx verified
# expect: dgamma wrong order
# expect: dbeta wrong order

import torch
from batchnorm_function import BatchNorm  # its forward: the same file's neighbour


class BatchNormWrongOrder(BatchNorm):
    @staticmethod
    def backward(ctx, dy):
        xhat, gamma, var = ctx.saved_tensors
        n = dy.shape[0]
        dxhat = dy * gamma
        dx = (n * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0)) / (n * torch.sqrt(var + ctx.eps))
        dgamma, dbeta = (dy * xhat).sum(0), dy.sum(0)
        return dx, dbeta, dgamma, None
