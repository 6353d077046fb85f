"""Grammar-aware fuzzing of derivation files, and a bounded runner for them.

The grammar writes derivation files the way people (and their typos) do: headers, sections, forward and
gradient statements over consistently indexed tensors, every operator, function and domain of the
language, literals from 0 to 1e999999, deep nesting, long sums, power towers, and then the hostile
edges: mutated text, bytes that are not UTF-8, NUL, BOM, CR, form feeds and U+2028. It draws from a
`Choices` object, so one grammar serves both Hypothesis (shrinking, in the test suite) and a plain seeded
`random.Random` (the campaign below).

Each case runs `python -m verify check FILE` in a worker process with a CPU-time bound (the worker is
killed when a case runs over it) and a memory bound (killed when its resident memory passes it), and
the outcome is judged by issue 11's acceptance: exit status 0, 1, 2 or 3 only (4 is a bug of the tool),
no traceback, every error a `file:line:col: message` line with a real position.

The campaign (about an hour and a half on two cores; a summary and every failing file under --out):

    nice python tests/fuzz.py --cases 10000 --jobs 2 --out /tmp/fuzz

Workers run the cases in-process (the CLI's `main`, output captured) so that a case does not pay for
importing JAX and PyTorch again; `--fresh` runs every case as its own `python -m verify` process instead.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED_STATUS = (0, 1, 2, 3)
TIMEOUT_S = 20.0  # the bound on a case's CPU time (wall time varies with what else the machine runs)
# a case is killed when its CPU time passes the bound; one still running after WALL_FACTOR * TIMEOUT_S
# seconds of wall time is killed too (a hang that waits without computing), far enough out that a case
# starved by the machine's other work is judged by its CPU time
WALL_FACTOR = 10
COMPARING_FACTOR = 3  # the harness's own comparison of the generated code may take this multiple
MEMORY_BYTES = 4 << 30
CASES_PER_WORKER = 150  # a worker is replaced after this many cases: the tool's caches only grow


# ---------------------------------------------------------------------------------------------------
# Choices: where the grammar's decisions come from.


class Choices:
    """A source of decisions. `integer(lo, hi)` inclusive, `choice(seq)`, `chance(p)`."""

    def integer(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def choice(self, options: Sequence):
        return options[self.integer(0, len(options) - 1)]

    def chance(self, p: float) -> bool:
        return self.integer(0, 999) < p * 1000


class RandomChoices(Choices):
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def integer(self, lo, hi):
        return self.rng.randint(lo, hi)


class HypothesisChoices(Choices):
    """Decisions drawn from Hypothesis's `data` object (st.data()), so that failures shrink."""

    def __init__(self, data):
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def integer(self, lo, hi):
        return self.data.draw(self.st.integers(lo, hi))


# ---------------------------------------------------------------------------------------------------
# The grammar.

INDEX_LETTERS = "nijkmpq"
NAMES_BY_ARITY = {
    0: ["a", "c", "eps", "s"],
    1: ["b", "g", "v", "gamma"],
    2: ["x", "W", "t", "u"],
    3: ["z", "K3"],
}
FUNCTIONS_1 = ["exp", "log", "sqrt", "tanh", "sigmoid", "softplus", "abs"]
LITERALS = ["0", "1", "2", "3", "0.5", "1e-5", "2.5", "1_000", "0x10", "1e-3", "100", "0.1"]
HOSTILE_LITERALS = [
    "1e999999", "1e999", "1e308", "1e309", "1e-300", "1e-400", "10**10**10", "2**2**2**2**2", "9" * 120,
    "1e300", "0.0", "(0/0)", "(1/0)", "1j", "True", "'s'", "None", "1." + "3" * 200, "10**400", "(-8)**(1/3)",
    "(1 + 1e-10)**(10**12)", "(10 + 1e10)", "1e30", "1e-30", "(-1)**0.5",
]  # fmt: skip
COMPARISONS = ["<", "<=", ">", ">=", "==", "!="]
DOMAINS = ["normal", "positive", "uniform(0.5, 2)", "uniform(-1, 1)", "simplex({k})", "onehot({k})"]
HOSTILE_DOMAINS = ["uniform(1e308, 1e309)", "uniform(2, 1)", "uniform(1e-300, 2e-300)", "uniform(-1e300, 1e300)",
                   "uniform(0, 0)", "simplex(q)", "onehot()", "uniform(1e-9, 2e-9)", "banana"]  # fmt: skip
TITLE_PIECES = ["Batch norm", "a \"quoted\" title", '"""', "'''", "\u2028", "\x0c", "é", "日本", "\\", "{x}",
                "__import__('os')", "\t", "# not a comment", "[forward]", "title: again"]  # fmt: skip


