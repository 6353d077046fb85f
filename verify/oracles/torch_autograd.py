"""The torch oracle: `torch.autograd` of the generated PyTorch forward, float64, on one thread (the
arrays are tiny), the caller's thread count restored afterwards."""

from __future__ import annotations

from contextlib import contextmanager

from .. import catalogue, codegen
from .framework import Framework, Run, pair_key


@contextmanager
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Torch(Framework):
    name = module = "torch"

    def compute(self, values) -> Run:
        import torch

        with one_thread():
            values = {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}
            return self._compute(torch, values)

    def _compute(self, torch, values) -> Run:
        d = self.d
        gen, shifted = self.programs()
        fwd = gen.forward(**values)
        written = gen.backward(**values, **fwd)
        leaves = {v: values[v].detach().clone().requires_grad_(True) for v in self.inputs}
        shifts = {v: torch.zeros_like(fwd[v], requires_grad=True) for v in self.intermediates}
        named = {codegen.shift_name(k): v for k, v in shifts.items()}
        out = shifted(**{**values, **leaves, **named})[d.output]
        wrt = list(leaves.values()) + list(shifts.values())
        grads = (
            torch.autograd.grad(
                out, wrt, grad_outputs=values.get(d.upstream, torch.ones_like(out)), allow_unused=True
            )
            # nothing to differentiate when the derivation states Jacobians only, or when the output
            # reads none of the variables (y = 1e-5 * 0.5 + where(a < 0.5, a, 0) at a >= 0.5)
            if wrt and out.requires_grad
            else [None] * len(wrt)
        )
        refs = {
            name: (g if g is not None else torch.zeros_like(t))
            for name, t, g in zip([*leaves, *shifts], wrt, grads, strict=True)
        }
        library = None
        if self.op:
            try:
                library = self.op.fn(catalogue.torch_namespace(), {**values, **self.settings})
            except (ValueError, RuntimeError) as e:  # the library refuses these inputs (a batch of one)
                self.refused[self.op.label] = f"{self.op.label} refuses these inputs: {e}"
        zero_shifts = {codegen.shift_name(k): torch.zeros_like(fwd[k]) for k in self.intermediates}
        jacs = {}
        for of, wrt in self.pairs:  # torch.func.jacrev of `of` in the input, or in the intermediate's shift
            moved = wrt if wrt in d.inputs else codegen.shift_name(wrt)
            at = values[wrt] if wrt in d.inputs else zero_shifts[moved]

            def value_of(v, of=of, moved=moved):
                return shifted(**{**values, **zero_shifts, moved: v})[of]

            jacs[pair_key(of, wrt)] = torch.func.jacrev(value_of)(at)
        return Run(fwd[d.output], library, written, refs, jacs)
