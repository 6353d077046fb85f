"""How code holds the derivation's values: layout conventions, recognised and named.

- `transposed`: a matrix held transposed (W in x out where the derivation's W is out x in); it is passed
  transposed and its gradient transposed back.
- `row`: a vector held as a 1 x n row (the CMU bias, a column-form layer run on a batch of one); a
  gradient that comes back as a 1 x n row (or n x 1) where the derivation's is a vector is compared as
  that vector, and said so.
- `mean`: a gradient that is the batch mean where the derivation's is the sum (the CMU MLP's dW and db):
  multiplied by the batch size before comparing. Only when declared (by the user, or by the interface);
  undeclared, a batch mean is a wrong gradient whose diagnosis says "your dW is the batch mean; the
  derivation's is the sum".

A layout is found by running the code's forward in each candidate layout (fewest conventions first) until
its output matches the derivation's forward; declared conventions are kept as they are.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from ..model import Derivation

MAX_CANDIDATES = 64


class Convention(StrEnum):
    TRANSPOSED = "transposed"
    ROW = "row"
    MEAN = "mean"


def parse_conventions(items, d: Derivation) -> dict[str, set[Convention]]:
    """`NAME=CONVENTION` items (`W=transposed`, `b=row`, `dW=mean`) as {derivation input: conventions}."""
    from .names import CodeError

    out: dict[str, set[Convention]] = {}
    for item in items or ():
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in d.inputs and name.startswith("d") and name[1:] in d.inputs:
            name = name[1:]
        try:
            convention = Convention(value.strip())
        except ValueError:
            raise CodeError(
                f"--convention {item}: expected NAME=transposed, NAME=row or dNAME=mean"
            ) from None
        if name not in d.inputs:
            raise CodeError(f"--convention {item}: {d.name} has no input {name!r}")
        out.setdefault(name, set()).add(convention)
    return out


def shape_text(d: Derivation, name: str, transposed: bool = False) -> str:
    sizes = [s.name for s in d.shape(name)]
    return " x ".join(reversed(sizes) if transposed else sizes)


def batch(d: Derivation) -> str | None:
    """The batch size's name: the first axis of x (or of the upstream gradient), if it has axes."""
    holder = "x" if "x" in d.inputs and len(d.shape("x")) >= 2 else d.upstream
    shape = d.shape(holder) if holder in d.tensors else ()
    return shape[0].name if shape else None


@dataclass(frozen=True)
class Layout:
    """Per derivation input, the conventions the code holds it in."""

    held: Mapping[str, frozenset[Convention]] = field(default_factory=dict)

    def has(self, name: str, convention: Convention) -> bool:
        return convention in self.held.get(name, ())

    def to_code(self, values: Mapping[str, object]) -> dict[str, object]:
        out = dict(values)
        for name, conventions in self.held.items():
            if name not in out:
                continue
            if Convention.TRANSPOSED in conventions:
                out[name] = np.asarray(out[name]).T
            if Convention.ROW in conventions:
                out[name] = np.asarray(out[name]).reshape(1, -1)
        return out

    def gradient(self, name: str, grad: np.ndarray, want: tuple[int, ...], sizes: Mapping[str, int],
                 d: Derivation, notes: list[str]) -> np.ndarray:  # fmt: skip
        """A gradient as the code returned it, in the derivation's layout (float64)."""
        grad = np.asarray(grad, dtype=np.float64)
        if self.has(name, Convention.TRANSPOSED) and grad.ndim == 2 and grad.shape == want[::-1]:
            grad = grad.T
        # the same entries with axes of length 1 added or dropped (at a size of 1, squeeze would drop too many)
        if grad.shape != want and [n for n in grad.shape if n != 1] == [n for n in want if n != 1]:
            held = " x ".join("1" if n == 1 else next(s.name for s in d.shape(name) if sizes[s.name] == n)
                              for n in grad.shape)  # fmt: skip
            notes.append(
                f"d{name} comes back as {held}; the derivation's is {shape_text(d, name) or 'a scalar'}: "
                "compared as that"
            )
            grad = grad.reshape(want)
        n = batch(d)
        if self.has(name, Convention.MEAN) and n is not None:
            grad = grad * sizes[n]
        return grad

    def describe(
        self, d: Derivation, declared: Mapping[str, set[Convention]], by: Mapping[str, str]
    ) -> list[str]:
        """Each convention in words, saying who declared it (`by`, per input) where it was declared rather
        than found."""
        out = []
        x_features = d.shape("x")[-1].name if "x" in d.inputs and d.shape("x") else None
        for name, conventions in self.held.items():

            def who(c: Convention, name=name) -> str:
                return f" ({by[name]})" if c in declared.get(name, ()) and name in by else " (found)"

            if Convention.TRANSPOSED in conventions:
                code, deriv = shape_text(d, name, True), shape_text(d, name)
                roles = ""
                if x_features is not None and x_features in deriv.split(" x "):
                    first_in = d.shape(name)[0].name == x_features
                    roles = f" ({'out x in' if first_in else 'in x out'})"
                    deriv_roles = f" ({'in x out' if first_in else 'out x in'})"
                else:
                    deriv_roles = ""
                out.append(
                    f"your code holds {name} as {code}{roles}; the derivation's {name} is {deriv}{deriv_roles}: "
                    f"passed transposed, d{name} transposed back{who(Convention.TRANSPOSED)}"
                )
            if Convention.ROW in conventions:
                out.append(
                    f"your code holds {name} as a 1 x {shape_text(d, name)} row; the derivation's is a vector: "
                    f"passed as a row, d{name} read back as a vector{who(Convention.ROW)}"
                )
            if Convention.MEAN in conventions:
                out.append(
                    f"your d{name} is the batch mean; the derivation's is the sum: multiplied by "
                    f"{batch(d)} before comparing{who(Convention.MEAN)}"
                )
        return out


def candidates(
    d: Derivation, sizes: Mapping[str, int], declared: Mapping[str, set[Convention]]
) -> list[Layout]:
    """Every layout worth trying, fewest conventions first: each matrix input as is or transposed (when it
    is not square), each vector parameter as is or as a row; declared conventions fixed."""
    choices = []
    for name in d.inputs:
        if declared.get(name, set()) - {Convention.MEAN} or name in d.fixed_values:
            continue
        shape = [sizes.get(s.name) for s in d.shape(name)]
        if len(shape) == 2 and shape[0] != shape[1]:
            choices.append([(name, frozenset()), (name, frozenset({Convention.TRANSPOSED}))])
        elif len(shape) == 1 and name != "x":
            choices.append([(name, frozenset()), (name, frozenset({Convention.ROW}))])
    combos = sorted(itertools.product(*choices), key=lambda combo: sum(bool(c) for _, c in combo))
    layouts = []
    for combo in combos[:MAX_CANDIDATES]:
        held = {name: frozenset(c) for name, c in declared.items()}
        for name, c in combo:
            if c:
                held[name] = held.get(name, frozenset()) | c
        layouts.append(Layout(held))
    return layouts
