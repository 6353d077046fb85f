"""The kinds of code `check_code` runs, each behind one interface: `forward(values)` builds and runs the
code on one sample's inputs (derivation names, in the code's layout and dtype) and returns a `Ran`: the
output, and `backward(upstream)`, which runs the code's own backward pass and returns the gradients it
produced, by derivation name, as it produced them (its layout, its dtype).

Kinds (`recognise` tells them apart without importing a framework the code has not imported itself):
- `torch.autograd.Function` subclass: `apply`'s arguments by name; its `backward` is called with the real
  context of the forward (`output.grad_fn`), so that the tuple it returns is seen as it is, position by
  position (autograd would refuse a tuple in the wrong order before anyone saw it);
- `torch.nn.Module` (class or instance): parameters by name, gradients from autograd (through any
  hand-written Function inside);
- `jax.custom_vjp` function: its `fwd` and `bwd` rules called directly, the same way;
- a NumPy module, class or instance, UvA style (`forward(x)`, `backward(dout)`, `params`/`grads`) or with
  its parameters as attributes and their gradients as `d` + the attribute (CMU: `gamma`, `dgamma`); a
  loss module's `backward` takes the forward's inputs instead of an upstream gradient (UvA
  `CrossEntropyModule.backward(x, y)`);
- a CMU activation or criterion (`forward`, `derivative()`): dx = upstream * derivative();
- a CMU `MLP(input_size, output_size, hiddens, activations, weight_init_fn, bias_init_fn, criterion, lr)`:
  one linear layer with the upstream gradient as its criterion; its dW and db are batch means;
- a pair of functions `forward(...)`, `backward(...)`: forward may return (output, cache); backward's
  arguments by name (the upstream gradient, the cache, inputs, the output), and it returns the
  gradients as a tuple in the order of forward's arguments, a dict, or dx alone.
"""

from __future__ import annotations

import copy
import functools
import inspect
import sys
import types
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model import Derivation
from .layout import Convention
from .names import CodeError, Names

Values = Mapping[str, Any]
CACHE = ("cache", "ctx", "saved", "res", "residuals", "state")


@dataclass
class Ran:
    """The code after its forward pass on one sample: the output as an array (the code's layout and
    dtype) and its backward pass, (upstream gradient in the output's layout, or None for a scalar loss) ->
    {derivation input: gradient as the code returned it, as a NumPy array}."""

    output: np.ndarray
    backward: Callable[[np.ndarray | None], dict[str, np.ndarray]]


class Code:
    """One piece of code under check. `takes` says, per derivation input, where the code takes it (filled
    while it runs); `missing` why a gradient did not come back."""

    kind = ""
    framework: str | None = None  # "torch" or "jax" when the code runs in one
    # whether it keeps its gradients as its own state, where backward may add to what it stored before
    stores_gradients = False

    def __init__(self, obj, d: Derivation, names: Names, label: str):
        self.obj, self.d, self.names, self.label = obj, d, names, label
        self.takes: dict[str, str] = {}
        self.missing: dict[str, str] = {}
        self.declared: dict[str, set[Convention]] = {}  # conventions the interface itself declares
        self.notes: list[str] = []

    def forward(self, values: Values, dtype: str) -> Ran:
        raise NotImplementedError

    def held_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every input an instance already holds (its parameters), by derivation name."""
        return {}

    @contextmanager
    def running(self):
        """The scope every call into the code runs in."""
        yield


# -- matching a callable's arguments ---------------------------------------------------------------------


def parameters(fn, skip: int = 0) -> list[inspect.Parameter]:
    """The positional parameters of `fn` (after the first `skip`); keyword-only ones with no default too."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = [p for p in sig.parameters.values() if p.kind in kinds][skip:]
    return params + [
        p
        for p in sig.parameters.values()
        if p.kind == inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    ]


