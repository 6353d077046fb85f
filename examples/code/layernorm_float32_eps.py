"""Layer normalisation as a torch.autograd.Function run in float32, whose backward leaves eps out of
1 / sqrt(var + eps): a few parts in 1e5, which float32's rounding bound at these draws could explain.
The same code run in float64 at the same draws, judged by float64's rounding, shows it."""

# check: LayerNormNoEps --against layernorm --dtype float32
# expect: status wrong
# expect: forward pass
# expect: dx wrong
# expect: dgamma verified
# expect: dbeta verified
# expect: note: float64 run: the same code at the same draws, to float64's rounding: wrong there: dx

import torch
from layernorm_float32 import LayerNorm  # its forward: the same file's neighbour


class LayerNormNoEps(LayerNorm):
    @staticmethod
    def backward(ctx, dy):
        xhat, gamma, inv_std = ctx.saved_tensors
        inv_std = torch.rsqrt(inv_std**-2 - 1e-5)  # 1 / sqrt(var): eps taken back out
        dxhat = dy * gamma
        dx = (dxhat - dxhat.mean(1, keepdim=True) - xhat * (dxhat * xhat).mean(1, keepdim=True)) * inv_std
        return dx, (dy * xhat).sum(0), dy.sum(0), None
