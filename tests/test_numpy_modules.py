"""The UvA NumPy modules and MLP against central finite differences, float64."""

import numpy as np
import pytest

from implementations.numpy import modules as M
from implementations.numpy.gradcheck import numeric_grad
from implementations.numpy.mlp import MLP, SGD


def away_from_zero(rng, shape):
    """Normal values kept at least 0.1 from 0, so no kink of ReLU, LeakyReLU or ELU is crossed by FD."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 0.1, np.sign(x + 1e-12) * 0.1 + x, x)


def check_module(module, x, rng, params=()):
    """Compare backward(dout) with FD of sum(dout * forward(x)) for x and the named parameters."""
    dout = rng.standard_normal(module.forward(x).shape)
    dx = module.backward(dout)

    def loss():
        return np.sum(dout * module.forward(x))

    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-8)
    for key in params:
        module.forward(x)
        module.backward(dout)
        analytic = module.grads[key].copy()
        np.testing.assert_allclose(analytic, numeric_grad(loss, module.params[key]), rtol=1e-5, atol=1e-8)


SHAPES = [(4, 3), (1, 5), (3, 1)]  # a batch, a batch of one sample, one feature


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "make",
    [
        M.ReLUModule,
        lambda: M.LeakyReLUModule(0.02),
        lambda: M.LeakyReLUModule(0.0),
        M.ELUModule,
        M.SigmoidModule,
        M.TanhModule,
    ],
    ids=["relu", "leaky", "leaky0", "elu", "sigmoid", "tanh"],
)
def test_activation_gradients(make, shape):
    """Each activation's backward equals FD, including slope 0 and a single sample."""
    rng = np.random.default_rng(0)
    check_module(make(), away_from_zero(rng, shape), rng)


