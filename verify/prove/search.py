"""Proving one derivation's gradients: the written side, the true side, and the stages between them.

The true gradient of v is the adjoint of section 3 of the design: one step of reverse accumulation,
dL/dv[a] = sum over the forward statements s that read v, and over s's elements, of dL/ds * d s / d v[a],
with SymPy differentiating each right-hand side at symbolic element indices and every other name held
independent. The adjoints dL/ds are opaque tensors; those the written side does not use are expanded
the same way, down to the upstream gradient.

The written side is the statement with its helpers and earlier gradient statements expanded as
written, except that an earlier gradient already proved equal to its true adjoint is the opaque adjoint
itself (so dW1 = sum(dh1 * x) meets dL/dW1 = sum(dL/dh1 * x) without unfolding the network above).

Both sides are compared with the forward names opaque first; then with the names downstream of v
unfolded into their definitions (y of a softmax into exp(x) / sum(exp(x))); then with every adjoint
expanded and every forward name unfolded down to the inputs. The first stage whose difference is zero
proves the gradient; every stage is sound, so a later one only costs time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import sympy as sp

from ..model import Derivation, Statement, base
from .algebra import Algebra, Unsupported, to_steps
from .conditions import Condition, ConditionKind, Signs, collect, readable
from .selfcheck import AtomValues, Reference, adjoint_name


def fresh(e: sp.Expr) -> sp.Expr:
    """`e` with every summed index renamed to a new Dummy, so that substituting it anywhere captures
    nothing."""
    if not e.has(sp.Sum):
        return e
    if isinstance(e, sp.Sum):
        body = fresh(e.function)
        limits = []
        for k, lo, hi in e.limits:
            new = sp.Dummy(k.name, integer=True)
            body = substitute(body, {k: new})
            limits.append((new, lo, hi))
        return sp.Sum(body, *limits)
    return e.func(*(fresh(a) if isinstance(a, sp.Expr) else a for a in e.args))


def substitute(e: sp.Expr, reps: dict) -> sp.Expr:
    """`e` with the nodes in `reps` replaced, sums, products and powers rebuilt unevaluated: xreplace
    would re-evaluate them and ask SymPy's assumptions about every sum inside, which is slow, and the
    normal form does that work anyway."""
    found = reps.get(e)
    if found is not None:
        return found
    if not e.args:
        return e
    args = [substitute(a, reps) if isinstance(a, sp.Basic) else a for a in e.args]
    if all(a is b for a, b in zip(args, e.args, strict=True)):
        return e
    if isinstance(e, sp.Add | sp.Mul | sp.Pow):
        return e.func(*args, evaluate=False)
    return e.func(*args)


@dataclass
class Stage:
    """One comparison: the two sides as index expressions; the same before any forward name was
    unfolded (`folded`), and the names unfolded. The conditions are read off the folded sides and the
    unfolded definitions, so that they are stated in the derivation's names (var[j] + eps > 0)."""

    label: str
    written: sp.Expr
    true: sp.Expr
    folded: tuple[sp.Expr, sp.Expr]
    unfolded: frozenset[str] = frozenset()


@dataclass
class Outcome:
    """What proving one gradient found (before the worker adds its time): `closed` with the conditions,
    or the residue and the reason it stopped."""

    closed: bool
    conditions: list[Condition] = field(default_factory=list)
    residue: str = ""
    reason: str = ""
    stage: str = ""


