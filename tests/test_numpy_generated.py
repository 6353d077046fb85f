"""--backward generated: the generated backward passes agree with the hand-written ones, layer by layer and in training."""

import numpy as np
import pytest

from implementations.numpy import modules as M
from implementations.numpy import train_convnet, train_mlp
from implementations.numpy.catalogue import MODULE_BINDINGS
from implementations.numpy.generated import GeneratedCrossEntropy, GeneratedModule

LAYERS = {
    "linear": lambda rng: M.LinearModule(4, 3, std=1.0, rng=rng),
    "relu": lambda rng: M.ReLUModule(),
    "leaky_relu": lambda rng: M.LeakyReLUModule(0.1),
    "leaky_relu0": lambda rng: M.LeakyReLUModule(0.0),
    "elu": lambda rng: M.ELUModule(),
    "sigmoid": lambda rng: M.SigmoidModule(),
    "tanh": lambda rng: M.TanhModule(),
    "softmax": lambda rng: M.SoftMaxModule(),
    "batchnorm": lambda rng: M.BatchNormModule(4),
    "layernorm": lambda rng: M.LayerNormModule(4),
    # the settings of derivations/conv2d.deriv and maxpool2d.deriv, avgpool2d.deriv
    "conv2d": lambda rng: M.Conv2dModule(3, 4, 3, stride=1, padding=1, std=1.0, rng=rng),
    "maxpool2d": lambda rng: M.MaxPool2dModule(3, stride=2, padding=1),
    "avgpool2d": lambda rng: M.AvgPool2dModule(3, stride=2, padding=1),
}
IMAGES = {"conv2d", "maxpool2d", "avgpool2d"}  # N x C x H x W inputs


def test_every_bound_module_is_tested():
    """Every UvA module class with a catalogue binding (what GeneratedModule accepts) has a case in LAYERS."""
    rng = np.random.default_rng(0)
    assert {type(make(rng)) for make in LAYERS.values()} == set(MODULE_BINDINGS)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_generated_backward_equals_hand_written(name):
    """For each layer the MLP can hold, the generated dx and parameter gradients equal the hand-written ones (float64)."""
    rng = np.random.default_rng(0)
    hand = LAYERS[name](rng)
    for key in hand.params:
        hand.params[key] = rng.uniform(0.5, 1.5, hand.params[key].shape)
    twin = LAYERS[name](rng)
    twin.params.update({key: value.copy() for key, value in hand.params.items()})
    generated = GeneratedModule(twin)
    x = rng.standard_normal((2, 3, 7, 6) if name in IMAGES else (5, 4))
    y = hand.forward(x)
    np.testing.assert_array_equal(generated.forward(x), y)
    dout = rng.standard_normal(y.shape)
    np.testing.assert_allclose(generated.backward(dout), hand.backward(dout), rtol=1e-10, atol=1e-12)
    for key in hand.grads:
        np.testing.assert_allclose(twin.grads[key], hand.grads[key], rtol=1e-10, atol=1e-12)


def test_generated_cross_entropy_equals_hand_written():
    """The generated -t / (N x) equals CrossEntropyModule.backward on ordinary probabilities."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 1.0, (3, 4))
    x /= x.sum(axis=1, keepdims=True)
    t = np.eye(4)[[0, 3, 1]]
    np.testing.assert_allclose(GeneratedCrossEntropy().backward(x, t), M.CrossEntropyModule().backward(x, t))


def test_generated_module_refuses_unknown_layers_and_eval_backward():
    """A layer without a catalogue derivation is refused; batch norm in eval mode has no generated backward."""
    with pytest.raises(TypeError, match="no catalogue derivation"):
        GeneratedModule(M.Module())
    layer = GeneratedModule(M.BatchNormModule(3))
    layer.eval()
    layer.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="train"):
        layer.backward(np.ones((2, 3)))


def test_generated_module_refuses_other_settings():
    """conv2d.deriv is stride 1, padding 1: a convolution with stride 2 gets no generated backward, with
    the reason."""
    with pytest.raises(ValueError, match="S = 1 but stride = 2"):
        GeneratedModule(M.Conv2dModule(3, 4, 3, stride=2, padding=1))


def test_generated_convnet_training_matches_hand_training(tmp_path):
    """The NumPy ConvNet on digits, same seed and flags: the generated backward passes give the
    hand-written run's curves."""
    flags = "--max_steps 40 --eval_freq 20 --batch_size 32 --channels 4,8 --no_progress".split()
    hand = train_convnet.main([*flags, "--out", str(tmp_path / "hand")])
    generated = train_convnet.main([*flags, "--backward", "generated", "--out", str(tmp_path / "generated")])
    assert len(hand["evaluations"]) == len(generated["evaluations"]) == 3
    for a, b in zip(hand["evaluations"], generated["evaluations"], strict=True):
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-3)
        assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=2 / 360 + 1e-9)


@pytest.mark.parametrize(
    "extra", [[], ["--activation", "elu", "--norm", "layernorm"], ["--norm", "batchnorm"]]
)
def test_generated_training_matches_hand_training(tmp_path, extra):
    """Same seed, same flags: training with generated backward passes gives the hand-written run's curves."""
    flags = "--max_steps 60 --eval_freq 20 --no_progress".split() + extra
    hand = train_mlp.main([*flags, "--out", str(tmp_path / "hand")])
    generated = train_mlp.main([*flags, "--backward", "generated", "--out", str(tmp_path / "generated")])
    assert len(hand["evaluations"]) == len(generated["evaluations"]) == 4
    for a, b in zip(hand["evaluations"], generated["evaluations"], strict=True):
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-4)
        assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=1 / 360 + 1e-9)
