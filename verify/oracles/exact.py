"""The exact oracle: SymPy's derivative of each forward statement, propagated backwards in 50-digit
arithmetic at the sample's exact rational inputs. It shares no code with the generated programs or any
framework, and is the authority on what the true gradient is."""

from __future__ import annotations

import mpmath

from .. import jacobians
from ..exacteval import adjoints, jacobian, local_derivatives, run_all
from .base import Oracle


class Exact(Oracle):
    name = "exact"

    def __init__(self, d):
        super().__init__(d)
        self.derivatives = local_derivatives(d)

    def gradients(self, sample):
        upstream = sample.exact.get(self.d.upstream, mpmath.mpf(1))
        adj = adjoints(self.d, sample.forward, sample.sizes, upstream, self.derivatives)
        true_jacobians = {}
        for g in self.d.claims:
            if g.jacobian is None:
                yield g.target, sample.forward[g.target], adj[g.of]
                continue
            pair = (g.jacobian.of, g.jacobian.wrt)
            if pair not in true_jacobians:  # the steps of a chain share it
                true_jacobians[pair] = jacobian(self.d, sample.forward, sample.sizes, self.derivatives, *pair)
            yield g.target, jacobians.full(g, sample.forward[g.target]), true_jacobians[pair]

    def adjoints_with(self, sample, upstream):
        """The written and true gradients for another upstream gradient: for diagnosis."""
        values = run_all(self.d, {**sample.exact, self.d.upstream: upstream}, sample.sizes)
        return values, adjoints(self.d, values, sample.sizes, upstream, self.derivatives)
