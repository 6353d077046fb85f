"""Softmax cross-entropy (mean over the batch) as a pair of functions whose backward returns a zero
gradient for the one-hot labels t, as code often does for an input nobody differentiates. The
derivation states no dt: the labels' gradient is not compared (a note says so), and dx is checked."""

# check: forward,backward --against softmax_cross_entropy_mean
# expect: status verified
# expect: forward pass
# expect: dx verified
# expect: note: t is one-hot (labels) and softmax_cross_entropy_mean states no dt

import numpy as np


def forward(x, t):
    z = x - x.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return -np.sum(t * np.log(p)) / x.shape[0], p


def backward(dL, cache, x, t):
    return dL * (cache - t) / x.shape[0], np.zeros_like(t)
