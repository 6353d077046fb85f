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
    fixed = {}
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


def judge(t: Target, d: Derivation, draws, dtype: str, seed: int, label: str) -> CodeReport:
    tol = TOLERANCES[dtype]
    inputs = [n for n in d.inputs if n not in d.fixed_values]
    forward = Comparison(tol, "forward")
    comps = {v: Comparison(tol, f"d{v}") for v in inputs}
    unread: dict[str, CodeKind] = {}  # gradients failed with no values to read a cause from, and why
    returned: set[str] = set()
    per_draw: dict[str, list[Status]] = {v: [] for v in inputs}  # each draw's own verdict
    true_at: dict[str, dict[str, np.ndarray]] = {}  # by sample seed and sizes: every true gradient
    written_ok = {v: True for v in inputs}  # whether the derivation's own statement of dv is right
    for k, sample in enumerate(draws):
        bounds = rounding.of(d, sample, dtype)
        exact_output = sample.forward[d.output]
        values = dict(sample.values)
        try:
            prepared = t.prepare(values, _floats(exact_output), dtype)
        except CodeFailed as e:
            failed = Result(Status.FAIL, reason=f"your code raised in {e}")
            forward.record(failed, sample)
            for v in inputs:
                comps[v].record(dataclasses.replace(failed), sample)
                unread.setdefault(v, CodeKind.RAISED)
            continue
        largest = max((abs(x) for x in np.ravel(exact_output)), default=0)
        forward.add(
            prepared.output,
            exact_output,
            sample,
            tol.scale(bounds.values[d.output]),
            Truth(exact_output, largest, bounds.worst),
        )
        try:
            grads = prepared.backward()
        except CodeFailed as e:
            for v in inputs:
                comps[v].record(Result(Status.FAIL, reason=f"your code raised in {e}"), sample)
                unread.setdefault(v, CodeKind.RAISED)
            continue
        true_at[k] = {v: _floats(bounds.true[v]) for v in inputs}
        for v in inputs:
            written_ok[v] &= _states_truly(d, v, sample, bounds)
            if v not in grads:
                continue
            returned.add(v)
            alone = Comparison(tol, f"d{v}")
            for comp in (comps[v], alone):
                failure = _judge_gradient(comp, grads[v], d, v, sample, bounds, tol, dtype)
            per_draw[v].append(alone.result.status)
            if failure is not None:
                unread.setdefault(v, failure)
    rows = _rows(d, t, comps, returned, draws, true_at, written_ok, unread, dtype)
    for row in rows:
        if row.of in per_draw:
            row.draws = per_draw[row.of]
    return CodeReport(
        code=label,
        kind=t.code.kind,
        dtype=dtype,
        derivation=d.name,
        file=d.file,
        title=d.title,
        forward=forward.result,
        gradients=rows,
        inputs=dict(t.code.takes),
        conventions=t.conventions(),
        notes=list(dict.fromkeys(t.code.notes)) + _built_in(d, t),
        seed=seed,
        sizes=[dict(s.sizes) for s in draws],
        near=[s.near for s in draws],
    )


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
    if value.shape == np.shape(true) and not np.all(np.isfinite(value)):
        at = tuple(int(i) for i in np.argwhere(~np.isfinite(value))[0])
        exact = float(true[at]) if at else float(true)
        where = f"[{', '.join(map(str, at))}]" if at else ""
        if abs(exact) < np.finfo(dtype).max / 16:
            comp.record(
                Result(
                    Status.FAIL,
                    worst_index=list(at),
                    reason=f"your d{v}{where} is {value[at]}, where the true value is {exact:.6g}",
                ),
                sample,
            )
            return CodeKind.NOT_FINITE
        comp.record(
            Result(Status.INCONCLUSIVE, reason=f"{dtype} overflows: the true d{v}{where} is {exact:.3g}"),
            sample,
        )
        return None
    comp.add(value, true, sample, bound, truth)
    return None


def _states_truly(d: Derivation, v: str, sample, bounds) -> bool:
    """Whether the derivation's own statement of dv equals the true gradient at this sample (to the exact
    oracle's precision): only then is it offered as what the code should compute."""
    target_name = f"d{v}"
    if not any(st.target == target_name for st in d.gradients):
        return False
    written, true = np.ravel(sample.forward[target_name]), np.ravel(bounds.true[v])
    scale = max([mpmath.mpf(1)] + [abs(x) for x in true])
    return all(abs(w - r) <= mpmath.mpf(10) ** -30 * scale for w, r in zip(written, true, strict=True))


def _rows(d, t, comps, returned, draws, true_at, written_ok, unread, dtype) -> list[GradientRow]:
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
        if v not in comps:
            why = (
                "a constant of the derivation ([inputs] fixes it)"
                if v in d.fixed_values
                else "intermediates of the derivation (code returns the gradients of its inputs)"
            )
            rows.append(GradientRow(st.claim, Status.SKIP, reason=why))
            continue
        rows.append(_row(st.claim, v, d, t, comps[v], draws, true_at, written_ok, unread, dtype))
    for v, comp in comps.items():
        if v in returned and f"d{v}" not in seen:
            rows.append(_row(f"d{v}", v, d, t, comp, draws, true_at, written_ok, unread, dtype))
    return rows


def _row(label, v, d, t, comp, draws, true_at, written_ok, unread, dtype) -> GradientRow:
    result = comp.result
    if result.status == Status.UNCHECKED:
        why = t.code.missing.get(v) or f"your code returns no gradient for {v}"
        return GradientRow(label, Status.SKIP, reason=why)
    status = {Status.PASS: Status.VERIFIED, Status.FAIL: Status.WRONG}.get(result.status, Status.INCONCLUSIVE)
    row = GradientRow(label, status, result, reason=result.reason if status != Status.VERIFIED else "", of=v)
    if status == Status.WRONG:
        row.mistake = _mistake(d, v, comp, draws, true_at, written_ok, unread, dtype)
    return row


def _mistake(d, v, comp, draws, true_at, written_ok, unread, dtype) -> Mistake:
    result = comp.result
    if comp.arrays is None:  # no values to read a cause from: the code raised, or gave nan or inf
        return Mistake(unread.get(v, CodeKind.UNKNOWN), result.reason)
    written, _, sample = comp.arrays
    k = next(i for i, s in enumerate(draws) if s is sample)
    w = _floats(written)
    mistake = explain(d, v, w, true_at[k], sample, result, EXPLAINED[dtype])
    if written_ok[v]:
        st = d.statement(f"d{v}")
        mistake = dataclasses.replace(mistake, fix=f"{target_text(st)} = {expression_text(st.rhs)}")
    return mistake
