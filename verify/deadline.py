"""A CPU-time deadline that long computations observe cooperatively, so that the diagnosis of a large
derivation stops with what it found rather than running for minutes: the exact evaluator and the
diagnosis's symbolic rewriting call `check()` between steps, and `within(seconds)` sets the deadline for
the code it wraps (in this thread or task only; an inner deadline never extends an outer one).

CPU time of this process rather than wall time, so that a busy machine does not end a diagnosis early.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[tuple[float, float] | None] = ContextVar("gradverify_deadline", default=None)


class OutOfTime(BaseException):
    """The deadline passed; the message says after how many seconds of CPU. A BaseException, as
    KeyboardInterrupt is, so that the `except Exception` guards along the way (an oracle's error result,
    a candidate fix that fails to parse) do not take it for their own failure and carry on."""


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Run the wrapped code under a deadline `seconds` of CPU time from now."""
    outer = _deadline.get()
    end = time.process_time() + seconds
    token = _deadline.set((end, seconds) if outer is None or end < outer[0] else outer)
    try:
        yield
    finally:
        _deadline.reset(token)


def check() -> None:
    """Raise OutOfTime when the current deadline has passed (nothing when none is set)."""
    current = _deadline.get()
    if current is not None and time.process_time() > current[0]:
        raise OutOfTime(f"stopped after {current[1]:g} s of CPU")
