"""A 2-D convolution as torch.autograd.Function whose dx is off by a constant (a stray + 1): wrong, and
of no named kind. The window mistakes (kernel not flipped, stride left out) are named by undoing them in
a written statement; code has none, and undoing "the stride left out" in the derivation's own statement
changes nothing at stride 1, so naming it would blame any wrong dx on the stride."""

# check: Conv2dDxOff --against conv2d
# expect: status wrong
# expect: forward pass
# expect: dx wrong unknown
# expect: dK verified
# expect: db verified

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight


class Conv2dDxOff(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, K, b):
        ctx.save_for_backward(x, K)
        return F.conv2d(x, K, b, stride=1, padding=1)

    @staticmethod
    def backward(ctx, dy):
        x, K = ctx.saved_tensors
        dx = conv2d_input(x.shape, K, dy, stride=1, padding=1)
        dK = conv2d_weight(x, K.shape, dy, stride=1, padding=1)
        return dx + 1.0, dK, dy.sum((0, 2, 3))