def match_arguments(
    params: list[inspect.Parameter], names: Names, where: str, code: Code
) -> list[str | None]:
    """The derivation input each parameter stands for (None for those left at their default). One
    required parameter and one array input left over are matched by elimination, and that is noted."""
    d = names.d
    matched = [names.of(p.name) for p in params]
    required = [
        k for k, (p, m) in enumerate(zip(params, matched, strict=True)) if m is None and p.default is p.empty
    ]
    arrays = [n for n in d.inputs if d.shape(n) and n not in d.fixed_values and n not in matched]
    if len(required) == 1 and len(arrays) == 1:
        k = required.pop()
        matched[k] = arrays[0]
        code.notes.append(
            f"{where}'s argument {params[k].name} is the derivation's {arrays[0]} (the one left)"
        )
    if required:
        p = params[required[0]]
        raise CodeError(
            f"{code.label}: {where}'s argument {p.name!r} matches no input of {d.name} "
            f"({', '.join(d.inputs)}): use --map {p.name}=NAME"
        )
    for p, m in zip(params, matched, strict=True):
        if m is not None:
            code.takes.setdefault(m, f"{where}'s argument {p.name}")
    return matched


def unmatched(code: Code, what: str, key: str) -> CodeError:
    """A parameter the code holds that stands for no input of the derivation: left as the code made it,
    it would be compared against a random value's gradient, so the check stops and says how to name it."""
    d = code.d
    return CodeError(
        f"{code.label}: its {what} matches no input of {d.name} ({', '.join(d.inputs)}): use --map {key}=NAME"
    )


def call_values(params, matched, values: Values, convert) -> tuple[list, dict]:
    """Positional arguments up to the last matched parameter (defaults in between), and keyword-only
    ones; `convert(name, value)` turns a value into the code's type."""
    args, kwargs = [], {}
    last = max((k for k, m in enumerate(matched) if m is not None), default=-1)
    for k, (p, m) in enumerate(zip(params, matched, strict=True)):
        if k > last:
            break
        value = convert(m, values[m]) if m is not None and m in values else p.default
        if p.kind == inspect.Parameter.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            args.append(value)
    return args, kwargs


def by_position(raw, slots: list[tuple[str, str | None]], who: str, code: Code) -> dict[str, np.ndarray]:
    """The gradients a backward returned as a tuple (or one value), by the derivation input of the
    argument each position belongs to; `slots` is (argument, derivation input or None) per position."""
    raw = raw if isinstance(raw, tuple | list) else (raw,)
    grads = {}
    for k, (argument, name) in enumerate(slots):
        if name is None:
            continue
        value = raw[k] if k < len(raw) else None
        if value is None:
            code.missing[name] = f"{who} returns None in the place of {argument}"
        else:
            grads[name] = as_array(value, who, f"the gradient of {argument}")
    if len(raw) > len(slots):
        code.notes.append(f"{who} returns {len(raw)} values for {len(slots)} arguments")
    return grads


def number(value) -> float:
    return float(np.asarray(value))


