"""The catalogue: where its derivation files are, how a name, a path or a text becomes a `Derivation`,
and one record per entry with what the project knows about it beyond its formulas.

A record names the library op each forward must match (the `torch` and `jax` oracles check the parsed
forward against it before any gradient, so that a mis-parse of the forward shows up as a forward
failure rather than hiding behind gradients that agree with it), the hand-written NumPy adapter the
`numpy` oracle runs (by its import path: the verifier never imports `implementations` itself), and the
benchmark's sizes where the default ones mean something else. Adding an entry is its `.deriv` file and,
when it has a library op or a hand-written module, its record below.

A library op takes a namespace (`t.torch`, `t.F` for torch.nn.functional; `j.jax`, `j.jnp`, `j.nn` for
jax.nn, `j.lax` for jax.lax) and the derivation's inputs by name (float64 tensors of that framework), and
returns the output; the integer constants and fixed sizes of [sizes] (a stride S, a padding P, a pooling
window KH x KW) come with them, as ints. Conventions (W out x in or in x out, mean or per-example loss)
are those of the .deriv file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .model import Derivation, DerivationError
from .parse import parse

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class LibraryOp:
    label: str  # what the forward is compared with, for the report
    fn: Callable[[Any, Mapping[str, Any]], Any]  # (framework namespace, inputs by name) -> output


@dataclass(frozen=True)
class Entry:
    """What the project knows about one catalogue derivation besides its formulas."""

    name: str
    torch: LibraryOp | None = None
    jax: LibraryOp | None = None
    numpy: str | None = None  # "module:attribute" of its hand-written adapter (implementations/numpy)
    no_numpy: str = "no hand-written NumPy module implements it"  # the numpy oracle's skip reason
    # the bench's sizes (full run and --quick) where its defaults don't fit the derivation's size names
    bench_sizes: Mapping[str, int] = field(default_factory=dict)
    bench_quick_sizes: Mapping[str, int] = field(default_factory=dict)

    def library(self, framework: str) -> LibraryOp | None:
        return {"torch": self.torch, "jax": self.jax}.get(framework)


def _mlp_torch(t, v):
    h = t.F.relu(t.F.linear(v["x"], v["W1"], v["b1"]))
    h = t.F.relu(t.F.linear(h, v["W2"], v["b2"]))
    return t.F.cross_entropy(t.F.linear(h, v["W3"], v["b3"]), v["t"])


def _mlp_jax(j, v):
    h = j.nn.relu(v["x"] @ v["W1"].T + v["b1"])
    h = j.nn.relu(h @ v["W2"].T + v["b2"])
    logp = j.nn.log_softmax(h @ v["W3"].T + v["b3"], axis=1)
    return -j.jnp.mean(j.jnp.sum(v["t"] * logp, axis=1))


def _conv_jax(j, v, spatial: int):
    """lax.conv_general_dilated in the torch layout (N C spatial..., O C kernel...), plus the bias."""
    y = j.lax.conv_general_dilated(v["x"], v["K"], (v["S"],) * spatial, [(v["P"], v["P"])] * spatial)
    return y + v["b"].reshape((-1,) + (1,) * spatial)


def _pool_jax(j, v, init, op):
    """lax.reduce_window over the KH x KW windows of x (N C H W), stride S, padding P with `init`."""
    return j.lax.reduce_window(
        v["x"],
        init,
        op,
        (1, 1, v["KH"], v["KW"]),
        (1, 1, v["S"], v["S"]),
        [(0, 0), (0, 0), (v["P"], v["P"]), (v["P"], v["P"])],
    )


def _standardize(j, v, axis):
    return j.nn.standardize(v["x"], axis=axis, epsilon=v["eps"]) * v["gamma"] + v["beta"]


_IMPL = "implementations.numpy.catalogue:"

ENTRIES: dict[str, Entry] = {
    e.name: e
    for e in [
        Entry(
            "linear",
            LibraryOp("F.linear", lambda t, v: t.F.linear(v["x"], v["W"], v["b"])),
            LibraryOp("x @ W.T + b", lambda j, v: v["x"] @ v["W"].T + v["b"]),
            _IMPL + "linear",
        ),
        Entry(
            "linear_column",
            LibraryOp("F.linear", lambda t, v: t.F.linear(v["x"], v["W"], v["b"])),
            LibraryOp("W @ x + b", lambda j, v: v["W"] @ v["x"] + v["b"]),
            _IMPL + "linear_column",
        ),
        Entry(
            "linear_cmu",
            LibraryOp("F.linear with W^T", lambda t, v: t.F.linear(v["x"], v["W"].T, v["b"])),
            LibraryOp("x @ W + b", lambda j, v: v["x"] @ v["W"] + v["b"]),
            _IMPL + "linear_cmu",
        ),
        Entry(
            "identity",
            LibraryOp("nn.Identity", lambda t, v: t.torch.nn.Identity()(v["x"])),
            LibraryOp("identity", lambda j, v: v["x"]),
            _IMPL + "identity",
        ),
        Entry(
            "relu",
            LibraryOp("F.relu", lambda t, v: t.F.relu(v["x"])),
            LibraryOp("jax.nn.relu", lambda j, v: j.nn.relu(v["x"])),
            _IMPL + "relu",
        ),
        Entry(
            "leaky_relu",
            LibraryOp("F.leaky_relu", lambda t, v: t.F.leaky_relu(v["x"], float(v["a"]))),
            LibraryOp("jax.nn.leaky_relu", lambda j, v: j.nn.leaky_relu(v["x"], v["a"])),
            _IMPL + "leaky_relu",
        ),
        Entry(
            "elu",
            LibraryOp("F.elu", lambda t, v: t.F.elu(v["x"], alpha=1.0)),
            LibraryOp("jax.nn.elu", lambda j, v: j.nn.elu(v["x"])),
            _IMPL + "elu",
        ),
        Entry(
            "sigmoid",
            LibraryOp("torch.sigmoid", lambda t, v: t.torch.sigmoid(v["x"])),
            LibraryOp("jax.nn.sigmoid", lambda j, v: j.nn.sigmoid(v["x"])),
            _IMPL + "sigmoid",
        ),
        Entry(
            "softplus",
            LibraryOp("F.softplus", lambda t, v: t.F.softplus(v["x"])),
            LibraryOp("jax.nn.softplus", lambda j, v: j.nn.softplus(v["x"])),
        ),
        Entry(
            "tanh",
            LibraryOp("torch.tanh", lambda t, v: t.torch.tanh(v["x"])),
            LibraryOp("jnp.tanh", lambda j, v: j.jnp.tanh(v["x"])),
            _IMPL + "tanh",
        ),
        Entry(
            "softmax",
            LibraryOp("F.softmax", lambda t, v: t.F.softmax(v["x"], dim=1)),
            LibraryOp("jax.nn.softmax", lambda j, v: j.nn.softmax(v["x"], axis=1)),
            _IMPL + "softmax",
        ),
        Entry(
            "cross_entropy",
            LibraryOp("F.nll_loss of log", lambda t, v: t.F.nll_loss(t.torch.log(v["x"]), v["t"].argmax(1))),
            LibraryOp(
                "mean of -sum(t log x)",
                lambda j, v: -j.jnp.mean(j.jnp.sum(v["t"] * j.jnp.log(v["x"]), axis=1)),
            ),
            _IMPL + "cross_entropy",
        ),
        Entry(
            "softmax_cross_entropy",
            LibraryOp(
                "F.cross_entropy(reduction='none')",
                lambda t, v: t.F.cross_entropy(v["x"], v["t"], reduction="none"),
            ),
            LibraryOp(
                "-sum(t * jax.nn.log_softmax)",
                lambda j, v: -j.jnp.sum(v["t"] * j.nn.log_softmax(v["x"], axis=1), axis=1),
            ),
            _IMPL + "softmax_cross_entropy",
        ),
        Entry(
            "softmax_cross_entropy_mean",
            LibraryOp("F.cross_entropy", lambda t, v: t.F.cross_entropy(v["x"], v["t"])),
            LibraryOp(
                "mean of -sum(t * jax.nn.log_softmax)",
                lambda j, v: -j.jnp.mean(j.jnp.sum(v["t"] * j.nn.log_softmax(v["x"], axis=1), axis=1)),
            ),
            _IMPL + "softmax_cross_entropy_mean",
        ),
        Entry(
            "batchnorm",
            LibraryOp(
                "F.batch_norm(training=True)",
                lambda t, v: t.F.batch_norm(
                    v["x"], None, None, v["gamma"], v["beta"], training=True, eps=float(v["eps"])
                ),
            ),
            LibraryOp("jax.nn.standardize(axis=0)", lambda j, v: _standardize(j, v, 0)),
            _IMPL + "batchnorm",
        ),
        Entry(
            "layernorm",
            LibraryOp(
                "F.layer_norm",
                lambda t, v: t.F.layer_norm(
                    v["x"], v["x"].shape[1:], v["gamma"], v["beta"], eps=float(v["eps"])
                ),
            ),
            LibraryOp("jax.nn.standardize(axis=1)", lambda j, v: _standardize(j, v, 1)),
            _IMPL + "layernorm",
        ),
        Entry(
            "conv2d",
            LibraryOp(
                "F.conv2d", lambda t, v: t.F.conv2d(v["x"], v["K"], v["b"], stride=v["S"], padding=v["P"])
            ),
            LibraryOp("lax.conv_general_dilated", lambda j, v: _conv_jax(j, v, 2)),
            _IMPL + "conv2d",
            bench_sizes={"N": 32, "C": 64, "O": 64, "H": 32, "W": 32, "KH": 3, "KW": 3},
            bench_quick_sizes={"N": 4, "C": 3, "O": 5, "H": 8, "W": 7, "KH": 3, "KW": 3},
        ),
        Entry(
            "conv1d",
            LibraryOp(
                "F.conv1d", lambda t, v: t.F.conv1d(v["x"], v["K"], v["b"], stride=v["S"], padding=v["P"])
            ),
            LibraryOp("lax.conv_general_dilated", lambda j, v: _conv_jax(j, v, 1)),
            bench_sizes={"N": 32, "C": 64, "O": 64, "L": 1024, "KL": 3},
            bench_quick_sizes={"N": 4, "C": 3, "O": 5, "L": 16, "KL": 3},
        ),
        Entry(
            "conv2d_flipped",
            LibraryOp(
                "F.conv2d with the kernel flipped",
                lambda t, v: t.F.conv2d(v["X"][None, None], v["K"].flip(0, 1)[None, None])[0, 0],
            ),
            LibraryOp(
                "jax.scipy.signal.convolve2d(mode='valid')",
                lambda j, v: j.signal.convolve2d(v["X"], v["K"], mode="valid"),
            ),
            bench_sizes={"H": 1024, "W": 1024},
            bench_quick_sizes={"H": 16, "W": 12},
        ),
        Entry(
            "maxpool2d",
            LibraryOp(
                "F.max_pool2d",
                lambda t, v: t.F.max_pool2d(v["x"], (v["KH"], v["KW"]), stride=v["S"], padding=v["P"]),
            ),
            LibraryOp("lax.reduce_window(max)", lambda j, v: _pool_jax(j, v, -j.jnp.inf, j.lax.max)),
            _IMPL + "maxpool2d",
            bench_sizes={"N": 32, "C": 64, "H": 32, "W": 32},
            bench_quick_sizes={"N": 4, "C": 3, "H": 8, "W": 7},
        ),
        Entry(
            "avgpool2d",
            LibraryOp(
                "F.avg_pool2d",
                lambda t, v: t.F.avg_pool2d(v["x"], (v["KH"], v["KW"]), stride=v["S"], padding=v["P"]),
            ),
            LibraryOp(
                "lax.reduce_window(add) / (KH*KW)",
                lambda j, v: _pool_jax(j, v, 0.0, j.lax.add) / (v["KH"] * v["KW"]),
            ),
            _IMPL + "avgpool2d",
            bench_sizes={"N": 32, "C": 64, "H": 32, "W": 32},
            bench_quick_sizes={"N": 4, "C": 3, "H": 8, "W": 7},
        ),
        Entry(
            "global_avgpool",
            LibraryOp(
                "F.adaptive_avg_pool2d(x, 1)", lambda t, v: t.F.adaptive_avg_pool2d(v["x"], 1)[:, :, 0, 0]
            ),
            LibraryOp("jnp.mean over H, W", lambda j, v: j.jnp.mean(v["x"], axis=(2, 3))),
            bench_sizes={"N": 32, "C": 64, "H": 32, "W": 32},
            bench_quick_sizes={"N": 4, "C": 3, "H": 8, "W": 7},
        ),
        Entry(
            "mlp",
            LibraryOp("F.linear/F.relu/F.cross_entropy", _mlp_torch),
            LibraryOp("jax.nn.relu/log_softmax", _mlp_jax),
            _IMPL + "mlp",
            # K is the second hidden width here, not a number of classes: 1024 wide, and distinct from C
            bench_sizes={"N": 512, "I": 1024, "J": 1024, "K": 1024, "C": 1000},
            bench_quick_sizes={"N": 8, "I": 16, "J": 12, "K": 14, "C": 10},
        ),
    ]
}


def entry(name: str) -> Entry:
    """The record of catalogue entry `name`; an empty one (no library op, no module) if it has none."""
    return ENTRIES.get(name) or Entry(name)


def torch_namespace() -> SimpleNamespace:
    import torch
    import torch.nn.functional as F

    return SimpleNamespace(torch=torch, F=F)


def jax_namespace() -> SimpleNamespace:
    import jax
    import jax.numpy as jnp
    import jax.scipy.signal

    return SimpleNamespace(jax=jax, jnp=jnp, nn=jax.nn, lax=jax.lax, signal=jax.scipy.signal)


# -- the derivation files -------------------------------------------------------------------------------


@cache
def folder() -> Path:
    """The catalogue's folder: `derivations/` beside the package in a source checkout, else the copy
    installed inside the package."""
    checkout = Path(__file__).resolve().parent.parent / "derivations"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("verify") / "derivations"))


def paths() -> list[Path]:
    """Every catalogue file, as a user would type its path (relative to the working directory when it
    lies below it)."""
    return [Path(_display(p)) for p in sorted(folder().glob("*.deriv"))]


def name_of(d: Derivation) -> str | None:
    """The catalogue name of a derivation read from a catalogue file, or from a copy of one (a source
    checkout's derivations/ beside an installed package: `pytest derivations/`), else None."""
    if d.file is None:
        return None
    path = Path(d.file).resolve()
    if path.suffix != ".deriv":
        return None
    if path.parent == folder().resolve():
        return path.stem
    original = folder() / path.name
    try:  # the same bytes: the catalogue's library ops and hand-written modules are those of this formula
        same = original.is_file() and path.read_bytes() == original.read_bytes()
    except OSError:
        return None
    return path.stem if same else None


def read(path_or_text: str | Path) -> tuple[str, str | None, str]:
    """(text, file as shown in messages, name) from a path, a catalogue name or the text itself (any
    string with a line break or a '[' is text)."""
    if isinstance(path_or_text, Path) or ("\n" not in str(path_or_text) and "[" not in str(path_or_text)):
        path = Path(path_or_text)
        found = folder() / f"{path_or_text}.deriv"
        if not path.exists() and _NAME.match(str(path_or_text)):
            if not found.exists():  # a bare name is meant as a catalogue name more often than as a file
                raise DerivationError(
                    "no catalogue derivation or file of this name (`gradverify list` names the catalogue)",
                    0,
                    0,
                    str(path_or_text),
                )
            path = found
            path_or_text = _display(path)
        try:
            data = path.read_bytes()
        except (OSError, ValueError) as e:
            reason = (getattr(e, "strerror", None) or str(e)).lower()
            raise DerivationError(f"cannot read file: {reason}", 0, 0, str(path_or_text)) from None
        return decode(data, str(path_or_text)), str(path_or_text), path.stem
    return str(path_or_text), None, "derivation"


def decode(data: bytes, file: str) -> str:
    """A file's text: UTF-8, after a byte order mark if it starts with one. Bytes that are not UTF-8 are
    an error at the line and column of the first of them."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start].decode("utf-8")
        line = before.count("\n") + 1
        column = len(before.rsplit("\n", 1)[-1]) + 1
        message = f"not UTF-8 text: byte 0x{data[e.start]:02x} (save the file as UTF-8)"
        raise DerivationError(message, line, column, file) from None


def load(path_or_text: str | Path, name: str | None = None) -> Derivation:
    """Parse a derivation from a file path, a catalogue name, or the text itself."""
    text, file, derived_name = read(path_or_text)
    return parse(text, file, name or derived_name)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