@dataclass
class Tensor:
    name: str
    letters: str  # one index letter per axis: the file uses them consistently


class Grammar:
    """Writes one derivation file from a Choices object."""

    def __init__(self, c: Choices, hostile: float):
        self.c = c
        self.hostile = hostile  # the chance of each hostile choice
        self.tensors: dict[str, Tensor] = {}
        self.forward: list[str] = []
        self.nodes = 0
        self.bound: set[str] = set()  # indices summed by enclosing sums, at the point being written

    def bad(self) -> bool:
        return self.c.chance(self.hostile)

    # -- expressions ----------------------------------------------------------------------------------

    def literal(self) -> str:
        if self.bad():
            return self.c.choice(HOSTILE_LITERALS)
        return self.c.choice(LITERALS)

    def new_input(self, letters: str, readable: list[str]) -> Tensor:
        pool = [n for n in NAMES_BY_ARITY.get(len(letters), []) if n not in self.tensors]
        name = self.c.choice(pool) if pool and self.c.chance(0.8) else f"w{len(self.tensors)}"
        t = Tensor(name, letters)
        self.tensors[name] = t
        readable.append(name)
        return t

    def subscripted(self, t: Tensor) -> str:
        order = t.letters
        if self.bad():  # a transposed or wrong subscript
            order = self.c.choice([order[::-1], order + "n", order[1:], "".join(reversed(order))])
        if not order:
            return t.name
        return f"{t.name}[{', '.join(order)}]"

    def expr(self, free: str, readable: list[str], depth: int) -> str:
        """An expression whose free indices are exactly `free`."""
        self.nodes += 1
        if depth <= 0 or self.nodes > 60 or self.c.chance(0.25):
            return self.cover(free, readable)
        kind = self.c.integer(0, 13)
        d = depth - 1
        if kind <= 3:
            op = self.c.choice(["+", "-", "*", "/", "*"])
            right_free = free if op in "+-" else self.subset(free)
            return f"{self.wrap(self.expr(free, readable, d))} {op} {self.wrap(self.expr(right_free, readable, d))}"
        if kind == 4:
            return f"{self.c.choice(FUNCTIONS_1)}({self.expr(free, readable, d)})"
        if kind == 5:
            spare = [x for x in INDEX_LETTERS if x not in free and x not in self.bound]
            if not spare:
                return self.cover(free, readable)
            k = self.c.choice(spare)
            extra = k + (
                self.c.choice([x for x in spare if x != k]) if len(spare) > 1 and self.c.chance(0.2) else ""
            )
            self.bound |= set(extra)
            inner = self.expr(free + extra, readable, d)
            self.bound -= set(extra)
            return f"sum({inner}, {', '.join(extra)})"
        if kind == 6:
            cond = f"{self.expr(self.subset(free) or free, readable, d)} {self.c.choice(COMPARISONS)} {self.condition_rhs(free, readable, d)}"
            other = self.c.choice(["0", self.expr(free, readable, d)])
            return f"where({cond}, {self.expr(free, readable, d)}, {other})"
        if kind == 7:
            fn = self.c.choice(["max", "min"])
            return f"{fn}({self.expr(free, readable, d)}, {self.c.choice(['0', self.expr(self.subset(free), readable, d)])})"
        if kind == 8:
            power = self.c.choice(
                ["2", "3", "-1", "0.5", "(1/3)", "-2"]
                + (["x[n, i]", "1e300", "(2**2**2**2)"] if self.bad() else [])
            )
            return f"{self.wrap(self.expr(free, readable, d))}**{power}"
        if kind == 9:
            return f"-{self.wrap(self.expr(free, readable, d))}"
        if kind == 10 and free:
            i = self.c.choice(free)
            j = self.c.choice(free + (self.c.choice(INDEX_LETTERS) if self.bad() else ""))
            return f"delta({i}, {j}) * {self.wrap(self.expr(free, readable, d))}"
        if kind == 11:
            size = self.c.choice(["N", "I", "J", "K"])
            return f"{self.wrap(self.expr(free, readable, d))} / {size}"
        if kind == 12 and self.bad():
            return self.monster(free, readable)
        return f"{self.wrap(self.expr(free, readable, d))} * {self.literal()}"

    def condition_rhs(self, free, readable, depth) -> str:
        if self.bad():
            return self.c.choice(["where(x[n, i] > 0, 1, 2)", "1", self.literal()])
        return self.c.choice(["0", "1", "0.5", self.expr(self.subset(free), readable, depth)])

    def monster(self, free: str, readable: list[str]) -> str:
        """The inputs issue 11 measured: towers, long sums, deep nesting, deep unary minus."""
        base = self.cover(free, readable)
        kind = self.c.integer(0, 7)
        n = self.c.choice([5, 40, 200, 600, 3000])
        if kind == 0:
            return " + ".join([base] * n)
        if kind == 1:
            return "-" * min(n, 6000) + base
        if kind == 2:
            return base + "**2" * min(n, 3000)
        if kind == 3:
            depth = self.c.choice([5, 12, 20, 60])
            text = base
            spare = [x for x in INDEX_LETTERS if x not in free]
            for k in range(depth):
                letter = spare[k % len(spare)] if spare else "n"
                text = f"sum({text} * {self.cover(free + letter, readable)}, {letter})"
            return text
        if kind == 4:
            return "exp(" * min(n, 300) + base + ")" * min(n, 300)
        if kind == 5:
            return "(" * min(n, 300) + base + ")" * min(n, 300)
        if kind == 6:
            return f"where(where({base} > 0, {base}, 1) > 0.5, {base}, 0)"
        return f"({base}) * (10 + 1e10)"

    def cover(self, free: str, readable: list[str]) -> str:
        """A product of tensors whose indices are exactly `free` (known tensors first: every new input
        risks a size that no statement ties to the others), or a scalar when `free` is empty."""
        if not free:
            scalars = [t for t in readable if not self.tensors[t].letters]
            if not scalars and self.may_add_inputs and self.c.chance(0.5):
                scalars = [self.new_input("", readable).name]
            if scalars and self.c.chance(0.7):
                return self.c.choice(scalars)
            return self.literal()
        parts, left = [], set(free)
        while left:
            letters = {t: set(self.tensors[t].letters) for t in readable}
            fits = [t for t in readable if letters[t] and letters[t] <= set(free) and letters[t] & left]
            # a tensor with more indices, its others summed: mu[j] = sum(x[n, j], n) ties J to x's axis
            summed = [t for t in readable if letters[t] & left and not (letters[t] - set(free)) & self.bound]
            if fits and (not self.may_add_inputs or self.c.chance(0.9)):
                t = self.tensors[self.c.choice(fits)]
                parts.append(self.subscripted(t))
            elif summed and (not self.may_add_inputs or self.c.chance(0.9)):
                t = self.tensors[self.c.choice(summed)]
                extra = [x for x in t.letters if x not in free]
                parts.append(
                    f"sum({self.subscripted(t)}, {', '.join(extra)})" if extra else self.subscripted(t)
                )
            elif self.may_add_inputs:
                take = sorted(left, key=INDEX_LETTERS.index)[: self.c.integer(1, min(2, len(left)))]
                t = self.new_input("".join(take), readable)
                parts.append(self.subscripted(t))
            else:
                return self.literal()
            left -= set(t.letters)
        return " * ".join(parts)

    def subset(self, free: str) -> str:
        return "".join(x for x in free if self.c.chance(0.6))

    def wrap(self, text: str) -> str:
        return text if re.fullmatch(r"[\w\[\], ]+", text) else f"({text})"

    # -- statements and sections ----------------------------------------------------------------------

    def target_letters(self) -> str:
        count = self.c.choice([0, 1, 2, 2, 2, 3])
        letters = list(INDEX_LETTERS[:4])
        return (
            "".join(self.c.choice(letters) for _ in range(count))
            if self.bad()
            else "".join(sorted(set(self.c.choice(letters) for _ in range(count)), key=INDEX_LETTERS.index))
        )

    def subscript(self, name: str, letters: str) -> str:
        return f"{name}[{', '.join(letters)}]" if letters else name

    def derivation(self) -> str:
        c = self.c
        lines: list[str] = []
        for key in ("title", "source", "notes"):
            if c.chance(0.5):
                lines.append(f"{key}: {self.header_text()}")
                if c.chance(0.2):
                    lines.append("  " + self.header_text())
        if self.bad():
            lines.append(c.choice(["[backward]", "junk before sections", "title = x", "[forward"]))
        sections = ["forward", "gradients", "inputs", "sizes"]
        if self.bad():
            c.choice(
                [
                    lambda: sections.reverse(),
                    lambda: sections.remove("gradients"),
                    lambda: sections.append("forward"),
                ]
            )()
        forward_text = self.forward_section()
        body = {
            "forward": forward_text,
            "gradients": self.gradients_section(),
            "inputs": self.inputs_section(),
            "sizes": self.sizes_section(),
        }
        for name in sections:
            if name in ("inputs", "sizes") and not body[name] and c.chance(0.7):
                continue
            lines.append(f"[{name}]")
            lines.extend(body[name])
            if c.chance(0.3):
                lines.append("")
        return "\n".join(self.comments(lines)) + "\n"

    def header_text(self) -> str:
        if self.bad():
            return "".join(self.c.choice(TITLE_PIECES) for _ in range(self.c.integer(1, 4)))
        return self.c.choice(["Linear layer", "A test", "softmax (rows)", "see Ioffe & Szegedy (2015)"])

    def forward_section(self) -> list[str]:
        c = self.c
        self.may_add_inputs = True
        readable: list[str] = []
        count = c.integer(1, 4) if not self.bad() else c.choice([0, 1, 8, 30, 250])
        out = []
        for k in range(count):
            last = k == count - 1
            name = (
                "y"
                if last
                else c.choice(["h", "mu", "var", "xhat", "p", "L"]) + (str(k) if c.chance(0.5) else "")
            )
            if name in self.tensors:
                name = f"f{k}"
            letters = self.target_letters()
            rhs = self.expr(letters, readable, c.integer(0, 5))
            self.nodes = 0
            self.tensors[name] = Tensor(name, letters)
            readable.append(name)
            out.append(f"{self.subscript(name, letters)} = {rhs}")
            self.forward.append(name)
        self.may_add_inputs = False
        self.inputs = [n for n in self.tensors if n not in self.forward]
        return out

    def gradients_section(self) -> list[str]:
        c = self.c
        if not self.forward:
            return ["dx[n, i] = dy[n, i]"]
        output = self.tensors[self.forward[-1]]
        readable = list(self.tensors)
        if output.letters:
            self.tensors["d" + output.name] = Tensor("d" + output.name, output.letters)
            readable.append("d" + output.name)
        out = []
        wanted = [n for n in self.tensors if n in self.inputs or n in self.forward[:-1]]
        c_count = c.integer(1, max(1, len(wanted)))
        for name in wanted[:c_count]:
            t = self.tensors[name]
            if c.chance(0.2):  # a helper first
                helper = f"g{len(out)}"
                rhs = self.expr(t.letters, readable, c.integer(0, 3))
                self.nodes = 0
                self.tensors[helper] = Tensor(helper, t.letters)
                readable.append(helper)
                out.append(f"{self.subscript(helper, t.letters)} = {rhs}")
            rhs = self.expr(t.letters, readable, c.integer(0, 4))
            self.nodes = 0
            out.append(f"{self.subscript('d' + name, t.letters)} = {rhs}")
        if self.bad():
            out.append(
                c.choice(
                    [
                        "dq[n] = dy[n]",
                        "dy[n, i] = 1",
                        "d = 2",
                        "dx[n,i] = dy[n,i] +",
                        "dx[n, i] = foo(x[n, i])",
                    ]
                )
            )
        return out

    def inputs_section(self) -> list[str]:
        c = self.c
        out = []
        for name in self.inputs:
            t = self.tensors[name]
            if not c.chance(0.4):
                continue
            if not t.letters and c.chance(0.5):
                out.append(f"{name} = {self.literal()}")
            else:
                k = c.choice(t.letters) if t.letters else "n"
                domain = c.choice(HOSTILE_DOMAINS if self.bad() else DOMAINS)
                out.append(f"{name}: {domain.format(k=k)}")
        return out

    def sizes_section(self) -> list[str]:
        c = self.c
        out = []
        used = sorted({x for t in self.tensors.values() for x in t.letters}, key=INDEX_LETTERS.index)
        for letter in used if not self.bad() else INDEX_LETTERS[:4]:
            if c.chance(0.15):
                value = c.choice(
                    ["1", "2", "3", "5", "32"]
                    + (["33", "100000", "10**12", "0", "-1", "2.5", "1e999"] if self.bad() else [])
                )
                out.append(f"{letter.upper()} = {value}")
        return out

    def comments(self, lines: list[str]) -> list[str]:
        out = []
        for line in lines:
            if self.c.chance(0.05):
                out.append("# " + self.c.choice(["a comment", "form\x0cfeed", "é", "x = 1"]))
            if self.c.chance(0.04):
                line += "  # trailing" + ("\x0c" if self.bad() else "")
            out.append(line)
        return out


