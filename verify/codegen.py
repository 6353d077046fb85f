"""Generated NumPy, JAX and PyTorch code for a derivation: source text, and the compiled functions.

The source is printed from the lowered program (`verify.lower`) by the backend's printer. Every name in
it is an identifier the parser accepted (letters, digits, underscores, never a dunder) and every
number a printed rational, so compiling it runs nothing that the formula text could have smuggled in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp

from .catalogue import load
from .lower import (
    AsArray,
    Eye,
    FirstAt,
    Fold,
    Ones,
    Program,
    Scatter,
    Zeros,
    backward_program,
    forward_program,
    reading_saved,
    saved_for_backward,
    scattered_at_maxima,
    shift_name,
)
from .model import Derivation, DerivationError, constant
from .printers import kink_printer, printer, size_text

BACKENDS = ("numpy", "jax", "torch")
# generated programs and compiled functions by (id of the derivation, backend, what); each entry holds
# its derivation too, so that the id is not reused while the entry lives
_CACHE: dict[tuple, Any] = {}


def _shape_text(d: Derivation, name: str, saved: dict[str, tuple] | None = None) -> str:
    if name.startswith("shift_") and name not in d.tensors:
        name = name[len("shift_") :]
    shape = (saved or {})[name] if name not in d.tensors else d.shape(name)
    return " x ".join(str(s) for s in shape) if shape else "scalar"


def _function(d: Derivation, prog: Program, backend: str, fname: str, doc: str, pr=None) -> str:
    pr = pr or printer(backend)
    params = []
    for p in prog.params:
        if p in d.fixed_values:
            params.append(f"{p}={float(d.fixed_values[p])!r}")
        else:
            params.append(p)
    # Required parameters first, defaults after.
    params = [p for p in params if "=" not in p] + [p for p in params if "=" in p]
    lines = [f"def {fname}({', '.join(params)}):"]
    doc_lines = [doc, ""]
    doc_lines += [f"{p}: {_shape_text(d, p, prog.saved)}" for p in prog.params]
    doc_lines.append("returns " + ", ".join(f"{r}: {_shape_text(d, r, prog.saved)}" for r in prog.results))
    lines.append('    """' + doc_lines[0])
    lines += [("    " + x) if x else "" for x in doc_lines[1:]]
    lines.append('    """')
    used_sizes = set()
    size_symbols = set(d.sizes.values())  # an index may share a size's name (sum(x[N, i], N))
    uses_dtype = False
    for a in prog.body:
        used_sizes |= {s.name for s in a.expr.free_symbols if s in size_symbols}
        uses_dtype |= a.expr.has(Zeros, AsArray, Ones, Scatter, Fold) or (
            backend == "torch" and a.expr.has(Eye)
        )
    lines += _size_lines(d, prog, used_sizes)
    if uses_dtype:
        tensors = [p for p in prog.params if p in d.tensors and d.shape(p)]
        if tensors:
            lines.append(f"    dtype = {tensors[0]}.dtype")
        elif prog.params:  # scalars only
            lines.append(f"    dtype = {pr.ns}.asarray({prog.params[0]}).dtype")
        else:  # a forward of numbers alone
            lines.append(f"    dtype = {pr.ns}.float64")
    refs = _reference_counts(prog)
    inline = {a.name: a.expr for a in prog.body if not a.statement and refs.get(a.name, 0) == 1}
    inline_symbols = {sp.Symbol(k, real=True) for k in inline}
    for a in prog.body:
        if a.name in inline:
            continue
        expr = a.expr
        while expr.free_symbols & inline_symbols:  # an inlined temporary may use another one
            expr = expr.xreplace({sp.Symbol(k, real=True): v for k, v in inline.items()})
        if isinstance(expr, Scatter):
            lines += [f"    {line}" for line in pr.scatter_lines(a.name, expr)]
        elif isinstance(expr, FirstAt):
            # two arrays: the positions, and the ties' (named in its last argument)
            lines.append(f"    {a.name}, {expr.args[-1]} = {pr.doprint(expr)}")
        else:
            lines.append(f"    {a.name} = {pr.doprint(expr)}")
    lines.append("    return {" + ", ".join(f"{r!r}: {r}" for r in prog.results) + "}")
    return "\n".join(lines)


def _size_lines(d: Derivation, prog: Program, used: set[str]) -> list[str]:
    """`N = x.shape[0]` for each size the body uses, read off a parameter; a size no parameter has from
    [sizes]: its value (a pooling window) or its relation (a convolution's output size in its forward),
    after the sizes that relation uses."""
    values = {constant(k): v for k, v in d.constants.items()}
    needed, order = set(used), []
    while needed:
        name = min(needed)
        needed.discard(name)
        if name in order:
            continue
        order.append(name)
        if name not in prog.sizes and name in d.size_relations:
            needed |= {s.name for s in d.size_relations[name].xreplace(values).free_symbols} - set(order)
    lines = []
    for name in sorted(n for n in order if n in prog.sizes):
        array, axis = prog.sizes[name]
        lines.append(f"    {name} = {array}.shape[{axis}]")
    for name in sorted(n for n in order if n not in prog.sizes and n in d.fixed_sizes):
        lines.append(f"    {name} = {d.fixed_sizes[name]}")
    for name, relation in d.size_relations.items():  # in dependency order
        if name in order and name not in prog.sizes:
            lines.append(f"    {name} = {size_text(relation.xreplace(values))}")
    return lines


