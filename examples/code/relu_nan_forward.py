"""A ReLU whose forward pass puts a NaN in its first entry (a 0 * inf slipped in), with a correct
backward. The exact values are moderate numbers, so nothing overflowed: the forward fails as not finite,
rather than being inconclusive."""

# check: forward,backward --against relu
# expect: status wrong
# expect: forward fail
# expect: dx verified
# expect: note: is nan, where the true value is

import numpy as np


def forward(x):
    y = np.maximum(x, 0.0)
    y.flat[0] = np.nan
    return y


def backward(dy, x):
    return dy * (x > 0)
