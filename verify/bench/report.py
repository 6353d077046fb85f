"""How the bench's figures are shown: the side-by-side table and the summary under it."""

from __future__ import annotations

GOAL = 1.2  # issue 4: each generated backward at most 1.2x its reference
# issue 15: the convolution's and the max pooling's backward at most 1.5x, in float32 and float64
WINDOW_GOAL, WINDOW_GOAL_ENTRIES = 1.5, ("conv2d", "maxpool2d")


def _ms(s) -> str:
    return "-" if s is None else f"{s * 1e3:.3f}"


def _ratio(r) -> str:
    return "-" if r is None else f"{r:.2f}"


def table(entries: list[dict], sizes: dict[str, dict]) -> str:
    by = {(e["name"], e["backend"], e.get("variant", "")): e for e in entries}
    head = [
        "derivation", "sizes",
        "np gen", "np hand", "np x",
        "pt eager", "pt comp", "autograd", "eager x", "comp x",
        "jax jit", "jax.vjp", "jax x",
    ]  # fmt: skip
    rows = []
    for name in dict.fromkeys(e["name"] for e in entries):
        n, te, tc, j = (
            by.get((name, b, v))
            for b, v in (("numpy", ""), ("torch", "eager"), ("torch", "compiled"), ("jax", "jit"))
        )

        def mark(e):
            if e is None:
                return "-"
            return _ratio(e["ratio"]) + ("*" if e["goal"] and e["goal_ratio"] > GOAL else "")

        size = " ".join(f"{k}={v}" for k, v in sizes[name].items())
        rows.append([
            name, size,
            _ms(n and n["generated_s"]), _ms(n and n["reference_s"]), mark(n),
            _ms(te and te["generated_s"]), _ms(tc and tc["generated_s"]), _ms(te and te["reference_s"]),
            mark(te), mark(tc),
            _ms(j and j["generated_s"]), _ms(j and j["reference_s"]), mark(j),
        ])  # fmt: skip
    text = _grid(head, rows)
    only = [name for name in dict.fromkeys(e["name"] for e in entries) if any(
        "inputs_only_s" in e for e in entries if e["name"] == name)]  # fmt: skip
    if only:
        head = [
            "input gradients only",
            "np gen",
            "np x",
            "pt eager",
            "eager x",
            "pt comp",
            "comp x",
            "jax jit",
            "jax x",
        ]
        rows = []
        for name in only:
            row = [name]
            for b, v in (("numpy", ""), ("torch", "eager"), ("torch", "compiled"), ("jax", "jit")):
                e = by.get((name, b, v)) or {}
                row += [_ms(e.get("inputs_only_s")), _ratio(e.get("inputs_only_ratio"))]
            rows.append(row)
        text += "\n\n" + _grid(head, rows, left=1)
    return text


