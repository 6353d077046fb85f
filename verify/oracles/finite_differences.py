"""The fd oracle: central finite differences of the generated NumPy forward, float64. An intermediate's
adjoint is the difference quotient of a forward that takes that intermediate as an input."""

from __future__ import annotations

import numpy as np

from .. import codegen
from .base import Oracle


def _loss(out, upstream) -> float:
    return float(np.sum(upstream * out)) if upstream is not None else float(out)


class FiniteDifferences(Oracle):
    name = "fd"
    step = 2.0**-17

    def gradients(self, sample):
        d = self.d
        gen = codegen.compile_derivation(d, "numpy")
        values = {
            k: np.array(v, dtype=np.float64) if isinstance(v, np.ndarray) else v
            for k, v in sample.values.items()
        }
        fwd = gen.forward(**values)
        written = gen.backward(**values, **fwd)
        upstream = values.get(d.upstream)
        for g in d.checked:
            v = g.of
            if v in d.inputs:
                f, base = gen.forward, dict(values)
            else:
                f, base = codegen.forward_given(d, "numpy", (v,)), {**values, v: fwd[v]}
            yield g.target, written[g.target], self._central(f, base, v, upstream)

    def _central(self, f, base, v, upstream):
        output = self.d.output
        x0 = np.array(base[v], dtype=np.float64)
        grad = np.zeros(x0.shape)
        for e in np.ndindex(*x0.shape):
            h = self.step * max(1.0, abs(float(x0[e])))
            plus, minus = x0.copy(), x0.copy()
            plus[e] += h
            minus[e] -= h
            lp = _loss(f(**{**base, v: plus if x0.shape else float(plus)})[output], upstream)
            lm = _loss(f(**{**base, v: minus if x0.shape else float(minus)})[output], upstream)
            grad[e] = (lp - lm) / (2 * h)
        return grad