def as_array(value, stage: str, what: str) -> np.ndarray:
    """A code's value as a NumPy array of its own dtype (framework tensors detached); a value that is no
    array of real numbers (a string, a complex array, an object) is the code's finding: `stage` returned
    it as `what`."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as e:  # a ragged list
        raise CodeReturned(stage, f"returns {what} that is no array ({type(e).__name__}: {e})") from e
    if array.dtype.kind not in "biuf":
        held = f"{type(value).__name__} of {array.dtype}" if array.dtype.kind != "O" else type(value).__name__
        raise CodeReturned(stage, f"returns {what} as {held}, not real numbers")
    return array


def _copy(value):
    return value.copy() if isinstance(value, np.ndarray) else value


# -- building a class ----------------------------------------------------------------------------------


def construct(cls, names: Names, values: Values, sizes: Mapping[str, int], code: Code):
    """An instance of `cls` with its constructor's arguments from the derivation: inputs by name (scalars
    such as eps as numbers), sizes by name or role (`in_features` is the input's last axis)."""
    kwargs = {}
    for p in parameters(cls.__init__, skip=1):
        name = names.of(p.name)
        if name is not None and name in values:
            value = values[name]
            kwargs[p.name] = number(value) if not np.shape(value) else _copy(value)
            code.takes.setdefault(name, f"constructor argument {p.name}")
            continue
        size = names.size(p.name)
        if size is not None:
            kwargs[p.name] = int(sizes[size[0]])
            code.notes.append(f"{code.label}'s constructor argument {p.name} is {size[0]} ({size[1]})")
            continue
        if p.default is p.empty:
            raise CodeError(
                f"{code.label}: no value for its constructor argument {p.name!r}: --map {p.name}=SIZE, "
                "or pass an instance"
            )
    with raising("constructing it"):
        return cls(**kwargs)


class CodeFailed(Exception):
    """The code raised while it ran (sys.exit included), or returned what its framework would refuse: a
    finding about the code, not a failure of the tool. `finding` says it; `kind` is a `CodeKind` value."""

    def __init__(self, stage: str, error: BaseException):
        if isinstance(error, SystemExit):
            said = f"called sys.exit({error.code!r})"
        else:
            message = str(error).splitlines()[0] if str(error) else ""
            said = f"{type(error).__name__}{': ' + message if message else ''}"
        super().__init__(f"{stage}: {said}")
        self.stage = stage
        self.finding = f"your code raised in {self}"
        self.kind = "raised"


class CodeReturned(CodeFailed):
    """The code returned something that is no gradient, or that its framework would refuse."""

    def __init__(self, stage: str, finding: str, kind: str = "shape"):
        Exception.__init__(self, f"{stage}: {finding}")
        self.stage, self.finding, self.kind = stage, f"your code's {stage} {finding}", kind


@contextmanager
def raising(stage: str):
    """Any exception inside is the code's own, raised at `stage`; so is a sys.exit, which would otherwise
    end the check with an exit status that reads as a verdict."""
    try:
        yield
    except (CodeError, CodeFailed):
        raise
    except (Exception, SystemExit) as e:
        raise CodeFailed(stage, e) from e


# -- torch -----------------------------------------------------------------------------------------------


def _torch():
    return sys.modules.get("torch")


@contextmanager
def _torch_scope():
    """One thread (tiny arrays), gradients on; the caller's thread count restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():
            yield
    finally:
        torch.set_num_threads(before)


def _tensor(value, dtype: str, grad: bool):
    import torch

    t = torch.tensor(np.asarray(value), dtype=getattr(torch, dtype))
    return t.requires_grad_(True) if grad else t


class TorchFunction(Code):
    kind = "torch.autograd.Function"
    framework = "torch"

    def __init__(self, obj, d, names, label):
        super().__init__(obj, d, names, label)
        import torch

        base = torch.autograd.Function
        overridden_apply = obj.apply.__func__ is not base.apply.__func__
        self.counted = not overridden_apply  # apply's arguments are forward's inputs, as autograd counts them
        new_style = getattr(obj, "setup_context", base.setup_context) is not base.setup_context
        # the order of the tuple backward returns: forward's parameters (after ctx, old style)
        self.forward_params = parameters(obj.forward, skip=0 if new_style else 1)
        self.apply_params = parameters(obj.apply) if overridden_apply else self.forward_params
        self.apply_names = match_arguments(self.apply_params, names, "apply", self)
        self.positions = [names.of(p.name) for p in self.forward_params]

    def running(self):
        return _torch_scope()

    def forward(self, values, dtype):
        import torch

        def convert(name, value):
            return _tensor(value, dtype, grad=True) if np.shape(value) else number(value)

        args, kwargs = call_values(self.apply_params, self.apply_names, values, convert)
        with raising("apply (forward)"):
            out = self.obj.apply(*args, **kwargs)
        if not isinstance(out, torch.Tensor):
            raise CodeFailed("apply (forward)", TypeError(f"returned {type(out).__name__}, not one tensor"))
        ctx = out.grad_fn
        output = as_array(out, "apply (forward)", "its output")

        def backward(upstream):
            dy = torch.ones_like(out) if upstream is None else _tensor(upstream, dtype, grad=False)
            with raising("backward"), torch.no_grad():
                raw = self.obj.backward(ctx, dy)
            slots = [(p.name, name) for p, name in zip(self.forward_params, self.positions, strict=True)]
            return by_position(self.as_autograd_takes(raw, args), slots, "backward", self)

        return Ran(output, backward)

    def as_autograd_takes(self, raw, args: list) -> tuple:
        """backward's return as autograd takes it in training: a lone value is a 1-tuple; one value per
        input of forward, where more are allowed only as None (else autograd raises, and so does the
        check); a gradient of a shape the input broadcasts to is summed to the input's shape (a bias
        gradient left N x J), as autograd's own check of a Function's outputs does."""
        import torch

        raw = raw if isinstance(raw, tuple) else (raw,)
        if not self.counted:
            return raw
        if len(raw) < len(args) or any(g is not None for g in raw[len(args) :]):
            raise CodeReturned(
                "backward",
                f"returns {len(raw)} value{'s' * (len(raw) != 1)} for forward's {len(args)} inputs: "
                "torch.autograd raises "
                f"'returned an incorrect number of gradients (expected {len(args)}, got {len(raw)})'",
                "raised",
            )
        raw = raw[: len(args)]
        out = list(raw)
        for k, (g, a) in enumerate(zip(raw, args, strict=True)):
            if not (isinstance(g, torch.Tensor) and isinstance(a, torch.Tensor)) or g.shape == a.shape:
                continue
            try:
                out[k] = g.sum_to_size(a.shape)
            except RuntimeError:  # not broadcast to the input's shape: compared as returned (a shape mistake)
                continue
            name = self.positions[k] if k < len(self.positions) else None
            self.notes.append(
                f"backward returns the gradient of {name or f'input {k}'} in a shape the input broadcasts to "
                f"({g.ndim} axes for its {a.ndim}): autograd sums it to the input's shape, as it does in "
                "training; compared as that"
            )
        return tuple(out)


def _module_of(obj):
    return obj if isinstance(obj, type) else type(obj)


class TorchModule(Code):
    kind = "torch.nn.Module"
    framework = "torch"

    def __init__(self, obj, d, names, label):
        super().__init__(obj, d, names, label)
        self.params = parameters(_module_of(obj).forward, skip=1)
        self.matched = match_arguments(self.params, names, "forward", self)

    def running(self):
        return _torch_scope()

    def held_shapes(self):
        if isinstance(self.obj, type):
            return {}
        out = {}
        for key, p in self.obj.named_parameters():
            name = self.names.of(key)
            if name is not None:
                out[name] = tuple(p.shape)
        return out

    def forward(self, values, dtype):
        import torch

        if isinstance(self.obj, type):
            module = construct(self.obj, self.names, values, _sizes(self.d, values), self)
        else:
            module = copy.deepcopy(self.obj)
        module = module.to(getattr(torch, dtype)).train()
        leaves = {}
        for key, p in module.named_parameters():
            name = self.names.of(key)
            if name is None:
                raise unmatched(self, f"parameter {key!r}", key)
            if name not in values:
                continue
            p.data = _tensor(values[name], dtype, grad=False)
            leaves[name] = p
            self.takes.setdefault(name, f"parameter {key}")
        for attr, current in vars(module).items():
            name = self.names.of(attr)
            if (
                name is not None
                and name in values
                and name not in leaves
                and isinstance(current, float | int)
                and not np.shape(values[name])
            ):
                setattr(module, attr, number(values[name]))
                self.takes.setdefault(name, f"attribute {attr}")

        def convert(name, value):
            if np.shape(value):
                leaves[name] = _tensor(value, dtype, grad=True)
                return leaves[name]
            return number(value)

        args, kwargs = call_values(self.params, self.matched, values, convert)
        with raising("forward"):
            out = module(*args, **kwargs)

        def backward(upstream):
            dy = torch.ones_like(out) if upstream is None else _tensor(upstream, dtype, grad=False)
            wrt = list(leaves.values())
            with raising("backward"):
                grads = torch.autograd.grad(out, wrt, dy, allow_unused=True, retain_graph=True)
            found = {}
            for name, g in zip(leaves, grads, strict=True):
                if g is None:
                    self.missing[name] = "the output does not depend on it through autograd"
                else:
                    found[name] = as_array(g, "backward", f"the gradient of {name}")
            return found

        return Ran(as_array(out, "forward", "its output"), backward)


# -- jax -------------------------------------------------------------------------------------------------


class JaxVjp(Code):
    kind = "jax.custom_vjp"
    framework = "jax"

    def __init__(self, obj, d, names, label):
        super().__init__(obj, d, names, label)
        if getattr(obj, "fwd", None) is None or getattr(obj, "bwd", None) is None:
            raise CodeError(
                f"{label}: a jax.custom_vjp function without rules: call {label}.defvjp(fwd, bwd)"
            )
        self.params = parameters(obj.fun)
        self.matched = match_arguments(self.params, names, label, self)
        self.nondiff = set(obj.nondiff_argnums)

    def forward(self, values, dtype):
        import jax
        import jax.numpy as jnp

        def convert(name, value):
            return jnp.asarray(value, dtype=dtype) if np.shape(value) else number(value)

        with jax.enable_x64(dtype == "float64"):
            args, kwargs = call_values(self.params, self.matched, values, convert)
            if kwargs:
                raise CodeError(f"{self.label}: keyword-only arguments are not supported by jax.custom_vjp")
            with raising("the function (forward)"):
                out = self.obj(*args)
            with raising("fwd"):
                primal, residuals = self.obj.fwd(*args)
        output = as_array(out, "the function (forward)", "its output")
        if not np.allclose(
            as_array(primal, "fwd", "its output"), output, rtol=1e-6, atol=1e-12, equal_nan=True
        ):
            self.notes.append("fwd's output differs from the function's own: the gradients are of fwd's")

        def backward(upstream):
            with jax.enable_x64(dtype == "float64"):
                g = jnp.ones_like(out) if upstream is None else jnp.asarray(upstream, dtype=dtype)
                fixed = [args[k] for k in sorted(self.nondiff)]
                with raising("bwd"):
                    raw = self.obj.bwd(*fixed, residuals, g)
            slots = [
                (self.params[k].name, self.matched[k]) for k in range(len(args)) if k not in self.nondiff
            ]
            if not isinstance(raw, tuple) or len(raw) != len(slots):  # what jax.vjp refuses in training
                given = f"a tuple of {len(raw)}" if isinstance(raw, tuple) else f"a {type(raw).__name__}"
                raise CodeReturned(
                    "bwd",
                    f"returns {given}, not a tuple of {len(slots)} (one per primal argument): jax raises "
                    "'Custom VJP bwd rule must produce a tuple of length equal to the number of primal "
                    "arguments'",
                    "raised",
                )
            return by_position(raw, slots, "bwd", self)

        return Ran(output, backward)


# -- NumPy modules ---------------------------------------------------------------------------------------


def _sizes(d: Derivation, values: Values) -> dict[str, int]:
    """The sizes of a sample, read off its inputs' shapes (in the derivation's layout)."""
    out: dict[str, int] = {}
    for name in d.inputs:
        for axis, s in enumerate(d.shape(name)):
            if name in values and np.ndim(values[name]) == len(d.shape(name)):
                out.setdefault(s.name, np.shape(values[name])[axis])
    return out


GRADIENT_ATTRIBUTES = ("d{}", "grad_{}", "{}_grad", "d_{}")


def _grad_entry(module, grads: dict, key: str):
    """The module's grads[key], read after backward (a module may replace its grads dict)."""
    return (getattr(module, "grads", grads) or {}).get(key)


