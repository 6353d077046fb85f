"""A multi-layer perceptron in PyTorch: Linear -> [BatchNorm] -> activation -> [Dropout] per hidden layer,
then a final Linear producing logits (the loss, nn.CrossEntropyLoss, applies the softmax).

Shapes: input (B, n_inputs) or any (B, ...) with n_inputs elements per sample (images are flattened);
output (B, n_classes).
"""

from collections.abc import Sequence

import torch
from torch import nn

# The activations of the UvA Practical 1 editions (ReLU 2018/2019, LeakyReLU(0.02) Nov 2019, ELU 2020)
# and the CMU HW1 ones.
ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.02),
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


class MLP(nn.Module):
    """Fully connected classifier with len(n_hidden) hidden layers."""

    def __init__(
        self,
        n_inputs: int,
        n_hidden: Sequence[int],
        n_classes: int,
        activation: str = "relu",
        batchnorm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.n_inputs = n_inputs
        layers: list[nn.Module] = []
        fan_in = n_inputs
        for width in n_hidden:
            layers.append(nn.Linear(fan_in, width))
            if batchnorm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            fan_in = width
        layers.append(nn.Linear(fan_in, n_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} inputs per sample, got {x.shape[1]}")
        return self.layers(x)
