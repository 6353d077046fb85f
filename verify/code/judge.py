"""`check_code`: a user's implementation against a derivation, on the derivation's own samples.

For each sample (the same draws as `python -m verify check`: several distinct sizes, near-kink draws
where the forward has kinks) the code runs in the layout found at the first one, its forward is compared
with the derivation's exact forward, and every gradient it returns with the exact true gradient
(`verify.rounding`'s adjoints, from SymPy's derivatives in 50-digit arithmetic). The bound a value is
judged against is the rounding error the code's format (float64 or float32) can explain at that sample:
the bound of a reverse pass, and of the derivation's own formula for the gradient where it states one,
rescaled to the format's unit, times the same safety factor the framework oracles use. So correct
float32 code is verified, and a mistake larger than float32's rounding is not hidden by a loose
tolerance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import mpmath
import numpy as np

from .. import rounding, sampling
from ..catalogue import load
from ..comparison import FLOAT32, FLOAT64, Comparison, Result, Status, Tolerance, Truth
from ..model import Derivation, DerivationError
from ..unparse import expression_text, target_text
from .explain import CodeKind, Mistake, explain
from .kinds import CodeFailed
from .layout import Convention, parse_conventions
from .names import CodeError
from .report import CodeReport, GradientRow
from .target import Binding, Target, target

# per format: its unit roundoff, the safety factor of the framework oracles, and the part of the largest
# true value a bound may be before the comparison cannot tell a mistake from rounding (inconclusive)
TOLERANCES = {"float64": Tolerance(FLOAT64, 16, 1e-6), "float32": Tolerance(FLOAT32, 16, 1e-3)}
# far draws: the check's two, and one more size, so that code right at one size only cannot pass
DRAWS = sampling.DRAWS + 1
# more draws, at most, while a value is undecided; their seeds start at seed * 1000 + EXTRA_SEEDS
EXTRA_DRAWS = 3
EXTRA_SEEDS = 500
# draws that must decide (pass) for a value to pass when float32 cannot resolve the others
MIN_DECIDED = 2
# how close a wrong value must be to a candidate explanation (another input's gradient, the batch mean)
EXPLAINED = {"float64": 1e-6, "float32": 1e-3}


def check_code(obj, derivation, names: Mapping[str, str] | None = None, dtype: str = "float64", *,
               conventions=None, seed: int = 0, label: str | None = None) -> CodeReport:  # fmt: skip
    """Check a user's implementation `obj` (a torch.autograd.Function subclass, a jax.custom_vjp function,
    a torch.nn.Module, a UvA- or CMU-style NumPy module, class or instance, a (forward, backward) pair of
    functions, or a `Binding` of one) against `derivation` (a path, a catalogue name, the text, or a
    parsed Derivation). `names` maps the code's names to the derivation's ({"input": "x"});
    `conventions` declares layouts ({"W": {"transposed"}} or ["dW=mean"]); `dtype` is the format the code
    runs in. Returns the report; raises CodeError (a one-line message) when the code cannot be checked
    as given, DerivationError when the derivation is invalid."""
    if dtype not in TOLERANCES:
        raise CodeError(f"dtype {dtype!r}: expected one of {', '.join(TOLERANCES)}")
    d = derivation if isinstance(derivation, Derivation) else load(derivation)
    if isinstance(conventions, Mapping):
        declared = {k: {Convention(c) for c in v} for k, v in conventions.items()}
    else:
        declared = parse_conventions(conventions, d)
    t = target(obj, d, names, declared, label)
    sized = _sized_by(t, d)
    try:
        draws = sampling.samples(sized, seed, DRAWS)
    except ValueError as e:
        raise DerivationError(f"no valid sample: {e}", 0, 0, d.file) from None
    return judge(t, sized, draws, dtype, seed, _label(obj, label))


def _label(obj, label: str | None) -> str:
    if label:
        return label
    code = obj.code if isinstance(obj, Binding) else obj
    if isinstance(code, tuple):
        return ",".join(getattr(f, "__name__", "?") for f in code)
    return getattr(code, "__qualname__", None) or type(code).__name__


def _sized_by(t: Target, d: Derivation) -> Derivation:
    """`d` with the sizes an instance's parameters fix (a LinearModule(3, 5) is I = 3, J = 5), so that
    every draw fits the instance."""
    fixed: dict[str, int] = {}
    for name, shape in t.code.held_shapes().items():
        want = d.shape(name)
        if len(shape) == 1 and len(want) == 2 and 1 in shape:
            continue
        if len(shape) == 2 and shape[0] == 1 and len(want) == 1:
            shape = shape[1:]
        if len(shape) != len(want):
            continue
        for s, v in zip(want, shape, strict=True):
            fixed.setdefault(s.name, int(v))
    if not fixed:
        return d
    return dataclasses.replace(d, fixed_sizes={**d.fixed_sizes, **fixed})


def judge(t: Target, d: Derivation, draws: list, dtype: str, seed: int, label: str) -> CodeReport:
    """Run and judge the code at each draw; while a value is undecided (float32 cannot resolve it at the
    sizes drawn, and fewer than MIN_DECIDED draws passed), draw again, up to EXTRA_DRAWS more."""
    j = _Judgement(t, d, dtype)
    twin = _Judgement(t, d, "float64", twin=True) if dtype != "float64" else None
    runs = [j] if twin is None else [j, twin]
    draws = list(draws)
    for k, sample in enumerate(draws):
        for run in runs:
            run.take(sample, k)
    for extra in range(EXTRA_DRAWS):
        if not j.undecided():
            break
        draws.append(sampling.draw(d, seed * 1000 + EXTRA_SEEDS + extra, avoid=draws[-1].sizes))
        for run in runs:
            run.take(draws[-1], len(draws) - 1)
    report = j.report(draws, seed, label)
    return report if twin is None else _with_twin(report, twin, draws)


def _with_twin(report: CodeReport, twin: _Judgement, draws: list) -> CodeReport:
    """A float32 report with what the same code computes in float64 at the same draws: judged against
    float64's far smaller rounding error, a mistake float32's rounding could explain (eps left out of a
    square root, a few parts in 1e5) shows, and the value is wrong there. Only where the code computes in
    float64 when given float64 (it returns float64 arrays)."""
    if not twin.valid:
        report.notes.append(
            f"float64 run: none ({twin.valid_why}): the formulas are checked to float32's rounding only"
        )
        return report
    twin.settle()
    found = {row.name: row for row in _rows(twin.d, twin.t, twin, draws)}
    wrong = []
    for k, row in enumerate(report.gradients):
        other = found.get(row.name)
        if other is not None and other.status == Status.WRONG and row.status != Status.WRONG:
            other.reason = f"in float64: {other.reason}"
            if other.mistake is not None:
                message = f"in float64 ({other.mistake.message})" if other.mistake.message else "in float64"
                other.mistake = dataclasses.replace(other.mistake, message=message)
            other.draws = row.draws
            report.gradients[k] = other
            wrong.append(row.name)
    forward = decided(twin.forward.result, twin.forward_draws)
    if forward.status == Status.FAIL and report.forward.status != Status.FAIL:
        report.forward = dataclasses.replace(forward, reason=f"in float64: {forward.reason}")
        wrong.insert(0, "forward")
    said = f"wrong there: {', '.join(wrong)}" if wrong else "nothing wrong there"
    report.notes.append(f"float64 run: the same code at the same draws, to float64's rounding: {said}")
    return report


class _Judgement:
    """The verdicts so far: the forward's and each input gradient's, over every draw and per draw."""

    def __init__(self, t: Target, d: Derivation, dtype: str, twin: bool = False):
        self.t, self.d, self.dtype, self.tol = t, d, dtype, TOLERANCES[dtype]
        # a twin is a float64 run beside a float32 check: it counts only while the code computes in
        # float64 when given float64
        self.twin, self.valid, self.valid_why = twin, True, ""
        # a one-hot input the derivation states no gradient for is a label: the gradient code returns for
        # it (zeros, as JAX code returns for an integer label) is no derivative anyone uses
        self.labels = {
            n for n in d.inputs if d.domain(n).kind == "onehot" and not any(st.of == n for st in d.claims)
        }
        self.labels_returned: set[str] = set()
        self.inputs = [n for n in d.inputs if n not in d.fixed_values and n not in self.labels]
        self.forward = Comparison(self.tol, "forward")
        self.forward_draws: list[Status] = []
        self.comps = {v: Comparison(self.tol, f"d{v}") for v in self.inputs}
        self.per_draw: dict[str, list[Status]] = {v: [] for v in self.inputs}  # each draw's own verdict
        self.unread: dict[str, CodeKind] = {}  # failed with no values to read a cause from, and why
        self.returned: set[str] = set()
        self.true_at: dict[int, dict[str, np.ndarray]] = {}  # by draw: every true gradient, float64
        self.written_ok = {v: True for v in self.inputs}  # whether the derivation's own dv is right

    def take(self, sample, k: int) -> None:
        """Run the code at draw number k and judge what it gives."""
        d, tol, dtype = self.d, self.tol, self.dtype
        if not self.valid:
            return
        exact_output = sample.forward[d.output]
        try:
            prepared = self.t.prepare(dict(sample.values), _floats(exact_output), dtype)
            grads = prepared.backward() if self.twin else None
        except CodeFailed as e:
            if self.twin:
                self.valid, self.valid_why = False, f"given float64, {e.finding}"
            else:
                self._raised(e, sample, forward=True)
            return
        if self.twin and prepared.dtypes != {"float64"}:
            self.valid = False
            self.valid_why = f"given float64 the code returns {', '.join(sorted(prepared.dtypes))} arrays"
            return
        bounds = rounding.of(d, sample, dtype)
        largest = max((abs(x) for x in np.ravel(exact_output)), default=0)
        one = Comparison(tol, "forward")
        bound = tol.scale(bounds.values[d.output])
        broken = _not_finite(prepared.output, exact_output, dtype, "forward")
        if broken is not None:  # the code's own nan or inf: no overflow of the exact values explains it
            one.record(broken, sample)
        else:
            one.add(prepared.output, exact_output, sample, bound, Truth(exact_output, largest, bounds.worst))
        self.forward.record(one.result, sample, one.arrays)
        self.forward_draws.append(one.result.status)
        try:
            grads = prepared.backward() if grads is None else grads
        except CodeFailed as e:
            self._raised(e, sample)
            return
        self.true_at[k] = {v: _floats(bounds.true[v]) for v in self.inputs}
        self.labels_returned |= self.labels & set(grads)
        for v in self.inputs:
            self.written_ok[v] &= _states_truly(d, v, sample, bounds)
            if v not in grads:
                continue
            self.returned.add(v)
            one = Comparison(tol, f"d{v}")
            failure = _judge_gradient(one, grads[v], d, v, sample, bounds, tol, dtype)
            self.comps[v].record(one.result, sample, one.arrays)
            self.per_draw[v].append(one.result.status)
            if failure is not None:
                self.unread.setdefault(v, failure)
        if k == 0 and not self.twin and self.t.code.stores_gradients:
            self._backward_twice(sample)

    def _backward_twice(self, sample) -> None:
        """Note gradients that a second backward after the same forward changes: code that adds to the
        gradient it stored (`grads['weight'] += ...`) is right on a fresh module and doubles on the next
        call, so a training loop that does not zero it between steps follows the sum. On a module of its
        own, so that the values judged above stay as they were returned. Code whose backward cannot run
        twice (it frees its cache) has nothing to say here."""
        try:
            prepared = self.t.prepare(dict(sample.values), None, self.dtype)
            first = {v: np.array(g, dtype=np.float64) for v, g in prepared.backward().items()}
            second = prepared.backward()
        except CodeFailed:
            return
        for v, before in first.items():
            after = np.asarray(second.get(v, before), dtype=np.float64)
            if after.shape != before.shape or np.allclose(after, before, rtol=1e-9, atol=0, equal_nan=True):
                continue
            how = "twice what it was" if np.allclose(after, 2 * before, rtol=1e-9, atol=0) else "a new value"
            self.t.code.notes.append(
                f"d{v}: a second backward after the same forward makes it {how}: backward adds to the "
                "gradient it stored before instead of setting it, so zero it before every step"
            )

    def _raised(self, e: CodeFailed, sample, forward: bool = False) -> None:
        failed = Result(Status.FAIL, reason=e.finding)
        if forward:
            self.forward.record(dataclasses.replace(failed), sample)
            self.forward_draws.append(Status.FAIL)
        for v in self.inputs:
            self.comps[v].record(dataclasses.replace(failed), sample)
            self.per_draw[v].append(Status.FAIL)
            self.unread.setdefault(v, CodeKind(e.kind))

    def undecided(self) -> bool:
        verdicts = [decided(c.result, self.per_draw[v]) for v, c in self.comps.items() if v in self.returned]
        verdicts.append(decided(self.forward.result, self.forward_draws))
        return any(r.status == Status.INCONCLUSIVE for r in verdicts)

    def settle(self) -> None:
        """Each gradient's verdict over the draws (see `decided`)."""
        for v, comp in self.comps.items():
            comp.result = decided(comp.result, self.per_draw[v])

    def report(self, draws: list, seed: int, label: str) -> CodeReport:
        d, t = self.d, self.t
        self.settle()
        rows = _rows(d, t, self, draws)
        for row in rows:
            if row.of in self.per_draw:
                row.draws = self.per_draw[row.of]
        return CodeReport(
            code=label,
            kind=t.code.kind,
            dtype=self.dtype,
            derivation=d.name,
            file=d.file,
            title=d.title,
            forward=decided(self.forward.result, self.forward_draws),
            gradients=rows,
            inputs=dict(t.code.takes),
            conventions=t.conventions(),
            notes=list(dict.fromkeys(t.code.notes))
            + _built_in(d, t)
            + [
                f"d{n}: {n} is one-hot (labels) and {d.name} states no d{n}: what your code returns for it "
                "is not compared"
                for n in sorted(self.labels_returned)
            ],
            seed=seed,
            sizes=[dict(s.sizes) for s in draws],
            near=[s.near for s in draws],
        )


