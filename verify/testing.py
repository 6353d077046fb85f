"""For users' own test suites: fail a pytest test, with the report's table and diagnosis, unless every
gradient of a derivation is verified.

    from verify.testing import assert_verified

    def test_my_layer():
        assert_verified("derivations/my_layer.deriv")
"""

from __future__ import annotations

from .check import check


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
