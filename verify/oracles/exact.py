"""The exact oracle: SymPy's derivative of each forward statement, propagated backwards in 50-digit
arithmetic at the sample's exact rational inputs. It shares no code with the generated programs or any
framework, and is the authority on what the true gradient is.

The propagation is `exacteval.adjoints` (and `exacteval.jacobian` for Jacobian statements);
`verify.rounding` runs it once per sample, carrying rounding bounds along, and its exact part is the true
gradient this oracle reports."""

from __future__ import annotations

from .. import jacobians, rounding
from ..exacteval import adjoints, derivatives_of, run_all
from .base import Oracle


class Exact(Oracle):
    name = "exact"

    def __init__(self, d):
        super().__init__(d)
        self.derivatives = derivatives_of(d)

    def gradients(self, sample):
        true = rounding.of(self.d, sample).true
        for g in self.d.claims:
            if g.jacobian is None:
                assert g.of is not None, "a claim that is not a Jacobian is a gradient dv, which names its v"
                yield g.target, sample.forward[g.target], true[g.of], self.reference_bound(sample, g)
            else:
                full = rounding.jacobian(self.d, sample, g.jacobian.of, g.jacobian.wrt)
                written = jacobians.full(g, sample.forward[g.target])
                yield g.target, written, full.true, self.reference_bound(sample, g)

    def adjoints_with(self, sample, upstream):
        """The written and true gradients for another upstream gradient: for diagnosis."""
        values = run_all(self.d, {**sample.exact, self.d.upstream: upstream}, sample.sizes)
        return values, adjoints(self.d, values, sample.sizes, upstream, self.derivatives)