def test_activation_values():
    """Forward values follow the definitions (LeakyReLU uses its slope; ELU is exp(x) - 1 below 0)."""
    x = np.array([[-2.0, -0.5, 0.5, 3.0]])
    np.testing.assert_allclose(M.LeakyReLUModule(0.1).forward(x), [[-0.2, -0.05, 0.5, 3.0]])
    np.testing.assert_allclose(M.ELUModule().forward(x), [[np.exp(-2) - 1, np.exp(-0.5) - 1, 0.5, 3.0]])
    np.testing.assert_allclose(M.SigmoidModule().forward(x), 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(M.ReLUModule().forward(x), [[0, 0, 0.5, 3.0]])


@pytest.mark.parametrize("shape", [(2, 3), (1, 4), (3, 1)])
def test_linear_gradients(shape):
    """LinearModule's dx, dW and db equal FD, for several samples, one sample, and one input feature."""
    rng = np.random.default_rng(1)
    n, i = shape
    layer = M.LinearModule(i, 2, std=1.0, rng=rng)
    layer.params["bias"] = rng.standard_normal(2)
    check_module(layer, rng.standard_normal((n, i)), rng, params=("weight", "bias"))


def test_linear_defaults():
    """Weights are out x in with std about 1e-4 and biases zero, as the course specifies."""
    layer = M.LinearModule(300, 200, rng=np.random.default_rng(0))
    assert layer.params["weight"].shape == (200, 300)
    assert 0.9e-4 < layer.params["weight"].std() < 1.1e-4
    np.testing.assert_array_equal(layer.params["bias"], np.zeros(200))


def test_linear_reads_params_on_every_call():
    """Parameters replaced after construction (as course tests do) are the ones forward uses."""
    rng = np.random.default_rng(2)
    layer = M.LinearModule(3, 2, rng=rng)
    x = rng.standard_normal((4, 3))
    layer.forward(x)
    weight, bias = rng.standard_normal((2, 3)), rng.standard_normal(2)
    layer.params["weight"], layer.params["bias"] = weight, bias
    np.testing.assert_allclose(layer.forward(x), x @ weight.T + bias)
    layer.params["weight"][0, 0] += 1.0  # an in-place change counts too
    np.testing.assert_allclose(layer.forward(x), x @ layer.params["weight"].T + bias)


def test_linear_bias_row_keeps_its_shape():
    """A bias stored as a 1 x out row (as some course templates do) gets a 1 x out gradient."""
    rng = np.random.default_rng(3)
    layer = M.LinearModule(3, 2, rng=rng)
    layer.params["bias"] = np.zeros((1, 2))
    layer.forward(rng.standard_normal((4, 3)))
    assert layer.backward(np.ones((4, 2))).shape == (4, 3)
    assert layer.grads["bias"].shape == (1, 2)


@pytest.mark.parametrize("shape", [(3, 4), (1, 4), (3, 1)])
def test_softmax_gradient(shape):
    """SoftMax's backward is the vector-Jacobian product, including one sample and one class."""
    rng = np.random.default_rng(4)
    check_module(M.SoftMaxModule(), rng.standard_normal(shape), rng)


def test_softmax_is_stable():
    """Huge logits do not overflow: the row max is subtracted before exp."""
    y = M.SoftMaxModule().forward(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(y, [[0.5, 0.5, 0.0]])


@pytest.mark.parametrize("shape", [(3, 4), (1, 3), (2, 1)])
def test_cross_entropy_gradient(shape):
    """CrossEntropyModule: loss is the batch mean of -log p[true], gradient -y / (N x), equal to FD."""
    rng = np.random.default_rng(5)
    n, c = shape
    x = rng.uniform(0.1, 1.0, shape)
    x /= x.sum(axis=1, keepdims=True)
    y = np.eye(c)[rng.integers(0, c, n)]
    ce = M.CrossEntropyModule()
    np.testing.assert_allclose(ce.forward(x, y), -np.mean(np.log(x[y == 1])))
    np.testing.assert_allclose(ce.backward(x, y), numeric_grad(lambda: ce.forward(x, y), x), rtol=1e-5)


def test_cross_entropy_backward_is_stateless():
    """A fresh CrossEntropyModule's backward works without any forward call."""
    x = np.array([[0.2, 0.8], [0.5, 0.5]])
    y = np.array([[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(M.CrossEntropyModule().backward(x, y), -y / (2 * x))


def test_cross_entropy_underflowed_probability_stays_finite():
    """A true-class probability of exactly 0 gives a large but finite loss and gradient, not nan."""
    x = np.array([[1.0, 0.0]], dtype=np.float32)
    y = np.array([[0.0, 1.0]], dtype=np.float32)
    ce = M.CrossEntropyModule()
    assert np.isfinite(ce.forward(x, y)) and np.all(np.isfinite(ce.backward(x, y)))


@pytest.mark.parametrize("norm", [M.BatchNormModule, M.LayerNormModule])
@pytest.mark.parametrize("shape", [(4, 3), (2, 5)])
def test_norm_gradients(norm, shape):
    """BatchNorm (training mode) and LayerNorm: dx, dgamma, dbeta equal FD."""
    rng = np.random.default_rng(6)
    module = norm(shape[1])
    module.params["gamma"] = rng.uniform(0.5, 2.0, shape[1])
    module.params["beta"] = rng.standard_normal(shape[1])
    check_module(module, rng.standard_normal(shape), rng, params=("gamma", "beta"))


def test_batchnorm_normalises_and_tracks_running_statistics():
    """Training mode output has per-feature mean 0, var 1; running stats move by momentum 0.9."""
    rng = np.random.default_rng(7)
    x = rng.normal(3.0, 2.0, (50, 4))
    bn = M.BatchNormModule(4)
    y = bn.forward(x)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=0), 1, rtol=1e-4)
    np.testing.assert_allclose(bn.running_mean, 0.1 * x.mean(axis=0))
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * x.var(axis=0))


def test_batchnorm_eval_uses_running_statistics():
    """Eval mode normalises with the running statistics, and its backward treats them as constants."""
    rng = np.random.default_rng(8)
    bn = M.BatchNormModule(3)
    for _ in range(5):
        bn.forward(rng.normal(1.0, 3.0, (20, 3)))
    bn.eval()
    x = rng.standard_normal((4, 3))
    expected = (x - bn.running_mean) / np.sqrt(bn.running_var + bn.eps)
    np.testing.assert_allclose(bn.forward(x), expected)
    running = bn.running_mean.copy()
    check_module(bn, x, rng)
    np.testing.assert_array_equal(bn.running_mean, running)


def test_norm_rejects_wrong_width():
    """A normalisation layer built for D features refuses an input with a different width."""
    with pytest.raises(ValueError, match="N x 3"):
        M.LayerNormModule(3).forward(np.zeros((2, 4)))


@pytest.mark.parametrize(
    "activation, norm", [("relu", None), ("elu", "layernorm"), ("tanh", "batchnorm"), ("leaky_relu", None)]
)
def test_mlp_gradients(activation, norm):
    """The whole MLP (loss CrossEntropyModule) against FD for the first weight matrix and the input."""
    rng = np.random.default_rng(9)
    mlp = MLP(5, [4, 3], 3, activation=activation, norm=norm, std=1.0, seed=1)
    x = rng.standard_normal((6, 5))
    y = np.eye(3)[rng.integers(0, 3, 6)]
    ce = M.CrossEntropyModule()

    def loss():
        return ce.forward(mlp.forward(x), y)

    probabilities = mlp.forward(x)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    dx = mlp.backward(ce.backward(probabilities, y))
    first = mlp.modules[0]
    np.testing.assert_allclose(
        first.grads["weight"], numeric_grad(loss, first.params["weight"]), rtol=1e-4, atol=1e-8
    )
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-4, atol=1e-8)


def test_mlp_without_hidden_layers():
    """n_hidden = [] is softmax regression: one Linear then SoftMax."""
    mlp = MLP(4, [], 3)
    assert [type(m).__name__ for m in mlp.modules] == ["LinearModule", "SoftMaxModule"]


def test_sgd_momentum_update():
    """v = mu v - lr g; W = W + v, applied twice with the same gradient."""
    layer = M.LinearModule(2, 1, rng=np.random.default_rng(0))
    start = layer.params["weight"].copy()
    grad = np.array([[1.0, -2.0]])
    sgd = SGD([layer, M.ReLUModule()], lr=0.1, momentum=0.9)
    for _ in range(2):
        layer.grads["weight"] = grad
        layer.grads["bias"] = np.zeros(1)
        sgd.step()
    # v1 = -0.1 g, v2 = 0.9 v1 - 0.1 g = -0.19 g; W = W0 + v1 + v2.
    np.testing.assert_allclose(layer.params["weight"], start - 0.29 * grad)


def test_mlp_float32_stays_float32():
    """A float32 MLP keeps float32 through forward and backward (no silent upcast slowing training)."""
    mlp = MLP(6, [5], 3, dtype=np.float32)
    x = np.ones((4, 6), dtype=np.float32)
    p = mlp.forward(x)
    dx = mlp.backward(M.CrossEntropyModule().backward(p, np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]))
    assert p.dtype == np.float32 and dx.dtype == np.float32
    assert all(g.dtype == np.float32 for m in mlp.modules for g in m.grads.values())
