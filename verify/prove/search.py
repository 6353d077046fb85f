"""Proving one derivation's gradients: the written side, the true side, and the stages between them.

The true gradient of v is the adjoint of section 3 of the design: one step of reverse accumulation,
dL/dv[a] = sum over the forward statements s that read v, and over s's elements, of dL/ds * d s / d v[a],
with SymPy differentiating each right-hand side at symbolic element indices and every other name held
independent. The adjoints dL/ds are opaque tensors; those the written side does not use are expanded
the same way, down to the upstream gradient.

A window maximum y = max(x[...], kh, kw) has the derivative sum over kh, kw of [x[...] == y] times the
entry's derivative: the entry's own where the window has one maximum (a condition the proof states).

The written side is the statement with its helpers and earlier gradient statements expanded as
written, except that an earlier gradient already proved equal to its true adjoint is the opaque adjoint
itself (so dW1 = sum(dh1 * x) meets dL/dW1 = sum(dL/dh1 * x) without unfolding the network above).

Both sides are compared with the forward names opaque first; then with the names downstream of v
unfolded into their definitions (y of a softmax into exp(x) / sum(exp(x))); then with every adjoint
expanded and every forward name unfolded down to the inputs. The first stage whose difference is zero
proves the gradient; every stage is sound, so a later one only costs time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import sympy as sp

from ..model import Derivation, Statement, WindowMax, base
from .algebra import Algebra, Bound, Equal, RuleKind, Unsupported, to_steps
from .conditions import Condition, ConditionKind, Signs, collect, readable
from .selfcheck import AtomValues, Reference, adjoint_name


def fresh(e: sp.Expr) -> sp.Expr:
    """`e` with every summed index renamed to a new Dummy, so that substituting it anywhere captures
    nothing."""
    if not e.has(sp.Sum, WindowMax):
        return e
    if isinstance(e, sp.Sum | WindowMax):
        body = fresh(e.function)
        limits = []
        for k, lo, hi in e.limits:
            new = sp.Dummy(k.name, integer=True)
            body = substitute(body, {k: new})
            limits.append((new, lo, hi))
        return e.func(body, *limits)
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


def derivative(e: sp.Expr, wrt: sp.Expr) -> sp.Expr:
    """d e / d wrt for an element x[a, b] (or a scalar) `wrt`: the chain rule over sums, products, powers
    with constant exponents and one-argument functions, x[n, j] giving delta(n, a) * delta(j, b). Built
    unevaluated: SymPy's own diff asks its assumptions about every sum on the way, at many times the cost,
    and the normal form simplifies anyway (the self-check compares the result with the exact oracle)."""
    if e == wrt:
        return sp.S.One
    if not e.has(wrt.base if isinstance(wrt, sp.Indexed) else wrt):
        return sp.S.Zero
    if isinstance(e, sp.Indexed):
        return sp.Mul(*(sp.KroneckerDelta(i, j) for i, j in zip(e.indices, wrt.indices, strict=True)))
    if isinstance(e, sp.Add):
        return sp.Add(*(t for t in (derivative(a, wrt) for a in e.args) if t != 0), evaluate=False)
    if isinstance(e, sp.Mul):
        terms = []
        for k, a in enumerate(e.args):
            da = derivative(a, wrt)
            if da != 0:
                terms.append(sp.Mul(*e.args[:k], da, *e.args[k + 1 :], evaluate=False))
        return sp.Add(*terms, evaluate=False)
    if isinstance(e, sp.Pow):
        if e.exp.has(wrt.base if isinstance(wrt, sp.Indexed) else wrt):
            raise Unsupported(f"the power {e} with an exponent that depends on {wrt}")
        inner = sp.Pow(e.base, e.exp - 1, evaluate=False)
        return sp.Mul(e.exp, inner, derivative(e.base, wrt), evaluate=False)
    if isinstance(e, sp.Sum):
        return sp.Sum(derivative(e.function, wrt), *e.limits)
    if isinstance(e, WindowMax):  # the entry's derivative at the position of the maximum
        return sp.Sum(Equal(e.function, e) * derivative(e.function, wrt), *e.limits)
    if isinstance(e, Equal | Bound):
        return sp.S.Zero
    if isinstance(e, sp.Function) and len(e.args) == 1:
        return sp.Mul(e.fdiff(1), derivative(e.args[0], wrt), evaluate=False)
    raise Unsupported(f"the derivative of {type(e).__name__}")


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


@dataclass(frozen=True)
class Root:
    """What the adjoints are adjoints of: the checked scalar L (name None), or for a Jacobian claim the
    forward value `name` at `at` (a unit upstream vector on that element)."""

    name: str | None = None
    at: tuple = ()

    def symbol(self, of: str) -> str:
        """The opaque tensor standing for d(root)/d(of)."""
        return adjoint_name(of) if self.name is None else f"∂{self.name}/∂{of}"


LOSS = Root()


@dataclass
class Claim:
    """A statement to prove, as two sides that are functions of `indices` (with `ranges`): the written
    one (helpers and earlier statements expanded) and the true one (with opaque adjoints of `root`)."""

    statement: Statement
    written: sp.Expr
    true: sp.Expr
    indices: tuple[sp.Symbol, ...]
    ranges: dict
    root: Root
    wrt: str  # the name differentiated with respect to


class DerivationProver:
    """Proves the claims of one derivation (gradients, steps of chains, Jacobians) in order, each using
    the earlier proved gradients."""

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
        self._reference: Reference | None = None
        self.signs = Signs(d)
        # the forward names that are window maxima: where(x == y) compares with one of them
        self.maxima = frozenset(s.target for s in d.forward if isinstance(s.rhs, WindowMax))

    # -- names --------------------------------------------------------------------------------------------

    def rhs(self, st: Statement) -> sp.Expr:
        """The right-hand side with max, min, abs and where written through steps."""
        key = id(st)
        if key not in self._rhs:
            self._rhs[key] = to_steps(st.rhs, self.maxima)
        return self._rhs[key]

    def instantiate(self, st: Statement, args) -> sp.Expr:
        """The statement's right-hand side at element indices `args` (fresh summed indices)."""
        return substitute(fresh(self.rhs(st)), dict(zip(st.indices, args, strict=True)))

    def adjoint(self, name: str, args, root: Root) -> sp.Expr:
        """d(root)/dname at `args`: the upstream gradient for the output (1 for a scalar loss), a unit
        vector for a Jacobian's numerator, 0 for a name the root does not depend on, else opaque."""
        if root.name is None and name == self.d.output:
            return sp.Indexed(base(self.d.upstream), *args) if args else sp.S.One
        if name == root.name:
            return sp.Mul(*(sp.KroneckerDelta(a, b) for a, b in zip(args, root.at, strict=True)))
        if root.name is not None and root.name not in self.downstream(name):
            return sp.S.Zero
        return sp.Indexed(base(root.symbol(name)), *args) if args else sp.Symbol(root.symbol(name), real=True)

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
            return self.adjoint(st.of, args, LOSS)
        return self._resolve(self.instantiate(st, args))

    def one_step(self, v: str, at, root: Root) -> sp.Expr:
        """d(root)/dv[at] by one step of reverse accumulation, the readers' adjoints opaque."""
        wrt = sp.Indexed(base(v), *at) if at else sp.Symbol(v, real=True)
        terms = []
        for s in self.readers.get(v, []):
            idx = tuple(sp.Dummy(i.name, integer=True) for i in s.indices)
            weight = self.adjoint(s.target, idx, root)
            if weight == 0:
                continue
            inst = self.instantiate(s, idx)
            der = derivative(inst, wrt)
            if der == 0:
                continue
            if isinstance(inst, WindowMax):  # [entry == maximum] in the name it defines: y[n, c, i, j]
                der = substitute(der, {inst: sp.Indexed(base(s.target), *idx)})
            term = weight * der
            if idx:
                term = sp.Sum(
                    term, *((k, 0, n - 1) for k, n in zip(idx, self.d.shape(s.target), strict=True))
                )
            terms.append(term)
        if root.name == v:  # a Jacobian of a name with respect to itself
            terms.append(self.adjoint(v, at, root))
        return sp.Add(*terms)

    def expand_adjoints(self, e: sp.Expr, keep: set[str], root: Root) -> sp.Expr:
        symbols = {root.symbol(name): name for name in self.readers}
        while True:
            found = self._reads(e, symbols)
            reps = {node: self.one_step(symbols[name], args, root)
                    for node, (name, args) in found.items() if symbols[name] not in keep}  # fmt: skip
            if not reps:
                return e
            e = substitute(e, reps)

    def claim(self, st: Statement) -> Claim:
        """The two sides of a gradient or Jacobian statement. A Jacobian dy[n,k]/dx[n,m] = J claims the
        full Jacobian: at y[n,k], x[n',m] it is delta(n, n') * J[n,k,m]; the true side is taken at n'."""
        written = self.written(st)
        if st.jacobian is None:
            assert st.of is not None, "a claim that is not a Jacobian is a gradient dv, which names its v"
            symbols = self._loss_symbols
            keep = {symbols[name] for name, _ in self._reads(written, symbols).values()}
            true = self.expand_adjoints(self.one_step(st.of, st.indices, LOSS), keep, LOSS)
            return Claim(st, written, true, st.indices, dict(st.ranges), LOSS, st.of)
        jac = st.jacobian
        primed = {i: sp.Symbol(f"{i.name}'", integer=True) for i in jac.shared}
        wrt_at = tuple(primed.get(i, i) for i in jac.wrt_indices)
        root = Root(jac.of, jac.of_indices)
        true = self.expand_adjoints(self.one_step(jac.wrt, wrt_at, root), set(), root)
        block = sp.Mul(*(sp.KroneckerDelta(i, p) for i, p in primed.items()))
        ranges = {**st.ranges, **{p: st.ranges[i] for i, p in primed.items()}}
        return Claim(st, block * written, true, jac.of_indices + wrt_at, ranges, root, jac.wrt)

    @property
    def _loss_symbols(self) -> dict[str, str]:
        return {adjoint_name(name): name for name in self.readers}

    def stages(self, c: Claim):
        """The comparisons to try, cheapest first."""
        yield Stage("forward names opaque", c.written, c.true, (c.written, c.true))
        down = self.downstream(c.wrt)
        if self._reads(c.written, down) or self._reads(c.true, down):
            yield self.unfold((c.written, c.true), down, "unfolded " + ", ".join(sorted(down)))
        expanded = (self.expand_adjoints(c.written, set(), LOSS), self.expand_adjoints(c.true, set(), c.root))
        yield self.unfold(expanded, set(self.forward), "inlined down to the inputs")

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

    # -- proving ------------------------------------------------------------------------------------------

    def prove(self, st: Statement) -> Outcome:
        """Try to prove a claim (gradient, chain step or Jacobian statement); afterwards it is defined
        (and proved, when it was) for the statements after it."""
        for earlier in self.d.gradients:  # the helpers and gradients before it, as written
            if earlier is st:
                break
            self.defined.setdefault(earlier.target, earlier)
        try:
            outcome = self._prove(st)
        finally:
            self.defined[st.target] = st
        if outcome.closed:
            self.proved.add(st.target)
        return outcome

    def reference(self) -> Reference:
        """The sample the self-check compares with (drawn once per derivation)."""
        if self._reference is None:
            self._reference = Reference.draw(self.d, self.seed)
        return self._reference

    def _prove(self, st: Statement) -> Outcome:
        # The sample decides quickly when no proof can exist: then one stage gives the residue as a hint.
        differs = self.reference().disagreement(st) is not None
        last = Outcome(False)
        seen = []
        try:
            c = self.claim(st)
            for stage in self.stages(c):
                if (stage.written, stage.true) in seen:
                    continue
                seen.append((stage.written, stage.true))
                algebra = Algebra(self.d, c.ranges)
                w, t = algebra.norm(stage.written), algebra.norm(stage.true)
                zero, residue = algebra.is_zero(sp.expand(w - t))
                if zero and differs:
                    return Outcome(False, reason="self-check failed: the normal forms cancel but the sample "
                                   "disagrees: a bug of the prover", stage=stage.label)  # fmt: skip
                if zero:
                    return self._closed(c, stage, algebra, w, t)
                # the hint is the first stage's residue: in the derivation's own names, forward ones opaque
                hint = last.residue or self._print(algebra.restore(residue), c)
                last = Outcome(
                    False, residue=hint, stage=stage.label, reason="the difference does not reduce to zero"
                )
                if differs and self.shortcut:
                    last.reason = "the written claim differs from the true one at a sample"
                    break
        except Unsupported as e:
            return Outcome(False, residue=last.residue, reason=f"unsupported: {e}", stage=last.stage)
        return last

    def _closed(self, c: Claim, stage: Stage, algebra: Algebra, w, t) -> Outcome:
        ref = self.reference()
        values = AtomValues(algebra, ref)
        true, written = ref.expected(c.statement)
        failure = ref.compare(values, t, c.indices, true)
        if failure is not None:
            failure = f"the true side is {failure}"
        elif w != t:  # else the written values already equal the true ones at this sample (disagreement)
            failure = ref.compare(values, w, c.indices, written)
            failure = failure and f"the written side is {failure}"
        if failure is not None:
            return Outcome(
                False, reason=f"self-check failed ({failure}): a bug of the prover", stage=stage.label
            )
        return Outcome(True, self.conditions(c, stage, algebra), stage=stage.label)

    # -- conditions and printing --------------------------------------------------------------------------

    def conditions(self, c: Claim, stage: Stage, algebra: Algebra) -> list[Condition]:
        out: dict[tuple, Condition] = {}
        found = collect(list(stage.folded), c.ranges, self.d)
        for name in sorted(stage.unfolded):
            st = self.forward[name]
            found += collect([self.rhs(st)], st.ranges, self.d)
        for kind, quantity, ranges in found:
            expr, new_ranges = readable(quantity, ranges)
            text = self._condition_text(kind, expr)
            always = kind is not ConditionKind.KINK and self._always(kind, quantity)
            out.setdefault((kind, text), Condition(kind, expr, tuple(new_ranges.items()), text, always))
        for name in sorted(self._maxima_compared(stage)):
            cond = self._one_maximum(name)
            out.setdefault((cond.kind, cond.text), cond)
        for rule in sorted(algebra.rules, key=str):
            cond = self._rule_condition(rule)
            out.setdefault((cond.kind, cond.text), cond)
        return list(out.values())

    def _maxima_compared(self, stage: Stage) -> set[str]:
        """The window maxima that an entry is compared with ([x == y]) in the sides the stage compared."""
        out = set()
        for side in stage.folded:
            for e in side.atoms(Equal):
                out |= {a.base.label.name for a in e.args if isinstance(a, sp.Indexed)} & self.maxima
        return out

    def _one_maximum(self, name: str) -> Condition:
        """y[n, c, i, j] = max(x[...], kh, kw) is taken at one position of its window: the count of the
        positions inside x whose entry equals the maximum is 1."""
        st = self.forward[name]
        window = st.rhs
        assert isinstance(window, WindowMax), "a name in self.maxima is defined by a window maximum"
        inside = sp.S.One
        for a in window.function.atoms(sp.Indexed):
            for i, n in zip(a.indices, self.d.shape(a.base.label.name), strict=True):
                if not i.is_Symbol:
                    inside *= Bound(i) * Bound(n - 1 - i)
        y = sp.Indexed(base(name), *st.indices)
        count = sp.Sum(Equal(window.function, y) * inside, *window.limits)
        positions = ", ".join(str(k) for k, _, _ in window.limits)
        text = (
            f"one maximum per window: {self._print(y)} = {self._print(window)} is taken at one "
            f"({positions}) only (away from ties)"
        )
        return Condition(ConditionKind.ONE_MAXIMUM, count, tuple(st.ranges.items()), text)

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
        if rule.kind is RuleKind.ROW_SUM:
            expr, new_ranges = readable(sp.Sum(entry, (axis, 0, shape[rule.axis] - 1)), ranges)
            text = f"{self._print(expr)} = 1 ({rule.name} is {'one-hot' if rule.domain == 'onehot' else rule.domain})"
        else:
            expr, new_ranges = readable(entry, ranges)
            text = f"{self._print(expr)}**2 = {self._print(expr)} ({rule.name} is one-hot)"
        return Condition(ConditionKind.DOMAIN, expr, tuple(new_ranges.items()), text, False, rule)

    def _print(self, e: sp.Expr, c: Claim | None = None) -> str:
        if c is not None:
            e, _ = readable(e, {**self._index_ranges(e), **c.ranges}, keep=c.indices)
        return _printer().doprint(e)

    def _index_ranges(self, e: sp.Expr) -> dict[sp.Symbol, sp.Symbol]:
        """Ranges of free indices met inside tensor subscripts (a residue may hold contracted ones)."""
        out: dict[sp.Symbol, sp.Symbol] = {}
        for a in e.atoms(sp.Indexed):
            name = a.base.label.name
            name = name.removeprefix("dL/d") if name.removeprefix("dL/d") in self.d.tensors else name
            if name in self.d.tensors:
                for i, size in zip(a.indices, self.d.shape(name), strict=False):
                    if isinstance(i, sp.Symbol):
                        out.setdefault(i, size)
        return out


@functools.cache
def _printer():
    """The derivation language's printer, writing the step atom as the language does: where(u > 0, 1, 0)."""
    from ..unparse import DerivPrinter

    class Printer(DerivPrinter):
        def _print_Step(self, e):
            return f"where({self._print(e.args[0])} > 0, 1, 0)"

        def _print_Bound(self, e):
            return f"where({self._print(e.args[0])} >= 0, 1, 0)"

        def _print_Equal(self, e):
            return f"where({self._print(e.args[0])} == {self._print(e.args[1])}, 1, 0)"

    return Printer()
