"""Tests of the PyTorch MLP and the course ConvNets: output shapes, the course layer layout, errors."""

import pytest
import torch
from torch import nn

from implementations.torch.convnet import ConvNet, PreActBlock
from implementations.torch.mlp import MLP

# (channels, side) of CIFAR-10, MNIST / Fashion-MNIST and scikit-learn's digits.
INPUTS = [(3, 32), (1, 28), (1, 8)]


@pytest.mark.parametrize("arch", ["vgg", "preact"])
@pytest.mark.parametrize(("channels", "side"), INPUTS)
@pytest.mark.parametrize("width", [1.0, 0.25])
def test_convnet_maps_images_to_logits(arch, channels, side, width):
    """Every input size the data sets have gives (batch, n_classes) logits, and the five 3x3/2/1 pools
    leave a 1x1 map, so the final average pool is the identity as in the course network."""
    torch.manual_seed(0)
    model = ConvNet(channels, 7, arch, width).eval()
    x = torch.randn(3, channels, side, side)
    with torch.no_grad():
        features = model.features[:-2](x)  # everything before the average pool and the flatten
        logits = model(x)
    assert features.shape[2:] == (1, 1)
    assert logits.shape == (3, 7)
    assert torch.isfinite(logits).all()


def conv_channels(model: nn.Module) -> list[tuple[int, int, int]]:
    """(in, out, kernel side) of every convolution, in order."""
    return [
        (m.in_channels, m.out_channels, m.kernel_size[0]) for m in model.modules() if isinstance(m, nn.Conv2d)
    ]


def test_vgg_convnet_is_the_2018_2019_course_network():
    """Default width: the convolutions, BatchNorm/ReLU after each, five 3x3 stride-2 pools, linear 512->10."""
    model = ConvNet(3, 10, "vgg")
    expected = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
    assert conv_channels(model) == [(c_in, c_out, 3) for c_in, c_out in expected]
    assert all((m.stride, m.padding) == ((1, 1), (1, 1)) for m in model.modules() if isinstance(m, nn.Conv2d))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 8
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 8
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride, p.padding) for p in pools] == [(3, 2, 1)] * 5
    assert (model.classifier.in_features, model.classifier.out_features) == (512, 10)


def test_preact_convnet_is_the_2020_course_network():
    """Default width: conv0, the 1x1 channel changes, nine pre-activation blocks, five pools, BN-ReLU-linear."""
    model = ConvNet(3, 10, "preact")
    blocks = [m for m in model.modules() if isinstance(m, PreActBlock)]
    assert [b.residual[2].in_channels for b in blocks] == [64, 128, 128, 256, 256, 512, 512, 512, 512]
    expected = [(3, 64, 3), (64, 64, 3), (64, 128, 1), (128, 128, 3), (128, 128, 3), (128, 256, 1)]
    expected += [(256, 256, 3), (256, 256, 3), (256, 512, 1)] + [(512, 512, 3)] * 4
    assert conv_channels(model) == expected
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    bn, relu, linear = model.classifier
    assert isinstance(bn, nn.BatchNorm1d) and isinstance(relu, nn.ReLU)
    assert (linear.in_features, linear.out_features) == (512, 10)


def test_preact_block_adds_its_input():
    """A PreAct block whose conv outputs zero is the identity: the residual is added, not substituted."""
    block = PreActBlock(4)
    nn.init.zeros_(block.residual[2].weight)
    nn.init.zeros_(block.residual[2].bias)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(block(x), x)


def test_width_scales_every_channel_count():
    """width 0.25 quarters every channel count of the course network."""
    full, quarter = ConvNet(3, 10, "vgg"), ConvNet(3, 10, "vgg", width=0.25)
    scaled = [(c_in if c_in == 3 else c_in // 4, c_out // 4, k) for c_in, c_out, k in conv_channels(full)]
    assert conv_channels(quarter) == scaled


@pytest.mark.parametrize(("kwargs", "message"), [({"arch": "resnet"}, "arch"), ({"width": 0.0}, "width")])
def test_convnet_rejects_bad_arguments(kwargs, message):
    """An unknown arch or a non-positive width is a ValueError naming the argument."""
    with pytest.raises(ValueError, match=message):
        ConvNet(3, 10, **kwargs)


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_mlp_layers_and_logits(batchnorm, dropout):
    """Linear layers of the stated widths, optional BatchNorm and Dropout per hidden layer, logits out;
    images are flattened."""
    model = MLP(64, [20, 30], 10, activation="elu", batchnorm=batchnorm, dropout=dropout)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 20), (20, 30), (30, 10)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == (2 if batchnorm else 0)
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == (2 if dropout else 0)
    assert sum(isinstance(m, nn.ELU) for m in model.modules()) == 2
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 10)


def test_mlp_without_hidden_layers_is_linear():
    """n_hidden = [] gives a single linear map (multinomial logistic regression)."""
    model = MLP(6, [], 3)
    x = torch.randn(4, 6)
    torch.testing.assert_close(model(x), x @ model.layers[0].weight.T + model.layers[0].bias)


def test_mlp_rejects_wrong_input_size_and_unknown_activation():
    """A sample with the wrong number of inputs, or an unknown activation name, is a ValueError."""
    with pytest.raises(ValueError, match="expected 64 inputs per sample, got 63"):
        MLP(64, [10], 10)(torch.randn(2, 63))
    with pytest.raises(ValueError, match="activation"):
        MLP(64, [10], 10, activation="swish")
