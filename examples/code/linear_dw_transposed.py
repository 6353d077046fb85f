"""A linear layer in the UvA module interface (params/grads, weight out x in) whose dW comes out
transposed: x^T dout is in x out, the weight is out x in."""

# check: Linear --against linear
# expect: status wrong
# expect: dx verified
# expect: db verified
# expect: dW wrong transpose

import numpy as np


class Linear:
    def __init__(self, in_features, out_features):
        self.params = {"weight": np.zeros((out_features, in_features)), "bias": np.zeros(out_features)}
        self.grads = {}

    def forward(self, x):
        self.x = x
        return x @ self.params["weight"].T + self.params["bias"]

    def backward(self, dout):
        self.grads["weight"] = self.x.T @ dout
        self.grads["bias"] = dout.sum(axis=0)
        return dout @ self.params["weight"]
