"""The prover checks itself: its normal form of the true gradient is evaluated at one sample and
compared with the exact oracle's adjoint there, and its normal form of the written gradient with the
written gradient's value. A bug in differentiation, delta contraction, sum splitting or renaming
changes those values, so it cannot turn into a false proof unnoticed."""

from __future__ import annotations

from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy as sp

from .. import jacobians, sampling
from ..exacteval import DIGITS, Evaluator, adjoints, elements, jacobian, local_derivatives, size_values
from ..model import Derivation, Statement
from .algebra import Algebra, AtomKind

TOLERANCE = mpmath.mpf(10) ** -25  # relative to the largest value: 50-digit arithmetic, summed differently


class StepEvaluator(Evaluator):
    """The exact evaluator, knowing the prover's indicators (the step [u > 0], [e >= 0] of an index
    expression, [a == b] of two values) and SymPy's constants (E)."""

    def _ev_Step(self, e, env):
        return mpmath.mpf(1) if self.ev(e.args[0], env) > 0 else mpmath.mpf(0)

    def _ev_Bound(self, e, env):
        return mpmath.mpf(1) if self.ev(e.args[0], env) >= 0 else mpmath.mpf(0)

    def _ev_Equal(self, e, env):
        return mpmath.mpf(1) if self.ev(e.args[0], env) == self.ev(e.args[1], env) else mpmath.mpf(0)

    def _ev_NumberSymbol(self, e, env):
        return mpmath.mpf(str(e.evalf(DIGITS + 5)))


class AtomValues:
    """The value of a normal form at one sample: each atom evaluated from its definition by the exact
    evaluator, once per value of its free indices (a moment inside a moment is not summed again for
    every element)."""

    def __init__(self, algebra: Algebra, ref: Reference):
        self.algebra = algebra
        self.ev = StepEvaluator(ref.values, ref.sizes)
        self._cache: dict[tuple, object] = {}
        # per expression its atoms and (a product) its factors, the moments last; per atom its free
        # indices in a fixed order: looked up at every element
        self._atoms_in: dict[sp.Expr, tuple[sp.Symbol, ...]] = {}
        self._factors: dict[sp.Expr, tuple[sp.Expr, ...]] = {}
        self._indices: dict[sp.Symbol, tuple[sp.Symbol, ...]] = {}

    def __call__(self, e: sp.Expr, env: dict):
        if isinstance(e, sp.Add):
            return mpmath.fsum(self(t, env) for t in e.args)
        if isinstance(e, sp.Mul):
            # the cheap factors first: a zero one (an indicator outside a window, a closed mask) ends the
            # product before the moments inside it are summed
            factors = self._factors.get(e)
            if factors is None:
                factors = self._factors[e] = tuple(sorted(e.args, key=self.algebra.depth))
            out = mpmath.mpf(1)
            for f in factors:
                v = self(f, env)
                if v == 0:
                    return mpmath.mpf(0)
                out *= v
            return out
        atoms = self._atoms_in.get(e)
        if atoms is None:
            atoms = self._atoms_in[e] = tuple(s for s in e.free_symbols if s in self.algebra.atoms)
        bound = dict(env)
        for s in atoms:
            bound[s] = self.atom(s, env)
        return self.ev(e, bound)

    def atom(self, s: sp.Symbol, env: dict):
        atom = self.algebra.atoms[s]
        indices = self._indices.get(s)
        if indices is None:
            indices = self._indices[s] = tuple(sorted(atom.indices, key=str))
        key = (s, tuple(env[i] for i in indices))
        found = self._cache.get(key)
        if found is None:
            if atom.kind is AtomKind.SUM:
                ((k, _lo, hi),) = atom.definition.limits
                size = int(self.ev(hi, env)) + 1
                found = mpmath.fsum(self(atom.definition.function, {**env, k: i}) for i in range(size))
            else:
                found = self(atom.definition, env)
            self._cache[key] = found
        return found


def adjoint_name(name: str) -> str:
    """The tensor that stands for the true adjoint dL/dname in the prover's expressions."""
    return f"dL/d{name}"


@dataclass
class Reference:
    """One sample of a derivation with every value the prover's expressions read: inputs, upstream,
    forward values, written gradients (by name) and the exact adjoints (by `adjoint_name`)."""

    d: Derivation
    values: dict
    sizes: dict[sp.Symbol, int]
    forward: dict  # the sample's forward values and written statements
    concrete: dict[str, int]
    derivatives: dict
    _jacobians: dict = field(default_factory=dict)

    @classmethod
    def draw(cls, d: Derivation, seed: int) -> Reference:
        sample = sampling.draw(d, seed)
        upstream = sample.exact.get(d.upstream, mpmath.mpf(1))
        derivatives = local_derivatives(d)
        adj = adjoints(d, sample.forward, sample.sizes, upstream, derivatives)
        values = dict(sample.forward)
        values.update({adjoint_name(k): v for k, v in adj.items()})
        return cls(d, values, size_values(d, sample.sizes), sample.forward, sample.sizes, derivatives)

    def expected(self, st: Statement) -> tuple[object, object]:
        """(true, written) values of a claim at this sample, both indexed like the prover's sides: by the
        gradient's indices, or for a Jacobian by its full indices (numerator's, then denominator's)."""
        if st.jacobian is None:
            assert st.of is not None, "a claim that is not a Jacobian is a gradient dv, which names its v"
            return self.values[adjoint_name(st.of)], self.values[st.target]
        pair = (st.jacobian.of, st.jacobian.wrt)
        if pair not in self._jacobians:
            self._jacobians[pair] = jacobian(self.d, self.forward, self.concrete, self.derivatives, *pair)
        return self._jacobians[pair], jacobians.full(st, self.values[st.target])

    def disagreement(self, st: Statement) -> str | None:
        """None when the written claim equals the true one at this sample; else where it does not."""
        true, written = self.expected(st)
        return _first_difference(written, lambda at: _at(true, at), "the true value")

    def compare(self, ev: AtomValues, expr: sp.Expr, indices: tuple[sp.Symbol, ...], expected) -> str | None:
        """None when the normal form `expr`, a function of `indices`, evaluates to `expected` (an array
        over those indices, or a number) at every element; else a message saying where not."""
        return _first_difference(
            expected, lambda at: ev(expr, dict(zip(indices, at, strict=True))), "the normal form"
        )


def _at(a, at):
    return a[at] if at else a


def _first_difference(expected, value_at, what: str) -> str | None:
    shape = expected.shape if isinstance(expected, np.ndarray) else ()
    with mpmath.workdps(DIGITS):
        got = {at: value_at(at) for at in elements(shape)}
        scale = max([mpmath.mpf(1)] + [abs(_at(expected, at)) for at in got])
        for at, v in got.items():
            want = _at(expected, at)
            if abs(v - want) > TOLERANCE * scale:
                where = f" at {list(at)}" if at else ""
                return f"{mpmath.nstr(want, 8)}{where}, {what} gives {mpmath.nstr(v, 8)}"
    return None
