"""Leaky ReLU in the UvA module interface: the slope is a constructor argument (`neg_slope`, the
derivation's `a`), forward(x) keeps what backward(dout) needs. Correct."""

# check: LeakyReLU --against leaky_relu
# expect: status verified
# expect: dx verified

import numpy as np


class LeakyReLU:
    def __init__(self, neg_slope):
        self.neg_slope = neg_slope
        self.params, self.grads = {}, {}

    def forward(self, x):
        self.positive = x > 0
        return np.where(self.positive, x, self.neg_slope * x)

    def backward(self, dout):
        return np.where(self.positive, dout, self.neg_slope * dout)
