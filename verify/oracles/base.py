"""What every oracle is: for each sample, the written value and its own reference value of every checked
gradient (and, where it has one, the generated forward beside a library forward). Judging the values is
`verify.comparison`'s work, not the oracle's.

No oracle changes its caller's process: thread counts and framework settings are scoped to the oracle's
own computation and restored after it."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

from .. import rounding
from ..comparison import TOLERANCES
from ..model import Derivation, Statement
from ..sampling import Sample


class Skip(Exception):
    """An oracle that cannot run here: the message is the reason."""


class Oracle:
    """One reference. `gradients` yields (gradient name, written value, reference value, bound) for a
    sample, `bound` being how far the reference may be off by the oracle's own arithmetic (absolute,
    elementwise); `forward` yields (label, generated output, library output) where the oracle has a
    library op."""

    name = ""
    module = ""  # the framework it needs, if any
    # why it may give a reference it cannot bound (a non-finite value and bound), for the verdict's reason
    unbounded = "its reference and the bound on it overflow float64 there"

    def __init__(self, d: Derivation):
        self.d = d
        self.refused: dict[str, str] = {}  # library forwards that refused a sample: label -> why

    def unavailable(self) -> str | None:
        """Why the oracle cannot run on this derivation here, or None."""
        if self.module and not self.available_here():
            return f"{self.module} is not installed (pip install 'gradverify[{self.module}]')"
        return None

    @classmethod
    def available_here(cls) -> bool:
        """Whether the oracle's framework is installed (without importing it)."""
        return not cls.module or importlib.util.find_spec(cls.module) is not None

    def not_compared(self, gradient: str) -> str:
        """Why a gradient got no comparison from this oracle (it computed no reference for it)."""
        return f"{self.name} computed no reference for it"

    def reference_bound(self, sample: Sample, g: Statement):
        """The bound on a reverse pass's value of what claim `g` is compared with, in this oracle's
        arithmetic: the adjoint of g's variable, or the full Jacobian of a Jacobian statement."""
        if g.jacobian is None:
            assert g.of is not None, "a claim that is not a Jacobian is a gradient dv, which names its v"
            bound = rounding.of(self.d, sample).adjoints[g.of]
        else:
            bound = rounding.jacobian(self.d, sample, g.jacobian.of, g.jacobian.wrt).bound
        return TOLERANCES[self.name].scale(bound)

    def forward(self, sample: Sample) -> Iterator[tuple[str, object, object]]:
        return iter(())

    def gradients(self, sample: Sample) -> Iterator[tuple[str, object, object, object]]:
        raise NotImplementedError
