"""Warnings where a check is weaker than it looks: the check still runs, and the report says what it
cannot see.

- An upper-case scalar input that names no size (`M` where the sizes are `I` and `K`) is drawn at random
  like any scalar: a formula that meant it as a size is then checked against the wrong thing.
- A size fixed to 1 cannot tell a sum over its axis from the value, nor a missing 1/N from the right one.
- Two sizes fixed to the same value cannot tell their axes apart: a transposed gradient passes.
- A helper that no checked statement uses, directly or through other helpers, is checked by nothing: a
  wrong one would pass unseen (a Jacobian statement, `J[n,k,m] = dy[n,k]/dx[n,m] = ...`, is checked itself).
"""

from __future__ import annotations

from .model import Derivation


def warnings(d: Derivation) -> list[str]:
    out = []
    sizes = sorted(d.sizes)
    for name in d.inputs:
        if not d.shape(name) and name not in d.fixed_values and name.isupper() and name not in d.sizes:
            known = " and ".join([", ".join(sizes[:-1]), sizes[-1]] if len(sizes) > 1 else sizes) or "none"
            out.append(
                f"{name} is an input drawn from {d.domain(name).describe()}, not a size; the sizes here are "
                f"{known} (each named by the upper-case form of the first index over its axis)"
            )
    for name, value in d.fixed_sizes.items():
        if value == 1:
            out.append(
                f"{name} = 1 cannot see a missing or extra 1/{name}, nor a missing sum over "
                f"{name.lower()}: check again with {name} of at least 2"
            )
    out += _unused_helpers(d)
    by_value: dict[int, list[str]] = {}
    for name, value in d.fixed_sizes.items():
        by_value.setdefault(value, []).append(name)
    for value, names in by_value.items():
        if len(names) > 1 and value > 1:
            equal = " = ".join(names)
            out.append(f"{equal} = {value} cannot see a transpose or a swapped index between these axes")
    return out


def _unused_helpers(d: Derivation) -> list[str]:
    helpers = {st.target: st for st in d.gradients if not st.checked}
    used: set[str] = set()
    todo = [name for st in d.claims for name in st.reads]
    while todo:
        name = todo.pop()
        if name in helpers and name not in used:
            used.add(name)
            todo += list(helpers[name].reads)
    return [
        f"{name} (line {st.line}) is defined but no checked gradient uses it: nothing checks it (a Jacobian "
        f"written as {name}[...] = dy[...]/dx[...] = ... is checked)"
        for name, st in helpers.items()
        if name not in used
    ]
