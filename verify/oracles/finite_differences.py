"""The fd oracle: central finite differences of the generated NumPy forward, float64. An intermediate's
adjoint is the difference quotient of a forward that takes that intermediate as an input."""

from __future__ import annotations

import numpy as np

from .. import codegen, jacobians
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
        true_jacobians = {}
        for g in d.claims:
            v = g.of if g.jacobian is None else g.jacobian.wrt
            if v in d.inputs:
                f, base = gen.forward, dict(values)
            else:
                f, base = codegen.forward_given(d, "numpy", (v,)), {**values, v: fwd[v]}
            if g.jacobian is None:
                yield g.target, written[g.target], self._central(f, base, v, upstream)
                continue
            pair = (g.jacobian.of, v)
            if pair not in true_jacobians:
                true_jacobians[pair] = self._jacobian(f, base, v, g.jacobian.of)
            yield g.target, jacobians.full(g, written[g.target]), true_jacobians[pair]

    def _jacobian(self, f, base, x, y):
        """d y / d x by central differences: one pair of forward runs per element of x."""
        x0 = np.array(base[x], dtype=np.float64)
        columns = np.zeros(x0.shape + np.shape(f(**base)[y]))
        for e in np.ndindex(*x0.shape):
            h = self.step * max(1.0, abs(float(x0[e])))
            plus, minus = x0.copy(), x0.copy()
            plus[e] += h
            minus[e] -= h
            yp = f(**{**base, x: plus if x0.shape else float(plus)})[y]
            ym = f(**{**base, x: minus if x0.shape else float(minus)})[y]
            columns[e] = (np.asarray(yp) - np.asarray(ym)) / (2 * h)
        # columns is indexed [x..., y...]; a Jacobian is [y..., x...]
        return np.moveaxis(columns, tuple(range(x0.ndim)), tuple(range(columns.ndim - x0.ndim, columns.ndim)))

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
