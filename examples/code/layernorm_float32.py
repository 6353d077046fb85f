"""Layer normalisation as a torch.autograd.Function, run in float32: correct, and judged against the
rounding error float32 can explain at each sample (not against float64's)."""

# check: LayerNorm --against layernorm --dtype float32
# expect: status verified
# expect: forward pass
# expect: dx verified
# expect: dgamma verified
# expect: dbeta verified

import torch


class LayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma, beta, eps=1e-5):
        mu = x.mean(dim=1, keepdim=True)
        var = ((x - mu) ** 2).mean(dim=1, keepdim=True)
        inv_std = torch.rsqrt(var + eps)
        xhat = (x - mu) * inv_std
        ctx.save_for_backward(xhat, gamma, inv_std)
        return gamma * xhat + beta

    @staticmethod
    def backward(ctx, dy):
        xhat, gamma, inv_std = ctx.saved_tensors
        dxhat = dy * gamma
        dx = (dxhat - dxhat.mean(1, keepdim=True) - xhat * (dxhat * xhat).mean(1, keepdim=True)) * inv_std
        return dx, (dy * xhat).sum(0), dy.sum(0), None
