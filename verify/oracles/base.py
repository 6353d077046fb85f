"""What every oracle is: for each sample, the written value and its own reference value of every checked
gradient (and, where it has one, the generated forward beside a library forward). Judging the values is
`verify.comparison`'s work, not the oracle's.

No oracle changes its caller's process: thread counts and framework settings are scoped to the oracle's
own computation and restored after it."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

from ..model import Derivation
from ..sampling import Sample


class Skip(Exception):
    """An oracle that cannot run here: the message is the reason."""


class Oracle:
    """One reference. `gradients` yields (gradient name, written value, reference value) for a sample;
    `forward` yields (label, generated output, library output) where the oracle has a library op."""

    name = ""
    module = ""  # the framework it needs, if any

    def __init__(self, d: Derivation):
        self.d = d

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
        return f"{self.name} computed no reference for {gradient}"

    def forward(self, sample: Sample) -> Iterator[tuple[str, object, object]]:
        return iter(())

    def gradients(self, sample: Sample) -> Iterator[tuple[str, object, object]]:
        raise NotImplementedError
