"""The exported layers: a torch.autograd.Function and a jax.custom_vjp function per catalogue entry,
whose backward is the written formula, pass gradcheck / check_grads in float64. Generated from the
catalogue."""

import numpy as np
import pytest

from verify import export, sampling
from verify.catalogue import load
from verify.catalogue import paths as catalogue

CATALOGUE = catalogue()


def sample_inputs(d):
    sample = sampling.draw(d, seed=3)
    return [np.asarray(sample.values[n], dtype=np.float64) for n in d.inputs if n not in d.fixed_values]


def with_gradients(d):
    """The positions of inputs that have a written gradient: the ones the checks differentiate."""
    args = [n for n in d.inputs if n not in d.fixed_values]
    written = {g.of for g in d.checked}
    return [k for k, n in enumerate(args) if n in written]


@pytest.mark.parametrize("path", CATALOGUE, ids=[p.stem for p in CATALOGUE])
def test_torch_function_gradcheck(path):
    torch = pytest.importorskip("torch")
    d = load(path)
    layer = export.torch_function(d)
    wanted = with_gradients(d)
    tensors = [
        torch.tensor(v, dtype=torch.float64, requires_grad=k in wanted)
        for k, v in enumerate(sample_inputs(d))
    ]
    assert torch.autograd.gradcheck(layer.apply, tensors, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("path", CATALOGUE, ids=[p.stem for p in CATALOGUE])
def test_jax_function_check_grads(path):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    from jax.test_util import check_grads

    d = load(path)
    layer = export.jax_function(d)
    values = [jax.numpy.asarray(v) for v in sample_inputs(d)]
    wanted = with_gradients(d)

    def of_wanted(*args):
        full = list(values)
        for k, a in zip(wanted, args, strict=True):
            full[k] = a
        return layer(*full)

    check_grads(of_wanted, [values[k] for k in wanted], order=1, modes=["rev"], eps=1e-6)


def test_needs_input_grad_is_respected():
    """Only the gradients asked for are returned: gamma and beta without requires_grad get None."""
    torch = pytest.importorskip("torch")
    d = load("batchnorm")
    layer = export.torch_function(d)
    x, gamma, beta = (torch.tensor(v) for v in sample_inputs(d))
    x.requires_grad_(True)
    y = layer.apply(x, gamma, beta)
    y.sum().backward()
    assert x.grad is not None and gamma.grad is None and beta.grad is None


def test_wrong_derivation_is_refused():
    """No layer is built from a derivation with a wrong gradient."""
    text = "[forward]\ny[n,i] = tanh(x[n,i])\n[gradients]\ndx[n,i] = dy[n,i] * (1 + y[n,i]**2)\n"
    with pytest.raises(export.NotVerifiedError, match="not every gradient is verified"):
        export.torch_function(text)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_a_wrong_number_of_inputs_names_them(framework):
    """Calling an exported layer with too few or too many inputs is a TypeError naming the layer's
    inputs, not zip()'s 'argument 2 is shorter than argument 1'."""
    module = pytest.importorskip(framework)
    layer = export.torch_function("batchnorm") if framework == "torch" else export.jax_function("batchnorm")
    call = layer.apply if framework == "torch" else layer
    x = module.ones((4, 3), dtype=module.float64) if framework == "torch" else module.numpy.ones((4, 3))
    with pytest.raises(TypeError, match=r"batchnorm takes 3 inputs \(x, gamma, beta\), got 2"):
        call(x, x[0])


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_an_input_without_a_written_gradient_is_refused_when_differentiated(framework):
    """leaky_relu writes dx but not da (its slope). Differentiating the exported layer with respect to
    a raises NoWrittenGradientError naming da, where it used to hand back a zero (JAX) or nothing
    (PyTorch, so a learnt slope silently never moved); with a as a constant, dx is still the written one."""
    module = pytest.importorskip(framework)
    layer = export.torch_function("leaky_relu") if framework == "torch" else export.jax_function("leaky_relu")
    assert layer.inputs == ("x", "a")
    x_values = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
    expected_dx = np.where(x_values > 0, 1.0, 0.1)
    if framework == "torch":
        x = module.tensor(x_values, requires_grad=True)
        layer.apply(x, module.tensor(0.1)).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), expected_dx)
        a = module.tensor(0.1, dtype=module.float64, requires_grad=True)
        y = layer.apply(module.tensor(x_values), a).sum()
        with pytest.raises(export.NoWrittenGradientError, match="writes no gradient for a.*write da"):
            y.backward()
    else:
        module.config.update("jax_enable_x64", True)
        x, a = module.numpy.asarray(x_values), module.numpy.float64(0.1)
        dx = module.grad(lambda x: layer(x, a).sum())(x)
        np.testing.assert_allclose(np.asarray(dx), expected_dx)
        with pytest.raises(export.NoWrittenGradientError, match="writes no gradient for a.*write da"):
            module.grad(lambda a: layer(x, a).sum())(a)
