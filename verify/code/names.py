"""Which derivation name each name of the code stands for: an argument (`input`, `weight`), a `params`
key, an attribute (`neg_slope`), a constructor argument that is a size (`in_features`).

A code name matches, in this order: what the user mapped (`--map code_name=deriv_name`); the same name
in the derivation; a documented alias of a derivation input (`ALIASES`: `input` is `x`, `weight` is `W`
or `gamma`, whichever the derivation has); the same name in another case (`X` is `x`). The upstream
gradient's aliases (`UPSTREAM`) apply only where the code takes an upstream gradient (a backward's
argument). A constructor argument that is a size (`SIZE_ROLES`) gets the size of the axis its role
names. Nothing is guessed beyond these tables; the report says which match was used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..model import Derivation

# derivation input -> the names code commonly gives it (lower case)
ALIASES: dict[str, tuple[str, ...]] = {
    "x": ("input", "inputs", "inp", "x_in", "features", "logits", "data", "a_prev"),
    "W": ("weight", "weights", "w", "kernel"),
    "b": ("bias", "biases"),
    "gamma": ("weight", "scale", "g"),
    "beta": ("bias", "shift"),
    "t": ("y", "target", "targets", "label", "labels", "y_true", "onehot"),
    "a": ("neg_slope", "negative_slope", "slope", "leak"),
}

# the upstream gradient, where the code takes one (a backward's argument)
UPSTREAM = (
    "dy", "dout", "grad_output", "grad_out", "grad_y", "grad", "g", "delta", "upstream", "dl", "dz",
    "grad_outputs", "cotangent", "ct",
)  # fmt: skip

# a constructor argument that is a size, by the axis it gives: the input's last (features), the output's
# last (out features or classes)
SIZE_ROLES: dict[str, tuple[str, ...]] = {
    "input features": (
        "in_features", "in_feature", "n_inputs", "input_size", "fan_in", "in_size", "in_dim", "input_dim", "d_in",
        "num_inputs", "n_in", "n_neurons", "num_features", "n_features", "features", "normalized_shape",
        "dim", "hidden_size", "size", "d_model", "n_units", "units",
    ),
    "output features": (
        "out_features", "out_feature", "n_outputs", "output_size", "fan_out", "out_size", "out_dim", "output_dim", "d_out",
        "num_outputs", "n_out", "n_classes", "num_classes",
    ),
}  # fmt: skip


class CodeError(Exception):
    """The code cannot be checked as given (no such name, a kind not supported, a name that matches no
    derivation name): one line, exit status 2."""


@dataclass(frozen=True)
class Names:
    """Matching the code's names to derivation `d`'s; `mapped` is what the user said (code -> derivation)."""

    d: Derivation
    mapped: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        known = set(self.d.tensors) | set(self.d.sizes)
        for code_name, deriv_name in self.mapped.items():
            if deriv_name not in known:
                raise CodeError(
                    f"--map {code_name}={deriv_name}: {self.d.name} has no {deriv_name!r} "
                    f"(inputs: {', '.join(self.d.inputs)}; sizes: {', '.join(self.d.sizes) or 'none'})"
                )

    def of(self, code_name: str) -> str | None:
        """The derivation input (or the upstream gradient, or a size, if mapped so) a code name stands
        for, or None."""
        d = self.d
        if code_name in self.mapped:
            return self.mapped[code_name]
        if code_name in d.inputs or code_name == d.upstream and d.upstream in d.tensors:
            return code_name
        if code_name in d.tensors:  # an intermediate or the output: no input of the code
            return None
        lower = code_name.lower()
        found = [name for name in d.inputs if lower in ALIASES.get(name, ())]
        if len(found) == 1:
            return found[0]
        found = [name for name in d.inputs if name.lower() == lower]
        return found[0] if len(found) == 1 else None

    def upstream(self, code_name: str) -> bool:
        """Whether a backward's argument `code_name` is the upstream gradient."""
        d = self.d
        if code_name in self.mapped:
            return self.mapped[code_name] == d.upstream
        return code_name == d.upstream or code_name.lower() in UPSTREAM and self.of(code_name) is None

    def size(self, code_name: str) -> tuple[str, str] | None:
        """(size name, why) for a constructor argument that is a size, or None."""
        d = self.d
        if code_name in self.mapped and self.mapped[code_name] in d.sizes:
            return self.mapped[code_name], f"--map {code_name}={self.mapped[code_name]}"
        if code_name in d.sizes:
            return code_name, "by name"
        lower = code_name.lower()
        for role, names in SIZE_ROLES.items():
            if lower in names:
                axis = self._axis(role)
                if axis is not None:
                    return axis, f"the {role}"
        return None

    def _axis(self, role: str) -> str | None:
        d = self.d
        holder = "x" if "x" in d.inputs else next((n for n in d.inputs if d.shape(n)), None)
        if role == "output features":
            holder = d.output
        shape = d.shape(holder) if holder else ()
        return shape[-1].name if shape else None
