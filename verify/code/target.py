"""Code bound to a derivation: what `check_code`, the `numpy` oracle and the benchmark run.

`Target.prepare(values)` takes one sample's inputs as the derivation names and lays them out (derivation
names, shapes, float64, the upstream gradient under its name), converts them to the code's layout and
dtype, runs the code's forward pass, and returns a `Prepared`: the output in the derivation's layout and
`backward()`, the code's own backward pass, returning {input name: gradient} in the derivation's layout
as float64, for the gradients the code produced. The layout is settled at the first sample.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..model import Derivation
from .kinds import Code, CodeFailed, recognise
from .layout import Convention, Layout, candidates
from .names import CodeError, Names


@dataclass(frozen=True)
class Binding:
    """What `check_code` needs to run a piece of code against a derivation, stated once: the object (a
    class, an instance, a Function, a custom_vjp function, a (forward, backward) pair), how its names map
    to the derivation's (code name -> derivation name), the conventions it declares ({input: {"mean"}}),
    and, for a class whose constructor the names cannot fill, `build(values)` making one for a sample's
    values. `description` says what is checked, in words."""

    code: object
    names: Mapping[str, str] = field(default_factory=dict)
    conventions: Mapping[str, frozenset[Convention]] = field(default_factory=dict)
    build: Callable[[Mapping[str, object]], object] | None = None
    description: str = ""


@dataclass(frozen=True)
class Prepared:
    """The code after its forward pass: the output (the derivation's layout, float64) and its backward
    pass, runnable as often as wanted; `dtypes` gathers the formats the code returned its arrays in."""

    output: np.ndarray
    backward: Callable[[], dict[str, np.ndarray]]
    dtypes: set[str] = field(default_factory=set)


def close(a: np.ndarray, b: np.ndarray, dtype: str) -> bool:
    """Whether two forward outputs agree to the format's precision (layouts are told apart by far more)."""
    if a.shape != b.shape:
        return False
    scale = max(1.0, float(np.max(np.abs(b))) if b.size else 0.0)
    rtol = 1e-3 if dtype == "float32" else 1e-8
    with np.errstate(invalid="ignore"):
        return bool(np.all(np.abs(a - b) <= rtol * scale))


def to_shape(value: np.ndarray, want: tuple[int, ...]) -> np.ndarray:
    """A value whose shape differs from `want` only by unit axes (a 1 x n row), reshaped to it."""
    if value.shape != want and value.size == int(np.prod(want)) and np.squeeze(value).shape == want:
        return value.reshape(want)
    return value


class Target:
    def __init__(
        self, code: Code, d: Derivation, declared: Mapping[str, set[Convention]], by: Mapping[str, str]
    ):
        self.code, self.d = code, d
        self.declared = {**{k: set(v) for k, v in code.declared.items()}, **declared}
        self.declared_by = {**{k: f"the convention of a {code.kind}" for k in code.declared}, **by}
        self.layout: Layout | None = None
        self.notes: list[str] = []  # conventions met while converting gradients

    @property
    def framework(self) -> str | None:
        return self.code.framework

    def _run(self, layout: Layout, values, dtype):
        code_values = {k: _cast(v, dtype) for k, v in layout.to_code(values).items()}
        with self.code.running():
            return self.code.forward(code_values, dtype)

    def settle(self, values, expected: np.ndarray | None, dtype: str) -> Layout:
        """The layout whose forward output matches `expected` (the derivation's forward), fewest
        conventions first; as declared when nothing is expected; the first that runs when none matches.
        The code raising in every layout is the code's failure."""
        sizes = _sizes_of(self.d, values)
        layouts = candidates(self.d, sizes, self.declared)
        if expected is None:
            return layouts[0]
        first_error: CodeFailed | None = None
        first_ran: Layout | None = None
        for layout in layouts:
            try:
                ran = self._run(layout, values, dtype)
            except CodeFailed as e:
                first_error = first_error or e
                continue
            if close(to_shape(np.asarray(ran.output, dtype=np.float64), expected.shape), expected, dtype):
                return layout
            first_ran = first_ran or layout
        if first_ran is not None:
            return first_ran
        assert first_error is not None  # there is always a layout to try: none ran, so one raised
        raise first_error

    def prepare(self, values: Mapping[str, Any], expected: np.ndarray | None = None,
                dtype: str = "float64") -> Prepared:  # fmt: skip
        d = self.d
        if self.layout is None:
            self.layout = self.settle(values, expected, dtype)
        layout = self.layout
        ran = self._run(layout, values, dtype)
        want = tuple(np.shape(values[d.upstream])) if d.upstream in values else ()
        dtypes = {_format(ran.output)}
        output = to_shape(np.asarray(ran.output, dtype=np.float64), want)
        upstream = values.get(d.upstream)
        if upstream is not None:
            upstream = _cast(
                np.asarray(upstream).reshape(ran.output.shape)
                if np.size(upstream) == ran.output.size
                else upstream,
                dtype,
            )
        sizes = _sizes_of(d, values)
        shapes = {name: tuple(sizes[s.name] for s in d.shape(name)) for name in d.inputs}

        def backward() -> dict[str, np.ndarray]:
            with self.code.running():
                raw = ran.backward(upstream)
            out = {}
            for name, grad in raw.items():
                if name not in shapes or name in d.fixed_values:
                    continue
                dtypes.add(_format(grad))
                out[name] = layout.gradient(name, grad, shapes[name], sizes, d, self.notes)
            return out

        return Prepared(output, backward, dtypes)

    def conventions(self) -> list[str]:
        """The layout conventions in use, in words, then those met converting gradients (each once)."""
        found = self.layout.describe(self.d, self.declared, self.declared_by) if self.layout else []
        return found + list(dict.fromkeys(self.notes))


def _format(value) -> str:
    """The floating-point format of an array the code returned ('float64' for Python numbers)."""
    kind = np.asarray(value).dtype
    return str(kind) if kind.kind == "f" else "float64"


def _cast(value, dtype: str):
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value.astype(dtype)
    return value


def _sizes_of(d: Derivation, values) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for name in [*d.inputs, d.upstream]:
        if name in values and name in d.tensors:
            for axis, s in enumerate(d.shape(name)):
                if axis < np.ndim(values[name]):
                    sizes.setdefault(s.name, int(np.shape(values[name])[axis]))
    return sizes


def target(binding: Binding | object, d: Derivation, names: Mapping[str, str] | None = None,
           conventions: Mapping[str, set[Convention]] | None = None, label: str | None = None) -> Target:  # fmt: skip
    """The Target of a Binding (or a bare object) against derivation `d`; a CodeError (one line) when the
    object is of no supported kind or its names cannot be matched."""
    if not isinstance(binding, Binding):
        binding = Binding(binding)
    mapped = {**binding.names, **(names or {})}
    declared: dict[str, set[Convention]] = {k: set(v) for k, v in binding.conventions.items()}
    by = {k: "declared by its binding" for k in declared}
    for k, v in (conventions or {}).items():
        declared.setdefault(k, set()).update(v)
        by[k] = "declared"
    label = label or binding.description or _name(binding.code)
    code = recognise(binding.code, d, Names(d, mapped), label, binding.build)
    return Target(code, d, declared, by)


def _name(obj) -> str:
    if isinstance(obj, tuple):
        return ",".join(_name(o) for o in obj)
    return getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__


__all__ = ["Binding", "CodeError", "Prepared", "Target", "target"]
