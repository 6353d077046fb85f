"""The numpy oracle's bindings: every catalogue record that names one resolves, and every binding, run
through `verify.code` as the oracle runs it, matches an independent reference.

The references below are the forward formulas written directly in NumPy; gradients are central finite
differences of sum(upstream * reference forward), so a binding passes only when the layer it names and
any convention conversion applied to it are both right.
"""

import re
from pathlib import Path

import numpy as np
import pytest

from implementations.numpy.gradcheck import numeric_grad
from verify import catalogue
from verify.code import Binding, target
from verify.oracles.handwritten import resolve

ADAPTERS = {name: resolve(e.numpy) for name, e in catalogue.ENTRIES.items() if e.numpy}


def prepare(name, values, expected):
    """The binding of entry `name` bound to its derivation, prepared at `values` as the oracle does it."""
    return target(ADAPTERS[name], catalogue.load(name)).prepare(values, np.asarray(expected, dtype=float))


DERIVATIONS = Path(__file__).resolve().parent.parent / "derivations"


def declared_gradients(name):
    """Targets of the [gradients] section of derivations/NAME.deriv (read as text)."""
    text = (DERIVATIONS / f"{name}.deriv").read_text()
    section = text.split("[gradients]")[1].split("\n[")[0]
    return set(re.findall(r"^(\w+)\s*(?:\[|=)", section, flags=re.MULTILINE))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def normalise(x, gamma, beta, axis, eps=1e-5):
    mean = x.mean(axis=axis, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axis, keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def mlp_loss(v):
    a1 = np.maximum(v["x"] @ v["W1"].T + v["b1"], 0)
    a2 = np.maximum(a1 @ v["W2"].T + v["b2"], 0)
    p = softmax(a2 @ v["W3"].T + v["b3"])
    return -np.sum(v["t"] * np.log(p)) / len(p)


def windows(x, v, fill=0.0):
    """The windows of x (N x C x H x W) for stride S, padding P and a KH x KW window, one at a time:
    ((i, j), N x C x KH x KW window)."""
    s, p, kh, kw = v["S"], v["P"], v["KH"], v["KW"]
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill)
    rows, cols = (x.shape[2] + 2 * p - kh) // s + 1, (x.shape[3] + 2 * p - kw) // s + 1
    for i in range(rows):
        for j in range(cols):
            yield (i, j), padded[:, :, s * i : s * i + kh, s * j : s * j + kw]


def conv2d(v):
    kernel = v["K"]
    at = {**v, "KH": kernel.shape[2], "KW": kernel.shape[3]}
    parts = dict(windows(v["x"], at))
    rows, cols = max(i for i, _ in parts) + 1, max(j for _, j in parts) + 1
    y = np.empty((len(v["x"]), len(kernel), rows, cols))
    for (i, j), window in parts.items():
        y[:, :, i, j] = np.einsum("nchw,ochw->no", window, kernel)
    return y + v["b"][None, :, None, None]


def pool(v, fill, reduce):
    parts = dict(windows(v["x"], v, fill))
    rows, cols = max(i for i, _ in parts) + 1, max(j for _, j in parts) + 1
    y = np.empty(v["x"].shape[:2] + (rows, cols))
    for (i, j), window in parts.items():
        y[:, :, i, j] = reduce(window, axis=(2, 3))
    return y


# the windowed layers' settings: integer constants and fixed sizes of their [sizes], as the oracle passes them
SETTINGS = {
    "conv2d": {"S": 2, "P": 1},
    "maxpool2d": {"S": 2, "P": 1, "KH": 3, "KW": 3},
    "avgpool2d": {"S": 2, "P": 1, "KH": 3, "KW": 2},
}

