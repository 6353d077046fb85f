"""The hand-written NumPy layers behind the catalogue: one `Adapter` per catalogue entry that a layer
implements, and one `ModuleBinding` per UvA module class that computes a catalogue derivation by itself.

Adapters are named like their entry; verify's catalogue records refer to them by import path
("implementations.numpy.catalogue:linear"), so the verifier never imports this package. An adapter
receives every input of the derivation by name (float64 arrays; scalar inputs such as the leaky slope
`a` and `eps` as floats) and the upstream gradient under its name (`dy`, `dl`; absent when the output is
a scalar loss, whose upstream gradient is 1). `prepare(values)` builds the layer with its parameters set
from copies of the values, runs its forward pass once and returns a `Prepared`: the forward output and
`backward()`, which runs the layer's backward pass alone and returns {gradient name as written in the
.deriv file: array} for the gradients the layer itself produces, converted to the derivation's
convention where the course's differs (`conversion` says how). `run(values)` is the two in a row and is
what the `numpy` oracle checks; `python -m verify bench` times `backward()`, so the bench times exactly
what the oracle checks.

`MODULE_BINDINGS` says, for the UvA modules a `mlp.MLP` is made of (linear, the activations, batch and
layer norm), which derivation each computes and how the derivation's inputs map onto the module's
`params` and attributes. The adapters of those entries are built from it, and `generated.py` reads a
module's values through it to feed the generated backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from implementations.numpy import hw1
from implementations.numpy import modules as M
from implementations.numpy.mlp import MLP

Values = Mapping[str, np.ndarray | float]
Gradients = dict[str, np.ndarray]
Result = tuple[np.ndarray, Gradients]


@dataclass(frozen=True)
class Prepared:
    """A layer after its forward pass: the output, and its backward pass ready to run (as often as
    wanted; each call recomputes the same gradients)."""

    output: np.ndarray
    backward: Callable[[], Gradients]


@dataclass(frozen=True)
class Adapter:
    module: str  # what is checked, for the report, e.g. "modules.LinearModule(I, J)"
    prepare: Callable[[Values], Prepared]
    conversion: str = ""  # any convention conversion applied, in words

    def run(self, values: Values) -> Result:
        """(forward output, {gradient name: array}): the forward pass, then the backward pass."""
        prepared = self.prepare(values)
        return prepared.output, prepared.backward()


@dataclass(frozen=True)
class ModuleBinding:
    """A UvA module class that computes one catalogue derivation, and how their names correspond.

    The module's input is the derivation's `x`, its output the derivation's output, and the value its
    `backward(dy)` returns is `dx`. `params` maps a derivation input to the key of `module.params` that
    holds it (its gradient, `d` + the input, is under the same key of `module.grads`); `settings` maps a
    scalar derivation input to the module attribute that holds it.
    """

    module_type: type[M.Module]
    derivation: str  # catalogue name
    build: Callable[[Values], M.Module]  # a module of the shape and settings the derivation's values give
    params: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)

    def inputs(self, module: M.Module, x: np.ndarray) -> dict[str, np.ndarray | float]:
        """The derivation's inputs as `module` holds them, when `x` is its input."""
        held = {name: module.params[key] for name, key in self.params.items()}
        held.update({name: getattr(module, attribute) for name, attribute in self.settings.items()})
        return {"x": x, **held}

    def prepare(self, values: Values) -> Prepared:
        module = self.build(values)
        for name, key in self.params.items():
            module.params[key] = values[name].copy()
        output = module.forward(values["x"])

        def backward() -> Gradients:
            dx = module.backward(values["dy"])
            return {"dx": dx, **{"d" + name: module.grads[key] for name, key in self.params.items()}}

        return Prepared(output, backward)


def _parameterless(module_type: type[M.Module], derivation: str) -> ModuleBinding:
    return ModuleBinding(module_type, derivation, lambda values: module_type())


def _normalization(
    module_type: type[M.BatchNormModule | M.LayerNormModule], derivation: str
) -> ModuleBinding:
    return ModuleBinding(
        module_type,
        derivation,
        # eps is fixed in the .deriv files: the module is built with the derivation's value.
        lambda values: module_type(values["x"].shape[1], eps=float(values["eps"])),
        params={"gamma": "gamma", "beta": "beta"},
        settings={"eps": "eps"},
    )


MODULE_BINDINGS: dict[type[M.Module], ModuleBinding] = {
    binding.module_type: binding
    for binding in [
        ModuleBinding(
            M.LinearModule,
            "linear",
            lambda values: M.LinearModule(values["W"].shape[1], values["W"].shape[0]),
            params={"W": "weight", "b": "bias"},
        ),
        _parameterless(M.ReLUModule, "relu"),
        ModuleBinding(
            M.LeakyReLUModule,
            "leaky_relu",
            lambda values: M.LeakyReLUModule(float(values["a"])),
            settings={"a": "neg_slope"},
        ),
        _parameterless(M.ELUModule, "elu"),
        _parameterless(M.SigmoidModule, "sigmoid"),
        _parameterless(M.TanhModule, "tanh"),
        _parameterless(M.SoftMaxModule, "softmax"),
        _normalization(M.BatchNormModule, "batchnorm"),
        _normalization(M.LayerNormModule, "layernorm"),
    ]
}


