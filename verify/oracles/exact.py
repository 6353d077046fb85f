"""The exact oracle: SymPy's derivative of each forward statement, propagated backwards in 50-digit
arithmetic at the sample's exact rational inputs. It shares no code with the generated programs or any
framework, and is the authority on what the true gradient is."""

from __future__ import annotations

import mpmath

from ..exacteval import adjoints, local_derivatives, run_all
from .base import Oracle


class Exact(Oracle):
    name = "exact"

    def __init__(self, d):
        super().__init__(d)
        self.derivatives = local_derivatives(d)

    def gradients(self, sample):
        upstream = sample.exact.get(self.d.upstream, mpmath.mpf(1))
        adj = adjoints(self.d, sample.forward, sample.sizes, upstream, self.derivatives)
        for g in self.d.checked:
            yield g.target, sample.forward[g.target], adj[g.of]

    def adjoints_with(self, sample, upstream):
        """The written and true gradients for another upstream gradient: for diagnosis."""
        values = run_all(self.d, {**sample.exact, self.d.upstream: upstream}, sample.sizes)
        return values, adjoints(self.d, values, sample.sizes, upstream, self.derivatives)
