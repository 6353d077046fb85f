"""Hypothesis: whatever text comes in, the parser returns a derivation or raises its own one-line
DerivationError; no other exception escapes. Grammar-aware fuzzing (tests/fuzz.py) goes further: whole
derivation files, and `verify check` on them under time and memory bounds."""

import signal
from contextlib import contextmanager
from pathlib import Path

import fuzz
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import verify
from verify.catalogue import decode
from verify.model import DerivationError
from verify.parse import parse


def outcome(text: str):
    try:
        return parse(text)
    except DerivationError as e:
        assert "\n" not in str(e)
        return e


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_any_text(text):
    outcome(text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_any_path_or_name(text):
    """verify.load takes a path, a catalogue name or text: a bad one is still a DerivationError."""
    try:
        verify.load(text)
    except DerivationError:
        pass


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(fuzz.TOKENS), max_size=60))
def test_token_soup(tokens):
    outcome("[forward]\n" + "".join(tokens))


LINES = [
    "y[n,i] = x[n,i]", "y[n,j] = sum(x[n,i] * W[j,i], i)", "h[n,i] = max(x[n,i], 0)", "y[n] = sum(h[n,i], i)",
    "L = sum(y[n,i], n, i) / N", "dx[n,i] = dy[n,i]", "dW[j,i] = sum(dy[n,j] * x[n,i], n)", "dx[n,i] = 2",
    "dh[n,i] = where(h[n,i] > 0, dy[n,i], 0)", "g[j] = sum(dy[n,j], n)", "x: normal", "x: simplex(i)",
    "a = 0.5", "N = 1", "I = 3", "eps = 1e-5", "y[n,i] = x[n,i] * a", "dx[n,i] = delta(n, n) * dy[n,i]",
]  # fmt: skip


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(LINES), min_size=1, max_size=4),
    st.lists(st.sampled_from(LINES), min_size=1, max_size=4),
    st.lists(st.sampled_from(LINES), max_size=3),
    st.lists(st.sampled_from(LINES), max_size=2),
)
def test_line_soup(forward, gradients, inputs, sizes):
    text = "\n".join(
        ["[forward]", *forward, "[gradients]", *gradients, "[inputs]", *inputs, "[sizes]", *sizes]
    )
    outcome(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(LINES[:5]), min_size=1, max_size=3),
    st.lists(st.sampled_from(LINES[5:10] + LINES[-1:]), min_size=1, max_size=3),
)
def test_valid_soup_gets_a_verdict(forward, gradients):
    """Past the parser: a derivation that parses gets a verdict from check, never an exception."""
    text = "\n".join(["[forward]", *forward, "[gradients]", *gradients])
    try:
        parse(text)
    except DerivationError:
        return
    report = verify.check(text, oracles=("exact", "fd"))
    assert report.derivations[0].status in ("verified", "wrong", "invalid")


# -------------------------------------------------------------------------------------------------------
# Grammar-aware fuzzing (tests/fuzz.py): derivation files written the way people write them, typos and
# hostile inputs included. The full campaign is `python tests/fuzz.py --cases 10000` (see its docstring).


class Overtime(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """Fail, rather than hang, when the body runs longer than `seconds` (a bound per example)."""

    def expire(*_):
        raise Overtime(f"over {seconds} s")

    before = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_grammar_files_parse_or_fail_with_a_position(data):
    """A fuzzed file (any encoding, any damage) is read and parsed within a second or two into a
    derivation, or refused with one DerivationError line at a real line and column."""
    raw = fuzz.case(fuzz.HypothesisChoices(data))
    with time_limit(10):
        try:
            parse(decode(raw, "f.deriv"), "f.deriv")
        except DerivationError as e:
            assert "\n" not in str(e) and e.line >= 1 and e.column >= 1, str(e)


CAMPAIGN_CASES = 24  # each runs every oracle; the CI budget for this is a few dozen seconds


def test_fuzzed_files_checked_within_bounds(tmp_path):
    """`verify check` on fuzzed files, each in a worker process bounded in time and memory: exit status
    0, 1, 2 or 3 only (4 is a bug of the tool), no traceback, every error at a file:line:col."""
    paths = fuzz.write_cases(tmp_path, range(CAMPAIGN_CASES))
    outcomes = fuzz.run_cases(paths, jobs=2)
    failures = [f"{Path(o.path).name}: {o.problem}" for o in outcomes if o.problem]
    assert not failures, failures