def _first_array(module, names: list[str]) -> np.ndarray | None:
    """The first of the module's attributes `names` that holds an array (where it keeps a gradient)."""
    return next((getattr(module, n) for n in names if isinstance(getattr(module, n, None), np.ndarray)), None)


class ArrayModule(Code):
    """A NumPy module: UvA (`params`/`grads`), attributes (`W`/`dW`), or a loss module."""

    kind = "NumPy module (forward/backward)"
    stores_gradients = True

    def __init__(self, obj, d, names, label, build=None):
        super().__init__(obj, d, names, label)
        cls = _module_of(obj)
        self.build = build
        self.params = parameters(cls.forward, skip=1)
        self.matched = match_arguments(self.params, names, "forward", self)
        self.backward_params = parameters(cls.backward, skip=1)
        upstream = [names.upstream(p.name) for p in self.backward_params]
        self.loss = not any(upstream) and bool(self.backward_params)
        if self.loss:
            self.kind = "NumPy loss module (forward(x, y), backward(x, y))"
            self.backward_names = match_arguments(self.backward_params, names, "backward", self)
        elif any(upstream[1:]) or self.backward_params and not upstream[0]:
            p = self.backward_params[0]
            raise CodeError(
                f"{label}: backward's argument {p.name!r} is no upstream gradient (--map {p.name}={d.upstream})"
            )

    def held_shapes(self):
        if isinstance(self.obj, type):
            return {}
        out = {}
        for key, value in getattr(self.obj, "params", {}).items():
            name = self.names.of(key)
            if name is not None and isinstance(value, np.ndarray):
                out[name] = value.shape
        for attr, value in vars(self.obj).items():
            name = self.names.of(attr)
            if name is not None and name not in out and isinstance(value, np.ndarray):
                out[name] = value.shape
        return out

    def instance(self, values):
        if self.build is not None:
            with raising("constructing it"):
                return self.build(values)
        if isinstance(self.obj, type):
            return construct(self.obj, self.names, values, _sizes(self.d, values), self)
        return copy.deepcopy(self.obj)

    def forward(self, values, dtype):
        module = self.instance(values)
        if isinstance(getattr(module, "params", None), dict) and not self.loss:
            self.kind = "UvA module (params/grads)"
        bound = self.bind(module, values)
        args, kwargs = call_values(self.params, self.matched, values, lambda name, v: _copy(v))
        with raising("forward"):
            out = module.forward(*args, **kwargs)

        def backward(upstream):
            if self.loss:
                args, kwargs = call_values(
                    self.backward_params, self.backward_names, values, lambda n, v: _copy(v)
                )
            else:
                args, kwargs = (
                    ([] if not self.backward_params else [upstream if upstream is not None else 1.0]),
                    {},
                )
            with raising("backward"):
                returned = module.backward(*args, **kwargs)
            grads = self.returned(returned, values)
            for name, read in bound.items():
                value = read()
                if value is None:
                    continue
                grads[name] = as_array(value, "backward", f"the gradient of {name}")
            return grads

        return Ran(as_array(out, "forward", "its output"), backward)

    def bind(self, module, values) -> dict[str, Callable[[], object]]:
        """Set the module's parameters and settings from the values; per parameter, how to read its
        gradient after backward."""
        reads: dict[str, Callable[[], object]] = {}
        params = getattr(module, "params", None)
        if isinstance(params, dict):
            grads = getattr(module, "grads", {})
            for key in list(params):
                name = self.names.of(key)
                if name is None:
                    raise unmatched(self, f"params[{key!r}]", key)
                if name not in values:
                    continue
                params[key] = _copy(values[name])
                self.takes.setdefault(name, f"params[{key!r}]")
                reads[name] = functools.partial(_grad_entry, module, grads, key)
        for attr, current in list(vars(module).items()):
            name = self.names.of(attr)
            if name is None or name not in values or name in reads or attr in ("params", "grads"):
                continue
            if self.takes.get(name, "").startswith("forward's"):
                continue
            if isinstance(current, np.ndarray) and np.shape(values[name]):
                setattr(module, attr, _copy(values[name]))
                self.takes.setdefault(name, f"attribute {attr}")
                names = [pattern.format(attr) for pattern in GRADIENT_ATTRIBUTES]
                reads[name] = functools.partial(_first_array, module, names)
            elif (
                isinstance(current, float | int)
                and not isinstance(current, bool)
                and not np.shape(values[name])
            ):
                setattr(module, attr, number(values[name]))
                self.takes.setdefault(name, f"attribute {attr}")
        return reads

    def returned(self, returned, values) -> dict[str, np.ndarray]:
        """What backward returned: the gradient of forward's first argument, or one per argument."""
        if returned is None:
            for name in self.matched[:1]:
                if name is not None:
                    self.missing[name] = "backward returns None"
            return {}
        items = returned if isinstance(returned, tuple | list) else (returned,)
        grads = {}
        for name, value in zip(self.matched, items, strict=False):
            if name is not None and value is not None and name not in self.d.fixed_values:
                grads[name] = as_array(value, "backward", f"the gradient of {name}")
        return grads


