"""Batch normalisation in training mode, in the three forms of UvA Deep Learning Practical 1.

Statistics are taken over the batch axis (dim 0), per feature, with the biased variance (1/N) and eps
inside the square root; there are no running statistics, so every call normalises with the current
batch. Input and output are (N, J) with J = n_neurons, gamma and beta (J,). The formulas
(derivations/batchnorm.deriv) and the three forms, written once for either axis, are in `affine_norm`.
"""

from implementations.torch.affine_norm import AffineNormAutograd, AffineNormFunction, AffineNormManualModule


class CustomBatchNormAutograd(AffineNormAutograd, dim=0):
    """BatchNorm written with tensor operations only; autograd derives the backward pass."""


class CustomBatchNormManualFunction(AffineNormFunction):
    """BatchNorm with a hand-written backward pass: `apply(input, gamma, beta, eps=1e-5)`.

    The backward formulas are those of derivations/batchnorm.deriv (dbeta, dgamma, dxhat and the compact
    closed form of dx), which `python -m verify check derivations/batchnorm.deriv` verifies against SymPy,
    finite differences, JAX and torch.autograd.
    """

    dim = 0


class CustomBatchNormManualModule(AffineNormManualModule, function=CustomBatchNormManualFunction):
    """BatchNorm as a module whose backward pass is CustomBatchNormManualFunction's hand-written one."""
