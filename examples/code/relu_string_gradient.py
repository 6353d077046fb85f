"""A ReLU whose backward returns a string (a placeholder never replaced) and one returning a complex
array: neither is a gradient. Each is a finding about the code (kind shape), not an internal error of the
tool, and a complex gradient is never compared by its real part alone."""

# check: forward,backward --against relu
# expect: status wrong
# expect: forward pass
# expect: dx wrong shape
# expect: note: returns the gradient of x as str

# check: forward,backward_complex --against relu
# expect: status wrong
# expect: forward pass
# expect: dx wrong shape
# expect: note: of complex128, not real numbers

import numpy as np


def forward(x):
    return np.maximum(x, 0.0)


def backward(dy, x):
    return "TODO"


def backward_complex(dy, x):
    return dy * (x > 0) + 0j
