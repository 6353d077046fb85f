"""A linear layer y = x W^T + b as a jax.custom_vjp function whose bwd rule returns db with the wrong
sign."""

# check: linear --against linear
# expect: status wrong
# expect: dx verified
# expect: dW verified
# expect: db wrong sign

import jax


@jax.custom_vjp
def linear(x, W, b):
    return x @ W.T + b


def linear_fwd(x, W, b):
    return linear(x, W, b), (x, W)


def linear_bwd(residuals, dy):
    x, W = residuals
    return dy @ W, dy.T @ x, -dy.sum(axis=0)


linear.defvjp(linear_fwd, linear_bwd)