def _grid(head: list[str], rows: list[list[str]], left: int = 2) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells):
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def summary(result: dict) -> str:
    lines = [result["table"], ""]
    if result.get("quick"):
        lines.append("--quick: small sizes, few repeats, no torch.compile; a smoke run, not a measurement.")
    dtypes = ", ".join(dict.fromkeys(e["dtype"] for e in result["entries"]))
    lines.append(f"ratios: generated / reference, medians from this run; {dtypes}; times in ms.")
    lines.append(
        "np: hand-written NumPy backward; pt: torch.autograd of the library op (eager and torch.compile'd "
        "generated); jax: jax.vjp of the library op, both under jit."
    )
    lines.append(
        f"* misses the goal (at most {GOAL}x, float64; with the input gradients only where a derivation "
        "also writes adjoints of intermediates, as the reference computes those alone); torch goal: the "
        "better of eager and compiled."
    )
    lines.append(
        "input gradients only: a generated backward returning only the gradients the reference computes, "
        "without the written adjoints of intermediates; ratio against the same reference."
    )
    goal = [e for e in result["entries"] if e["goal"]]
    for backend in dict.fromkeys(e["backend"] for e in goal):
        mine = [e for e in goal if e["backend"] == backend]
        missed = [f"{e['name']} {e['goal_ratio']:.2f}" for e in mine if e["goal_ratio"] > GOAL]
        lines.append(
            f"goal {backend}: met {len(mine) - len(missed)}/{len(mine)}"
            + (f"; missed: {', '.join(missed)}" if missed else "")
        )
    floors = [e for e in goal if "floor_ratio" in e]
    if floors:
        lines.append(
            "floor / reference, the arrays an elementwise layer's backward reads (what its forward saved "
            "for it, the upstream gradient) and writes, in one pass (their sum: the written formula reads "
            "and writes no less): "
            + ", ".join(f"{e['name']} {e['backend']} {e['floor_ratio']:.2f}" for e in floors)
        )
    alike = [e for e in result["entries"] if e.get("variant") == "from inputs"]
    if alike:
        lines.append(
            "jax x with nothing saved by a forward, for information: the generated backward computing "
            "everything from the inputs and forward values, against jax.vjp as one jitted function of the "
            "inputs and the upstream gradient: "
            + ", ".join(
                f"{e['name']}{'' if e['dtype'] == 'float64' else ' ' + e['dtype']} {e['goal_ratio']:.2f}"
                for e in alike
            )
        )
    windowed = [
        e for e in result["entries"] if e["name"] in WINDOW_GOAL_ENTRIES and e.get("variant") != "from inputs"
    ]
    if windowed:
        # per entry, backend and dtype: the better of eager and compiled for torch
        best: dict[tuple[str, str, str], dict] = {}
        for e in windowed:
            key = (e["name"], e["backend"], e["dtype"])
            if key not in best or e["ratio"] < best[key]["ratio"]:
                best[key] = e
        missed = [
            f"{n} {b} {t} {e['ratio']:.2f}" for (n, b, t), e in best.items() if e["ratio"] > WINDOW_GOAL
        ]
        lines.append(
            f"goal conv2d, maxpool2d at most {WINDOW_GOAL}x (float32 and float64): met "
            f"{len(best) - len(missed)}/{len(best)}" + (f"; missed: {', '.join(missed)}" if missed else "")
        )
    m = result["machine"]
    blas = m.get("blas")
    blas = (
        ", ".join(f"{b['internal_api']} {b['version']} {b['architecture']}" for b in blas)
        if isinstance(blas, list)
        else blas
    )
    lines.append(
        f"threads per backend: {result['threads']['threads']} (GRADVERIFY_BENCH_THREADS); BLAS: {blas}"
    )
    lines.append(f"allocator: {m['allocator']}")
    if result.get("loop"):
        from .loop import summary as loop_summary

        lines += loop_summary(result["loop"])
        lines.append(
            f"python -m verify all --oracle exact --oracle fd: {result['verify_all_exact_fd_s']:.1f} s"
        )
    else:
        lines.append(
            "edit-check loop and python -m verify all: not run (--quick, or only some entries benched)"
        )
    if result.get("exact_s"):
        slowest = max(result["exact_s"], key=result["exact_s"].get)
        lines.append(
            f"exact oracle per derivation: at most {result['exact_s'][slowest]:.2f} s ({slowest}), "
            f"{sum(result['exact_s'].values()):.1f} s for the catalogue"
        )
    if result.get("diagnosis"):
        from .diagnosis import summary as diagnosis_summary

        lines += diagnosis_summary(result["diagnosis"])
    proofs = result.get("prove")
    if proofs and proofs["seconds"]:
        slowest = max(proofs["seconds"], key=proofs["seconds"].get)
        lines.append(
            f"python -m verify prove (cold subprocess): {proofs['wall_s']:.1f} s, {proofs['proved']}/"
            f"{proofs['claims']} proved; per gradient at most {proofs['seconds'][slowest]:.2f} s ({slowest}), "
            f"{sum(proofs['seconds'].values()):.1f} s in all"
        )
        windowed_s = {k: proofs["seconds"][k] for k in proofs.get("windowed", [])}
        if windowed_s:
            lines.append(
                f"  windowed (convolution, pooling): {len(windowed_s)} gradients, "
                + ", ".join(f"{k} {s:.2f} s" for k, s in windowed_s.items())
            )
    if result.get("code"):
        lines.append(code_line(result["code"]))
    lines.append(
        "load average (1, 5, 15 min) at the start: "
        + " ".join(f"{x:.2f}" for x in result["machine"]["load_average_at_start"] or [])
        + "; at the end: "
        + " ".join(f"{x:.2f}" for x in result["machine"]["load_average"] or [])
    )
    for name, why in result["skipped"].items():
        lines.append(f"{name}: skipped {'; '.join(why)}")
    return "\n".join(lines)


def code_line(measured: list[dict]) -> str:
    """`bench`'s line for `python -m verify code`: each check's median cold wall time beside its goal."""
    return "python -m verify code (cold subprocess, median of {}): ".format(
        len(measured[0]["runs_s"]) if measured else 0
    ) + ", ".join(
        f"{c['what']} {c['wall_s']:.1f} s, {c['cpu_s']:.1f} s CPU (goal {c['goal_s']:.0f} s"
        + (f"; exit {c['exit']}" if c["exit"] else "")
        + ")"
        for c in measured
    )