class CmuDerivative(Code):
    """A CMU activation or criterion: `forward(...)` then `derivative()`, dy/dx elementwise (per example
    for a criterion, whose per-example loss depends on its own row only)."""

    kind = "CMU module (forward, derivative())"

    def __init__(self, obj, d, names, label):
        super().__init__(obj, d, names, label)
        cls = _module_of(obj)
        self.params = parameters(cls.forward, skip=1)
        self.matched = match_arguments(self.params, names, "forward", self)
        self.first = next((m for m in self.matched if m is not None), None)

    def forward(self, values, dtype):
        module = (
            construct(self.obj, self.names, values, _sizes(self.d, values), self)
            if isinstance(self.obj, type)
            else copy.deepcopy(self.obj)
        )
        args, kwargs = call_values(self.params, self.matched, values, lambda n, v: _copy(v))
        with raising("forward"):
            out = as_array(module.forward(*args, **kwargs), "forward", "its output")

        def backward(upstream):
            with raising("derivative()"):
                slope = module.derivative()
            slope = as_array(slope, "derivative()", "the derivative")
            up = np.ones(out.shape) if upstream is None else np.asarray(upstream)
            up = up.reshape(up.shape + (1,) * (slope.ndim - up.ndim))
            return {self.first: up * slope}

        return Ran(out, backward)


