"""The fix search: small edits of the wrong statement (and of the helpers it reads), cheapest first, each
screened at one sample and then verified; the first one that verifies is the fix.

A candidate is kept only if
1. at the sample diagnosed, its value equals the true gradient at the worst entry and at the largest one,
   then everywhere (50-digit arithmetic, to 1e-25 of the gradient's size);
2. the same holds at every other sample of the check;
3. its text, put in place of the statement in the file, parses, and the exact oracle itself passes it
   (and every checked statement that reads a changed helper) at the check's samples and at one extra
   draw of its own seed.

Nothing that failed any of these is ever shown. The search is bounded (`Budget`): it stops after a number
of candidates or a wall time, whichever comes first, and says so.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy as sp

from .. import jacobians, rounding, sampling
from ..comparison import Status
from ..exacteval import (
    DIGITS,
    Evaluator,
    adjoints,
    contracted,
    derivatives_of,
    run_all,
    run_statement,
    size_values,
)
from ..model import Derivation, DerivationError, Statement, reads
from ..mutate import replace_statement
from ..parse import parse
from ..unparse import expression_text, statement_text
from .causes import Cause, Numbers, floats
from .edits import Edit, edits, multiplied, readable_names
from .expansion import Expansion, TooDeep, fold, masks_as_where, readable, size_of, written_form
from .kinds import Fix, Kind

EXTRA_SEED = 104_729  # the extra draw a fix must also pass is drawn from the check's seed plus this
EXACT = mpmath.mpf(10) ** -25  # relative: two 50-digit values this close are the same value


@dataclass(frozen=True)
class Budget:
    """How much a fix search may spend per gradient: candidates evaluated, and CPU seconds of this process
    (a safety net; the count is what normally ends a search, so that results do not depend on the
    machine, and CPU time rather than wall time, so that a busy machine does not end it early)."""

    candidates: int = 400
    seconds: float = 4.0


@dataclass
class Found:
    """The outcome of a search: the fix and the edit it came from, or why there is none."""

    fix: Fix | None = None
    edit: Edit | None = None
    note: str = ""
    tried: int = 0


def truth(d: Derivation, sample) -> dict:
    """The true adjoint of every name at a sample (the check's, when it computed them)."""
    if "bounds" in sample.cache:
        return rounding.of(d, sample).true
    if "true adjoints" not in sample.cache:
        upstream = sample.forward.get(d.upstream, mpmath.mpf(1))
        sample.cache["true adjoints"] = adjoints(d, sample.forward, sample.sizes, upstream, derivatives_of(d))
    return sample.cache["true adjoints"]


def _exactly(a, b) -> bool:
    a, b = np.ravel(np.asarray(a, dtype=object)), np.ravel(np.asarray(b, dtype=object))
    if a.shape != b.shape:
        return False
    scale = max([mpmath.mpf(1), *(abs(x) for x in b)])
    return all(mpmath.isfinite(x) and abs(x - y) <= EXACT * scale for x, y in zip(a, b, strict=True))


def editable(st: Statement) -> str:
    """Why no fix is searched for a statement, or '' when one is: only a plain index-notation statement
    can be replaced by another line."""
    if st.chain is not None:
        return "no fix is searched for a step of a chain"
    if st.source:
        return "no fix is searched for a statement written in matrix or LaTeX notation"
    return ""


class Search:
    """The fix search for claim `num.st` at the check's `draws` (the sample diagnosed among them)."""

    def __init__(self, num: Numbers, cause: Cause | None, draws, budget: Budget, seed: int):
        self.num, self.cause, self.draws, self.budget, self.seed = num, cause, list(draws), budget, seed
        self.d, self.st = num.d, num.st
        self.helpers = _helpers(self.d, self.st)
        self.true = self._reference(num.sample)
        w, t = num.written, num.true
        worst = np.unravel_index(int(np.argmax(np.abs(w - t))), t.shape) if t.ndim else ()
        largest = np.unravel_index(int(np.argmax(np.abs(t))), t.shape) if t.ndim else ()
        self.screen = list(dict.fromkeys([tuple(int(i) for i in worst), tuple(int(i) for i in largest)]))
        self.sv = size_values(self.d, num.sample.sizes)

    def run(self) -> Found:
        start = time.process_time()
        tried = 0
        for edit in self.candidates():
            if tried >= self.budget.candidates:
                return Found(note=f"no fix found among the first {tried} candidate edits", tried=tried)
            if time.process_time() - start > self.budget.seconds:
                return Found(
                    note=f"the fix search stopped after {self.budget.seconds:g} s of CPU ({tried} candidates)",
                    tried=tried,
                )
            tried += 1
            if not self._screened(edit):
                continue
            fix = self._verified(edit)
            if fix is not None:
                return Found(fix, edit, tried=tried)
        return Found(note=f"none of {tried} candidate edits verifies", tried=tried)

    # -- candidates ----------------------------------------------------------------------------------

    def candidates(self):
        """Every candidate edit, cheapest first; the true-expansion ones are built only when reached."""
        seen: set[tuple[str, sp.Expr]] = set()
        for edit in itertools.chain(self._from_cause(), self._small(), self._expansion()):
            key = (edit.target, edit.rhs)
            if key in seen or edit.rhs == self.d.statement(edit.target).rhs:
                continue
            seen.add(key)
            yield edit

    def _small(self):
        for s in [self.st, *self.helpers]:
            yield from edits(self.d, s)

    def _expansion_terms(self) -> dict[str, sp.Expr]:
        if not hasattr(self, "_terms"):
            self._terms = {}
            if self.st.of is not None:
                usable = {}
                for g in self.d.gradients:
                    if g is self.st:
                        break
                    if g.of is not None and g.jacobian is None and g.chain is None and not g.source:
                        values = self.num.sample.forward[g.target]
                        if _exactly(values, truth(self.d, self.num.sample)[g.of]):
                            usable[g.of] = g
                try:
                    self._terms = Expansion(self.d, self.st, usable).terms(self.st.of, self.st.indices)
                except TooDeep:
                    self._terms = {}
        return self._terms

    def _from_cause(self):
        """For a missing path, the expansion's terms through the statements left out, added."""
        if self.cause is None or not self.cause.readers:
            return
        terms = self._expansion_terms()
        if all(r in terms for r in self.cause.readers):
            added = sp.Add(*(terms[r] for r in self.cause.readers))
            term = written_form(self.d, self.st, added)
            yield Edit(self.st.target, self.st.rhs + term, Kind.MISSING_PATH, self.cause.message,
                       f"the term {_short(term)} added", cost=0)  # fmt: skip

    def _expansion(self):
        terms = self._expansion_terms()
        st = self.st
        allowed = set(readable_names(self.d, st))
        forms = {r: written_form(self.d, st, t) for r, t in terms.items()}
        for r, term in forms.items():
            if not _reads(term) <= allowed:
                continue
            yield Edit(st.target, st.rhs + term, Kind.MISSING_TERM, f"misses the term {_short(term)} (the path through {r})",
                       f"the term {_short(term)} added", cost=2)  # fmt: skip
            yield Edit(st.target, st.rhs - term, Kind.EXTRA_TERM, f"has the term {_short(term)} with the wrong sign",
                       f"the term {_short(term)} subtracted", cost=2)  # fmt: skip
            for factor in self._factors(terms[r]):
                if factor not in sp.Mul.make_args(st.rhs) and _reads(factor) <= allowed:
                    yield Edit(st.target, multiplied(st, factor), Kind.MISSING_FACTOR, f"misses the factor {_short(factor)}",
                               f"multiplied by {_short(factor)}", cost=2)  # fmt: skip
        yield from self._inside_sums(forms)
        for (r1, t1), (r2, t2) in itertools.combinations(forms.items(), 2):
            if _reads(t1 + t2) <= allowed:
                yield Edit(st.target, st.rhs + t1 + t2, Kind.MISSING_TERM,
                           f"misses the terms {_short(t1)} and {_short(t2)} (the paths through {r1} and {r2})",
                           f"the terms {_short(t1)} and {_short(t2)} added", cost=2)  # fmt: skip
        if forms:
            whole = sp.Add(*forms.values())
            if _reads(whole) <= allowed:
                missing = readable(fold(self.d, sp.expand(whole - st.rhs)), st, self.d)
                if size_of(missing) < size_of(whole):
                    yield Edit(st.target, st.rhs + missing, Kind.MISSING_TERM, f"misses the term {_short(missing)}",
                               f"{_short(missing)} added", cost=3)  # fmt: skip
                kind = self.cause.kind if self.cause is not None else Kind.UNKNOWN
                yield Edit(
                    st.target,
                    whole,
                    kind,
                    "",
                    "the true gradient by one step of the chain rule",
                    cost=4,
                    rewrite=True,
                )

    def _inside_sums(self, forms: dict[str, sp.Expr]):
        """A factor of a sum in the true expansion multiplied into the statement's own sum over the same
        size (W[j, i] into sum(dy[n, j], j))."""
        st = self.st
        mine = [s for s in sp.preorder_traversal(st.rhs) if isinstance(s, sp.Sum) and len(s.limits) == 1]
        for form in forms.values():
            for inner in [
                s for s in sp.preorder_traversal(form) if isinstance(s, sp.Sum) and len(s.limits) == 1
            ]:
                ((b, _, hi),) = inner.limits
                for total in mine:
                    ((u, lo, their_hi),) = total.limits
                    if their_hi != hi:
                        continue
                    for f in sp.Mul.make_args(inner.function):
                        f = f.xreplace({b: u})
                        if f.is_Number or f in sp.Mul.make_args(total.function):
                            continue
                        new = st.rhs.xreplace({total: sp.Sum(total.function * f, (u, lo, hi))})
                        yield Edit(st.target, new, Kind.MISSING_FACTOR, f"misses the factor {_short(f)} in {_short(total)}",
                                   f"{_short(f)} multiplied into {_short(total)}", cost=2)  # fmt: skip

    def _factors(self, term: sp.Expr) -> list[sp.Expr]:
        """The factors of a one-step term that come from the local derivative: a mask where(h > 0, 1, 0),
        gamma[j]; not numbers, sums, deltas or the adjoint read itself."""
        adjoint_names = {self.d.upstream} | {g.target for g in self.d.gradients}
        out = []
        for f in sp.Mul.make_args(term):
            if f.is_Number or isinstance(f, sp.Sum | sp.KroneckerDelta):
                continue
            if isinstance(f, sp.Indexed) and f.base.label.name in adjoint_names:
                continue
            out.append(readable(fold(self.d, masks_as_where(f)), self.st, self.d))
        return out

    # -- screening and verification ------------------------------------------------------------------

    def _reference(self, sample):
        """The true value of the claim at a sample: the adjoint, or for a Jacobian the full Jacobian."""
        jac = self.st.jacobian
        if jac is None:
            return truth(self.d, sample)[self.st.of]
        return rounding.jacobian(self.d, sample, jac.of, jac.wrt).true

    def _right(self, value, sample=None) -> bool:
        """Whether the claim's value (at the statement's indices) is the true one at a sample."""
        reference = self.true if sample is None else self._reference(sample)
        if self.st.jacobian is not None:
            value = jacobians.full(self.st, value)
        return _exactly(value, reference)

    def _values(self, edit: Edit, sample) -> dict:
        """The values at a sample with the edit made, up to (not including) the claim."""
        values = dict(sample.forward)
        if edit.target == self.st.target:
            return values
        changed = False
        for g in self.d.gradients:
            if g is self.st:
                break
            if g.target == edit.target:
                values[g.target] = run_statement(
                    dataclasses.replace(g, rhs=edit.rhs), self.d, values, sample.sizes
                )
                changed = True
            elif changed and g.of is None and g.jacobian is None:
                values[g.target] = run_statement(g, self.d, values, sample.sizes)
        return values

    def _claim_rhs(self, edit: Edit) -> sp.Expr:
        return edit.rhs if edit.target == self.st.target else self.st.rhs

    def _screened(self, edit: Edit) -> bool:
        sample = self.num.sample
        try:
            with mpmath.workdps(DIGITS):
                values = self._values(edit, sample)
                rhs = contracted(self._claim_rhs(edit))
                ev = Evaluator(values, self.sv)
                for at in self.screen if self.st.jacobian is None else ():
                    env = dict(zip(self.st.indices, at, strict=True))
                    got = ev(rhs, env)
                    want = self.true[at] if at else self.true
                    if not _exactly(got, want):
                        return False
                whole = run_statement(
                    dataclasses.replace(self.st, rhs=self._claim_rhs(edit)), self.d, values, sample.sizes
                )
        except Exception:  # a candidate that cannot be evaluated (no branch applies, ...) is no fix
            return False
        return self._right(whole)

    def _verified(self, edit: Edit) -> Fix | None:
        """The fix, if the edit holds at every draw of the check and the exact oracle passes its text."""
        for sample in self.draws:
            if sample is self.num.sample:
                continue
            try:
                with mpmath.workdps(DIGITS):
                    values = self._values(edit, sample)
                    value = run_statement(
                        dataclasses.replace(self.st, rhs=self._claim_rhs(edit)), self.d, values, sample.sizes
                    )
            except Exception:  # see _screened
                return None
            if not self._right(value, sample):
                return None
        target = self.d.statement(edit.target)
        line = statement_text(target, edit.rhs)
        try:
            fixed = parse(replace_statement(self.d.text, target, line), self.d.file, self.d.name)
        except DerivationError:
            return None
        if not self._oracle_passes(fixed, edit.target):
            return None
        return Fix(
            edit.target,
            target.line,
            line,
            edit.does,
            edit.kind,
            edit.rewrite,
            rhs=fixed.statement(edit.target).rhs,
        )

    def _oracle_passes(self, fixed: Derivation, changed: str) -> bool:
        """Whether the exact oracle passes the claim (and every claim that reads the changed statement) in
        the fixed derivation, at the check's samples and an extra draw."""
        from ..check import run_oracle  # check imports this module

        try:
            samples = [_again(fixed, s) for s in self.draws]
            samples.append(sampling.draw(fixed, EXTRA_SEED + self.seed))
        except (ValueError, DerivationError):  # no draw: nothing verified, so no fix
            return False
        run = run_oracle("exact", fixed, samples)
        must = {self.st.target} | {
            g.target
            for g in fixed.claims
            if changed != self.st.target and changed in _reads_through_helpers(fixed, g)
        }
        return all(run.results[t].status == Status.PASS for t in must if t in run.results)


def _again(d: Derivation, sample):
    """The same draw for a changed derivation: its inputs, every statement evaluated again."""
    forward = run_all(d, sample.exact, sample.sizes)
    return sampling.Sample(sample.seed, sample.sizes, sample.exact, sample.values, forward, sample.near)


def _helpers(d: Derivation, st: Statement) -> list[Statement]:
    """The plain helpers statement st reads, directly or through other helpers."""
    helpers = {g.target: g for g in d.gradients if g.of is None and g.jacobian is None and not editable(g)}
    return [helpers[n] for n in sorted(_reads_through_helpers(d, st)) if n in helpers]


def _reads_through_helpers(d: Derivation, st: Statement) -> set[str]:
    helpers = {g.target: g for g in d.gradients if g.of is None and g.jacobian is None}
    out, todo = set(), list(st.reads)
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            if n in helpers:
                todo += list(helpers[n].reads)
    return out


def _reads(e: sp.Expr) -> set[str]:
    return reads(e)


def _short(e: sp.Expr) -> str:
    return expression_text(e)


__all__ = ["Budget", "Found", "Search", "editable", "floats", "truth"]
