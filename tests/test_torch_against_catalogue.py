"""The hand-written backward passes of the custom norm Functions against the catalogue's formulas.

derivations/batchnorm.deriv and derivations/layernorm.deriv hold the formulas the Functions implement,
and `python -m verify` proves those formulas right. Here the verifier evaluates the same formulas
(forward values and every written gradient, float64, eps from the file) on the inputs the Function gets,
so a Function that drifts from its verified formula, or uses an eps other than the file's, fails.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

import verify
from implementations.torch.custom_batchnorm import CustomBatchNormManualFunction
from implementations.torch.custom_layernorm import CustomLayerNormManualFunction

DERIVATIONS = Path(__file__).resolve().parents[1] / "derivations"
FUNCTIONS = {"batchnorm": CustomBatchNormManualFunction, "layernorm": CustomLayerNormManualFunction}


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize(("n_samples", "n_features", "seed"), [(6, 4, 0), (3, 7, 1), (2, 2, 2)])
def test_function_matches_catalogue_formulas(name, n_samples, n_features, seed):
    """y, dx, dgamma and dbeta of the Function (default eps) equal the catalogue's, including with a
    zero gamma entry and a large beta."""
    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 3.0, size=(n_samples, n_features))
    gamma = np.sqrt(10 * np.arange(n_features, dtype=np.float64))
    beta = 100 * np.arange(n_features, dtype=np.float64)
    dy = rng.normal(size=(n_samples, n_features))
    catalogue = verify.evaluate(
        verify.load(DERIVATIONS / f"{name}.deriv"), {"x": x, "gamma": gamma, "beta": beta, "dy": dy}
    )

    x_t, gamma_t, beta_t = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    y = FUNCTIONS[name].apply(x_t, gamma_t, beta_t)
    y.backward(torch.tensor(dy))
    for label, got in (("y", y), ("dx", x_t.grad), ("dgamma", gamma_t.grad), ("dbeta", beta_t.grad)):
        np.testing.assert_allclose(
            got.detach().numpy(), catalogue[label], rtol=1e-10, atol=1e-10, err_msg=f"{name}: {label}"
        )
