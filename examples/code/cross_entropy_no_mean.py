"""Cross-entropy on probabilities, the batch mean, as two functions whose backward forgets the 1/N of the
mean: dx = -t / x. With one sample it would be right; every draw has at least two."""

# check: forward,backward --against cross_entropy
# expect: status wrong
# expect: forward pass
# expect: dx wrong scale
# expect: dx wrong at every draw

import numpy as np


def forward(x, t):
    return -np.sum(t * np.log(x)) / x.shape[0]


def backward(x, t):
    return -t / x
