"""Batch normalisation as a torch.autograd.Function whose dx treats the batch variance as a constant:
it keeps the paths through xhat and the mean, and misses x -> var -> xhat."""

# check: BatchNormNoVariancePath --against batchnorm
# expect: status wrong
# expect: forward pass
# expect: dx wrong missing-path
# expect: dgamma verified
# expect: dbeta verified

import torch
from batchnorm_function import BatchNorm  # its forward: the same file's neighbour


class BatchNormNoVariancePath(BatchNorm):
    @staticmethod
    def backward(ctx, dy):
        xhat, gamma, var = ctx.saved_tensors
        dxhat = dy * gamma
        dx = (dxhat - dxhat.mean(0)) / torch.sqrt(var + ctx.eps)
        return dx, (dy * xhat).sum(0), dy.sum(0), None
