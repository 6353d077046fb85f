"""The numpy oracle: the hand-written backward of the NumPy layer that implements a catalogue entry.

The catalogue record names the layer's adapter by import path ("module:attribute"); it is imported only
when the oracle runs, so the verifier does not depend on `implementations`. An adapter has `module` (what
is checked, in words) and `run(values)`, which builds the layer from the derivation's inputs by name,
runs forward and backward, and returns (forward output, {gradient name: array}) for the gradients the
layer itself computes. (`python -m verify bench` times the same backward through the adapter's
`prepare(values).backward`.)"""

from __future__ import annotations

import importlib

import numpy as np

from .. import catalogue, codegen
from .base import Oracle, Skip


def resolve(reference: str):
    """The object a "module:attribute" reference names."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


class HandWritten(Oracle):
    name = "numpy"

    def __init__(self, d):
        super().__init__(d)
        self._adapter = None

    def adapter(self):
        if self._adapter is None:
            name = catalogue.name_of(self.d)
            if name is None:
                raise Skip("not a catalogue derivation: no hand-written module to compare with")
            entry = catalogue.entry(name)
            if entry.numpy is None:
                raise Skip(entry.no_numpy)
            try:
                self._adapter = resolve(entry.numpy)
            except (ImportError, AttributeError) as e:
                raise Skip(f"{entry.numpy} cannot be loaded: {e}") from None
        return self._adapter

    def unavailable(self):
        try:
            self.adapter()
        except Skip as e:
            return str(e)
        return None

    def not_compared(self, gradient: str) -> str:
        return f"{self.adapter().module} does not compute it"

    def _run(self, sample):
        values = {
            k: np.array(v, dtype=np.float64) if isinstance(v, np.ndarray) else v
            for k, v in sample.values.items()
        }
        with np.errstate(all="ignore"):  # an overflow is judged from the values, not announced
            return values, self.adapter().run(values)

    def forward(self, sample):
        values, (out, _) = self._run(sample)
        gen = codegen.compile_derivation(self.d, "numpy")
        with np.errstate(all="ignore"):
            return [(self.adapter().module, gen.forward(**values)[self.d.output], out)]

    def gradients(self, sample):
        values, (_, grads) = self._run(sample)
        gen = codegen.compile_derivation(self.d, "numpy")
        with np.errstate(all="ignore"):
            written = gen.backward(**values, **gen.forward(**values))
        for g in self.d.checked:
            if g.target in grads:
                yield g.target, written[g.target], grads[g.target], self.reference_bound(sample, g)