def mutate(c: Choices, text: str) -> str:
    """A typo's worth of damage: characters or lines deleted, doubled, swapped or inserted."""
    for _ in range(c.integer(1, 4)):
        if not text:
            break
        k = c.integer(0, len(text) - 1)
        kind = c.integer(0, 4)
        if kind == 0:
            text = text[:k] + text[k + 1 :]
        elif kind == 1:
            text = text[:k] + c.choice("[](),=*+-/:#\n \t0123456789nijxWydsume.'\"\\") + text[k:]
        elif kind == 2:
            lines = text.split("\n")
            j = c.integer(0, len(lines) - 1)
            lines.insert(j, lines[c.integer(0, len(lines) - 1)])
            text = "\n".join(lines)
        elif kind == 3:
            lines = text.split("\n")
            del lines[c.integer(0, len(lines) - 1)]
            text = "\n".join(lines)
        else:
            text = text[:k] + text[k : k + 8][::-1] + text[k + 8 :]
    return text


def encode(c: Choices, text: str) -> bytes:
    """The file's bytes: UTF-8 mostly; sometimes CRLF or CR line ends, a BOM, a NUL, a form feed or
    U+2028, or bytes that are not UTF-8."""
    kind = c.integer(0, 12)
    if kind == 0:
        text = text.replace("\n", "\r\n")
    elif kind == 1:
        text = text.replace("\n", "\r")
    elif kind == 2:
        text = "\ufeff" + text
    elif kind == 3:
        k = c.integer(0, len(text))
        text = (
            text[:k]
            + c.choice(["\x00", "\x0c", "\u2028", "\x0b", "\x85", "\u00a0", "\t", "\ud800"])
            + text[k:]
        )
    data = text.encode("utf-8", errors="surrogatepass")
    if kind == 4:
        k = c.integer(0, len(data))
        data = data[:k] + c.choice([b"\xff", b"\xc3", b"\xe9t\xe9", b"\x80\x80"]) + data[k:]
    elif kind == 5:
        data = text.encode("utf-16")
    return data


