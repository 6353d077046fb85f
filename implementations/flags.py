"""Command-line values the training and benchmark programs share, read and checked one way: hidden widths,
counts, the defaults that differ on the embedded digits, and the default --out folder.

Each check ends the program through `parser.error`: status 2 and one line naming the flag, as argparse
does for its own errors.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


def hidden_widths(parser: argparse.ArgumentParser, flag: str, text: str) -> list[int]:
    """The hidden layer widths a comma-separated value lists: '100,50' -> [100, 50], '' -> [] (no hidden
    layer). A part that is not a whole number of at least 1 ('x', '2.5', '0', '-3') is an error."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    # isdecimal, not isdigit: int() reads every decimal digit, but not superscripts such as '²'
    if not all(part.isdecimal() and int(part) >= 1 for part in parts):
        parser.error(f"{flag}: expected comma-separated whole numbers of at least 1, got {text!r}")
    return [int(part) for part in parts]


def require_at_least_one(
    parser: argparse.ArgumentParser, args: argparse.Namespace, names: Iterable[str]
) -> None:
    """Each named count (--max_steps, --batch_size, ...) must be at least 1."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")


@dataclass(frozen=True)
class DigitsDefault:
    """A flag whose course default cannot learn the embedded digits in the run's steps: `course` is the
    default on every other data set, `digits` on digits. The flag given explicitly always wins."""

    course: object
    digits: object
    why: str  # one clause for --help

    def help(self, text: str) -> str:
        return f"{text} (default {self.course}, the course's; {self.digits} on digits: {self.why})"


def resolve_defaults(args: argparse.Namespace, defaults: Mapping[str, DigitsDefault]) -> None:
    """Fill in each flag of `defaults` (by its argparse dest, declared with default=None) that was not
    given with its value for --dataset."""
    for name, default in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, default.digits if args.dataset == "digits" else default.course)


def run_folder_help(program: str) -> str:
    return f"folder for the run's files (default runs/{program}-DATASET-YYYYMMDD-HHMMSS, a new one per run)"


def resolve_out(args: argparse.Namespace, program: str) -> None:
    """--out left unset: runs/PROGRAM-DATASET-TIMESTAMP, so that a second run never overwrites the first's
    files (a suffix -2, -3, ... when two runs start within one second)."""
    if args.out is not None:
        return
    base = Path("runs") / f"{program}-{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    args.out = str(out)