def decided(result: Result, draws: list[Status]) -> Result:
    """The verdict over the draws: failed at one, it fails; passed at two or more and undecided at the
    others (float32 cannot resolve a draw whose sizes make the gradient nearly vanish, batch norm's dx
    at N = 2), it passes, saying where it could not decide; otherwise the worst draw's verdict."""
    passed = sum(s == Status.PASS for s in draws)
    if result.status != Status.INCONCLUSIVE or Status.FAIL in draws or passed < MIN_DECIDED:
        return result
    why = f"passed at {passed} of {len(draws)} draws; undecided at {result.sizes}: {result.reason}"
    return dataclasses.replace(result, status=Status.PASS, reason=why)


def _built_in(d: Derivation, t: Target) -> list[str]:
    return [
        f"{name} = {d.fixed_values[name]} is no input of your code: taken to be built in"
        for name in d.inputs
        if name in d.fixed_values and name not in t.code.takes
    ]


def _floats(value) -> np.ndarray:
    return np.array([float(x) for x in np.ravel(value)], dtype=np.float64).reshape(np.shape(value))


def _judge_gradient(comp: Comparison, value: np.ndarray, d: Derivation, v: str, sample, bounds, tol,
                    dtype) -> CodeKind | None:  # fmt: skip
    """Judge one sample's gradient; the kind of failure when there are no values to diagnose."""
    true = bounds.true[v]
    if value.shape != np.shape(true):
        reason = f"your d{v} has shape {value.shape}; {v} has shape {np.shape(true)}"
        comp.record(Result(Status.FAIL, reason=reason), sample, (value, true, sample))
        return None
    bound = tol.scale(bounds.adjoints[v])
    statement = f"d{v}"
    if statement in bounds.values and any(st.target == statement for st in d.gradients):
        bound = bound + tol.scale(bounds.values[statement])  # the code may compute the closed form
    truth = Truth(true, bounds.size(v), bounds.worst)
    broken = _not_finite(value, true, dtype, f"d{v}")
    if broken is not None:
        comp.record(broken, sample)
        return CodeKind.NOT_FINITE if broken.status == Status.FAIL else None
    comp.add(value, true, sample, bound, truth)
    return None


