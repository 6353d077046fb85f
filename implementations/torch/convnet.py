"""The ConvNets of UvA Deep Learning Practical 1.

arch='vgg' (2018 and 2019 editions), a small VGG. Every conv is 3x3, stride 1, padding 1, followed by
BatchNorm and ReLU; every maxpool is 3x3, stride 2, padding 1:
    conv1 C->64, pool; conv2 64->128, pool; conv3a 128->256, conv3b 256->256, pool;
    conv4a 256->512, conv4b 512->512, pool; conv5a 512->512, conv5b 512->512, pool; avgpool; linear 512->K.

arch='preact' (2020 edition), VGG13-like with pre-activation residual blocks
PreAct(c): x + conv3x3(ReLU(BN(x))), c->c channels:
    conv0 3x3 C->64, PreAct 64; conv1x1 64->128, pool; PreAct x2 128; conv1x1 128->256, pool;
    PreAct x2 256; conv1x1 256->512, pool; PreAct x2 512, pool; PreAct x2 512, pool; BN -> ReLU -> linear 512->K.

Pooling arithmetic: a 3x3/2/1 maxpool maps a side H to floor((H - 1) / 2) + 1, so the five pools take
32 -> 16 -> 8 -> 4 -> 2 -> 1 (CIFAR-10), 28 -> 14 -> 7 -> 4 -> 2 -> 1 (MNIST, Fashion-MNIST) and
8 -> 4 -> 2 -> 1 -> 1 -> 1 (scikit-learn digits). Both architectures then take a global average pool over
the remaining map: on all of these inputs the map is already 1x1, so the pool is the identity, exactly
like the course's 1x1 average pool; on larger inputs it averages what remains, so any side works.

width scales every channel count (rounded, at least 1); width=1.0 is the course architecture exactly.

Shapes: input (B, n_channels, H, W); output logits (B, n_classes).
"""

import torch
from torch import nn


def _maxpool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class PreActBlock(nn.Module):
    """Pre-activation residual block: x + conv3x3(ReLU(BN(x))), channels and size preserved."""

    def __init__(self, channels: int):
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)


class ConvNet(nn.Module):
    """The course ConvNet, arch 'vgg' (2018/2019) or 'preact' (2020); see the module docstring."""

    def __init__(self, n_channels: int, n_classes: int, arch: str = "vgg", width: float = 1.0):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")

        def ch(c: int) -> int:
            return max(1, round(c * width))

        c64, c128, c256, c512 = ch(64), ch(128), ch(256), ch(512)
        if arch == "vgg":
            self.features = nn.Sequential(
                _conv_bn_relu(n_channels, c64), _maxpool(),
                _conv_bn_relu(c64, c128), _maxpool(),
                _conv_bn_relu(c128, c256), _conv_bn_relu(c256, c256), _maxpool(),
                _conv_bn_relu(c256, c512), _conv_bn_relu(c512, c512), _maxpool(),
                _conv_bn_relu(c512, c512), _conv_bn_relu(c512, c512), _maxpool(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )  # fmt: skip
            self.classifier = nn.Linear(c512, n_classes)
        elif arch == "preact":
            self.features = nn.Sequential(
                nn.Conv2d(n_channels, c64, kernel_size=3, stride=1, padding=1), PreActBlock(c64),
                nn.Conv2d(c64, c128, kernel_size=1), _maxpool(),
                PreActBlock(c128), PreActBlock(c128),
                nn.Conv2d(c128, c256, kernel_size=1), _maxpool(),
                PreActBlock(c256), PreActBlock(c256),
                nn.Conv2d(c256, c512, kernel_size=1), _maxpool(),
                PreActBlock(c512), PreActBlock(c512), _maxpool(),
                PreActBlock(c512), PreActBlock(c512), _maxpool(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )  # fmt: skip
            self.classifier = nn.Sequential(nn.BatchNorm1d(c512), nn.ReLU(), nn.Linear(c512, n_classes))
        else:
            raise ValueError(f"arch must be 'vgg' or 'preact', got {arch!r}")
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