class _Upstream:
    """A stand-in criterion whose derivative() is the upstream gradient (for a CMU MLP)."""

    def __init__(self) -> None:
        self.dy = None

    def __call__(self, logits, labels):
        return np.zeros(len(logits))

    forward = __call__

    def derivative(self):
        return self.dy


class _Identity:
    """A CMU identity activation, for a CMU MLP whose module defines none."""

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        self.state = x
        return x

    def derivative(self):
        return np.ones_like(self.state)


class CmuMlp(Code):
    """The CMU HW1 MLP as one linear layer: no hidden layers, the identity activation, the upstream
    gradient as its criterion. It stores dW and db as batch means (its declared convention)."""

    kind = "CMU MLP (one linear layer)"
    WEIGHTS, BIASES = ("W", "weights"), ("b", "biases")

    def __init__(self, obj, d, names, label):
        super().__init__(obj, d, names, label)
        self.weight = names.of("W")
        self.bias = names.of("b")
        if self.weight is None or "x" not in d.inputs:
            raise CodeError(f"{label}: a CMU MLP is checked as one linear layer: {d.name} has no x and W")
        self.declared = {self.weight: {Convention.MEAN}}
        if self.bias is not None:
            self.declared[self.bias] = {Convention.MEAN}
        self.takes.update({"x": "forward's argument x", self.weight: "W[0]"})
        if self.bias is not None:
            self.takes[self.bias] = "b[0]"
        module = sys.modules.get(obj.__module__)
        self.activation = getattr(module, "Identity", _Identity)

    def forward(self, values, dtype):
        weight = values[self.weight]
        bias = values[self.bias] if self.bias is not None else None
        criterion = _Upstream()
        x = values["x"]
        with raising("constructing it"):
            mlp = self.obj(
                x.shape[1],
                weight.shape[1] if weight.shape[0] == x.shape[1] else weight.shape[0],
                [],
                [self.activation()],
                lambda d0, d1: weight.copy(),
                lambda size: (bias if bias is not None else np.zeros(size)).reshape(1, -1).copy(),
                criterion,
                0.0,
            )
        with raising("forward"):
            out = mlp.forward(x.copy())

        def backward(upstream):
            criterion.dy = upstream
            with raising("backward"):
                dx = mlp.backward(np.zeros(np.shape(out)))
            grads = {self.weight: as_array(mlp.dW[0], "backward", "dW[0]")}
            if self.bias is not None:
                grads[self.bias] = as_array(mlp.db[0], "backward", "db[0]")
            if dx is not None:
                grads["x"] = as_array(dx, "backward", "dx")
            else:
                self.missing["x"] = "backward returns None"
            return grads

        return Ran(as_array(out, "forward", "its output"), backward)


