"""Wrong and malformed derivations in tests/cases/, and formulas quoted from real course reports in
tests/reports/: each file states, in `# expect:` lines, the verdict or error it must get. Adding a file
adds a test.

    # expect: wrong dx: is N times the true gradient      dx is wrong, and its diagnosis says so
    # expect: verified dgamma                             dgamma is verified
    # expect: invalid 3:10: unknown function relu()       the file is invalid, with this error
    # expect: wrong dW step 2/3: the first wrong step      a step of a chain `dW = e1 = e2 = e3`
    # expect: verified dy/dx                              a Jacobian statement
    # expect: verified dW (line 19)                       a gradient stated again (in a LaTeX block)
    # expect: unchecked 19:166: it holds dY/dW            a step that is no formula, left unchecked
    # expect: wrong dx kind missing-path: treats var       the kind of mistake is pinned (verify.diagnose)
    # expect: fix dvar: **(3/2)                           a verified fix is offered; its text holds this
    # expect: warning: J (line 5) is defined but          a warning of the report holds this text

Every expectation is checked, and every checked statement of a file must have one, so that a report
file pins the verdict of each formula it quotes. A file in tests/reports/ names its source in a
`# source:` comment.
"""

import re
from pathlib import Path

import pytest

import verify

HERE = Path(__file__).parent
CASES = sorted((HERE / "cases").glob("*.deriv")) + sorted((HERE / "reports").glob("*.deriv"))
NAME = r"[\w/]+(?: \(line \d+\))?(?: step \d+/\d+)?"
EXPECT = re.compile(
    r"#\s*expect:\s*(?:(invalid|unchecked) (\d+:\d*): (.*)|(warning)(): (.*)"
    rf"|(wrong|verified|fix) ({NAME})(?: kind ([\w-]+))?(?::\s*(.*))?)$"
)


def expectations(path: Path):
    """(verdict, what, kind, text) per '# expect:' line."""
    found = [EXPECT.match(line) for line in path.read_text().splitlines() if line.startswith("# expect")]
    assert found and all(found), f"{path.name}: every case needs well-formed '# expect:' lines"
    out = []
    for m in found:
        plain = next(k for k in (1, 4) if m[k]) if m[1] or m[4] else None
        out.append((m[plain], m[plain + 1], None, m[plain + 2]) if plain else (m[7], m[8], m[9], m[10]))
    return out


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_case(path):
    checked = verify.check(str(path), oracles=("exact", "fd"))
    assert not checked.errors(), checked.errors()  # no oracle raised: a verdict rests on every oracle run
    report = checked.derivations[0]
    expected = expectations(path)
    if path.parent.name == "reports":
        assert "# source:" in path.read_text(), f"{path.name} must cite its source in a '# source:' line"
    for verdict, what, kind, text in expected:
        if verdict == "invalid":
            assert report.status == "invalid", f"expected an error, got {report.status}"
            line, col = what.split(":")
            assert str(report.error.line) == line, str(report.error)
            if col:
                assert str(report.error.column) == col, str(report.error)
            assert text and text in report.error.message, str(report.error)
            continue
        assert report.status != "invalid", str(report.error)
        if verdict == "warning":
            assert any(text in w for w in report.warnings), report.warnings
            continue
        if verdict == "unchecked":
            places = {f"{line}:{col}": message for line, col, message in report.unchecked}
            assert what in places, f"no step left unchecked at {what}: {places}"
            assert text in places[what], places[what]
            continue
        gradient = next((g for g in report.gradients if g.name == what), None)
        assert gradient is not None, f"no statement {what}: {[g.name for g in report.gradients]}"
        if verdict == "fix":
            fix = gradient.mistake.fix if gradient.mistake is not None else None
            assert fix is not None, f"{what}: no fix offered: {gradient.diagnosis}"
            assert not text or text in fix.text, fix.text
            continue
        assert gradient.status == verdict, f"{what}: {gradient.status}: {gradient.diagnosis}"
        if kind:
            assert gradient.mistake is not None and gradient.mistake.kind == kind, gradient.mistake
        if text:
            assert text in gradient.diagnosis, gradient.diagnosis
    if report.status != "invalid":
        named = {what for verdict, what, _, _ in expected if verdict in ("wrong", "verified")}
        unpinned = [g.name for g in report.gradients if g.name not in named]
        assert not unpinned, f"statements without an '# expect:' line: {unpinned}"
        pinned = {what for verdict, what, _, _ in expected if verdict == "unchecked"}
        loose = [f"{line}:{col}" for line, col, _ in report.unchecked if f"{line}:{col}" not in pinned]
        assert not loose, f"unchecked steps without an '# expect:' line: {loose}"
