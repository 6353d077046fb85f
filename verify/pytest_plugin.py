"""pytest collects derivation files: `pytest derivations/ my_layer.deriv`.

Each `.deriv` file becomes one test item per checked gradient and oracle, with the ids the project's
generated tests use (`batchnorm-dx-exact`). The file is checked once, when its first item runs, with the
oracles and seed of `--gradverify-oracle` / `--gradverify-seed`. An item passes when its oracle passed,
is skipped with the oracle's reason when the oracle did not decide (skip, inconclusive), and fails with
the diagnosis otherwise; an invalid file is one failing item with its `file:line:col: message`.

Registered through the `pytest11` entry point, so installing gradverify is all it takes.
"""

from __future__ import annotations

import os
from functools import cached_property

import pytest

from .catalogue import load
from .comparison import Status
from .model import DerivationError
from .oracles import ORACLES


def pytest_addoption(parser):
    group = parser.getgroup("gradverify", "checking .deriv files")
    group.addoption(
        "--gradverify-oracle",
        action="append",
        choices=ORACLES,
        default=None,
        help="run only these oracles on collected .deriv files (repeatable; default: all)",
    )
    group.addoption("--gradverify-seed", type=int, default=0, help="seed of the sampled checks (default 0)")


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".deriv":
        return DerivationFile.from_parent(parent, path=file_path)
    return None


class DerivationFile(pytest.File):
    @property
    def shown_path(self) -> str:
        """The file as messages name it: relative to the working directory when below it."""
        relative = os.path.relpath(self.path)
        return str(self.path) if relative.startswith("..") else relative

    def collect(self):
        try:
            d = load(self.shown_path)
        except DerivationError as e:
            yield InvalidDerivation.from_parent(self, name=f"{self.path.stem}-invalid", error=e)
            return
        for g in d.checked:
            for oracle in self.oracles:
                yield GradientItem.from_parent(
                    self, name=f"{d.name}-{g.target}-{oracle}", gradient=g.target, oracle=oracle
                )

    @property
    def oracles(self) -> tuple[str, ...]:
        return tuple(self.config.getoption("gradverify_oracle") or ORACLES)

    @cached_property
    def report(self):
        from .check import check

        seed = self.config.getoption("gradverify_seed")
        return check(self.shown_path, oracles=self.oracles, seed=seed).derivations[0]


class GradientFailure(Exception):
    """A gradient an oracle found wrong: the message is the diagnosis."""


class GradientItem(pytest.Item):
    def __init__(self, *, gradient: str, oracle: str, **kwargs):
        super().__init__(**kwargs)
        self.gradient, self.oracle = gradient, oracle

    def runtest(self):
        parent = self.parent
        assert isinstance(parent, DerivationFile), "a gradient's item is collected from its derivation file"
        report = parent.report
        if report.error is not None:
            raise GradientFailure(str(report.error))
        g = next(g for g in report.gradients if g.name == self.gradient)
        result = g.oracles[self.oracle]
        if result.status == Status.PASS:
            return
        if result.status in ("skip", "inconclusive"):
            pytest.skip(f"{self.oracle} {result.status}: {result.reason}")
        raise GradientFailure(_message(g, self.oracle, result))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, GradientFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"{self.name}"


class InvalidDerivation(pytest.Item):
    def __init__(self, *, error: DerivationError, **kwargs):
        super().__init__(**kwargs)
        self.error = error

    def runtest(self):
        raise GradientFailure(str(self.error))

    def repr_failure(self, excinfo, style=None):
        return str(excinfo.value)

    def reportinfo(self):
        return self.path, None, self.name


def _message(g, oracle: str, result) -> str:
    """What a failing item prints: the oracle's finding, then the gradient's diagnosis."""
    lines = [f"{g.name} (line {g.line}) by {oracle}: {result.status}"]
    lines += [f"  {text}" for text in (result.reason, g.diagnosis) if text]
    return "\n".join(lines)
