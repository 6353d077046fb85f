"""python -m verify bench [NAME ...] [--json FILE] [--quick]: the generated backward passes against
references (every catalogue entry, or the NAMEs).

For every catalogue derivation, at batch 512 and 1024 features (1000 classes for softmax and the
losses; the MLP is 512 x 1024 -> 1024 -> 1024 -> 1000; the linear layers 1024 -> 1024), in float64,
the median time of the generated `backward` in each backend beside a reference computing the same
gradients (`entries`):

- numpy: the generated NumPy backward / the backward of the hand-written NumPy module the `numpy`
  oracle checks (`implementations/numpy/catalogue.py`; built and run forward once, untimed);
- torch: the generated PyTorch backward, eager and under `torch.compile` / `torch.autograd.grad` of the
  library op in the derivation's catalogue record with the upstream gradient, the graph built once and
  kept (`retain_graph`), so that only the backward is timed;
- jax: the generated JAX backward under `jax.jit` / the function `jax.vjp` returns for the record's JAX
  library op, under `jax.jit`; both waited for with `block_until_ready`. That pullback reads residuals
  its forward saved (relu's mask, softplus's sigmoid), which the generated backward computes from its
  inputs; beside it, for information and never judged as a goal, jax.vjp as one jitted function of the
  inputs and the upstream gradient (JSON variant "from inputs"), the arguments the generated one takes.

A derivation without a hand-written module or a library op is timed against the references it has; the
others are listed as skipped, with the reason. The generated backward computes every written gradient,
intermediates' adjoints included (batchnorm's dxhat, dvar and dmu; the MLP's per-layer deltas); a
reference computes what its layer or autograd computes. Compile time (torch.compile, XLA) is excluded
and reported apart; warm-up calls come first. Each figure is a median over timed batches of calls, all
the functions of one backend timed in alternating rounds so that background load on a shared machine
shifts them alike (`harness`). Every backend gets one thread (GRADVERIFY_BENCH_THREADS=n for n), and
glibc is told to keep freed memory (`keep_freed_memory`; GRADVERIFY_BENCH_MALLOC=default to leave it).
GRADVERIFY_BENCH_DTYPES=float64,float32 adds float32 figures (entries with "dtype": "float32", never
counted against the goals, which are stated for float64). Finally the edit-check loop (`loop`): a
repeated cold `check` of batch norm and `python -m verify all`, each beside its first run with an empty
JAX cache, and a `--watch` re-check beside the watcher's first check (`--loop` measures only those);
`python -m verify prove` with each gradient's proof time; and the cold wall time of `python -m verify
code` on a NumPy module and on a torch.autograd.Function (`harness.CODE_CHECKS`; `--code` measures
only those); and the diagnosis of a wrong batch-norm gradient with its file's whole check (`diagnosis`;
`--diagnosis` measures only those).

`--json FILE` writes {"entries": [{"name", "what": "backward", "backend", "generated_s", "reference",
"reference_s", "ratio", ...}], "verify_all_s"} (DESIGN.md section 4), ratio = generated_s / reference_s;
verify_all_s is the median of the repeated cold runs of `python -m verify all`.
Extra keys: "variant" (torch: "eager" or "compiled"; jax: "jit" or "from inputs"), "dtype", "goal" (whether this ratio is the one
the speed goal is stated for), "goal_ratio" (the ratio the goal is judged on: "inputs_only_ratio", the
generated backward of the input gradients alone, where the derivation also writes adjoints of
intermediates that the reference does not compute; "ratio" otherwise), "compile_s", and top-level "machine", "skipped" ({derivation: ["what:
why", ...]}), "loop" (`loop.run`), "prove" ({"wall_s", "seconds": {"derivation gradient": s},
"proved", "claims", "windowed": ["derivation gradient", ...]}), "code" ([{"what", "command", "wall_s" (the median), "runs_s", "cpu_s", "goal_s",
"exit"}]) and "diagnosis" (`diagnosis.run`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from .. import catalogue
from . import diagnosis, loop
from .entries import draw_inputs, sizes_for, time_derivation
from .harness import (
    Schedule,
    code_seconds,
    exact_seconds_per_derivation,
    keep_freed_memory,
    limit_threads,
    machine,
    prove_seconds,
    verify_all_seconds,
)
from .report import code_line, summary, table

__all__ = ["main", "run", "summary", "table"]


def run(quick: bool = False, log=print, names: list[str] | None = None, compiled: bool | None = None) -> dict:
    """Time every catalogue entry (or those in `names`); `compiled` defaults to not `quick`."""
    compiled = not quick if compiled is None else compiled
    threads = limit_threads(int(os.environ.get("GRADVERIFY_BENCH_THREADS", "1")))
    load_at_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    allocator = keep_freed_memory()
    if quick:
        from ..oracles.jax_vjp import fast_compiles

        fast_compiles(os.environ)  # quick timings are a smoke test: XLA's compile time is what counts there
    schedule = Schedule.for_run(quick)
    dtypes = [t.strip() for t in os.environ.get("GRADVERIFY_BENCH_DTYPES", "float64").split(",") if t.strip()]
    if not dtypes or set(dtypes) - {"float64", "float32"}:
        raise ValueError(f"GRADVERIFY_BENCH_DTYPES: float64 and/or float32, not {dtypes}")
    entries: list[dict] = []
    sizes: dict[str, dict] = {}
    skipped: dict[str, list[str]] = {}
    for path in catalogue.paths():
        d = catalogue.load(path)
        if names and d.name not in names:
            continue
        sizes[d.name] = sizes_for(d, quick)
        drawn = draw_inputs(d, sizes[d.name])
        for dtype in dtypes:
            values = {k: v.astype(dtype) if isinstance(v, np.ndarray) else v for k, v in drawn.items()}
            log(f"{d.name} {dtype}: {' '.join(f'{k}={v}' for k, v in sizes[d.name].items())}", flush=True)
            timed, missing = time_derivation(d, values, sizes[d.name], dtype, compiled, schedule, log)
            entries += timed
            # the same references are missing at every dtype: listed once
            skipped[d.name] = list(dict.fromkeys([*skipped.get(d.name, []), *map(str, missing)]))
    measured = None if quick or names else loop.run(log=log)
    result = {
        "entries": entries,
        "verify_all_s": measured["verify_all"]["median_s"] if measured else None,
        "loop": measured,
        "verify_all_exact_fd_s": None if quick or names else verify_all_seconds("exact", "fd"),
        "exact_s": None if quick or names else exact_seconds_per_derivation(),
        "prove": None if quick or names else prove_seconds(),
        "code": None if quick or names else code_seconds(),
        "diagnosis": None if quick or names else diagnosis.run(log=log),
        "quick": quick,
        "machine": {**machine(), "load_average_at_start": load_at_start, "allocator": allocator},
        "skipped": {k: v for k, v in skipped.items() if v},
        "threads": {k: v for k, v in threads.items() if not k.startswith("_")},
    }
    if quick:
        result["verify_all_skipped"] = "--quick does not run python -m verify all"
        result["torch_compile_skipped"] = "--quick does not compile"
    result["table"] = "\n\n".join(
        (f"{dtype}:\n" if len(dtypes) > 1 else "") + table([e for e in entries if e["dtype"] == dtype], sizes)
        for dtype in dtypes
    )
    return result


def _log(*args, **kwargs) -> None:
    print(*args, file=sys.stderr, **kwargs)


def _write_json(target: str, data: dict) -> None:
    text = json.dumps(data, indent=2)
    if target == "-":
        print(text)
    else:
        Path(target).write_text(text + "\n", encoding="utf-8")


def main(args) -> int:
    names = list(getattr(args, "names", None) or [])
    unknown = sorted(set(names) - {p.stem for p in catalogue.paths()})
    if unknown:
        print(f"bench: {', '.join(unknown)}: not in the catalogue (python -m verify list)", file=sys.stderr)
        return 2
    target = getattr(args, "json", None)
    # with --json - the JSON alone goes to standard output, so that it parses; the table to stderr
    table_to = sys.stderr if target == "-" else sys.stdout
    if getattr(args, "diagnosis", False):
        measured = {"diagnosis": diagnosis.run(log=_log), "machine": machine()}
        print("\n".join(diagnosis.summary(measured["diagnosis"])), file=table_to)
        if target:
            _write_json(target, measured)
        return 0
    if getattr(args, "loop", False):
        measured = {"loop": loop.run(log=_log), "machine": machine()}
        print("\n".join(loop.summary(measured["loop"])), file=table_to)
        if target:
            _write_json(target, measured)
        return 0
    if getattr(args, "code", False):
        code = code_seconds()
        print(code_line(code), file=table_to)
        if target:
            _write_json(target, {"code": code, "machine": machine()})
        return 0
    result = run(quick=bool(getattr(args, "quick", False)), log=_log, names=names or None)
    print(summary(result), file=table_to)
    if target:
        _write_json(target, {k: v for k, v in result.items() if k != "table"})
    return 0
