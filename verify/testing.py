"""For users' own test suites: fail a pytest test, with the report's table and diagnosis, unless every
gradient of a derivation is verified, or unless an implementation's backward matches a derivation.

    from verify.testing import assert_backward_matches, assert_verified

    def test_my_layer():
        assert_verified("derivations/my_layer.deriv")

    def test_my_backward():
        assert_backward_matches(MyBatchNormFunction, "batchnorm")
"""

from __future__ import annotations

from .check import check
from .comparison import Status


class NotVerified(AssertionError):
    """Raised by assert_verified: the message holds the report's table and every diagnosis."""


def assert_verified(path_or_text, oracles=None, seed: int = 0):
    """Check a derivation and raise `NotVerified` (an AssertionError, so pytest shows it as a failure)
    unless every gradient is verified. Returns the report when it passes."""
    report = check(path_or_text, oracles=oracles, seed=seed)
    if report.exit_code != 0:
        __tracebackhide__ = True
        raise NotVerified("\n" + report.table())
    return report


def assert_backward_matches(obj, derivation, names=None, dtype: str = "float64", *, conventions=None,
                            seed: int = 0, returns=None):  # fmt: skip
    """Check an implementation with `verify.check_code` and raise `NotVerified` (with the report's table)
    unless its forward and every gradient it returns are verified. `returns` names the gradients it must
    return ({"dx", "dW"}): one it does not return fails too. Returns the report when it passes."""
    from .code import check_code

    report = check_code(obj, derivation, names, dtype, conventions=conventions, seed=seed)
    compared = {g.name for g in report.compared}
    missing = sorted(set(returns or ()) - compared)
    if report.status != Status.VERIFIED or missing:
        __tracebackhide__ = True
        said = f"\nnot returned: {', '.join(missing)}" if missing else ""
        raise NotVerified("\n" + report.table() + said)
    return report
