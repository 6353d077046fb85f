"""A ReLU as a pair of functions whose backward calls sys.exit(0), a debugging leftover. The exit is a
finding about the code, of kind raised: it must never end the check with an exit status that reads as a
verdict (exit 0 would say "verified")."""

# check: forward,backward --against relu
# expect: status wrong
# expect: forward pass
# expect: dx wrong raised
# expect: note: called sys.exit(0)

import sys

import numpy as np


def forward(x):
    return np.maximum(x, 0.0)


def backward(dy, x):
    print("reached backward")
    sys.exit(0)
