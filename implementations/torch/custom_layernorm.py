"""Layer normalisation, in the three forms of UvA Deep Learning Practical 1 (2020).

The statistics of each sample are taken over its features (dim 1), with the biased variance (1/J) and
eps inside the square root; gamma and beta, of shape (J,), are per feature as in BatchNorm, and input
and output are (N, J) with J = n_neurons. `affine_norm` holds the formulas (derivations/layernorm.deriv)
and the three forms, written once for either axis.
"""

from implementations.torch.affine_norm import AffineNormAutograd, AffineNormFunction, AffineNormManualModule


class CustomLayerNormAutograd(AffineNormAutograd, dim=1):
    """LayerNorm written with tensor operations only; autograd derives the backward pass."""


class CustomLayerNormManualFunction(AffineNormFunction):
    """LayerNorm with a hand-written backward pass: `apply(input, gamma, beta, eps=1e-5)`.

    The backward formulas are those of derivations/layernorm.deriv (dbeta, dgamma, dxhat and the closed
    form of dx), which `python -m verify check derivations/layernorm.deriv` verifies against SymPy,
    finite differences, JAX and torch.autograd.
    """

    dim = 1


class CustomLayerNormManualModule(AffineNormManualModule, function=CustomLayerNormManualFunction):
    """LayerNorm as a module whose backward pass is CustomLayerNormManualFunction's hand-written one."""
