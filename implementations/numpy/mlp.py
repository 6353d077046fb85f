"""The UvA Practical 1 multi-layer perceptron and SGD with momentum, built from `modules`.

Shapes: the input is N x n_inputs (images flattened by the caller), the output N x n_classes
probabilities (the network ends Linear -> SoftMax, as in the course, so the loss is CrossEntropyModule
on probabilities).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from implementations.numpy.modules import (
    WEIGHT_STD,
    BatchNormModule,
    ELUModule,
    LayerNormModule,
    LeakyReLUModule,
    LinearModule,
    Module,
    ReLUModule,
    SigmoidModule,
    SoftMaxModule,
    TanhModule,
)

ACTIVATIONS = ("relu", "leaky_relu", "elu", "sigmoid", "tanh")
NORMS = (None, "batchnorm", "layernorm")


def make_activation(name: str, neg_slope: float) -> Module:
    """The activation module called `name` (one of ACTIVATIONS); neg_slope is used by leaky_relu only."""
    if name == "relu":
        return ReLUModule()
    if name == "leaky_relu":
        return LeakyReLUModule(neg_slope)
    if name == "elu":
        return ELUModule()
    if name == "sigmoid":
        return SigmoidModule()
    if name == "tanh":
        return TanhModule()
    raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")


class LayerStack:
    """A classifier as a list of UvA modules applied in order (`self.modules`, set by the subclass):
    forward through them, backward through them in reverse, train/eval mode switched on each."""

    modules: list

    def forward(self, x: np.ndarray) -> np.ndarray:
        for module in self.modules:
            x = module.forward(x)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Backpropagate dL/d(probabilities), filling every module's grads; returns dL/dx."""
        for module in reversed(self.modules):
            dout = module.backward(dout)
        return dout

    def train(self) -> None:
        for module in self.modules:
            module.train()

    def eval(self) -> None:
        for module in self.modules:
            module.eval()


class MLP(LayerStack):
    """Linear -> [norm] -> activation for each hidden layer, then Linear -> SoftMax.

    n_hidden lists the hidden layer widths (empty: a softmax regression). Weights are drawn from
    N(0, std^2) with a generator seeded by `seed`; biases start at 0. `norm` puts a BatchNormModule or a
    LayerNormModule between each hidden linear map and its activation. `modules` is the layer list in
    order; `train()` and `eval()` switch the batch-norm layers' mode.
    """

    def __init__(
        self,
        n_inputs: int,
        n_hidden: Sequence[int],
        n_classes: int,
        activation: str = "relu",
        neg_slope: float = 0.02,
        norm: str | None = None,
        std: float = WEIGHT_STD,
        seed: int = 0,
        dtype: np.dtype | type = np.float64,
    ) -> None:
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
        rng = np.random.default_rng(seed)
        self.modules: list[Module] = []
        width = n_inputs
        for hidden in n_hidden:
            self.modules.append(LinearModule(width, hidden, std=std, rng=rng, dtype=dtype))
            if norm == "batchnorm":
                self.modules.append(BatchNormModule(hidden, dtype=dtype))
            elif norm == "layernorm":
                self.modules.append(LayerNormModule(hidden, dtype=dtype))
            self.modules.append(make_activation(activation, neg_slope))
            width = hidden
        self.modules.append(LinearModule(width, n_classes, std=std, rng=rng, dtype=dtype))
        self.modules.append(SoftMaxModule())


class SGD:
    """Mini-batch SGD with momentum: v = momentum * v - lr * g; p = p + v (plain SGD at momentum 0).

    Parameters are updated in place in each module's `params`, with velocities kept per module and key.
    """

    def __init__(self, modules: Iterable[Module], lr: float, momentum: float = 0.0) -> None:
        self.modules = [module for module in modules if module.params]
        self.lr = lr
        self.momentum = momentum
        self._velocity = [
            {key: np.zeros_like(value) for key, value in module.params.items()} for module in self.modules
        ]

    def step(self) -> None:
        for module, velocity in zip(self.modules, self._velocity, strict=True):
            for key, v in velocity.items():
                v *= self.momentum
                v -= self.lr * module.grads[key]
                module.params[key] += v
