"""The numpy oracle: the hand-written backward of the NumPy layer that implements a catalogue entry.

The catalogue record names the layer's binding (`verify.code.Binding`) by import path
("module:attribute"); it is imported only when the oracle runs, so the verifier does not depend on
`implementations`. The layer runs through the path `python -m verify code` runs any code through
(`verify.code.target`: its names matched to the derivation's, its layout found, its gradients converted
to the derivation's convention), and the oracle compares the derivation's written gradients with the
ones the layer computes. (`python -m verify bench` times the same target's `prepare(values).backward`.)"""

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
        self._target = None
        self.runs: dict[int, tuple] = {}

    def binding(self):
        """The catalogue's binding of this derivation's NumPy layer; Skip with the reason if none."""
        name = catalogue.name_of(self.d)
        if name is None:
            raise Skip("not a catalogue derivation: no hand-written module to compare with")
        entry = catalogue.entry(name)
        if entry.numpy is None:
            raise Skip(entry.no_numpy)
        try:
            return resolve(entry.numpy)
        except (ImportError, AttributeError) as e:
            raise Skip(f"{entry.numpy} cannot be loaded: {e}") from None

    def target(self):
        """The layer bound to the derivation (verify.code.Target), made once."""
        if self._target is None:
            from ..code import target

            self._target = target(self.binding(), self.d)
        return self._target

    @property
    def layer(self) -> str:  # what is checked, in words (`module` is the framework an oracle needs)
        return self.target().code.label

    def unavailable(self):
        try:
            self.binding()
        except Skip as e:
            return str(e)
        return None

    def not_compared(self, gradient: str) -> str:
        st = next((s for s in self.d.claims if s.label == gradient), None)
        why = self.target().code.missing.get(st.of) if st is not None and st.of else None
        return f"{self.layer}: {why}" if why else f"{self.layer} does not compute it"

    def _run(self, sample):
        """(values, generated forward, layer output, layer gradients) at a sample, computed once."""
        if id(sample) not in self.runs:
            values = {
                k: np.array(v, dtype=np.float64) if isinstance(v, np.ndarray) else v
                for k, v in sample.values.items()
            }
            gen = codegen.compile_derivation(self.d, "numpy")
            forward = gen.forward(**values)
            # a layer's settings come with its inputs: stride, padding, a pooling window (ints)
            settings = {**self.d.constants, **self.d.fixed_sizes}
            prepared = self.target().prepare(
                {**values, **settings}, np.asarray(forward[self.d.output], dtype=np.float64)
            )
            grads = prepared.backward()
            self.runs[id(sample)] = (values, forward, prepared.output, grads)
        return self.runs[id(sample)]

    def forward(self, sample):
        _, forward, out, _ = self._run(sample)
        return [(self.layer, forward[self.d.output], out)]

    def gradients(self, sample):
        values, forward, _, grads = self._run(sample)
        gen = codegen.compile_derivation(self.d, "numpy")
        written = gen.backward(**values, **forward)
        for g in self.d.checked:
            if g.of in grads and g.target == f"d{g.of}":
                yield g.target, written[g.target], grads[g.of], self.reference_bound(sample, g)