def case(c: Choices) -> bytes:
    """One fuzzed derivation file."""
    style = c.integer(0, 19)
    if style <= 9:
        text = Grammar(c, hostile=0.01).derivation()
    elif style <= 14:
        text = Grammar(c, hostile=0.15).derivation()
    elif style <= 17:
        text = mutate(c, Grammar(c, hostile=0.05).derivation())
    else:
        text = "".join(c.choice(TOKENS) for _ in range(c.integer(1, 80)))
    return encode(c, text) if c.chance(0.2) else text.encode("utf-8")


TOKENS = [
    "[forward]\n", "[gradients]\n", "[inputs]\n", "[sizes]\n", "title: t\n", "\n", "    ",
    "y", "x", "W", "b", "dy", "dx", "dW", "mu", "N", "I", "n", "i", "j", "k",
    "[", "]", "(", ")", ",", " = ", ": ", "+", "-", "*", "/", "**", "<", ">=", "==",
    "sum(", "exp(", "log(", "sqrt(", "max(", "where(", "delta(", "sigmoid(", "abs(",
    "0", "1", "2.5", "1e-5", "normal", "simplex(k)", "onehot(i)", "uniform(0, 1)", "#", "'s'", ".T", "lambda",
]  # fmt: skip


def seeded_case(seed: int) -> bytes:
    return case(RandomChoices(seed))


