"""The numpy oracle's adapters: how each catalogue derivation is run through the hand-written NumPy layer that
implements it.

There is one `Adapter` per catalogue entry, named like it; verify's catalogue records refer to them by
import path ("implementations.numpy.catalogue:linear"), so the verifier never imports this package.
`Adapter.run(values)` receives every input of the derivation by name (float64 arrays; scalar inputs such
as the leaky slope `a` and `eps` as floats) and the upstream gradient under its name (`dy`, `dl`; absent
when the output is a scalar loss, whose upstream gradient is 1). It builds the layer in float64 with its
parameters set from the values, runs forward then backward, and returns (forward output, {gradient name
as written in the .deriv file: array}) for the gradients the layer itself produces, converted to the
derivation's convention where the course's differs (`conversion` says how).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from implementations.numpy import hw1
from implementations.numpy import modules as M
from implementations.numpy.mlp import MLP

Values = Mapping[str, np.ndarray | float]
Result = tuple[np.ndarray, dict[str, np.ndarray]]


@dataclass(frozen=True)
class Adapter:
    module: str  # what is checked, for the report, e.g. "modules.LinearModule(I, J)"
    run: Callable[[Values], Result]
    conversion: str = ""  # any convention conversion applied, in words


def _run_module(module: M.Module, x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(module.forward(x), module.backward(dy))."""
    y = module.forward(x)
    return y, module.backward(dy)


def _activation(make: Callable[[Values], M.Module]) -> Callable[[Values], Result]:
    def run(values: Values) -> Result:
        y, dx = _run_module(make(values), values["x"], values["dy"])
        return y, {"dx": dx}

    return run


def _linear(values: Values) -> Result:
    weight = values["W"]
    layer = M.LinearModule(weight.shape[1], weight.shape[0])
    layer.params["weight"], layer.params["bias"] = weight.copy(), values["b"].copy()
    y, dx = _run_module(layer, values["x"], values["dy"])
    return y, {"dx": dx, "dW": layer.grads["weight"], "db": layer.grads["bias"]}


def _linear_column(values: Values) -> Result:
    # The column form is the batch form for a batch of one sample: x (I,) becomes a 1 x I row.
    batch = dict(values, x=values["x"][None, :], dy=values["dy"][None, :])
    y, grads = _linear(batch)
    return y[0], {"dx": grads["dx"][0], "dW": grads["dW"], "db": grads["db"]}


