"""The library op each catalogue forward must match: the `torch` and `jax` oracles check the parsed
forward against these before they check any gradient, so that a mis-parse of the forward shows up as
a forward failure rather than hiding behind gradients that agree with it.

Each entry takes the derivation's inputs by name (tensors of the framework, float64) and returns the
output. Conventions (W out x in or in x out, mean or per-example loss) are those of the .deriv file.
"""

from __future__ import annotations


def torch_ops():
    import torch
    import torch.nn.functional as F

    def mlp(v):
        h = F.relu(F.linear(v["x"], v["W1"], v["b1"]))
        h = F.relu(F.linear(h, v["W2"], v["b2"]))
        return F.cross_entropy(F.linear(h, v["W3"], v["b3"]), v["t"])

    return {
        "linear": ("F.linear", lambda v: F.linear(v["x"], v["W"], v["b"])),
        "linear_column": ("F.linear", lambda v: F.linear(v["x"], v["W"], v["b"])),
        "linear_cmu": ("F.linear with W^T", lambda v: F.linear(v["x"], v["W"].T, v["b"])),
        "identity": ("nn.Identity", lambda v: torch.nn.Identity()(v["x"])),
        "relu": ("F.relu", lambda v: F.relu(v["x"])),
        "leaky_relu": ("F.leaky_relu", lambda v: F.leaky_relu(v["x"], float(v["a"]))),
        "elu": ("F.elu", lambda v: F.elu(v["x"], alpha=1.0)),
        "sigmoid": ("torch.sigmoid", lambda v: torch.sigmoid(v["x"])),
        "tanh": ("torch.tanh", lambda v: torch.tanh(v["x"])),
        "softmax": ("F.softmax", lambda v: F.softmax(v["x"], dim=1)),
        "cross_entropy": ("F.nll_loss of log", lambda v: F.nll_loss(torch.log(v["x"]), v["t"].argmax(1))),
        "softmax_cross_entropy": (
            "F.cross_entropy(reduction='none')",
            lambda v: F.cross_entropy(v["x"], v["t"], reduction="none"),
        ),
        "softmax_cross_entropy_mean": ("F.cross_entropy", lambda v: F.cross_entropy(v["x"], v["t"])),
        "batchnorm": (
            "F.batch_norm(training=True)",
            lambda v: F.batch_norm(
                v["x"], None, None, v["gamma"], v["beta"], training=True, eps=float(v["eps"])
            ),
        ),
        "layernorm": (
            "F.layer_norm",
            lambda v: F.layer_norm(v["x"], v["x"].shape[1:], v["gamma"], v["beta"], eps=float(v["eps"])),
        ),
        "mlp": ("F.linear/F.relu/F.cross_entropy", mlp),
    }


def jax_ops():
    import jax
    import jax.numpy as jnp

    def mlp(v):
        h = jax.nn.relu(v["x"] @ v["W1"].T + v["b1"])
        h = jax.nn.relu(h @ v["W2"].T + v["b2"])
        logp = jax.nn.log_softmax(h @ v["W3"].T + v["b3"], axis=1)
        return -jnp.mean(jnp.sum(v["t"] * logp, axis=1))

    def standardize(v, axis):
        return jax.nn.standardize(v["x"], axis=axis, epsilon=v["eps"]) * v["gamma"] + v["beta"]

    return {
        "linear": ("x @ W.T + b", lambda v: v["x"] @ v["W"].T + v["b"]),
        "linear_column": ("W @ x + b", lambda v: v["W"] @ v["x"] + v["b"]),
        "linear_cmu": ("x @ W + b", lambda v: v["x"] @ v["W"] + v["b"]),
        "identity": ("identity", lambda v: v["x"]),
        "relu": ("jax.nn.relu", lambda v: jax.nn.relu(v["x"])),
        "leaky_relu": ("jax.nn.leaky_relu", lambda v: jax.nn.leaky_relu(v["x"], v["a"])),
        "elu": ("jax.nn.elu", lambda v: jax.nn.elu(v["x"])),
        "sigmoid": ("jax.nn.sigmoid", lambda v: jax.nn.sigmoid(v["x"])),
        "tanh": ("jnp.tanh", lambda v: jnp.tanh(v["x"])),
        "softmax": ("jax.nn.softmax", lambda v: jax.nn.softmax(v["x"], axis=1)),
        "cross_entropy": (
            "mean of -sum(t log x)",
            lambda v: -jnp.mean(jnp.sum(v["t"] * jnp.log(v["x"]), axis=1)),
        ),
        "softmax_cross_entropy": (
            "-sum(t * jax.nn.log_softmax)",
            lambda v: -jnp.sum(v["t"] * jax.nn.log_softmax(v["x"], axis=1), axis=1),
        ),
        "softmax_cross_entropy_mean": (
            "mean of -sum(t * jax.nn.log_softmax)",
            lambda v: -jnp.mean(jnp.sum(v["t"] * jax.nn.log_softmax(v["x"], axis=1), axis=1)),
        ),
        "batchnorm": ("jax.nn.standardize(axis=0)", lambda v: standardize(v, 0)),
        "layernorm": ("jax.nn.standardize(axis=1)", lambda v: standardize(v, 1)),
        "mlp": ("jax.nn.relu/log_softmax", mlp),
    }
