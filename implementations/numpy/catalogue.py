"""The hand-written NumPy layers behind the catalogue: one `verify.code.Binding` per catalogue entry that a
layer implements, and one `ModuleBinding` per UvA module class that computes a catalogue derivation by
itself.

A binding is what `verify.check_code` needs to check code against a derivation: the module (a class),
how its names map to the derivation's, the conventions it declares, and how to build it for a sample's
values where its constructor needs more than the names say. The `numpy` oracle runs them through the
same path as `python -m verify code` (`verify.code.target`), with the integer constants and fixed
sizes of the file's [sizes] among the values (a stride `S`, a padding `P`, a pooling window `KH` x `KW`): verify's catalogue records name them by
import path ("implementations.numpy.catalogue:linear"), so the verifier never imports this package.
`python -m verify bench` times the backward pass of the same prepared target, so the bench times
exactly what the oracle checks.

`MODULE_BINDINGS` says, for the UvA modules a `mlp.MLP` is made of (linear, the activations, batch and
layer norm), which derivation each computes and how the derivation's inputs map onto the module's
`params` and attributes. Their catalogue bindings are made from it, and `generated.py` reads a module's
values through it to feed the generated backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from implementations.numpy import hw1
from implementations.numpy import modules as M
from implementations.numpy.mlp import MLP
from verify.code import Binding, Convention

Values = Mapping[str, np.ndarray | float]


@dataclass(frozen=True)
class ModuleBinding:
    """A UvA module class that computes one catalogue derivation, and how their names correspond.

    The module's input is the derivation's `x`, its output the derivation's output, and the value its
    `backward(dy)` returns is `dx`. `params` maps a derivation input to the key of `module.params` that
    holds it (its gradient, `d` + the input, is under the same key of `module.grads`); `settings` maps a
    scalar derivation input to the module attribute that holds it; `constants` maps an integer constant
    or fixed size of the derivation's [sizes] (stride, padding, window) to the module attribute that must
    equal it for the derivation to describe the module.
    """

    module_type: type[M.Module]
    derivation: str  # catalogue name
    build: Callable[[Values], M.Module]  # a module of the shape and settings the derivation's values give
    params: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, str] = field(default_factory=dict)

    def mismatches(self, module: M.Module, constants: Mapping[str, int]) -> list[str]:
        """The constants of the derivation that `module` does not share ('S = 1 but stride = 2')."""
        return [
            f"{name} = {constants[name]} but {attribute} = {getattr(module, attribute)}"
            for name, attribute in self.constants.items()
            if getattr(module, attribute) != constants[name]
        ]

    def inputs(self, module: M.Module, x: np.ndarray) -> dict[str, np.ndarray | float]:
        """The derivation's inputs as `module` holds them, when `x` is its input."""
        held = {name: module.params[key] for name, key in self.params.items()}
        held.update({name: getattr(module, attribute) for name, attribute in self.settings.items()})
        return {"x": x, **held}

    def binding(self, description: str) -> Binding:
        """The module as `verify.check_code` takes it: its params keys and attributes named by the
        derivation's inputs, built by `build`."""
        names = {key: name for name, key in self.params.items()}
        names.update({attribute: name for name, attribute in self.settings.items()})
        return Binding(self.module_type, names, build=self.build, description=description)


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


def _windows(values: Values, kernel: str | None = None) -> dict:
    """Kernel size, stride and padding from a windowed derivation's [sizes]: its fixed window KH x KW, or
    the kernel tensor's spatial axes."""
    size = (values["KH"], values["KW"]) if kernel is None else values[kernel].shape[2:]
    return {"kernel_size": size, "stride": values["S"], "padding": values["P"]}


_WINDOW_CONSTANTS = {"S": "stride", "P": "padding"}
_POOL_CONSTANTS = {**_WINDOW_CONSTANTS, "KH": "kernel_height", "KW": "kernel_width"}
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
        ModuleBinding(
            M.Conv2dModule,
            "conv2d",
            lambda values: M.Conv2dModule(
                values["K"].shape[1], values["K"].shape[0], **_windows(values, "K")
            ),
            params={"K": "weight", "b": "bias"},
            constants=_WINDOW_CONSTANTS,
        ),
        ModuleBinding(
            M.MaxPool2dModule,
            "maxpool2d",
            lambda values: M.MaxPool2dModule(**_windows(values)),
            constants=_POOL_CONSTANTS,
        ),
        ModuleBinding(
            M.AvgPool2dModule,
            "avgpool2d",
            lambda values: M.AvgPool2dModule(**_windows(values)),
            constants=_POOL_CONSTANTS,
        ),
    ]
}


def _bound(module_type: type[M.Module], description: str) -> Binding:
    return MODULE_BINDINGS[module_type].binding(description)


