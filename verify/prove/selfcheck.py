"""The prover checks itself: its normal form of the true gradient is evaluated at one sample and
compared with the exact oracle's adjoint there, and its normal form of the written gradient with the
written gradient's value. A bug in differentiation, delta contraction, sum splitting or renaming
changes those values, so it cannot turn into a false proof unnoticed."""

from __future__ import annotations

from dataclasses import dataclass

import mpmath
import sympy as sp

from .. import sampling
from ..exacteval import DIGITS, Evaluator, adjoints, concrete_shape, elements, local_derivatives, size_values
from ..model import Derivation
from .algebra import Algebra

TOLERANCE = mpmath.mpf(10) ** -25  # relative to the largest value: 50-digit arithmetic, summed differently


class StepEvaluator(Evaluator):
    """The exact evaluator, knowing the prover's step atom [u > 0] and SymPy's constants (E)."""

    def _ev_Step(self, e, env):
        return mpmath.mpf(1) if self.ev(e.args[0], env) > 0 else mpmath.mpf(0)

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

    def __call__(self, e: sp.Expr, env: dict):
        bound = dict(env)
        for s in e.free_symbols:
            if s in self.algebra.atoms:
                bound[s] = self.atom(s, env)
        return self.ev(e, bound)

    def atom(self, s: sp.Symbol, env: dict):
        atom = self.algebra.atoms[s]
        key = (s, tuple(sorted((str(i), env[i]) for i in atom.indices)))
        found = self._cache.get(key)
        if found is None:
            if atom.kind == "sum":
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

    values: dict
    sizes: dict[sp.Symbol, int]
    shapes: dict[str, tuple[int, ...]]

    @classmethod
    def draw(cls, d: Derivation, seed: int) -> Reference:
        sample = sampling.draw(d, seed)
        upstream = sample.exact.get(d.upstream, mpmath.mpf(1))
        adj = adjoints(d, sample.forward, sample.sizes, upstream, local_derivatives(d))
        values = dict(sample.forward)
        values.update({adjoint_name(k): v for k, v in adj.items()})
        shapes = {name: concrete_shape(d, name, sample.sizes) for name in d.tensors}
        return cls(values, size_values(d, sample.sizes), shapes)

    def compare_values(self, g) -> str | None:
        """None when the written gradient `g` equals the exact adjoint at this sample; else where not."""
        expected, got = self.values[adjoint_name(g.of)], self.values[g.target]
        with mpmath.workdps(DIGITS):
            for at in elements(self.shapes[g.of]):
                want, have = (expected[at], got[at]) if at else (expected, got)
                if abs(have - want) > TOLERANCE * max(mpmath.mpf(1), abs(want)):
                    return f"{g.target}{list(at) if at else ''} is {mpmath.nstr(have, 8)}, not {mpmath.nstr(want, 8)}"
        return None

    def compare(
        self, ev: AtomValues, expr: sp.Expr, indices: tuple[sp.Symbol, ...], name: str, shape_of: str
    ) -> str | None:
        """None when the normal form `expr` evaluates, at every element (of tensor `shape_of`'s shape), to
        the value of tensor `name`; else a message saying where not."""
        expected = self.values[name]
        with mpmath.workdps(DIGITS):
            got = {}
            for at in elements(self.shapes[shape_of]):
                got[at] = ev(expr, dict(zip(indices, at, strict=True)))
            want = {at: (expected[at] if at else expected) for at in got}
            scale = max([mpmath.mpf(1)] + [abs(v) for v in want.values()])
            for at, v in got.items():
                if abs(v - want[at]) > TOLERANCE * scale:
                    where = f"[{', '.join(map(str, at))}]" if at else ""
                    return f"{name}{where} is {mpmath.nstr(want[at], 8)}, the normal form gives {mpmath.nstr(v, 8)}"
        return None
