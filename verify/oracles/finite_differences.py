"""The fd oracle: central finite differences of the generated NumPy forward, float64, each with an
estimate of its own error. An intermediate's adjoint is the difference quotient of a forward that takes
that intermediate as an input; a Jacobian statement's reference is the difference quotient of the forward
value it differentiates, element by element of the variable.

For each element, central differences D(h) are taken at steps h = STEP * max(|v|, 1) / 2^k, shrinking.
Where three successive ones converge as a smooth function's do (each difference at most half the one
before), the last difference bounds the truncation error of the Richardson extrapolation
D(h) + (D(h) - D(2h)) / 3 taken as the reference, and how differently float64 rounds the loss at the
two ends (`verify.rounding.loss_noise`: only what depends on v) over the step bounds its rounding error;
the values float64 computed before v shift the derivative itself as much as they shift an adjoint.
The step with the smallest total is kept, so the step adapts to the scale at which the function varies
there (a variance of 3e-6 beside eps = 1e-5 wants steps far below 2^-17; logits of 950 far below
950 * 2^-17). A step whose ends lie on different sides of a kink (a max, min, abs or comparison changes
sign between them: the generated forward reports it) is never used. An element with no usable step gets
an infinite bound: inconclusive, never a failure."""

from __future__ import annotations

import mpmath
import numpy as np

from .. import codegen, jacobians, rounding
from ..comparison import TOLERANCES
from .base import Oracle


def _loss(out, upstream) -> float:
    return float(np.sum(upstream * out)) if upstream is not None else float(out)


class FiniteDifferences(Oracle):
    name = "fd"
    unbounded = "no step both stays clear of every kink and converges"
    step = 2.0**-13  # the largest step; the first estimate comes two steps later, at 2^-15: the
    # extrapolation's error shrinks as h^4, so it is best at steps somewhat larger than a plain central
    # difference's (about 2^-17, the cube root of float64's precision) on a function varying at scale 1
    levels = 28  # steps tried, each half the one before

    def gradients(self, sample):
        d = self.d
        gen = codegen.compile_derivation(d, "numpy")
        values = {
            k: np.array(v, dtype=np.float64) if isinstance(v, np.ndarray) else v
            for k, v in sample.values.items()
        }
        fwd = gen.forward(**values)
        written = gen.backward(**values, **fwd)
        tol = TOLERANCES[self.name]
        upstream = values.get(d.upstream)
        done = {}
        for g in d.claims:
            of: str | None = None  # the forward value a Jacobian differentiates; None: the loss
            if g.jacobian is None:
                assert g.of is not None, "a claim that is not a Jacobian is a gradient dv, which names its v"
                v = g.of
            else:
                v, of = g.jacobian.wrt, g.jacobian.of
            if (v, of) not in done:
                given = () if v in d.inputs else (v,)
                f = codegen.observed_forward(d, given)
                base = {**values, v: fwd[v]} if given else dict(values)
                noise = np.asarray(tol.scale(rounding.loss_noise(d, sample, v, of)), dtype=float)
                if of is None:
                    size = rounding.of(d, sample).size(v)
                else:
                    full = rounding.jacobian(d, sample, of, v)
                    size = rounding.size(full.true, full.bound)
                target = tol.resolution * float(size) / 100
                done[v, of] = self._derivative(f, base, v, of, upstream, noise, target)
            reference, bound = done[v, of]
            # the difference quotient is the derivative at values float64 computed before v: as far off
            # as a float64 reverse pass is
            bound = bound + self.reference_bound(sample, g)
            yield (
                g.target,
                written[g.target] if of is None else jacobians.full(g, written[g.target]),
                reference,
                bound,
            )

    def _derivative(self, f, base, v, of, upstream, noise, target):
        """The reference and its bound: for a gradient, shaped like v; for a Jacobian, of.shape + v.shape."""
        x0 = np.array(base[v], dtype=np.float64)
        out, signs = f(**base)
        shape = () if of is None else np.shape(out[of])
        reference = np.zeros(x0.shape + shape)
        bound = np.empty(x0.shape + shape, dtype=object)
        for e in np.ndindex(*x0.shape):
            reference[e], bound[e] = self._element(f, base, v, of, e, x0, signs, upstream, noise, target)
        if of is None:
            return reference, bound
        # indexed [v..., of...] here; a Jacobian is [of..., v...]
        axes = tuple(range(x0.ndim)), tuple(range(reference.ndim - x0.ndim, reference.ndim))
        return np.moveaxis(reference, *axes), np.moveaxis(bound, *axes)

    def _element(self, f, base, v, of, e, x0, signs, upstream, noise, target):
        def value_at(x_e):
            x = x0.copy()
            x[e] = x_e
            out, at = f(**{**base, v: x if x0.shape else float(x)})
            value = _loss(out[self.d.output], upstream) if of is None else np.asarray(out[of], dtype=float)
            crossed = len(at) != len(signs) or any(
                not np.array_equal(a, b) for a, b in zip(at, signs, strict=True)
            )
            return value, crossed

        h0 = self.step * max(abs(float(x0[e])), 1.0)
        best: float | np.ndarray = np.nan
        best_bound = mpmath.inf
        chain: list[float | np.ndarray] = []  # the differences at successive steps (arrays for a Jacobian)
        for k in range(self.levels):
            h = h0 / 2**k
            plus, minus = x0[e] + h, x0[e] - h
            (lp, crossed_p), (lm, crossed_m) = value_at(plus), value_at(minus)
            if crossed_p or crossed_m or not np.all(np.isfinite(lp - lm)):
                chain = []  # across a kink: only smaller steps can do
                continue
            width = plus - minus  # the step float64 actually took
            rounding_part = 2 * noise / width
            chain.append((lp - lm) / width)
            if len(chain) < 3:
                continue
            older, before, now = chain[-3:]
            # in the asymptotic regime each difference is a quarter of the one before; where they are
            # rounding noise, both are small
            if np.any(np.abs(now - before) > np.abs(before - older) / 2 + 4 * rounding_part):
                continue
            estimate = np.abs(now - before) + 2 * rounding_part  # three times the extrapolation's correction
            if np.max(estimate) < np.max(best_bound):
                best, best_bound = now + (now - before) / 3, estimate
            elif np.max(estimate) > 4 * np.max(best_bound):  # rounding dominates from here on
                break
            if np.max(best_bound) <= target:
                break
        if of is not None and np.ndim(best) == 0:  # no usable step: every entry unbounded
            shape = np.shape(value_at(x0[e])[0])
            return np.full(shape, np.nan), np.full(shape, mpmath.inf, dtype=object)
        return best, best_bound