# ---------------------------------------------------------------------------------------------------
# Running cases with bounds, and judging them.

POSITION = re.compile(r"(?P<line>\d+):(?P<col>\d+): \S")  # after "FILE:"


@dataclass
class Outcome:
    """One case's run: exit status (None when killed), wall and CPU seconds, output, and what was wrong
    with it."""

    path: str
    status: int | None
    seconds: float
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0
    codegen: list[str] = field(
        default_factory=list
    )  # generated code unlike the exact values; show/codegen failing
    problem: str = ""  # empty when the run meets the acceptance

    def judge(self, timeout: float) -> Outcome:
        self.problem = problem(self, timeout)
        return self


def problem(o: Outcome, timeout: float) -> str:
    if o.status is None:
        return o.stderr or "killed"
    if o.cpu_seconds > timeout or o.seconds > timeout * WALL_FACTOR:
        return f"took {o.cpu_seconds:.1f} s of CPU, {o.seconds:.1f} s of wall time"
    if "Traceback" in o.stdout + o.stderr:
        return "traceback"
    if o.status not in ALLOWED_STATUS:
        return f"exit status {o.status}: {o.stderr.strip().splitlines()[-1] if o.stderr.strip() else ''}"
    if o.codegen:
        return "generated code or another command failed: " + "; ".join(o.codegen)[:300]
    if o.status == 2:
        errors = [line for line in o.stderr.splitlines() if line.startswith(o.path + ":")]
        if not errors:
            return "exit 2 without a file:line:col error: " + o.stderr.strip()[:200]
        for line in errors:
            m = POSITION.match(line[len(o.path) + 1 :])
            if not m or int(m["line"]) < 1 or int(m["col"]) < 1:
                return "error without a position: " + line[:200]
    return ""


def _run_in_process(command: str | list[str], oracles: list[str]) -> tuple[int, str, str]:
    """`python -m verify check PATH` (or the given argument list) in this process, output captured."""
    from verify.cli import main

    out, err = io.StringIO(), io.StringIO()
    args = (
        command
        if isinstance(command, list)
        else ["check", command] + [a for o in oracles for a in ("--oracle", o)]
    )
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(args)
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else 1
        except BaseException as e:  # what escapes main: the CLI would print a traceback
            import traceback

            traceback.print_exc()
            status = 1 if not isinstance(e, KeyboardInterrupt) else 130
    return status, out.getvalue(), err.getvalue()


