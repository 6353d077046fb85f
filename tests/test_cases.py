"""Wrong and malformed derivations in tests/cases/: each file states, in `# expect:` lines, the verdict
or error it must get. Adding a file adds a test.

    # expect: wrong dx: is N times the true gradient      dx is wrong, and its diagnosis says so
    # expect: verified dgamma                             dgamma is verified
    # expect: invalid 3:10: unknown function relu()       the file is invalid, with this error
    # expect: wrong dW step 2/3: the first wrong step      a step of a chain `dW = e1 = e2 = e3`
    # expect: verified dy/dx                              a Jacobian statement
"""

import re
from pathlib import Path

import pytest

import verify

CASES = sorted((Path(__file__).parent / "cases").glob("*.deriv"))
EXPECT = re.compile(
    r"#\s*expect:\s*(?:(invalid) (\d+:\d*): (.*)|(wrong|verified) ([\w/]+(?: step \d+/\d+)?)(?::\s*(.*))?)$"
)


def expectations(path: Path):
    found = [EXPECT.match(line) for line in path.read_text().splitlines() if line.startswith("# expect")]
    assert found and all(found), f"{path.name}: every case needs well-formed '# expect:' lines"
    return [(m[1], m[2], m[3]) if m[1] else (m[4], m[5], m[6]) for m in found]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(path):
    report = verify.check(str(path), oracles=("exact", "fd")).derivations[0]
    for verdict, what, text in expectations(path):
        if verdict == "invalid":
            assert report.status == "invalid", f"expected an error, got {report.status}"
            line, col = what.split(":")
            assert str(report.error.line) == line, str(report.error)
            if col:
                assert str(report.error.column) == col, str(report.error)
            assert text and text in report.error.message, str(report.error)
            continue
        gradient = next(g for g in report.gradients if g.name == what)
        assert gradient.status == verdict, f"{what}: {gradient.status}: {gradient.diagnosis}"
        if text:
            assert text in gradient.diagnosis, gradient.diagnosis
