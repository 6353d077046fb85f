"""A small NumPy ConvNet built from the UvA-style modules, and Adam.

Shapes: the input is N x C x H x W images, the output N x n_classes probabilities (the network ends
Linear -> SoftMax, as the course's MLP does, so the loss is CrossEntropyModule on probabilities). Every
convolution is 3x3, stride 1, padding 1, followed by ReLU and the course's 3x3 max pooling with stride 2
and padding 1 (derivations/conv2d.deriv and maxpool2d.deriv hold these settings), which halves H and W
(rounding up).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from implementations.numpy.mlp import LayerStack
from implementations.numpy.modules import (
    Conv2dModule,
    FlattenModule,
    LinearModule,
    MaxPool2dModule,
    Module,
    ReLUModule,
    SoftMaxModule,
)


class ConvNet(LayerStack):
    """[Conv 3x3 -> ReLU -> MaxPool 3x3/2] for each width in `channels`, then Flatten -> Linear -> SoftMax.

    Convolution weights are He-initialised, the linear layer's drawn from N(0, 1/fan_in); biases start at
    0; `seed` seeds them all. `modules` is the layer list in order, as in `mlp.MLP`.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: tuple[int, int],
        n_classes: int,
        channels: Sequence[int] = (16, 32),
        seed: int = 0,
        dtype: np.dtype | type = np.float64,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.modules: list[Module] = []
        width, (h, w) = in_channels, image_size
        for out in channels:
            self.modules += [
                Conv2dModule(width, out, 3, stride=1, padding=1, rng=rng, dtype=dtype),
                ReLUModule(),
                MaxPool2dModule(3, stride=2, padding=1),
            ]
            width, h, w = out, (h + 1) // 2, (w + 1) // 2
        features = width * h * w
        self.modules += [
            FlattenModule(),
            LinearModule(features, n_classes, std=np.sqrt(1.0 / features), rng=rng, dtype=dtype),
            SoftMaxModule(),
        ]


class Adam:
    """Adam (Kingma and Ba, 2015): m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
    p -= lr m_hat / (sqrt(v_hat) + eps) with the bias-corrected m_hat, v_hat. The UvA ConvNets train
    with Adam. Parameters are updated in place in each module's `params`."""

    def __init__(
        self,
        modules: Iterable[Module],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.modules = [module for module in modules if module.params]
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.steps = 0
        self._moments = [
            {key: (np.zeros_like(value), np.zeros_like(value)) for key, value in module.params.items()}
            for module in self.modules
        ]

    def step(self) -> None:
        self.steps += 1
        scale = self.lr * np.sqrt(1 - self.beta2**self.steps) / (1 - self.beta1**self.steps)
        for module, moments in zip(self.modules, self._moments, strict=True):
            for key, (m, v) in moments.items():
                g = module.grads[key]
                m *= self.beta1
                m += (1 - self.beta1) * g
                v *= self.beta2
                v += (1 - self.beta2) * g * g
                module.params[key] -= (scale * m / (np.sqrt(v) + self.eps)).astype(m.dtype)
