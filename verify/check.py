"""Checking a derivation: draw samples, run the oracles, judge, diagnose."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import caveats, deadline, domains, jacobians, rounding, sampling
from .catalogue import load
from .comparison import TOLERANCES, Comparison, Result, Status, Truth
from .diagnose import ALL_DIAGNOSES_SECONDS, Kind, from_results
from .model import Derivation, DerivationError, Statement
from .oracles import ORACLE_CLASSES, ORACLES, Oracle, Skip
from .report import DerivationReport, ForwardReport, GradientReport, Report

if TYPE_CHECKING:
    from .parallel import Workers


def check(
    path_or_text,
    oracles=None,
    seed: int = 0,
    prove: bool = False,
    time_limit: float | None = None,
    *,
    workers: Workers | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    diagnose: bool = True,
) -> Report:
    """Check one derivation (a path, a catalogue name or the text) or a list of them. With `prove`, each
    gradient also carries the prover's outcome (`verify.prove`, `time_limit` seconds per gradient),
    computed in a worker process meanwhile; it never changes a verdict. `workers` (the command line's,
    see verify.parallel) run the framework oracles in their own processes; `progress(done, total, name)`
    is told of each derivation checked. `diagnose=False` gives the verdicts alone, each wrong gradient
    undiagnosed (the mutation tests, which judge only the verdict: a diagnosis verifies its fix with the
    exact oracle, most of the cost of a wrong convolution gradient)."""
    items = list(path_or_text) if isinstance(path_or_text, list | tuple) else [path_or_text]
    if isinstance(oracles, str):  # check(d, oracles="exact"): one oracle, not five letters
        oracles = (oracles,)
    if oracles is not None and not oracles:
        raise ValueError(f"no oracle to run: name some of {', '.join(ORACLES)}, or None for all")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be a whole number, not {seed!r}")
    names = tuple(oracles) if oracles else ORACLES
    unknown = [o for o in names if o not in ORACLE_CLASSES]
    if unknown:
        raise ValueError(f"unknown oracle {unknown[0]!r}: oracles are {', '.join(ORACLES)}")
    proofs = _start_proofs(items, seed, time_limit) if prove else None
    try:
        prepared = [_prepare(item, seed) for item in items]
        elsewhere = [n for n in names if workers is not None and n in workers]
        if elsewhere:
            assert workers is not None, "only workers run oracles elsewhere"
            workers.begin()
            for k, p in enumerate(prepared):
                if not isinstance(p, DerivationReport):
                    _bound(*p)
                    workers.send(k, p)
        reports = []
        for k, p in enumerate(prepared):
            if isinstance(p, DerivationReport):
                reports.append(p)
            else:
                d, draws = p
                runs = {name: run_oracle(name, d, draws) for name in names if name not in elsewhere}
                for name in elsewhere:
                    assert workers is not None, "only workers run oracles elsewhere"
                    runs[name] = workers.result(name, k) or run_oracle(name, d, draws)
                reports.append(_assemble(d, draws, {name: runs[name] for name in names}, seed, diagnose))
            if progress is not None:
                progress(k + 1, len(prepared), reports[-1].name)
        if proofs is not None:
            for report, found in zip(reports, proofs.results(), strict=True):
                for g in report.gradients:
                    g.proof = found.get(g.target)
    finally:
        if proofs is not None:
            proofs.close()
    return Report(reports, names)


def _start_proofs(items, seed: int, time_limit: float | None):
    from .prove import TIME_LIMIT_S, ProofRun

    derivations: list[Derivation | None] = []
    for item in items:
        try:
            derivations.append(item if isinstance(item, Derivation) else load(item))
        except DerivationError:
            derivations.append(None)  # reported invalid by the check; nothing to prove
    return ProofRun(derivations, seed, time_limit or TIME_LIMIT_S)


def _prepare(item, seed):
    """The parsed derivation and its samples, or the report of why there are none."""
    try:
        d = item if isinstance(item, Derivation) else load(item)
    except DerivationError as e:
        name = Path(e.file).stem if e.file else "derivation"
        return DerivationReport(name, e.file, "invalid", error=e)
    try:
        return d, sampling.samples(d, seed)
    except sampling.NoSample as e:
        if not e.undecided:
            return DerivationReport(d.name, d.file, "invalid", d.title, error=e)
        # the file is fine; no draw kept every kink clear: no oracle compared anything
        why = f"{e.message[0].upper()}{e.message[1:]} (line {e.line}); no oracle compared anything"
        gradients = [
            GradientReport(g.label, g.line, "inconclusive", {}, statement=g, reason=why) for g in d.claims
        ]
        return DerivationReport(
            d.name, d.file, "inconclusive", d.title, None, gradients, domains=_domains(d),
            warnings=caveats.warnings(d),
        )  # fmt: skip
    except DerivationError as e:  # a statement too large to check exactly
        return DerivationReport(d.name, d.file, "invalid", d.title, error=e)


def _bound(d: Derivation, draws) -> None:
    """Every oracle bounds its rounding errors with `rounding.of(d, sample)`, kept in the sample's cache:
    computed here once, it travels to the workers with the samples instead of being computed by each.
    Should it raise, each oracle meets the same exception again and reports it as its error."""
    try:
        for sample in draws:
            rounding.of(d, sample)
    except Exception:  # reported by the oracles, see above
        pass


@dataclass
class OracleRun:
    """One oracle on one derivation: per gradient its Result and the arrays of its first failing
    sample (for diagnosis), and the forward comparisons."""

    results: dict[str, Result]
    arrays: dict[str, tuple]
    forward: list[ForwardReport]
    oracle: Oracle | None = None  # the oracle itself, when it ran in this process


def run_oracle(name: str, d: Derivation, draws) -> OracleRun:
    oracle = ORACLE_CLASSES[name](d)

    def every(result):
        return OracleRun({g.target: result for g in d.claims}, {}, [], oracle)

    reason = oracle.unavailable()
    if reason is not None:
        return every(Result(Status.SKIP, reason=reason))
    tol = TOLERANCES[name]
    comps = {g.target: Comparison(tol, g.label, unbounded=oracle.unbounded) for g in d.claims}
    fwd_comps: dict[str, Comparison] = {}
    stage = "starting"
    try:
        # an overflow, inf - inf or 0/0 in any oracle is judged from the values it gives, not announced:
        # set once here, where every oracle's forward and gradients run
        with np.errstate(all="ignore"):
            for k, sample in enumerate(draws):
                stage = f"bounding rounding errors at sample {k + 1}"
                bounds = rounding.of(d, sample)
                stage = f"comparing the forward at sample {k + 1}"
                output = Truth(sample.forward[d.output], _largest(sample.forward[d.output]), bounds.worst)
                for label, generated, library in oracle.forward(sample):
                    bound = 2 * tol.scale(bounds.values[d.output])  # both sides compute the forward
                    comp = fwd_comps.setdefault(label, Comparison(tol, "forward"))
                    comp.add(generated, library, sample, bound, output)
                stage = f"computing gradients at sample {k + 1}"
                for g, written, reference, bound in oracle.gradients(sample):
                    own, truth = _written_bound(d, d.statement(g), sample, bounds)
                    comps[g].add(written, reference, sample, tol.scale(own) + bound, truth)
    except Skip as e:
        return every(Result(Status.SKIP, reason=str(e)))
    except Exception as e:  # the tool broke, not the formula: never a verdict, always shown
        return every(Result(Status.ERROR, reason=f"{name} oracle raised {type(e).__name__} {stage}: {e}"))
    results = {}
    for g, c in comps.items():
        results[g] = c.result
        if c.result.status == Status.UNCHECKED:
            results[g] = Result(Status.SKIP, reason=oracle.not_compared(d.statement(g).label))
    forward = [ForwardReport(name, label, c.result) for label, c in fwd_comps.items()]
    forward += [
        ForwardReport(name, label, Result(Status.SKIP, reason=why)) for label, why in oracle.refused.items()
    ]
    return OracleRun(
        results, {g: c.arrays for g, c in comps.items() if c.arrays is not None}, forward, oracle
    )


def _written_bound(d: Derivation, g: Statement, sample, bounds) -> tuple[object, Truth]:
    """The float64 bound of claim g's written value, and what is known exactly about it: for a gradient
    its value and the size of the true adjoint; for a Jacobian statement both at full size."""
    if g.jacobian is None:
        return bounds.values[g.target], Truth(sample.forward[g.target], bounds.size(g.of), bounds.worst)
    full = rounding.jacobian(d, sample, g.jacobian.of, g.jacobian.wrt)
    written = jacobians.full(g, sample.forward[g.target])
    own = jacobians.full(g, bounds.values[g.target])
    return own, Truth(written, rounding.size(full.true, full.bound), bounds.worst)


def _largest(value):
    return max((abs(x) for x in np.ravel(value)), default=0)


def verdict(results: dict[str, Result]) -> tuple[Status, str]:
    """A gradient's verdict from its oracles' results, and why when it is not verified: wrong when an
    oracle failed, verified when none failed and at least one passed, inconclusive when none decided."""
    if any(r.status == Status.FAIL for r in results.values()):
        return Status.WRONG, ""
    if any(r.status == Status.PASS for r in results.values()):
        return Status.VERIFIED, ""
    why = "; ".join(f"{name} {r.status}: {r.reason}" for name, r in results.items())
    return Status.INCONCLUSIVE, f"no oracle could decide ({why})" if why else "no oracle ran"


def _assemble(
    d: Derivation, draws, runs: dict[str, OracleRun], seed: int, diagnose: bool = True
) -> DerivationReport:
    forward = [f for run in runs.values() for f in run.forward]
    gradients = []
    wrong_lines: dict[str, int] = {}
    first_wrong_step: dict[str, Statement] = {}  # by claim: the first wrong step of its chain
    # one deadline for the diagnoses of every wrong claim (the rest of the loop is cheap)
    with deadline.within(ALL_DIAGNOSES_SECONDS):
        for g in d.claims:
            results = {name: run.results[g.target] for name, run in runs.items()}
            # the exact oracle's arrays diagnose best
            found = [run.arrays[g.target] for name, run in sorted(runs.items(), key=lambda kv: kv[0] != "exact")
                     if g.target in run.arrays]  # fmt: skip
            arrays = found[0] if found else None
            status, reason = verdict(results)
            diagnosis, mistake = "", None
            if status == Status.WRONG and not diagnose:
                diagnosis = "not diagnosed (diagnose=False)"
            elif status == Status.WRONG:
                mistake = from_results(d, g.target, arrays, results, draws, seed)
                diagnosis = mistake.summary()
                used = _uses(d, g.target) & set(wrong_lines)
                if used and mistake.kind != Kind.PROPAGATED:
                    first = min(used, key=lambda name: wrong_lines[name])
                    diagnosis += f"; it uses {first} (line {wrong_lines[first]}), which is wrong"
                if g.chain is not None:
                    step = first_wrong_step.setdefault(g.claim, g)
                    if step is g:
                        diagnosis = f"the first wrong step of the chain (line {g.line}, column {g.column}): {diagnosis}"
                    else:
                        diagnosis += (
                            f"; the chain goes wrong at {step.label} (line {step.line}, column {step.column})"
                        )
                if g.chain is None or g.chain[0] == g.chain[1]:
                    wrong_lines[g.target] = g.line
            gradients.append(
                GradientReport(g.label, g.line, status, results, diagnosis, g, reason=reason, mistake=mistake)
            )
    statuses = {g.status for g in gradients}
    status = Status.VERIFIED
    if any(f.result.status == Status.FAIL for f in forward) or Status.WRONG in statuses:
        status = Status.WRONG
    elif Status.INCONCLUSIVE in statuses:
        status = Status.INCONCLUSIVE
    return DerivationReport(
        d.name, d.file, str(status), d.title, None, gradients, forward, seed,
        [dict(s.sizes) for s in draws], d.unchecked, domains=_domains(d),
        warnings=caveats.warnings(d) + _one_sided(draws), near=[s.near for s in draws],
    )  # fmt: skip


def _one_sided(draws) -> list[str]:
    """Conditions that kept one side of their threshold at every draw: the draws are repeated until
    every condition takes both sides where they can, and one that never did left a branch uncompared."""
    return [
        f"{condition} ({target}, line {line}) kept one side of its threshold at every draw: its other "
        "branch was never compared"
        for target, line, condition, _ in sampling.one_sided(draws)
    ]


def _domains(d: Derivation) -> dict[str, dict[str, str]]:
    """Every drawn input's domain, and where it was inferred from when it was."""
    out = {}
    for name in d.inputs:
        if name in d.fixed_values:
            continue
        found = None if name in d.domains else domains.inferred(d).get(name)
        out[name] = {"domain": domains.of(d, name).describe()}
        if found is not None:
            out[name]["inferred"] = found.why.describe()
    return out


def _uses(d: Derivation, target: str) -> set[str]:
    return d.statement(target).reads