def worker(oracles: list[str]) -> None:
    """Reads case paths from stdin, one a line; writes one JSON outcome a line to the real stdout."""
    import warnings

    warnings.simplefilter("ignore")  # floating-point warnings of oracles are not what is judged here
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    with contextlib.suppress(ImportError):  # a case's time is its own, not that of importing frameworks
        import jax  # noqa: F401
        import torch  # noqa: F401
    channel.write("ready\n")
    for line in sys.stdin:
        path = line.rstrip("\n")
        start, cpu = time.perf_counter(), time.process_time()
        status, out, err = _run_in_process(path, oracles)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        # the check is over: the bounds judge the tool, so the harness's own comparisons that follow
        # start a clock of their own
        channel.write(json.dumps({"checked": True}) + "\n")
        result = {
            "status": status,
            "seconds": seconds,
            "cpu_seconds": cpu,
            "stdout": out[-4000:],
            "stderr": err[-4000:],
            "codegen": _also(path) if status in (0, 1, 3) else [],
        }
        channel.write(json.dumps(result) + "\n")


def _also(path: str) -> list[str]:
    """What else must hold for a derivation that checks: its generated code computes its statements,
    and the other commands print it."""
    try:
        return generated_code_mismatches(path) + other_commands(path)
    except Exception as e:  # the harness's own failure, shown as the case's problem
        return [f"fuzz harness: {type(e).__name__}: {e}"]


def other_commands(path: str) -> list[str]:
    """`show`, `show --latex` and `codegen` for every backend, on a derivation that checks: each must
    exit 0 (they print what `check` accepted), but codegen exits 1 after its warning when the exact
    oracle finds a gradient wrong, and 2 with `file:line:col` when a statement has no code."""
    out = []
    for args in (
        ["show"],
        ["show", "--latex"],
        *(["codegen", "--backend", b] for b in ("numpy", "jax", "torch")),
    ):
        status, _, err = _run_in_process([args[0], path, *args[1:]], [])
        warned = args[0] == "codegen" and status == 1 and "is wrong (exact oracle)" in err
        # codegen may refuse a file that checks (a division by zero once helpers are put in): exit 2 at a place
        refused = args[0] == "codegen" and status == 2 and POSITION.match(err.strip()[len(path) + 1 :] or "")
        if status != 0 and not warned and not refused:
            out.append(f"{' '.join(args)} exited {status}: {err.strip()[-150:]}")
    return out


EQUAL = 3  # two sizes made equal, as tests/test_codegen.py does


def generated_code_mismatches(path: str, backends=("numpy", "torch")) -> list[str]:
    """Where the generated forward and backward of a derivation that checks differ from the exact
    evaluation of the same statements by more than float64's rounding can explain (`verify.rounding`'s
    bound on each value, times the framework oracles' 16, where it is finite; 1e-6 of the largest value
    besides): at the sizes the check draws and with each pair of sizes equal. This judges the code
    generator, not the formulas: right or wrong, a statement must be computed as written. The bound
    matters where float64 decides a comparison the other way (sigmoid(39) == 1 holds in float64 only)."""
    import numpy as np

    from verify import codegen, rounding, sampling
    from verify.catalogue import load
    from verify.model import DerivationError

    try:
        d = load(path)
    except Exception as e:
        return [f"loading again: {type(e).__name__}: {e}"]
    patterns = [{}] + [{a: EQUAL, b: EQUAL} for a, b in itertools.combinations(d.sizes, 2)][:5]
    out = []
    for pattern in patterns:
        if any(d.fixed_sizes.get(name, EQUAL) != EQUAL for name in pattern):
            continue
        dp = replace(d, fixed_sizes={**d.fixed_sizes, **pattern})
        try:
            sample = sampling.draw(dp, seed=7)
        except Exception:  # no valid sample at these sizes: nothing to compare
            continue
        where = "=".join(pattern) or "distinct sizes"
        try:
            bounds = rounding.of(dp, sample).values
        except Exception as e:
            out.append(f"rounding bounds at {where} raised {type(e).__name__}: {str(e)[:100]}")
            continue
        for backend in backends:
            try:
                values = _to_backend(sample.values, backend)
                gen = codegen.compile_derivation(dp, backend)
                fwd = gen.forward(**values)
                got = {**fwd, **gen.backward(**values, **fwd)}
            except DerivationError as e:
                if e.line < 1 or e.column < 1:
                    out.append(f"{backend} at {where}: an error without a position: {e}")
                break  # code generation refused the file at a place in it: its error, as `verify codegen` says
            except Exception as e:
                out.append(f"{backend} at {where} raised {type(e).__name__}: {str(e)[:100]}")
                continue
            for name, value in got.items():
                want = np.array([_real(x) for x in np.ravel(sample.forward[name])]).reshape(
                    np.shape(sample.forward[name])
                )
                value = np.asarray(value.detach().numpy() if hasattr(value, "detach") else value, dtype=float)
                if value.shape != want.shape:
                    out.append(f"{name} ({backend}, {where}): shape {value.shape}, exact {want.shape}")
                    continue
                bound = np.broadcast_to(np.asarray(bounds[name], dtype=float), want.shape)
                finite = np.isfinite(want) & np.isfinite(bound)
                scale = max(1.0, float(np.max(np.abs(want[finite]), initial=0.0)))
                if np.any(np.abs(value[finite] - want[finite]) > 1e-6 * scale + 16 * bound[finite]):
                    err = float(np.max(np.abs(value[finite] - want[finite])))
                    out.append(f"{name} ({backend}, {where}): off by {err:.3g} (scale {scale:.3g})")
    return out