class _Upstream:
    """A stand-in criterion for hw1.MLP whose derivative() is a given upstream gradient dy."""

    def __init__(self, dy: np.ndarray) -> None:
        self.dy = dy

    def __call__(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return np.zeros(len(logits))

    def derivative(self) -> np.ndarray:
        return self.dy


def _linear_cmu(values: Values) -> Result:
    weight, dy = values["W"], values["dy"]
    n = dy.shape[0]
    mlp = hw1.MLP(
        weight.shape[0],
        weight.shape[1],
        [],
        [hw1.Identity()],
        lambda d0, d1: weight.copy(),
        lambda d: values["b"].reshape(1, d).copy(),
        _Upstream(dy),
        lr=0.0,
    )
    y = mlp.forward(values["x"])
    dx = mlp.backward(dy)  # only labels.shape[0] (the batch size) is read from the labels argument
    return y, {"dx": dx, "dW": n * mlp.dW[0], "db": n * mlp.db[0].reshape(-1)}


def _identity(values: Values) -> Result:
    activation = hw1.Identity()
    y = activation(values["x"])
    return y, {"dx": values["dy"] * activation.derivative()}


def _cross_entropy(values: Values) -> Result:
    loss = M.CrossEntropyModule()
    return np.asarray(loss.forward(values["x"], values["t"])), {"dx": loss.backward(values["x"], values["t"])}


def _softmax_cross_entropy(values: Values) -> Result:
    criterion = hw1.SoftmaxCrossEntropy()
    loss = criterion(values["x"], values["t"])
    return loss, {"dx": values["dl"][:, None] * criterion.derivative()}


def _softmax_then_cross_entropy(values: Values) -> Result:
    softmax, loss = M.SoftMaxModule(), M.CrossEntropyModule()
    p = softmax.forward(values["x"])
    value = loss.forward(p, values["t"])
    return np.asarray(value), {"dx": softmax.backward(loss.backward(p, values["t"]))}


def _normalization(cls: type[M.BatchNormModule] | type[M.LayerNormModule]) -> Callable[[Values], Result]:
    def run(values: Values) -> Result:
        x = values["x"]
        # eps is fixed in the .deriv files; a value passed in overrides the module's default of 1e-5.
        layer = cls(x.shape[1], eps=float(values.get("eps", 1e-5)))
        layer.params["gamma"], layer.params["beta"] = values["gamma"].copy(), values["beta"].copy()
        y, dx = _run_module(layer, x, values["dy"])
        return y, {"dx": dx, "dgamma": layer.grads["gamma"], "dbeta": layer.grads["beta"]}

    return run


def _mlp(values: Values) -> Result:
    w1, w2, w3 = values["W1"], values["W2"], values["W3"]
    mlp = MLP(w1.shape[1], [w1.shape[0], w2.shape[0]], w3.shape[0], activation="relu")
    linears = [module for module in mlp.modules if isinstance(module, M.LinearModule)]
    for layer, index in zip(linears, "123", strict=True):
        layer.params["weight"] = values[f"W{index}"].copy()
        layer.params["bias"] = values[f"b{index}"].copy()
    loss = M.CrossEntropyModule()
    p = mlp.forward(values["x"])
    value = loss.forward(p, values["t"])
    mlp.backward(loss.backward(p, values["t"]))
    grads = {}
    for layer, index in zip(linears, "123", strict=True):
        grads[f"dW{index}"] = layer.grads["weight"]
        grads[f"db{index}"] = layer.grads["bias"]
    return np.asarray(value), grads


linear = Adapter("modules.LinearModule(I, J)", _linear)
linear_column = Adapter(
    "modules.LinearModule(I, J) on a batch of one",
    _linear_column,
    "x and dy reshaped from (I,) and (J,) to 1 x I and 1 x J rows; dx read back as (I,)",
)
linear_cmu = Adapter(
    "hw1.MLP(I, J, hiddens=[], activations=[Identity()]) with the upstream gradient as its criterion",
    _linear_cmu,
    "hw1.MLP stores dW and db as batch means: multiplied by N; db flattened from 1 x J; dx is the "
    "gradient of the summed loss, as written",
)
identity = Adapter("hw1.Identity() (dx = dy * derivative())", _identity)
relu = Adapter("modules.ReLUModule()", _activation(lambda values: M.ReLUModule()))
leaky_relu = Adapter(
    "modules.LeakyReLUModule(a)", _activation(lambda values: M.LeakyReLUModule(float(values["a"])))
)
elu = Adapter("modules.ELUModule()", _activation(lambda values: M.ELUModule()))
sigmoid = Adapter("modules.SigmoidModule()", _activation(lambda values: M.SigmoidModule()))
tanh = Adapter("modules.TanhModule()", _activation(lambda values: M.TanhModule()))
softmax = Adapter("modules.SoftMaxModule()", _activation(lambda values: M.SoftMaxModule()))
cross_entropy = Adapter("modules.CrossEntropyModule()", _cross_entropy)
softmax_cross_entropy = Adapter(
    "hw1.SoftmaxCrossEntropy()",
    _softmax_cross_entropy,
    "derivative() is the gradient of the summed losses (dl = 1): dx = dl[:, None] * derivative()",
)
softmax_cross_entropy_mean = Adapter(
    "modules.SoftMaxModule() -> modules.CrossEntropyModule() (the UvA MLP's output chain)",
    _softmax_then_cross_entropy,
    "the two hand-written backward passes composed, not the fused shortcut",
)
batchnorm = Adapter(
    "modules.BatchNormModule(J, eps) in training mode",
    _normalization(M.BatchNormModule),
    "hw1.BatchNorm is not used: its eps is fixed at 1e-8; dxhat, dvar and dmu are not module outputs",
)
layernorm = Adapter("modules.LayerNormModule(J, eps)", _normalization(M.LayerNormModule))
mlp = Adapter(
    "mlp.MLP(I, [J, K], C, activation='relu') + modules.CrossEntropyModule()",
    _mlp,
    "weights and biases set from W1 b1 W2 b2 W3 b3; the per-layer deltas (dz, dh2, ...) are not module "
    "outputs, only the parameter gradients",
)