def _reference_counts(prog: Program) -> dict[str, int]:
    """How often each name is read: every occurrence counts, so a temporary used twice in one
    statement is computed once rather than inlined twice."""
    counts: dict[str, int] = {}
    for a in prog.body:
        for node in sp.preorder_traversal(a.expr):
            if isinstance(node, sp.Symbol):
                counts[node.name] = counts.get(node.name, 0) + 1
    return counts


def source(
    d: Derivation,
    backend: str = "numpy",
    given: tuple[str, ...] = (),
    shifted: tuple[str, ...] = (),
    saved: bool = False,
) -> str:
    """The generated module: `forward` and `backward`; or only a forward, with the names in `given` as
    inputs or with additive `shift_<name>` inputs for the names in `shifted` (see lower.forward_program).
    With `saved`, the forward also returns what the backward would compute from inputs and forward values
    alone (`lower.saved_for_backward`: relu's mask), and the backward reads it, as autograd's does."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    pr = printer(backend)
    head = [pr.imports, ""]
    parts = []
    if given or shifted:
        fwd = forward_program(d, given, shifted)
        what = f"{', '.join(given)} taken as given" if given else f"shifts added to {', '.join(shifted)}"
        parts.append(_function(d, fwd, backend, "forward", f"Forward pass with {what}."))
    else:
        fwd, bwd = _programs(d, backend, saved)
        what = ", and what the backward reads of it" if saved else ""
        parts.append(_function(d, fwd, backend, "forward", f"Forward pass: every intermediate{what}."))
        parts.append(_function(d, bwd, backend, "backward", "Backward pass: every written gradient."))
    parts = _helper(pr, *parts) + parts
    return "\n".join(head) + "\n\n" + "\n\n\n".join(parts) + "\n"


def _helper(pr, *functions: str) -> list[str]:
    """The printer's `window` helper, as a part of the module, where the generated functions call it: a
    shifted read, a windowed maximum, or a delta of affine indices (delta(q, 2*j), read as a window of
    ones) all do, and only the printed code says which of them the lowering kept."""
    helpers = [pr.window_helper.strip()] if any("window(" in f for f in functions) else []
    if any("first_at(" in f or "scatter_at(" in f for f in functions):
        helpers.append(pr.at_maxima_helper.strip())
    return helpers


def _programs(
    d: Derivation, backend: str, saved: bool, wanted: tuple[str, ...] | None = None
) -> tuple[Program, Program]:
    """The forward and the backward program (of the gradients in `wanted`, or all); with `saved`, the
    forward keeping what the whole backward reads of it, and the backward reading that. Lowered once
    per derivation, backend and form: the module's text and `Generated.saved` both come from them."""
    key = (id(d), backend, "programs", saved, wanted)
    if key not in _CACHE:
        pr = printer(backend)
        fwd, bwd = forward_program(d), backward_program(d, wanted, folds=pr.folds, spreads=pr.spreads)
        if saved:
            whole = bwd if wanted is None else _programs(d, backend, False)[1]
            kept = saved_for_backward(d, whole, masks=pr.saves_masks)
            bwd = reading_saved(d, bwd, kept)
            fwd = Program(
                fwd.params,
                fwd.body + list(kept.values()),
                fwd.results + list(bwd.saved),
                fwd.sizes,
                bwd.saved,
            )
            if pr.scatters_at_maxima:
                fwd, bwd = scattered_at_maxima(
                    d, fwd, bwd, bwd if wanted is None else reading_saved(d, whole, kept)
                )
        _CACHE[key] = (d, (fwd, bwd))
    return _CACHE[key][1]


def display_source(d: Derivation, backend: str = "numpy", saved: bool = False) -> str:
    """`source` with a module docstring naming the derivation, for people to read and paste.

    The title and the path are file text, untrusted: they enter the docstring only through `repr`, which
    makes a string literal of any text, so a title holding quotes or code stays inert data. The source
    that gradverify itself compiles (`source`) holds no header text at all."""
    where = d.file or "<text>"
    doc = f"Generated by gradverify from {where}: {d.title}. Do not edit; edit the derivation."
    return repr(doc) + "\n" + source(d, backend, saved=saved)


@dataclass
class Generated:
    """Compiled generated code. `forward(**values)` returns every forward value by name;
    `backward(**values)` returns every written gradient by name. Extra keyword values are ignored, so
    `backward(**inputs, **forward_values, dy=dy)` works. `saved` names what the forward keeps for the
    backward alone (see `source`): not a value of the derivation."""

    derivation: Derivation
    backend: str
    source: str
    _forward: Any
    _backward: Any
    saved: tuple[str, ...] = ()

    def forward(self, **values):
        return self._forward(**_select(self._forward, values))

    def backward(self, **values):
        return self._backward(**_select(self._backward, values))