def _not_finite(value: np.ndarray, true, dtype: str, label: str) -> Result | None:
    """The code's first nan or inf in `value` (the code's `label`): a failure where the true value is a
    moderate number, inconclusive where `dtype` overflows on it; None when every entry is finite (or the
    shapes differ, which the comparison reports)."""
    if value.shape != np.shape(true) or np.all(np.isfinite(value)):
        return None
    at = tuple(int(i) for i in np.argwhere(~np.isfinite(value))[0])
    exact = float(true[at]) if at else float(true)
    where = f"[{', '.join(map(str, at))}]" if at else ""
    if abs(exact) < np.finfo(dtype).max / 16:
        reason = f"your {label}{where} is {value[at]}, where the true value is {exact:.6g}"
        return Result(Status.FAIL, worst_index=list(at), reason=reason)
    return Result(Status.INCONCLUSIVE, reason=f"{dtype} overflows: the true {label}{where} is {exact:.3g}")


def _states_truly(d: Derivation, v: str, sample, bounds) -> bool:
    """Whether the derivation's own statement of dv equals the true gradient at this sample (to the exact
    oracle's precision): only then is it offered as what the code should compute."""
    target_name = f"d{v}"
    if not any(st.target == target_name for st in d.gradients):
        return False
    written, true = np.ravel(sample.forward[target_name]), np.ravel(bounds.true[v])
    scale = max([mpmath.mpf(1)] + [abs(x) for x in true])
    return all(abs(w - r) <= mpmath.mpf(10) ** -30 * scale for w, r in zip(written, true, strict=True))


