"""What the jax and torch oracles share: differentiate the generated forward with the framework's
autodiff, and compare the generated forward with the catalogue's library op first.

The adjoints of inputs and of intermediates all come from one vector-Jacobian product of a forward with
a zero shift added to each intermediate checked (see lower.forward_program)."""

from __future__ import annotations

from dataclasses import dataclass

from .. import catalogue, codegen, jacobians
from .base import Oracle


@dataclass
class Run:
    """Everything a framework oracle computes for one sample, in one pass."""

    output: object  # the generated forward's output
    library: object  # the library op's output, or None
    written: dict  # every written gradient, by gradient name
    refs: dict  # the framework's adjoint of every input and intermediate checked, by its name
    jacobians: dict  # the framework's full Jacobian for each pair a Jacobian statement claims, by pair_key


class Framework(Oracle):
    def __init__(self, d):
        super().__init__(d)
        self.runs: dict[int, Run] = {}
        name = catalogue.name_of(d)
        self.op = catalogue.entry(name).library(self.name) if name else None
        order = [st.target for st in d.forward]
        self.inputs = [g.of for g in d.checked if g.of in d.inputs]
        wrt = {g.jacobian.wrt for g in d.jacobians}
        differentiated = {g.of for g in d.checked} | wrt
        self.intermediates = tuple(sorted({v for v in differentiated if v not in d.inputs}, key=order.index))
        self.pairs = sorted({(g.jacobian.of, g.jacobian.wrt) for g in d.jacobians})
        # what a library op takes besides the inputs: stride, padding, a pooling window (ints)
        self.settings = {**d.constants, **d.fixed_sizes}
        # where each size can be read off an input, to shape the zero shifts before the forward runs
        self.size_source = {s.name: (n, k) for n in reversed(d.inputs) for k, s in enumerate(d.shape(n))}

    def run(self, sample) -> Run:
        if id(sample) not in self.runs:
            self.runs[id(sample)] = self.compute(sample.values)
        return self.runs[id(sample)]

    def forward(self, sample):
        if self.op is None:
            return []
        r = self.run(sample)
        return [] if r.library is None else [(self.op.label, r.output, r.library)]

    def gradients(self, sample):
        r = self.run(sample)
        for g in self.d.claims:
            bound = self.reference_bound(sample, g)
            if g.jacobian is None:
                yield g.target, r.written[g.target], r.refs[g.of], bound
            else:
                pair = pair_key(g.jacobian.of, g.jacobian.wrt)
                yield g.target, jacobians.full(g, r.written[g.target]), r.jacobians[pair], bound

    def programs(self):
        gen = codegen.compile_derivation(self.d, self.name)
        shifted = codegen.forward_given(self.d, self.name, shifted=self.intermediates)
        return gen, shifted

    def compute(self, values) -> Run:
        raise NotImplementedError


def pair_key(of: str, wrt: str) -> str:
    """The key of the Jacobian d of / d wrt in `Run.jacobians` (a string: jit returns it as a pytree key)."""
    return f"{of}/{wrt}"
