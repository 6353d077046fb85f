"""A sigmoid activation in the CMU HW1 style: forward(x) stores its output in `state`; derivative() is
dy/dx at that x. Correct."""

# check: Sigmoid --against sigmoid
# expect: status verified
# expect: dx verified

import numpy as np


class Sigmoid:
    def forward(self, x):
        self.state = 1 / (1 + np.exp(-x))
        return self.state

    def derivative(self):
        return self.state * (1 - self.state)
