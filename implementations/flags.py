"""Command-line values the training and benchmark programs share, read and checked one way.

Each check ends the program through `parser.error`: status 2 and one line naming the flag, as argparse
does for its own errors.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable


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