class SoftmaxCrossEntropyMean:
    """modules.SoftMaxModule() then modules.CrossEntropyModule() (the UvA MLP's output chain) as one loss
    module: forward(x, y) is the batch-mean loss of softmax(x), backward(x, y) composes the two
    hand-written backward passes (not the fused shortcut)."""

    def __init__(self) -> None:
        self.softmax, self.loss = M.SoftMaxModule(), M.CrossEntropyModule()

    def forward(self, x: np.ndarray, y: np.ndarray) -> float:
        self.p = self.softmax.forward(x)
        return self.loss.forward(self.p, y)

    def backward(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.softmax.backward(self.loss.backward(self.p, y))


class MLPLoss:
    """mlp.MLP(I, [J, K], C, activation='relu') then modules.CrossEntropyModule(), as one loss module:
    `params` W1 b1 W2 b2 W3 b3 are its three linear layers' weights and biases, set into the layers at
    each forward; after backward, `grads` holds theirs under the same keys."""

    LAYERS = "123"

    def __init__(self, values: Values) -> None:
        w1, w2, w3 = values["W1"], values["W2"], values["W3"]
        self.mlp = MLP(w1.shape[1], [w1.shape[0], w2.shape[0]], w3.shape[0], activation="relu")
        self.linears = [module for module in self.mlp.modules if isinstance(module, M.LinearModule)]
        self.loss = M.CrossEntropyModule()
        self.params = {}
        for layer, k in zip(self.linears, self.LAYERS, strict=True):
            self.params.update({f"W{k}": layer.params["weight"], f"b{k}": layer.params["bias"]})
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, t: np.ndarray) -> float:
        for layer, k in zip(self.linears, self.LAYERS, strict=True):
            layer.params["weight"], layer.params["bias"] = self.params[f"W{k}"], self.params[f"b{k}"]
        self.p = self.mlp.forward(x)
        return self.loss.forward(self.p, t)

    def backward(self, x: np.ndarray, t: np.ndarray) -> None:
        self.mlp.backward(self.loss.backward(self.p, t))
        for layer, k in zip(self.linears, self.LAYERS, strict=True):
            self.grads.update({f"W{k}": layer.grads["weight"], f"b{k}": layer.grads["bias"]})


linear = _bound(M.LinearModule, "modules.LinearModule(I, J)")
linear_column = Binding(
    M.LinearModule,
    {"weight": "W", "bias": "b"},
    {"x": frozenset({Convention.ROW})},
    MODULE_BINDINGS[M.LinearModule].build,
    "modules.LinearModule(I, J) on a batch of one (x and dy as 1 x I and 1 x J rows)",
)
linear_cmu = Binding(
    hw1.MLP,
    description="hw1.MLP(I, J, hiddens=[], activations=[Identity()]) with the upstream gradient as its "
    "criterion (it stores dW and db as batch means)",
)
identity = Binding(hw1.Identity, description="hw1.Identity() (dx = dy * derivative())")
relu = _bound(M.ReLUModule, "modules.ReLUModule()")
leaky_relu = _bound(M.LeakyReLUModule, "modules.LeakyReLUModule(a)")
elu = _bound(M.ELUModule, "modules.ELUModule()")
sigmoid = _bound(M.SigmoidModule, "modules.SigmoidModule()")
tanh = _bound(M.TanhModule, "modules.TanhModule()")
softmax = _bound(M.SoftMaxModule, "modules.SoftMaxModule()")
cross_entropy = Binding(M.CrossEntropyModule, description="modules.CrossEntropyModule()")
softmax_cross_entropy = Binding(
    hw1.SoftmaxCrossEntropy,
    description="hw1.SoftmaxCrossEntropy() (dx = dl[:, None] * derivative(), the gradient of the summed losses)",
)
softmax_cross_entropy_mean = Binding(
    SoftmaxCrossEntropyMean,
    description="modules.SoftMaxModule() -> modules.CrossEntropyModule() (the UvA MLP's output chain)",
)
batchnorm = _bound(M.BatchNormModule, "modules.BatchNormModule(J, eps) in training mode")
layernorm = _bound(M.LayerNormModule, "modules.LayerNormModule(J, eps)")
conv2d = _bound(M.Conv2dModule, "modules.Conv2dModule(C, O, (KH, KW), stride=S, padding=P), im2col")
maxpool2d = _bound(M.MaxPool2dModule, "modules.MaxPool2dModule((KH, KW), stride=S, padding=P)")
avgpool2d = _bound(M.AvgPool2dModule, "modules.AvgPool2dModule((KH, KW), stride=S, padding=P)")
mlp = Binding(
    MLPLoss,
    build=MLPLoss,
    # the per-layer deltas (dz, dh2, ...) are no module's outputs: only the parameter gradients are compared
    description="mlp.MLP(I, [J, K], C, activation='relu') + modules.CrossEntropyModule()",
)