class DerivationProver:
    """Proves the checked gradients of one derivation in order, each using the earlier proved ones."""

    def __init__(self, d: Derivation, seed: int = 0, shortcut: bool = True):
        self.d = d
        self.seed = seed
        self.shortcut = shortcut  # stop after one stage when the sample shows no proof can exist
        self.forward = {s.target: s for s in d.forward}
        self.readers = {
            name: [s for s in d.forward if name in s.reads] for name in [*d.inputs, *self.forward]
        }
        self.defined: dict[str, Statement] = {}  # gradient and helper statements before the current one
        self.proved: set[str] = set()
        self._rhs: dict[int, sp.Expr] = {}
        self._adjoints = {adjoint_name(name): name for name in self.readers}
        self._reference: Reference | None = None
        self.signs = Signs(d)

    # -- names --------------------------------------------------------------------------------------------

    def rhs(self, st: Statement) -> sp.Expr:
        """The right-hand side with max, min, abs and where written through steps."""
        key = id(st)
        if key not in self._rhs:
            self._rhs[key] = to_steps(st.rhs)
        return self._rhs[key]

    def instantiate(self, st: Statement, args) -> sp.Expr:
        """The statement's right-hand side at element indices `args` (fresh summed indices)."""
        return substitute(fresh(self.rhs(st)), dict(zip(st.indices, args, strict=True)))

    def adjoint(self, name: str, args) -> sp.Expr:
        """dL/dname at `args`: the upstream gradient for the output (1 for a scalar loss), else opaque."""
        if name == self.d.output:
            if not args:
                return sp.S.One
            return sp.Indexed(base(self.d.upstream), *args)
        if not args:
            return sp.Symbol(adjoint_name(name), real=True)
        return sp.Indexed(base(adjoint_name(name)), *args)

    def downstream(self, v: str) -> set[str]:
        out: set[str] = set()
        todo = [v]
        while todo:
            for s in self.readers.get(todo.pop(), []):
                if s.target not in out:
                    out.add(s.target)
                    todo.append(s.target)
        return out

    @staticmethod
    def _reads(e: sp.Expr, names) -> dict[sp.Expr, tuple[str, tuple]]:
        """Every tensor element or scalar of `e` whose name is in `names`: {node: (name, indices)}."""
        out = {a: (a.base.label.name, a.indices) for a in e.atoms(sp.Indexed) if a.base.label.name in names}
        # a scalar is a real Symbol; an Indexed's label is a Symbol of the same name, never a node of its own
        labels = {a.base.label for a in out}
        out.update({s: (s.name, ()) for s in e.atoms(sp.Symbol)
                    if s.name in names and not s.is_integer and s not in labels})  # fmt: skip
        return out

    # -- the two sides ------------------------------------------------------------------------------------

    def written(self, st: Statement) -> sp.Expr:
        return self._resolve(fresh(self.rhs(st)))

    def _resolve(self, e: sp.Expr) -> sp.Expr:
        reps = {
            node: self._reference_to(name, args)
            for node, (name, args) in self._reads(e, self.defined).items()
        }
        if self.d.scalar_output:
            reps[sp.Symbol(self.d.upstream, real=True)] = sp.S.One
        return substitute(e, reps)

    def _reference_to(self, name: str, args) -> sp.Expr:
        st = self.defined[name]
        if st.of is not None and name in self.proved:
            return self.adjoint(st.of, args)
        return self._resolve(self.instantiate(st, args))

    def one_step(self, v: str, at) -> sp.Expr:
        """dL/dv[at] by one step of reverse accumulation, the readers' adjoints opaque."""
        wrt = sp.Indexed(base(v), *at) if at else sp.Symbol(v, real=True)
        terms = []
        for s in self.readers.get(v, []):
            idx = tuple(sp.Dummy(i.name, integer=True) for i in s.indices)
            der = sp.diff(self.instantiate(s, idx), wrt)
            if der == 0:
                continue
            term = self.adjoint(s.target, idx) * der
            if idx:
                term = sp.Sum(
                    term, *((k, 0, n - 1) for k, n in zip(idx, self.d.shape(s.target), strict=True))
                )
            terms.append(term)
        return sp.Add(*terms)

    def expand_adjoints(self, e: sp.Expr, keep: set[str]) -> sp.Expr:
        while True:
            found = self._reads(e, self._adjoints)
            reps = {node: self.one_step(self._adjoints[name], args)
                    for node, (name, args) in found.items() if self._adjoints[name] not in keep}  # fmt: skip
            if not reps:
                return e
            e = substitute(e, reps)

    def unfold(self, sides: tuple[sp.Expr, sp.Expr], names: set[str], label: str) -> Stage:
        """A stage with every read of `names` in both sides replaced by its definition."""
        done: set[str] = set()
        out = []
        for e in sides:
            while True:
                found = self._reads(e, names)
                if not found:
                    break
                done |= {name for name, _ in found.values()}
                e = substitute(e, {node: self.instantiate(self.forward[name], args)
                                for node, (name, args) in found.items()})  # fmt: skip
            out.append(e)
        return Stage(label, out[0], out[1], sides, frozenset(done))

    def stages(self, g: Statement):
        written = self.written(g)
        keep = {self._adjoints[name] for _, (name, _) in self._reads(written, self._adjoints).items()}
        true = self.expand_adjoints(self.one_step(g.of, g.indices), keep)
        yield Stage("forward names opaque", written, true, (written, true))
        down = self.downstream(g.of)
        if self._reads(written, down) or self._reads(true, down):
            yield self.unfold((written, true), down, "unfolded " + ", ".join(sorted(down)))
        expanded = (self.expand_adjoints(written, set()), self.expand_adjoints(true, set()))
        yield self.unfold(expanded, set(self.forward), "inlined down to the inputs")

    # -- proving ------------------------------------------------------------------------------------------

    def prove(self, g: Statement) -> Outcome:
        """Try to prove gradient statement g; afterwards g is defined (and proved, when it was) for the
        gradients after it."""
        for st in self.d.gradients:  # the helpers and gradients before g, as written
            if st is g:
                break
            self.defined.setdefault(st.target, st)
        try:
            outcome = self._prove(g)
        finally:
            self.defined[g.target] = g
        if outcome.closed:
            self.proved.add(g.target)
        return outcome

    def reference(self) -> Reference:
        """The sample the self-check compares with (drawn once per derivation)."""
        if self._reference is None:
            self._reference = Reference.draw(self.d, self.seed)
        return self._reference

    def _prove(self, g: Statement) -> Outcome:
        # The sample decides quickly when no proof can exist: then one stage gives the residue as a hint.
        differs = self.reference().compare_values(g) is not None
        last = Outcome(False)
        seen = []
        try:
            for stage in self.stages(g):
                if (stage.written, stage.true) in seen:
                    continue
                seen.append((stage.written, stage.true))
                algebra = Algebra(self.d)
                w, t = algebra.norm(stage.written), algebra.norm(stage.true)
                zero, residue = algebra.is_zero(sp.expand(w - t))
                if zero and differs:
                    return Outcome(False, reason="self-check failed: the normal forms cancel but the sample "
                                   "disagrees: a bug of the prover", stage=stage.label)  # fmt: skip
                if zero:
                    return self._closed(g, stage, algebra, w, t)
                last = Outcome(False, residue=self._print(algebra.restore(residue), g), stage=stage.label,
                               reason="the difference does not reduce to zero")  # fmt: skip
                if differs and self.shortcut:
                    last.reason = "the written gradient differs from the true one at a sample"
                    break
        except Unsupported as e:
            return Outcome(False, residue=last.residue, reason=f"unsupported: {e}", stage=last.stage)
        return last

    def _closed(self, g: Statement, stage: Stage, algebra: Algebra, w, t) -> Outcome:
        ref = self._reference
        values = AtomValues(algebra, ref)
        failure = ref.compare(values, t, g.indices, adjoint_name(g.of), g.of) or ref.compare(
            values, w, g.indices, g.target, g.target
        )
        if failure is not None:
            return Outcome(
                False, reason=f"self-check failed ({failure}): a bug of the prover", stage=stage.label
            )
        return Outcome(True, self.conditions(g, stage, algebra), stage=stage.label)

    # -- conditions and printing --------------------------------------------------------------------------

    def conditions(self, g: Statement, stage: Stage, algebra: Algebra) -> list[Condition]:
        out: dict[tuple, Condition] = {}
        found = collect(list(stage.folded), g.ranges, self.d)
        for name in sorted(stage.unfolded):
            st = self.forward[name]
            found += collect([self.rhs(st)], st.ranges, self.d)
        for kind, quantity, ranges in found:
            expr, new_ranges = readable(quantity, ranges)
            text = self._condition_text(kind, expr)
            always = kind is not ConditionKind.KINK and self._always(kind, quantity)
            out.setdefault((kind, text), Condition(kind, expr, tuple(new_ranges.items()), text, always))
        for rule in sorted(algebra.rules, key=str):
            cond = self._rule_condition(rule)
            out.setdefault((cond.kind, cond.text), cond)
        return list(out.values())

    def _always(self, kind: ConditionKind, quantity: sp.Expr) -> bool:
        sign = self.signs.sign(quantity)
        return sign == 1 or (kind is ConditionKind.NONNEGATIVE and sign == 0)

    def _condition_text(self, kind: ConditionKind, expr: sp.Expr) -> str:
        q = self._print(expr)
        return {
            ConditionKind.NONZERO: f"{q} != 0",
            ConditionKind.POSITIVE: f"{q} > 0",
            ConditionKind.NONNEGATIVE: f"{q} >= 0",
            ConditionKind.KINK: f"{q} != 0 (away from the kink)",
        }[kind]

    def _rule_condition(self, rule) -> Condition:
        shape = self.d.shape(rule.name)
        idx = [sp.Symbol(f"_{k}", integer=True) for k in range(len(shape))]
        ranges = dict(zip(idx, shape, strict=True))
        entry = sp.Indexed(base(rule.name), *idx)
        axis = idx[rule.axis]
        if rule.kind == "row-sum":
            expr, new_ranges = readable(sp.Sum(entry, (axis, 0, shape[rule.axis] - 1)), ranges)
            text = f"{self._print(expr)} = 1 ({rule.name} is {rule.domain})"
        else:
            expr, new_ranges = readable(entry, ranges)
            text = f"{self._print(expr)}**2 = {self._print(expr)} ({rule.name} is one-hot)"
        return Condition(ConditionKind.DOMAIN, expr, tuple(new_ranges.items()), text, False, rule)

    def _print(self, e: sp.Expr, g: Statement | None = None) -> str:
        from ..cli import DerivPrinter  # the derivation language's printer

        if g is not None:
            ranges = dict(g.ranges)
            ranges.update({i: s for i, s in self._index_ranges(e).items() if i not in ranges})
            e, _ = readable(e, ranges, keep=g.indices)
        return DerivPrinter().doprint(e)

    def _index_ranges(self, e: sp.Expr) -> dict:
        """Ranges of free indices met inside tensor subscripts (a residue may hold contracted ones)."""
        out = {}
        for a in e.atoms(sp.Indexed):
            name = a.base.label.name.removeprefix("dL/d")
            if name in self.d.tensors:
                for i, size in zip(a.indices, self.d.shape(name), strict=False):
                    if isinstance(i, sp.Symbol):
                        out.setdefault(i, size)
        return out


def timed(prover: DerivationProver, g: Statement) -> tuple[Outcome, float]:
    start = time.perf_counter()
    outcome = prover.prove(g)
    return outcome, time.perf_counter() - start
