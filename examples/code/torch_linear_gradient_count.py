"""A linear layer as torch.autograd.Function, in three versions of its backward:

- LinearTwo returns two gradients for forward's three inputs: torch.autograd raises "returned an
  incorrect number of gradients", so the check finds it (kind raised), as training would;
- LinearUnsummedBias returns the bias gradient as dy, N x J: autograd sums a gradient of a shape the
  input broadcasts to, so training gets the right db, and so does the check (with a note);
- LinearExtraNone returns a fourth value, None, which autograd allows."""

# check: LinearTwo --against linear
# expect: status wrong
# expect: forward pass
# expect: dx wrong raised
# expect: dW wrong raised
# expect: db wrong raised
# expect: note: torch.autograd raises 'returned an incorrect number of gradients (expected 3, got 2)'

# check: LinearUnsummedBias --against linear
# expect: status verified
# expect: forward pass
# expect: dx verified
# expect: dW verified
# expect: db verified
# expect: note: autograd sums it to the input's shape

# check: LinearExtraNone --against linear
# expect: status verified
# expect: forward pass
# expect: dx verified
# expect: dW verified
# expect: db verified

import torch


class LinearTwo(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, W, b):
        ctx.save_for_backward(x, W)
        return x @ W.T + b

    @staticmethod
    def backward(ctx, dy):
        x, W = ctx.saved_tensors
        return dy @ W, dy.T @ x


class LinearUnsummedBias(LinearTwo):
    @staticmethod
    def backward(ctx, dy):
        x, W = ctx.saved_tensors
        return dy @ W, dy.T @ x, dy


class LinearExtraNone(LinearTwo):
    @staticmethod
    def backward(ctx, dy):
        x, W = ctx.saved_tensors
        return dy @ W, dy.T @ x, dy.sum(0), None
