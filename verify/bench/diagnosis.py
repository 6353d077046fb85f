"""The diagnosis's figures (issue 13), each beside its goal:

- the diagnosis of one wrong batch-norm gradient at the check's sizes: dx with the variance treated as a
  constant (tests/cases/classic_batchnorm_var_constant.deriv), the time `check` spends in
  `verify.diagnose.from_results` for it (path attribution and the verified fix search), after the exact
  oracle ran as in `check`; the median of REPEATS, each on a freshly parsed derivation, wall and CPU
  seconds [goal 2 s];
- that wrong file's whole check with the exact and fd oracles in a new process,
  `python -m verify check FILE --oracle exact fd`, diagnosis included [goal under 3 s].
"""

from __future__ import annotations

import statistics
import time

from .loop import ROOT, _cold

WRONG = ROOT / "tests" / "cases" / "classic_batchnorm_var_constant.deriv"
REPEATS = 3


def _diagnosis_seconds() -> tuple[float, float]:
    """(wall s, CPU s of this process) of one diagnosis."""
    from .. import sampling
    from ..check import run_oracle
    from ..diagnose import from_results
    from ..parse import parse

    d = parse(WRONG.read_text(encoding="utf-8"), str(WRONG), WRONG.stem)
    draws = sampling.samples(d, 0)
    run = run_oracle("exact", d, draws)
    cpu, start = time.process_time(), time.perf_counter()
    mistake = from_results(d, "dx", run.arrays["dx"], {"exact": run.results["dx"]}, draws, 0)
    seconds = time.perf_counter() - start, time.process_time() - cpu
    if mistake.kind != "missing-path" or mistake.fix is None:
        raise RuntimeError(f"the benchmark's wrong dx is no longer diagnosed as it was: {mistake.summary()}")
    return seconds


def run(repeats: int = REPEATS, log=print) -> dict:
    if not WRONG.exists():
        return {"skipped": f"{WRONG} is not here (a checkout's tests/cases holds it)"}
    log("diagnosis: one wrong batch-norm gradient", flush=True)
    timed = [_diagnosis_seconds() for _ in range(repeats)]
    log("diagnosis: the wrong file's whole check, exact and fd", flush=True)
    whole = _cold(["check", str(WRONG.relative_to(ROOT)), "--oracle", "exact", "fd"], repeats)
    return {
        "diagnose_dx_s": [wall for wall, _ in timed],
        "diagnose_dx_cpu_s": [cpu for _, cpu in timed],
        "diagnose_dx_median_s": statistics.median(wall for wall, _ in timed),
        "diagnose_dx_median_cpu_s": statistics.median(cpu for _, cpu in timed),
        "check_exact_fd": whole,
    }


def summary(result: dict) -> list[str]:
    if "skipped" in result:
        return [f"diagnosis: skipped: {result['skipped']}"]
    whole = result["check_exact_fd"]
    return [
        f"diagnosis of a wrong batch-norm dx (var held constant) at check sizes: "
        f"{result['diagnose_dx_median_s']:.2f} s ({result['diagnose_dx_median_cpu_s']:.2f} CPU) [goal 2 s]",
        f"  its file's whole check, {whole['command']} (a new process): repeated "
        f"{whole['median_s']:.2f} ({whole['median_cpu_s']:.2f} CPU) [goal 3 s]",
    ]
