"""Central finite differences, the reference the NumPy layers' tests compare hand-written gradients with."""

from collections.abc import Callable

import numpy as np


def numeric_grad(f: Callable[[], float], x: np.ndarray, step: float = 1e-6) -> np.ndarray:
    """d f() / d x by central differences, perturbing each entry of the float64 array x in place.

    f takes no arguments and must read x (or a view of it) on every call; x is restored afterwards.
    """
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + step
        plus = f()
        x[i] = saved - step
        minus = f()
        x[i] = saved
        grad[i] = (plus - minus) / (2 * step)
    return grad