def _bound(module_type: type[M.Module]) -> Callable[[Values], Prepared]:
    return MODULE_BINDINGS[module_type].prepare


def _linear_column(values: Values) -> Prepared:
    # The column form is the batch form for a batch of one sample: x (I,) becomes a 1 x I row.
    batch = _bound(M.LinearModule)(dict(values, x=values["x"][None, :], dy=values["dy"][None, :]))

    def backward() -> Gradients:
        grads = batch.backward()
        return {**grads, "dx": grads["dx"][0]}

    return Prepared(batch.output[0], backward)


class _Upstream:
    """A stand-in criterion for hw1.MLP whose derivative() is a given upstream gradient dy."""

    def __init__(self, dy: np.ndarray) -> None:
        self.dy = dy

    def __call__(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return np.zeros(len(logits))

    def derivative(self) -> np.ndarray:
        return self.dy


def _linear_cmu(values: Values) -> Prepared:
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
    output = mlp.forward(values["x"])

    def backward() -> Gradients:
        dx = mlp.backward(dy)  # only labels.shape[0] (the batch size) is read from the labels argument
        return {"dx": dx, "dW": n * mlp.dW[0], "db": n * mlp.db[0].reshape(-1)}

    return Prepared(output, backward)


def _identity(values: Values) -> Prepared:
    activation = hw1.Identity()
    output = activation(values["x"])
    return Prepared(output, lambda: {"dx": values["dy"] * activation.derivative()})


def _cross_entropy(values: Values) -> Prepared:
    loss = M.CrossEntropyModule()
    x, t = values["x"], values["t"]
    return Prepared(np.asarray(loss.forward(x, t)), lambda: {"dx": loss.backward(x, t)})


def _softmax_cross_entropy(values: Values) -> Prepared:
    criterion = hw1.SoftmaxCrossEntropy()
    output = criterion(values["x"], values["t"])
    return Prepared(output, lambda: {"dx": values["dl"][:, None] * criterion.derivative()})


def _softmax_then_cross_entropy(values: Values) -> Prepared:
    softmax, loss = M.SoftMaxModule(), M.CrossEntropyModule()
    p = softmax.forward(values["x"])
    output = np.asarray(loss.forward(p, values["t"]))
    return Prepared(output, lambda: {"dx": softmax.backward(loss.backward(p, values["t"]))})


def _mlp(values: Values) -> Prepared:
    w1, w2, w3 = values["W1"], values["W2"], values["W3"]
    mlp = MLP(w1.shape[1], [w1.shape[0], w2.shape[0]], w3.shape[0], activation="relu")
    linears = [module for module in mlp.modules if isinstance(module, M.LinearModule)]
    for layer, index in zip(linears, "123", strict=True):
        layer.params["weight"] = values[f"W{index}"].copy()
        layer.params["bias"] = values[f"b{index}"].copy()
    loss = M.CrossEntropyModule()
    p = mlp.forward(values["x"])
    output = np.asarray(loss.forward(p, values["t"]))

    def backward() -> Gradients:
        mlp.backward(loss.backward(p, values["t"]))
        grads = {}
        for layer, index in zip(linears, "123", strict=True):
            grads[f"dW{index}"] = layer.grads["weight"]
            grads[f"db{index}"] = layer.grads["bias"]
        return grads

    return Prepared(output, backward)


linear = Adapter("modules.LinearModule(I, J)", _bound(M.LinearModule))
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
relu = Adapter("modules.ReLUModule()", _bound(M.ReLUModule))
leaky_relu = Adapter("modules.LeakyReLUModule(a)", _bound(M.LeakyReLUModule))
elu = Adapter("modules.ELUModule()", _bound(M.ELUModule))
sigmoid = Adapter("modules.SigmoidModule()", _bound(M.SigmoidModule))
tanh = Adapter("modules.TanhModule()", _bound(M.TanhModule))
softmax = Adapter("modules.SoftMaxModule()", _bound(M.SoftMaxModule))
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
    _bound(M.BatchNormModule),
    "hw1.BatchNorm is not used: its eps is fixed at 1e-8; dxhat, dvar and dmu are not module outputs",
)
layernorm = Adapter("modules.LayerNormModule(J, eps)", _bound(M.LayerNormModule))
mlp = Adapter(
    "mlp.MLP(I, [J, K], C, activation='relu') + modules.CrossEntropyModule()",
    _mlp,
    "weights and biases set from W1 b1 W2 b2 W3 b3; the per-layer deltas (dz, dh2, ...) are not module "
    "outputs, only the parameter gradients",
)