# -- functions -------------------------------------------------------------------------------------------


class Functions(Code):
    """forward(...) -> output or (output, cache); backward(...) -> gradients."""

    kind = "functions forward/backward"

    def __init__(self, obj, d, names, label):
        super().__init__(obj, d, names, label)
        self.fwd, self.bwd = obj
        self.params = parameters(self.fwd)
        self.matched = match_arguments(self.params, names, self.fwd.__name__, self)
        self.backward_params = parameters(self.bwd)
        self.roles = []
        for p in self.backward_params:
            if names.upstream(p.name):
                self.roles.append(("upstream", None))
            elif p.name.lower() in CACHE:
                self.roles.append(("cache", None))
            elif names.of(p.name) is not None:
                self.roles.append(("input", names.of(p.name)))
            elif p.name in (d.output, "out", "output", "y", "result"):
                self.roles.append(("output", None))
            elif p.default is p.empty:
                raise CodeError(
                    f"{label}: {self.bwd.__name__}'s argument {p.name!r} is none of: the upstream gradient, "
                    f"the cache, an input of {d.name}, the output (--map {p.name}=NAME)"
                )
            else:
                self.roles.append(("default", None))

    def forward(self, values, dtype):
        args, kwargs = call_values(self.params, self.matched, values, lambda n, v: _copy(v))
        with raising(self.fwd.__name__):
            returned = self.fwd(*args, **kwargs)
        cache = None
        if isinstance(returned, tuple) and len(returned) == 2 and any(r == "cache" for r, _ in self.roles):
            returned, cache = returned
        out = returned

        def backward(upstream):
            up = np.ones(np.shape(out)) if upstream is None else upstream
            given = {"upstream": up, "cache": cache, "output": out}
            args = []
            for role, name in self.roles:
                if role == "default":
                    break
                args.append(_copy(values[name]) if role == "input" else given[role])
            with raising(self.bwd.__name__):
                returned = self.bwd(*args)
            return self.gradients(returned)

        return Ran(as_array(out, self.fwd.__name__, "its output"), backward)

    def gradients(self, returned) -> dict[str, np.ndarray]:
        if isinstance(returned, dict):
            grads = {}
            for key, value in returned.items():
                name = self.names.of(key)
                if name is None and key.startswith("d"):
                    name = self.names.of(key[1:])
                if name is not None and value is not None:
                    grads[name] = as_array(value, self.bwd.__name__, f"the gradient {key!r}")
            return grads
        slots = [(p.name, name) for p, name in zip(self.params, self.matched, strict=True)]
        return by_position(returned, slots, self.bwd.__name__, self)


