"""The rounding-error bounds (verify.rounding) are bounds: the float64 values the generated code and the
frameworks compute lie within them of the exact values, at every sample of every catalogue entry; and
they are tight enough to mean something. Generated from the catalogue."""

import mpmath
import numpy as np
import pytest

from verify import codegen, rounding, sampling
from verify.catalogue import load
from verify.catalogue import paths as catalogue
from verify.comparison import TOLERANCES
from verify.oracles.torch_autograd import Torch

CATALOGUE = catalogue()


def draws(path):
    d = load(path)
    return d, [s for seed in (0, 1) for s in sampling.samples(d, seed)]


def within(computed, exact, bound) -> bool:
    c, x, b = (np.ravel(np.asarray(a, dtype=object)) for a in (computed, exact, bound))
    return all(abs(mpmath.mpf(float(ci)) - xi) <= bi for ci, xi, bi in zip(c, x, b, strict=True))


@pytest.mark.parametrize("path", CATALOGUE, ids=[p.stem for p in CATALOGUE])
def test_generated_numpy_values_lie_within_their_bounds(path):
    """Every forward value and written gradient the generated NumPy code computes in float64 is within
    its bound (with the numpy oracle's safety factor) of the exact value; and the bound is not vacuous:
    below 1e-9 of the value's size on these well-conditioned draws."""
    d, samples = draws(path)
    gen = codegen.compile_derivation(d, "numpy")
    scale = TOLERANCES["numpy"].scale
    for sample in samples:
        bounds = rounding.of(d, sample)
        values = {k: np.asarray(v, dtype=np.float64) for k, v in sample.values.items()}
        fwd = gen.forward(**values)
        computed = {**fwd, **gen.backward(**values, **fwd)}
        for name, value in computed.items():
            exact = sample.forward[name]
            assert within(value, exact, scale(bounds.values[name])), (name, sample.sizes)
            size = max(abs(x) for x in np.ravel(exact))
            assert max(np.ravel(bounds.values[name])) <= 1e-9 * max(size, 1e-300) or size == 0, name


@pytest.mark.parametrize("path", CATALOGUE, ids=[p.stem for p in CATALOGUE])
def test_autodiff_adjoints_lie_within_their_bounds(path):
    """torch.autograd's adjoints of the generated forward are within the reverse-pass bound of the exact
    adjoints, for every input and intermediate a gradient is written for."""
    pytest.importorskip("torch")
    d, samples = draws(path)
    oracle = Torch(d)
    scale = TOLERANCES["torch"].scale
    for sample in samples:
        bounds = rounding.of(d, sample)
        refs = oracle.compute(sample.values).refs
        for g in d.checked:
            assert within(refs[g.of].detach().numpy(), bounds.true[g.of], scale(bounds.adjoints[g.of])), g.of


def test_cancellation_grows_the_bound():
    """x - mu for inputs near 1000 that differ in their last few bits: float64 keeps few digits of the
    difference, and the bound says so (relative bound far above the unit roundoff), where a draw spread
    around 0 keeps its bound within a few hundred units."""
    text = "[forward]\nmu[j] = sum(x[n,j], n) / N\ny[n,j] = x[n,j] - mu[j]\n[gradients]\ndx[n,j] = dy[n,j]\n"
    spread = load(text)
    near = load(text + "[inputs]\nx: uniform(1000, 1001)\n")
    relative = {}
    for label, d in (("spread", spread), ("near", near)):
        sample = sampling.samples(d, 0)[0]
        bounds = rounding.of(d, sample)
        y, e = np.ravel(sample.forward["y"]), np.ravel(bounds.values["y"])
        relative[label] = max(float(ei / abs(yi)) for yi, ei in zip(y, e, strict=True) if yi != 0)
    assert relative["spread"] < 1e3 * float(rounding.U)
    assert relative["near"] > 1e4 * float(rounding.U)
