"""python -m verify (or gradverify): all | list | new | check | show | codegen | latex | prove | code | bench.

Exit status 0 when everything checked is verified, 1 when any gradient is wrong, 2 when any input is
invalid, 3 when nothing is wrong but something is inconclusive, 4 when the tool itself failed (a bug:
one line naming the stage and the exception, the traceback only with --debug). Errors are one line on
stderr, never a traceback; a closed output pipe (`| head`) ends quietly."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from contextlib import nullcontext, redirect_stdout
from importlib import resources
from pathlib import Path

from . import caveats, domains
from .catalogue import folder, load, paths
from .model import Derivation, DerivationError
from .oracles import ORACLES
from .report import colour_for
from .unparse import expression_text, target_text

# the console script `gradverify` and `python -m verify` are one program; messages use the name typed
PROG = "gradverify" if Path(sys.argv[0]).name == "gradverify" else "python -m verify"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        if message.startswith("argument --oracle: invalid choice"):
            # `check --oracle exact f.deriv` reads the file as an oracle name
            message += "; put the files before --oracle, or end its names with --"
        raise UsageError(message)


def _oracle_flag(parser: argparse.ArgumentParser) -> None:
    """--oracle NAME...: several names after one flag, the flag repeated, or both."""
    parser.add_argument(
        "--oracle",
        action="extend",
        nargs="+",
        choices=ORACLES,
        metavar="NAME",
        help=f"run only these oracles ({', '.join(ORACLES)}): --oracle exact fd, or the flag repeated",
    )


def show_text(d: Derivation) -> str:
    out = [f"{d.name}: {d.title}"]
    for key in ("source", "notes"):
        if key in d.header:
            out.append(f"  {key}: {d.header[key]}")
    sizes = ", ".join(
        k
        + (
            f" = {d.fixed_sizes[k]}"
            if k in d.fixed_sizes
            else f" = {expression_text(d.size_relations[k])}"
            if k in d.size_relations
            else ""
        )
        for k in d.sizes
    )
    out.append(f"sizes: {sizes or 'none'}")
    if d.constants:
        out.append("constants: " + ", ".join(f"{k} = {v}" for k, v in d.constants.items()))
    out.append("inputs:")
    for name in d.inputs:
        shape = " x ".join(s.name for s in d.shape(name)) or "scalar"
        what = f"= {d.fixed_values[name]}" if name in d.fixed_values else domains.describe(d, name)
        out.append(f"  {name}: {shape}, {what}")
    out.append(f"output: {d.output}; upstream gradient: {d.upstream if d.upstream in d.tensors else '1'}")
    out.append("forward:")
    for st in d.forward:
        if st.source:
            out.append(f"  # {' '.join(st.source.split())}")
        out.append(f"  {target_text(st)} = {expression_text(d.as_written(st.rhs))}")
    needs = domains.conditions(d)
    if needs:
        out.append("the forward is real and finite where (draws that break it are redrawn):")
        out += [f"  {c.describe()}" for c in needs]
    out.append("gradients:")
    out += [f"  (line {line}, column {col}: {message})" for line, col, message in d.unchecked]
    for st in d.gradients:
        what = f"Jacobian {st.claim}" if st.jacobian is not None else f"dL/d{st.of}" if st.of else ""
        if st.chain is not None:
            what += f", step {st.chain[0]} of {st.chain[1]}"
        note = f"    (checked: {what})" if what else "    (helper)"
        if st.source:
            out.append(f"  # {' '.join(st.source.split())}")
        lhs = target_text(st) if st.chain is None or st.chain[0] == 1 else " " * len(target_text(st))
        out.append(f"  {lhs} = {expression_text(d.as_written(st.rhs))}{note}")
    out += [f"warning: {w}" for w in caveats.warnings(d)]
    return "\n".join(out)


def _parser() -> argparse.ArgumentParser:
    debug = _Parser(add_help=False)  # a parent of every subcommand's parser, which are _Parsers
    # SUPPRESS: a subcommand's default must not undo `python -m verify --debug check ...`
    debug.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an internal error",
    )
    parser = _Parser(prog=PROG, description="Check hand-written gradient formulas.", parents=[debug])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name, **kwargs):
        return sub.add_parser(name, parents=[debug], **kwargs)

    def checking(p):
        _oracle_flag(p)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--json", metavar="FILE", help="write the report as JSON ('-' for standard output)")
        proving(p, "also try to prove each gradient for all sizes (never changes the exit status)")

    def proving(p, help_text):
        if help_text:
            p.add_argument("--prove", action="store_true", help=help_text)
        p.add_argument(
            "--time-limit", type=_seconds, metavar="S", help="seconds per gradient for the prover (10)"
        )

    checking(command("all", help="check every catalogue derivation"))
    command("list", help="catalogue names and titles")
    p = command("new", help="write a commented template NAME.deriv to start from")
    p.add_argument("name", metavar="NAME")
    p = command("check", help="check derivation files")
    p.add_argument("files", nargs="+", metavar="FILE")
    checking(p)
    p.add_argument(
        "--watch", action="store_true", help="check again on every save, in a warm process (Ctrl-C stops)"
    )
    p = command("show", help="the parsed derivation, readable")
    p.add_argument("target", metavar="NAME|FILE")
    p.add_argument("--latex", action="store_true", help="print its LaTeX instead")
    p = command("codegen", help="the generated source")
    p.add_argument("target", metavar="NAME|FILE")
    p.add_argument("--backend", choices=("numpy", "jax", "torch"), default="numpy")
    p.add_argument(
        "--saved",
        action="store_true",
        help="the forward keeps what the backward reads of it alone (relu's mask), as autograd does; "
        "the code bench times and export runs",
    )
    p = command("latex", help="LaTeX (and PDF) of the derivations")
    p.add_argument("targets", nargs="*", metavar="NAME|FILE")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--pdf", action="store_true")
    _oracle_flag(p)
    p.add_argument("--seed", type=int, default=0)
    proving(p, "also prove each gradient for all sizes and say so in the document")
    p = command("prove", help="prove gradients equal to the true ones for all sizes")
    p.add_argument("targets", nargs="*", metavar="NAME|FILE", help="every catalogue derivation by default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="write the report as JSON ('-' for standard output)")
    proving(p, "")
    p = command("code", help="check your own backward implementation against a derivation")
    p.add_argument("target", metavar="FILE.py:NAME", help="NAME: a class, a function, or forward,backward")
    p.add_argument("--against", required=True, metavar="DERIVATION", help="a catalogue name or a .deriv file")
    p.add_argument(
        "--map", action="append", default=[], metavar="CODE=DERIV", help="a code name is a derivation name"
    )
    p.add_argument(
        "--convention",
        action="append",
        default=[],
        metavar="NAME=CONV",
        help="W=transposed, b=row, dW=mean: how your code holds a value (found by itself otherwise)",
    )
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="the format it runs in")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="write the report as JSON ('-' for standard output)")
    p = command("bench", help="speed ratios, side by side")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these catalogue entries (default: all)")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke run)")
    p.add_argument(
        "--loop", action="store_true", help="only the edit-check loop's figures (check, all, --watch)"
    )
    p.add_argument(
        "--code", action="store_true", help="only the cold figures of python -m verify code (NumPy, torch)"
    )
    p.add_argument(
        "--diagnosis", action="store_true", help="only the diagnosis's figures (a wrong batch-norm gradient)"
    )
    return parser


def _workers(args, own_process: bool):
    """The framework oracles' worker processes for a command of the tool's own process (see
    verify.parallel), which is first set up for checking (verify.runtime); else a no-op context."""
    if not own_process:
        return nullcontext()
    from . import check as _  # noqa: F401  (the workers are forked with the checker already imported)
    from .parallel import Workers
    from .runtime import configure

    configure(os.environ)
    return Workers.start(args.oracle or ORACLES) or nullcontext()


def _progress(command: str):
    """For `all` and `latex` with stderr on a terminal: one line on stderr that counts the derivations
    checked, rewritten in place and blanked at the end (stdout, the table, stays clean)."""
    if command not in ("all", "latex") or not sys.stderr.isatty():
        return None
    shown = 0

    def show(done: int, total: int, name: str) -> None:
        nonlocal shown
        line = f"{PROG} {command}: {done}/{total} checked ({name})" if done < total else ""
        sys.stderr.write("\r" + line.ljust(shown) + ("\r" if not line else ""))
        sys.stderr.flush()
        shown = len(line)

    return show


def _run_checks(items, args, workers=None) -> int:
    from .check import check

    prove = args.command == "prove" or args.prove
    start = time.perf_counter()
    report = check(
        items,
        oracles=args.oracle,
        seed=args.seed,
        prove=prove,
        time_limit=args.time_limit,
        workers=workers,
        progress=_progress(args.command),
    )
    args.status = report.exit_code  # the verdict stands even if the reader of the output goes away
    if args.json != "-":  # then standard output holds only the JSON
        print(report.table(colour=colour_for(sys.stdout), errors=False))
        if args.command == "prove":
            print(proof_times(report, time.perf_counter() - start))
    for d in report.derivations:
        if d.error is not None:
            print(str(d.error), file=sys.stderr)
    for line in report.errors():  # exit 4: an oracle broke, which is no verdict on the formula
        print(f"{PROG}: internal error: {line}", file=sys.stderr)
    _write_json(report, args.json)
    return report.exit_code


def _write_json(report, where: str | None) -> None:
    """The report as JSON to file `where`, or to standard output for '-'."""
    if not where:
        return
    text = report.dumps()
    if where == "-":
        print(text)
    else:
        Path(where).write_text(text + "\n", encoding="utf-8")


def _code(args) -> int:
    """python -m verify code FILE.py:NAME --against DERIVATION: exit 0 verified, 1 wrong, 3 inconclusive,
    2 when the code cannot be checked as given (it does not import, NAME is missing or of no kind
    supported, a name matches nothing)."""
    from .code import CodeError, check_code
    from .code.source import resolve

    names = {}
    for item in args.map:
        code_name, sep, deriv_name = item.partition("=")
        if not sep or not code_name.strip() or not deriv_name.strip():
            raise UsageError(f"--map {item}: expected CODE_NAME=DERIVATION_NAME")
        names[code_name.strip()] = deriv_name.strip()
    d = load(args.against)
    # with --json - standard output holds the JSON alone: what the code prints goes to stderr
    printed = redirect_stdout(sys.stderr) if args.json == "-" else nullcontext()
    try:
        with printed:
            obj = resolve(args.target)
            report = check_code(
                obj, d, names, args.dtype, conventions=args.convention, seed=args.seed, label=args.target
            )
    except CodeError as e:
        print(f"{PROG} code: error: {e}", file=sys.stderr)
        return 2
    args.status = report.exit_code
    if args.json != "-":
        print(report.table())
    _write_json(report, args.json)
    return report.exit_code


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def proof_times(report, wall_s: float) -> str:
    """The prover's speed: each gradient's proof time (the self-check's sample of each derivation aside)
    and the wall time of the whole command, check included (the figures BENCHMARKS.md records)."""
    timed = [
        (g.proof.seconds, f"{d.name} {g.name}") for d in report.derivations for g in d.gradients if g.proof
    ]
    if not timed:
        return f"prover: nothing to prove; wall {wall_s:.1f} s"
    slowest = max(timed)
    return (
        f"prover: {len(timed)} gradient{'s' * (len(timed) != 1)} in {sum(s for s, _ in timed):.2f} s, "
        f"slowest {slowest[1]} "
        f"{slowest[0]:.2f} s; wall {wall_s:.1f} s"
    )


INTERNAL_ERROR = 4

# The stage an internal error happened in, by the module of the deepest frame of the tool's own code.
_STAGES = {
    "text": "parsing",
    "parse": "parsing",
    "catalogue": "loading",
    "sampling": "sampling",
    "exacteval": "exact evaluation",
    "check": "checking",
    "comparison": "comparing",
    "diagnose": "diagnosis",
    "report": "the report",
    "lower": "code generation",
    "printers": "code generation",
    "codegen": "code generation",
    "export": "export",
    "latex": "LaTeX",
    "bench": "bench",
    "prove": "the prover",
    "code": "checking the code",
}


def stage(error: BaseException) -> str:
    """Where in the tool `error` was raised, in words ('the fd oracle', 'sampling', ...)."""
    here = Path(__file__).resolve().parent
    found = "the command line"
    for frame, _ in traceback.walk_tb(error.__traceback__):
        path = Path(frame.f_code.co_filename).resolve()
        if here not in path.parents:
            continue
        parts = path.relative_to(here).with_suffix("").parts
        if parts[0] == "oracles" and len(parts) > 1 and parts[1] not in ("__init__", "base"):
            found = f"the {parts[1]} oracle"
        else:
            found = _STAGES.get(parts[0], found)
    return found


def _internal_error(command: str | None, error: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(error, file=sys.stderr)
    what = f"{type(error).__name__}: {error}".splitlines()[0] if str(error) else type(error).__name__
    hint = "" if debug else " (run with --debug for the traceback)"
    print(
        f"{PROG}{' ' + command if command else ''}: internal error in {stage(error)}: {what}{hint}",
        file=sys.stderr,
    )
    return INTERNAL_ERROR


def _quiet_pipe() -> None:
    """The reader of standard output went away (`| head`): send the rest of the output nowhere, so that
    neither this program nor the interpreter's exit complains about it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def console() -> None:
    """The program `gradverify` (and `python -m verify`): `main` in a process of the tool's own."""
    sys.exit(main(own_process=True))


def main(argv=None, own_process: bool = False) -> int:
    """Run the command line `argv`; `own_process` when this process is the tool's own (the console
    script, python -m verify), so that it may set itself up for checking (verify.runtime) and fork
    workers (verify.parallel). Called from other code, it leaves the caller's process as it is."""
    args = None
    try:
        args = _parser().parse_args(argv)
        status = _dispatch(args, own_process)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below, not at exit
        return status
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except DerivationError as e:
        print(str(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _quiet_pipe()
        return getattr(args, "status", 0)
    except Exception as e:  # a bug of the tool: never a verdict's exit status, never a traceback
        return _internal_error(getattr(args, "command", None), e, getattr(args, "debug", False))


def new(name: str) -> int:
    """Write NAME.deriv (NAME may end in .deriv) from the commented template; never overwrite a file."""
    path = Path(name if name.endswith(".deriv") else f"{name}.deriv")
    if not path.stem.isidentifier():
        raise UsageError(f"{name}: a derivation's name is letters, digits and underscores")
    if path.exists():
        raise UsageError(f"{path} exists: choose another name")
    if not path.parent.is_dir():
        raise UsageError(f"{name}: no folder {path.parent}")
    template = resources.files("verify").joinpath("template.deriv").read_text(encoding="utf-8")
    path.write_text(template.replace("NAME", path.stem, 1), encoding="utf-8")
    print(f"wrote {path}; edit it, then: gradverify check {path}")
    return 0


def _codegen(d: Derivation, backend: str, saved: bool = False) -> int:
    """Print the generated source; first check the derivation with the exact oracle (a fraction of a
    second), and when a gradient is wrong say so on stderr and exit 1: the code computes the formula as
    written, and a script writing it to a file should not take it for verified."""
    from .check import check
    from .codegen import display_source

    source = display_source(d, backend, saved)
    wrong = [g for g in check(d, oracles=("exact",)).derivations[0].gradients if g.status == "wrong"]
    for g in wrong:
        print(
            f"warning: {d.name}: {g.name} is wrong (exact oracle): {g.diagnosis}; "
            "this code computes it as written",
            file=sys.stderr,
        )
    print(source, end="")
    return 1 if wrong else 0


def _json_target(where: str | None) -> None:
    """A --json FILE that cannot be written is a bad argument, said before anything runs (not after the
    verdict, as a failure of the tool)."""
    if not where or where == "-":
        return
    path = Path(where)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(f"--json {where}: is a directory")
    if not folder.is_dir():
        raise UsageError(f"--json {where}: no folder {folder}")
    if not os.access(folder, os.W_OK) or path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"--json {where}: not writable")


def _dispatch(args, own_process: bool = False) -> int:
    _json_target(getattr(args, "json", None))
    if getattr(args, "oracle", None):
        args.oracle = list(dict.fromkeys(args.oracle))  # `--oracle exact fd --oracle exact` runs exact once
    if args.command == "all":
        found = paths()
        if not found:  # a broken install: exiting 0 here would say the catalogue was checked
            print(f"{PROG}: error: no catalogue derivations in {folder()}", file=sys.stderr)
            return 4
        with _workers(args, own_process) as workers:
            return _run_checks([str(p) for p in found], args, workers)
    if args.command == "check":
        if args.watch and (args.json or args.prove):
            raise UsageError("--watch prints each check; --json and --prove do not go with it")
        with _workers(args, own_process) as workers:
            if args.watch:
                from .watch import watch

                return watch(list(args.files), args.oracle, args.seed, workers)
            return _run_checks(list(args.files), args, workers)
    if args.command == "prove":  # the sampled check beside each proof: the exact oracle's verdict
        args.oracle = ["exact"]
        return _run_checks(list(args.targets) or [str(p) for p in paths()], args)
    if args.command == "list":
        for path in paths():
            d = load(path)
            print(f"{d.name:28} {d.title}")
        return 0
    if args.command == "new":
        return new(args.name)
    if args.command == "show":
        d = load(args.target)
        if args.latex:
            from .latex import derivation_latex

            print(derivation_latex(d))
        else:
            print(show_text(d))
        return 0
    if args.command == "codegen":
        return _codegen(load(args.target), args.backend, args.saved)
    if args.command == "latex":
        from .latex import main as latex_main

        with _workers(args, own_process) as workers:
            return latex_main(args, workers, _progress("latex"))
    if args.command == "code":
        return _code(args)
    if args.command == "bench":
        from .bench import main as bench_main

        return bench_main(args)
    raise UsageError(f"unknown command {args.command}")