# -- recognising the kind --------------------------------------------------------------------------------


def _is_torch_function(obj) -> bool:
    torch = _torch()
    return torch is not None and isinstance(obj, type) and issubclass(obj, torch.autograd.Function)


def _is_torch_module(obj) -> bool:
    torch = _torch()
    return torch is not None and issubclass(_module_of(obj), torch.nn.Module)


def _is_custom_vjp(obj) -> bool:
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(obj, jax.custom_vjp)


def _has(obj, *methods) -> bool:
    return all(callable(getattr(obj, m, None)) for m in methods)


CMU_MLP = {"weight_init_fn", "bias_init_fn", "criterion"}


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def recognise(obj, d: Derivation, names: Names, label: str, build=None) -> Code:
    """The Code for `obj`; a CodeError naming what is supported when it is none of them."""
    if isinstance(obj, tuple) and len(obj) == 2 and all(callable(f) for f in obj):
        return Functions(obj, d, names, label)
    if isinstance(obj, types.ModuleType):
        if _has(obj, "forward", "backward"):
            return Functions((obj.forward, obj.backward), d, names, label)
        raise CodeError(
            f"{label}: the file defines no functions forward and backward: name what to check, FILE.py:NAME"
        )
    if _is_torch_function(obj):
        return TorchFunction(obj, d, names, label)
    if _is_custom_vjp(obj):
        return JaxVjp(obj, d, names, label)
    if _is_torch_module(obj):
        return TorchModule(obj, d, names, label)
    if isinstance(obj, type) and CMU_MLP <= {p.name for p in parameters(obj.__init__, skip=1)}:  # type: ignore[misc]
        return CmuMlp(obj, d, names, label)
    if _has(obj, "forward", "backward"):
        return ArrayModule(obj, d, names, label, build)
    if _has(obj, "forward", "derivative"):
        return CmuDerivative(obj, d, names, label)
    raise CodeError(
        f"{label} is {_article(type(obj).__name__)} {type(obj).__name__}, none of the kinds gradverify checks: a torch.autograd.Function "
        "subclass, a jax.custom_vjp function, a torch.nn.Module, a module with forward and backward "
        "(UvA: params/grads) or forward and derivative() (CMU), or functions forward,backward"
    )