def _names(fn) -> tuple[str, ...]:
    """A generated function's parameter names (through torch.compile's wrapper too)."""
    fn = getattr(fn, "_torchdynamo_orig_callable", fn)
    return fn.__code__.co_varnames[: fn.__code__.co_argcount]


def _select(fn, values):
    names = _names(fn)
    return {k: v for k, v in values.items() if k in names}


def _namespace(backend: str) -> dict:
    if backend == "numpy":
        import numpy as np

        return {"np": np}
    import functools

    import numpy as np

    if backend == "jax":
        import jax
        import jax.numpy as jnp

        return {"jax": jax, "jnp": jnp, "np": np, "functools": functools}
    import torch

    return {"torch": torch, "np": np}


def _compile(text: str, backend: str, label: str, extra: dict | None = None) -> dict:
    namespace = {**_namespace(backend), **(extra or {})}
    exec(compile(text, f"<gradverify {label} {backend}>", "exec"), namespace)  # noqa: S102  generated code only
    return namespace


def compile_derivation(
    derivation: Derivation | str | Path, backend: str = "numpy", fused: bool = False, saved: bool = False
) -> Generated:
    """Generate and compile a derivation's code. `derivation` is a Derivation, a catalogue name or a path.
    With `saved` the forward keeps what the backward reads of it alone (see `source`).

    With `fused=True` (torch only) forward and backward are wrapped in `torch.compile`, which fuses the
    elementwise work into a few loops (needed to match ATen's fused normalisation kernels; see
    BENCHMARKS.md). The first call of each then compiles, which takes seconds."""
    d = derivation if isinstance(derivation, Derivation) else load(derivation)
    gen = _compiled(d, backend, saved)
    if not fused:
        return gen
    if backend != "torch":
        raise ValueError("fused=True is for the torch backend (JAX code fuses under jax.jit)")
    import torch

    return Generated(
        d, backend, gen.source, torch.compile(gen._forward), torch.compile(gen._backward), gen.saved
    )


def _compiled(d: Derivation, backend: str, saved: bool = False) -> Generated:
    key = (id(d), backend, (), saved)
    if key not in _CACHE:
        text = source(d, backend, saved=saved)
        ns = _compile(text, backend, d.name)
        kept = tuple(_programs(d, backend, saved)[0].saved)
        _CACHE[key] = (d, Generated(d, backend, text, ns["forward"], ns["backward"], kept))
    return _CACHE[key][1]


def backward_only(d: Derivation, backend: str, wanted: tuple[str, ...], saved: bool = False):
    """A compiled backward that computes only the gradients named in `wanted` (and what they use). It
    takes exactly the names it reads, as keyword arguments (the raw generated function, jit-able); with
    `saved`, what the forward of `compile_derivation(..., saved=True)` keeps for it."""
    key = (id(d), backend, "backward", wanted, saved)
    if key not in _CACHE:
        doc = f"Backward pass: {', '.join(wanted)} only."
        pr = printer(backend)
        body = _function(d, _programs(d, backend, saved, wanted)[1], backend, "backward", doc)
        text = "\n\n\n".join([pr.imports, *_helper(pr, body), body])
        _CACHE[key] = (d, _compile(text, backend, d.name)["backward"])
    return _CACHE[key][1]


def forward_given(d: Derivation, backend: str, given: tuple[str, ...] = (), shifted: tuple[str, ...] = ()):
    """A compiled forward pass that takes the names in `given` as inputs, or additive shifts of the
    names in `shifted`: for checking adjoints."""
    key = (id(d), backend, given, shifted)
    if key not in _CACHE:
        text = source(d, backend, given, shifted)
        ns = _compile(text, backend, d.name)
        _CACHE[key] = (d, ns["forward"])
    fn = _CACHE[key][1]
    return lambda **values: fn(**_select(fn, values))


def observed_forward(d: Derivation, given: tuple[str, ...] = ()):
    """A compiled NumPy forward (with the names in `given` as inputs) that also reports where it stands
    at every kink: `fn(**values)` returns (forward values, [sign of each max, min, abs and comparison
    argument, in the order evaluated]). Two calls whose signs differ lie on different sides of a kink,
    which a finite difference across them cannot cross."""
    key = (id(d), "numpy kinks", given)
    if key not in _CACHE:
        pr = kink_printer()
        doc = "Forward pass, reporting the sign of every kink argument."
        body = _function(d, forward_program(d, given), "numpy", "forward", doc, pr)
        text = "\n\n\n".join([pr.imports, *_helper(pr, body), body])
        signs: list = []

        def kink(argument, value):
            signs.append(np.sign(argument))
            return value

        fn = _compile(text, "numpy", d.name, {"_kink": kink})["forward"]

        def run(**values):
            signs.clear()
            out = fn(**_select(fn, values))
            return out, list(signs)

        _CACHE[key] = (d, run)
    return _CACHE[key][1]


__all__ = [
    "BACKENDS",
    "DerivationError",
    "Generated",
    "backward_only",
    "compile_derivation",
    "forward_given",
    "shift_name",
    "display_source",
    "source",
]