# name: (reference forward from the values, {input: shape}); sizes N=4, I=3, J=5, K=6, C=2, distinct.
N, I, J, K, C = 4, 3, 5, 6, 2
CASES = {
    "linear": (lambda v: v["x"] @ v["W"].T + v["b"], {"x": (N, I), "W": (J, I), "b": (J,)}),
    "linear_column": (lambda v: v["W"] @ v["x"] + v["b"], {"x": (I,), "W": (J, I), "b": (J,)}),
    "linear_cmu": (lambda v: v["x"] @ v["W"] + v["b"], {"x": (N, I), "W": (I, J), "b": (J,)}),
    "identity": (lambda v: v["x"], {"x": (N, I)}),
    "relu": (lambda v: np.maximum(v["x"], 0), {"x": (N, I)}),
    "leaky_relu": (lambda v: np.maximum(v["x"], 0) + v["a"] * np.minimum(v["x"], 0), {"x": (N, I), "a": ()}),
    "elu": (lambda v: np.where(v["x"] >= 0, v["x"], np.exp(v["x"]) - 1), {"x": (N, I)}),
    "sigmoid": (lambda v: 1 / (1 + np.exp(-v["x"])), {"x": (N, I)}),
    "tanh": (lambda v: np.tanh(v["x"]), {"x": (N, I)}),
    "softmax": (lambda v: softmax(v["x"]), {"x": (N, K)}),
    "cross_entropy": (lambda v: -np.sum(v["t"] * np.log(v["x"])) / len(v["x"]), {"x": (N, K), "t": (N, K)}),
    "softmax_cross_entropy": (
        lambda v: -np.sum(v["t"] * np.log(softmax(v["x"])), axis=1),
        {"x": (N, K), "t": (N, K)},
    ),
    "softmax_cross_entropy_mean": (
        lambda v: -np.sum(v["t"] * np.log(softmax(v["x"]))) / len(v["x"]),
        {"x": (N, K), "t": (N, K)},
    ),
    "batchnorm": (
        lambda v: normalise(v["x"], v["gamma"], v["beta"], 0, v["eps"]),
        {"x": (N, J), "gamma": (J,), "beta": (J,), "eps": ()},
    ),
    "layernorm": (
        lambda v: normalise(v["x"], v["gamma"], v["beta"], 1, v["eps"]),
        {"x": (N, J), "gamma": (J,), "beta": (J,), "eps": ()},
    ),
    "mlp": (
        mlp_loss,
        {
            "x": (N, I),
            "W1": (J, I),
            "b1": (J,),
            "W2": (K, J),
            "b2": (K,),
            "W3": (C, K),
            "b3": (C,),
            "t": (N, C),
        },
    ),
    "conv2d": (conv2d, {"x": (2, 3, 7, 6), "K": (4, 3, 3, 2), "b": (4,)}),
    "maxpool2d": (lambda v: pool(v, -np.inf, np.max), {"x": (2, 3, 7, 6)}),
    "avgpool2d": (lambda v: pool(v, 0.0, np.mean), {"x": (2, 3, 7, 6)}),
}
UPSTREAM = {"softmax_cross_entropy": "dl"}
SCALAR_LOSSES = {"cross_entropy", "softmax_cross_entropy_mean", "mlp"}


def sample(name, rng):
    """Random float64 inputs for the case, kept away from kinks; t one-hot; x a probability row where needed."""
    values = {}
    for key, shape in CASES[name][1].items():
        if key == "t":
            values[key] = np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]
        elif key == "a":
            values[key] = float(rng.uniform(0.01, 0.5))
        elif key == "eps":
            values[key] = 1e-5
        elif key == "gamma":
            values[key] = rng.uniform(0.5, 2.0, shape)
        else:
            value = rng.standard_normal(shape)
            values[key] = value + np.sign(value) * 0.1  # never within 0.1 of a ReLU or ELU kink
    if name == "cross_entropy":
        values["x"] = softmax(values["x"])
    return {**values, **SETTINGS.get(name, {})}


def test_every_reference_names_a_binding():
    """Each catalogue record's hand-written NumPy reference resolves to a Binding of a catalogue file."""
    files = {path.stem for path in DERIVATIONS.glob("*.deriv")}
    for name, binding in ADAPTERS.items():
        assert isinstance(binding, Binding) and name in files, name


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_adapter_matches_reference(name):
    """Forward equals the reference formula; each returned gradient is declared in the .deriv and equals FD."""
    assert name in CASES, f"no reference case for {name}: add one"
    reference, shapes = CASES[name]
    rng = np.random.default_rng(sorted(ADAPTERS).index(name))
    values = sample(name, rng)
    expected = reference(values)
    upstream = None if name in SCALAR_LOSSES else rng.standard_normal(np.shape(expected))
    inputs = dict(values)
    if upstream is not None:
        inputs[UPSTREAM.get(name, "dy")] = upstream
    snapshot = {key: np.copy(value) for key, value in inputs.items()}

    prepared = prepare(name, inputs, expected)
    output, grads = prepared.output, prepared.backward()

    for key, value in inputs.items():
        np.testing.assert_array_equal(value, snapshot[key], err_msg=f"{name}: run() changed input {key}")
    np.testing.assert_allclose(output, expected, rtol=1e-10, atol=1e-12)
    assert grads, f"{name}: the binding returned no gradient"
    assert {f"d{v}" for v in grads} <= declared_gradients(name)

    def loss():
        out = reference(values)
        return float(np.sum(out if upstream is None else upstream * out))

    for variable, grad in grads.items():
        grad_name = f"d{variable}"
        assert variable in shapes, f"{name}: {grad_name} is not the gradient of an input"
        assert grad.shape == shapes[variable], f"{name}: {grad_name} has shape {grad.shape}"
        fd = numeric_grad(loss, values[variable])
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-8, err_msg=f"{name}: {grad_name}")


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_prepared_backward_repeats_itself(name):
    """The backward pass `prepare` hands back (the one the bench times, call after call) returns, on every
    call, the gradients of its first call (what the numpy oracle checks), and a second preparation the
    same output."""
    reference, _ = CASES[name]
    rng = np.random.default_rng(sorted(ADAPTERS).index(name))
    values = sample(name, rng)
    if name not in SCALAR_LOSSES:
        values[UPSTREAM.get(name, "dy")] = rng.standard_normal(np.shape(reference(values)))
    first = prepare(name, values, reference(values))
    output, grads = first.output, first.backward()
    prepared = prepare(name, values, reference(values))
    np.testing.assert_array_equal(prepared.output, output)
    for _ in range(2):
        again = prepared.backward()
        assert set(again) == set(grads)
        for grad_name, grad in grads.items():
            np.testing.assert_array_equal(again[grad_name], grad, err_msg=f"{name}: {grad_name}")