def _real(x) -> float:
    """An exact value as a float; NaN (not compared) where it is not real."""
    try:
        return float(x)
    except TypeError:
        return float("nan")


def _to_backend(values: dict, backend: str) -> dict:
    import numpy as np

    if backend == "torch":
        import torch

        return {k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in values.items()}
    return {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}


def _cpu(pid: int) -> float:
    """The CPU seconds (user and system) process `pid` has used so far; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class Worker:
    """A worker process with bounds: a case over `timeout` seconds or `memory` bytes kills it."""

    def __init__(self, oracles: list[str], timeout: float, memory: int):
        self.oracles, self.timeout, self.memory = oracles, timeout, memory
        self.proc = None
        self.done = 0

    def start(self):
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", *[a for o in self.oracles for a in ("--oracle", o)]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, env=env,
        )  # fmt: skip
        ready = self.proc.stdout.readline()  # after the worker's imports
        if ready != b"ready\n":
            raise RuntimeError(f"fuzz worker did not start: {ready!r}")
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.done = 0
        self.buffer = b""

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def submit(self, path: str):
        if self.proc is None or self.done >= CASES_PER_WORKER:
            self.stop()
            self.start()
        self.path, self.started, self.stage = path, time.perf_counter(), "checking"
        self.cpu_start = _cpu(self.proc.pid)
        self.proc.stdin.write(path.encode() + b"\n")
        self.proc.stdin.flush()
        self.done += 1

    def poll(self) -> Outcome | None:
        """The outcome of the case submitted, once there is one."""
        try:
            self.buffer += os.read(self.proc.stdout.fileno(), 1 << 20)
        except BlockingIOError:
            pass
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            r = json.loads(line)
            if r.get("checked"):
                self.started, self.stage = time.perf_counter(), "comparing its generated code"
                self.cpu_start = _cpu(self.proc.pid)
                continue
            return Outcome(
                self.path, r["status"], r["seconds"], r["stdout"], r["stderr"], r["cpu_seconds"], r["codegen"]
            )
        elapsed = time.perf_counter() - self.started
        cpu = _cpu(self.proc.pid) - self.cpu_start
        bound = self.timeout * (COMPARING_FACTOR if self.stage != "checking" else 1)
        why = None
        if self.proc.poll() is not None:
            why = f"worker died (signal or exit {self.proc.returncode})"
        elif cpu > bound:
            why = f"killed after {bound:.0f} s of CPU time {self.stage}"
        elif elapsed > self.timeout * WALL_FACTOR:
            why = f"killed after {self.timeout * WALL_FACTOR:.0f} s of wall time {self.stage}"
        elif _rss(self.proc.pid) > self.memory:
            why = f"killed above {self.memory >> 20} MiB of memory"
        if why is None:
            return None
        self.stop()
        return Outcome(self.path, None, elapsed, "", why)


def run_fresh(path: str, oracles: list[str], timeout: float) -> Outcome:
    """One case as its own `python -m verify check` process, as a user runs it (imports included)."""
    start = time.perf_counter()
    args = [sys.executable, "-m", "verify", "check", path] + [a for o in oracles for a in ("--oracle", o)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, cwd=ROOT)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if _cpu(proc.pid) > timeout or time.perf_counter() - start > timeout * WALL_FACTOR:
                proc.kill()
                os.wait4(proc.pid, 0)
                why = (
                    f"killed after {timeout:.0f} s of CPU time or {timeout * WALL_FACTOR:.0f} s of wall time"
                )
                return Outcome(path, None, time.perf_counter() - start, "", why)
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = [f.read().decode("utf-8", "replace")[-4000:] for f in (out, err)]
    cpu = usage.ru_utime + usage.ru_stime
    return Outcome(path, proc.returncode, time.perf_counter() - start, *text, cpu)


def run_cases(
    paths: Iterable[str], jobs: int = 2, oracles: Sequence[str] = (), timeout: float = TIMEOUT_S,
    memory: int = MEMORY_BYTES, fresh: bool = False, progress=None,
) -> list[Outcome]:  # fmt: skip
    """Run every case under the bounds, `jobs` at a time; outcomes judged, in the order of `paths`."""
    oracles = list(oracles)
    pending = list(enumerate(paths))
    results: dict[int, Outcome] = {}
    if fresh:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(jobs) as pool:
            futures = {k: pool.submit(run_fresh, p, oracles, timeout) for k, p in pending}
            for k, f in futures.items():
                results[k] = f.result().judge(timeout)
                if progress:
                    progress(results[k])
        return [results[k] for k in sorted(results)]
    workers = [Worker(oracles, timeout, memory) for _ in range(jobs)]
    busy: dict[int, int] = {}  # worker -> case
    try:
        while pending or busy:
            for w, wk in enumerate(workers):
                if w not in busy and pending:
                    k, path = pending.pop(0)
                    wk.submit(path)
                    busy[w] = k
            time.sleep(0.01)
            for w in list(busy):
                o = workers[w].poll()
                if o is not None:
                    results[busy.pop(w)] = o.judge(timeout)
                    if progress:
                        progress(o)
    finally:
        for wk in workers:
            wk.stop()
    return [results[k] for k in sorted(results)]


def write_cases(folder: Path, seeds: Iterable[int]) -> list[str]:
    paths = []
    for seed in seeds:
        path = folder / f"case{seed:06d}.deriv"
        path.write_bytes(seeded_case(seed))
        paths.append(str(path))
    return paths


def summary(outcomes: list[Outcome]) -> dict:
    times = sorted(o.seconds for o in outcomes)
    cpu = sorted(o.cpu_seconds for o in outcomes)
    slowest = sorted(outcomes, key=lambda o: -o.cpu_seconds)[:5]
    return {
        "cases": len(outcomes),
        "exit_status": dict(sorted(Counter(str(o.status) for o in outcomes).items())),
        "failures": sum(bool(o.problem) for o in outcomes),
        "problems": dict(Counter(o.problem.split(":")[0] for o in outcomes if o.problem).most_common()),
        "wall_s_median": times[len(times) // 2] if times else 0.0,
        "wall_s_max": times[-1] if times else 0.0,
        "cpu_s_median": cpu[len(cpu) // 2] if cpu else 0.0,
        "cpu_s_max": cpu[-1] if cpu else 0.0,
        "cpu_over_5_s": sum(t > 5 for t in cpu),
        "slowest": [
            f"{Path(o.path).name}: {o.cpu_seconds:.1f} s CPU, {o.seconds:.1f} s wall" for o in slowest
        ],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S)
    parser.add_argument(
        "--oracle", action="append", default=[], help="as verify check --oracle (default: all)"
    )
    parser.add_argument("--out", type=Path, help="folder for the cases, the failures and summary.json")
    parser.add_argument("--fresh", action="store_true", help="each case as its own python -m verify process")
    parser.add_argument("--rerun", type=Path, help="a file of case paths, one a line, to run again instead")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.oracle)
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="gradverify-fuzz-"))
    (out / "cases").mkdir(parents=True, exist_ok=True)
    if args.rerun:
        paths = args.rerun.read_text().split()
    else:
        paths = write_cases(out / "cases", range(args.first_seed, args.first_seed + args.cases))
    done = Counter()
    start = time.perf_counter()

    def progress(o: Outcome):
        done["n"] += 1
        done["bad"] += bool(o.problem)
        if o.problem:
            print(f"FAIL {o.path}: {o.problem}", flush=True)
        if done["n"] % 250 == 0:
            print(
                f"{done['n']} cases, {done['bad']} failing, {time.perf_counter() - start:.0f} s", flush=True
            )

    outcomes = run_cases(paths, args.jobs, args.oracle, args.timeout, fresh=args.fresh, progress=progress)
    report = summary(outcomes)
    report["wall_s"] = time.perf_counter() - start
    report["command"] = " ".join(["python tests/fuzz.py", *(argv if argv is not None else sys.argv[1:])])
    (out / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
    with open(out / "outcomes.jsonl", "w") as f:
        for o in outcomes:
            f.write(json.dumps(asdict(o)) + "\n")
    print(json.dumps(report, indent=2))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
