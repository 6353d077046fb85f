"""The CMU HW1 interface against finite differences (float64) and its stated conventions."""

import numpy as np
import pytest

from implementations import data
from implementations.numpy import hw1
from implementations.numpy.gradcheck import numeric_grad


def away_from_zero(rng, shape):
    """Normal values at least 0.1 from 0, so that finite differences never straddle ReLU's kink."""
    x = rng.standard_normal(shape)
    return x + np.sign(x) * 0.1


@pytest.mark.parametrize("activation", [hw1.Identity, hw1.Sigmoid, hw1.Tanh, hw1.ReLU])
def test_activation_derivative(activation):
    """derivative() after forward(x) is the elementwise dy/dx at x, and state holds the output."""
    rng = np.random.default_rng(0)
    x = away_from_zero(rng, (3, 4))
    act = activation()
    y = act(x)
    np.testing.assert_array_equal(act.state, y)
    derivative = act.derivative()
    dout = np.ones_like(x)
    fd = numeric_grad(lambda: np.sum(dout * activation().forward(x)), x)
    np.testing.assert_allclose(derivative, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("shape", [(4, 3), (1, 5), (2, 1)])
def test_softmax_cross_entropy(shape):
    """Per-example loss -log softmax[true]; derivative() = softmax - y = d(sum of losses)/dx."""
    rng = np.random.default_rng(1)
    n, c = shape
    x = rng.standard_normal(shape) * 3
    y = np.eye(c)[rng.integers(0, c, n)]
    ce = hw1.SoftmaxCrossEntropy()
    loss = ce(x, y)
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    assert loss.shape == (n,)
    np.testing.assert_allclose(loss, -np.log(p[y == 1]))
    np.testing.assert_allclose(ce.derivative(), p - y)
    fd = numeric_grad(lambda: hw1.SoftmaxCrossEntropy().forward(x, y).sum(), x)
    np.testing.assert_allclose(ce.derivative(), fd, rtol=1e-5, atol=1e-9)


def test_softmax_cross_entropy_is_stable():
    """Logits of 1000 give the exact finite loss, thanks to the log-sum-exp trick."""
    loss = hw1.SoftmaxCrossEntropy().forward(np.array([[1000.0, 0.0]]), np.array([[0.0, 1.0]]))
    np.testing.assert_allclose(loss, [1000.0])


def test_batchnorm_backward():
    """BatchNorm's dx, dgamma and dbeta (batch sums, 1 x fan_in) equal FD of sum(delta * out)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 3)) * 2 + 1
    bn = hw1.BatchNorm(3)
    bn.gamma = rng.uniform(0.5, 2, (1, 3))
    bn.beta = rng.standard_normal((1, 3))
    delta = rng.standard_normal((5, 3))
    bn(x)
    dx = bn.backward(delta)

    def loss():
        fresh = hw1.BatchNorm(3)
        fresh.gamma, fresh.beta = bn.gamma, bn.beta
        return np.sum(delta * fresh(x))

    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(bn.dgamma, numeric_grad(loss, bn.gamma), rtol=1e-5)
    np.testing.assert_allclose(bn.dbeta, numeric_grad(loss, bn.beta), rtol=1e-5)
    assert bn.dgamma.shape == (1, 3)


def test_batchnorm_running_statistics_and_eval():
    """running = alpha running + (1 - alpha) batch (biased variance); eval normalises with them, eps 1e-8."""
    rng = np.random.default_rng(3)
    bn = hw1.BatchNorm(2, alpha=0.8)
    x1, x2 = rng.standard_normal((6, 2)), rng.standard_normal((4, 2)) + 3
    bn(x1)
    bn(x2)
    mean = 0.8 * (0.2 * x1.mean(axis=0)) + 0.2 * x2.mean(axis=0)
    var = 0.8 * (0.8 + 0.2 * x1.var(axis=0)) + 0.2 * x2.var(axis=0)
    np.testing.assert_allclose(bn.running_mean, mean[None])
    np.testing.assert_allclose(bn.running_var, var[None])
    x = rng.standard_normal((3, 2))
    out = bn(x, eval=True)
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-8))
    np.testing.assert_allclose(bn.running_mean, mean[None])  # eval leaves the statistics alone


def make_mlp(num_bn_layers=0, momentum=0.0, seed=4):
    np.random.seed(seed)  # the course initialisers draw from NumPy's global generator
    return hw1.MLP(
        6,
        3,
        [5, 4],
        [hw1.Sigmoid(), hw1.Tanh(), hw1.Identity()],
        hw1.random_normal_weight_init,
        hw1.zeros_bias_init,
        hw1.SoftmaxCrossEntropy(),
        lr=0.1,
        momentum=momentum,
        num_bn_layers=num_bn_layers,
    )


@pytest.mark.parametrize("num_bn_layers", [0, 1, 2])
def test_mlp_gradients_are_batch_means(num_bn_layers):
    """dW and db equal FD of the mean loss; BN dgamma/dbeta equal FD of the summed loss (course conventions)."""
    rng = np.random.default_rng(5)
    mlp = make_mlp(num_bn_layers)
    for i in range(mlp.nlayers):
        mlp.b[i] = rng.standard_normal(mlp.b[i].shape)
    x = rng.standard_normal((7, 6))
    labels = np.eye(3)[rng.integers(0, 3, 7)]

    def mean_loss():
        return hw1.SoftmaxCrossEntropy().forward(mlp.forward(x), labels).mean()

    mlp.zero_grads()
    mlp.forward(x)
    dx = mlp.backward(labels)
    for i in range(mlp.nlayers):
        np.testing.assert_allclose(mlp.dW[i], numeric_grad(mean_loss, mlp.W[i]), rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(mlp.db[i], numeric_grad(mean_loss, mlp.b[i]), rtol=1e-5, atol=1e-9)
    for bn in mlp.bn_layers:
        np.testing.assert_allclose(bn.dgamma, 7 * numeric_grad(mean_loss, bn.gamma), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(dx, 7 * numeric_grad(mean_loss, x), rtol=1e-5, atol=1e-9)
    assert mlp.W[0].shape == (6, 5) and mlp.b[0].shape == (1, 5)


def test_mlp_momentum_step():
    """Two steps with fixed gradients: v1 = -lr g, v2 = mu v1 - lr g, so W moves by -(2 + mu) lr g."""
    mlp = make_mlp(momentum=0.5)
    start = [w.copy() for w in mlp.W]
    grads = [np.full_like(w, 0.3) for w in mlp.W]
    for _ in range(2):
        mlp.dW = [g.copy() for g in grads]
        mlp.db = [np.zeros_like(b) for b in mlp.b]
        mlp.step()
    for w, w0, g in zip(mlp.W, start, grads, strict=True):
        np.testing.assert_allclose(w, w0 - 2.5 * 0.1 * g)


def test_mlp_eval_mode_uses_running_statistics():
    """In eval mode the BN layers use running statistics: one sample's output does not depend on its batch."""
    rng = np.random.default_rng(6)
    mlp = make_mlp(num_bn_layers=1)
    for _ in range(3):
        mlp.forward(rng.standard_normal((8, 6)))
    mlp.eval()
    x = rng.standard_normal((4, 6))
    alone = mlp.forward(x[:1]).copy()
    np.testing.assert_allclose(mlp.forward(x)[:1], alone)
    mlp.train()
    assert not np.allclose(mlp.forward(x)[:1], mlp.forward(x[:2])[:1])


def test_mlp_zero_grads():
    """zero_grads clears every dW, db and BN gradient."""
    mlp = make_mlp(num_bn_layers=1)
    x = np.random.default_rng(7).standard_normal((4, 6))
    mlp.forward(x)
    mlp.backward(np.eye(3)[[0, 1, 2, 0]])
    mlp.zero_grads()
    assert all(not g.any() for g in mlp.dW + mlp.db)
    assert not mlp.bn_layers[0].dgamma.any()


def test_get_training_stats_on_digits():
    """Five statistics of the stated shapes; the loss falls; the confusion matrix counts the test set by (predicted, true)."""
    ds = data.with_validation(data.load("digits"), 300)
    flat = [
        (s.images.reshape(len(s), -1).astype(np.float64), s.labels)
        for s in (ds.train, ds.validation, ds.test)
    ]
    np.random.seed(0)
    mlp = hw1.MLP(
        64,
        10,
        [32],
        [hw1.Sigmoid(), hw1.Identity()],
        lambda d0, d1: np.random.randn(d0, d1) * 0.1,
        hw1.zeros_bias_init,
        hw1.SoftmaxCrossEntropy(),
        lr=0.1,
        momentum=0.9,
        num_bn_layers=1,
    )
    seen = []
    losses, errors, val_losses, val_errors, confusion = hw1.get_training_stats(
        mlp, flat, nepochs=4, batch_size=50, epoch_callback=lambda epoch, figures: seen.append(epoch)
    )
    assert seen == [0, 1, 2, 3]
    for stat in (losses, errors, val_losses, val_errors):
        assert stat.shape == (4,)
    assert losses[-1] < losses[0] and val_errors[-1] < 0.2
    assert confusion.shape == (10, 10) and confusion.sum() == len(ds.test)
    predicted = mlp.forward(flat[2][0]).argmax(axis=1)  # still in eval mode, as after the test pass
    np.testing.assert_array_equal(confusion.sum(axis=1), np.bincount(predicted, minlength=10))
    np.testing.assert_array_equal(confusion.sum(axis=0), np.bincount(ds.test.labels, minlength=10))
    assert np.trace(confusion) / confusion.sum() == pytest.approx(np.mean(predicted == ds.test.labels))


def test_mlp_checks_its_arguments():
    """A wrong number of activations or BN layers is refused at construction."""
    with pytest.raises(ValueError, match="activations"):
        hw1.MLP(2, 2, [3], [hw1.ReLU()], hw1.random_normal_weight_init, hw1.zeros_bias_init, None, 0.1)
    with pytest.raises(ValueError, match="num_bn_layers"):
        hw1.MLP(
            2, 2, [3], [hw1.ReLU()] * 2, hw1.random_normal_weight_init, hw1.zeros_bias_init, None, 0.1, 0, 2
        )