def _rows(d: Derivation, t: Target, j: _Judgement, draws: list) -> list[GradientRow]:
    rows, seen = [], set()
    for st in d.claims:
        if st.claim in seen:
            continue
        seen.add(st.claim)
        if st.jacobian is not None:
            rows.append(
                GradientRow(st.claim, Status.SKIP, reason="a Jacobian statement: code returns gradients")
            )
            continue
        v = st.of
        if v not in j.comps:
            why = (
                "a constant of the derivation ([inputs] fixes it)"
                if v in d.fixed_values
                else "intermediates of the derivation (code returns the gradients of its inputs)"
            )
            rows.append(GradientRow(st.claim, Status.SKIP, reason=why))
            continue
        rows.append(_row(st.claim, v, d, t, j, draws))
    for v in j.comps:
        if v in j.returned and f"d{v}" not in seen:
            rows.append(_row(f"d{v}", v, d, t, j, draws))
    return rows


def _row(label: str, v: str, d: Derivation, t: Target, j: _Judgement, draws: list) -> GradientRow:
    result = j.comps[v].result
    if result.status == Status.UNCHECKED:
        why = t.code.missing.get(v) or f"your code returns no gradient for {v}"
        return GradientRow(label, Status.SKIP, reason=why)
    status = {Status.PASS: Status.VERIFIED, Status.FAIL: Status.WRONG}.get(result.status, Status.INCONCLUSIVE)
    row = GradientRow(label, status, result, reason=result.reason, of=v)
    if status == Status.WRONG:
        row.mistake = _mistake(d, v, j, draws)
    return row


def _mistake(d: Derivation, v: str, j: _Judgement, draws: list) -> Mistake:
    comp = j.comps[v]
    result = comp.result
    if comp.arrays is None:  # no values to read a cause from: the code raised, or gave nan or inf
        return Mistake(j.unread.get(v, CodeKind.UNKNOWN), result.reason, f"d{v}")
    written, _, sample = comp.arrays
    k = next(i for i, s in enumerate(draws) if s is sample)
    mistake = explain(d, v, _floats(written), j.true_at[k], sample, result, EXPLAINED[j.dtype])
    if j.written_ok[v]:
        st = d.statement(f"d{v}")
        mistake = dataclasses.replace(mistake, fix=f"{target_text(st)} = {expression_text(st.rhs)}")
    return mistake
