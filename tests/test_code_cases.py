"""Implementations in examples/code/, each checked by `python -m verify code` as its `# check:` lines say
and held to the `# expect:` lines below each. Adding a file adds a test.

    # check: BatchNorm --against batchnorm [--dtype float32] [--map a=b] [--convention dW=mean]
    # expect: status wrong                     the verdict on the whole
    # expect: forward pass                     the forward's comparison
    # expect: dx wrong missing-path            a gradient's verdict, and for a wrong one its kind
    # expect: dvar skip                        a gradient not compared
    # expect: dx wrong at every draw           wrong at each draw on its own (every size drawn)
    # expect: note: your code holds W as       a line of the report holds this text

Each check runs in this process through the command's own entry point (`verify.cli.main`), writing its
JSON report; each gradient the report compares must have an expectation, so that a file pins the verdict
of everything it returns.
"""

import json
import re
import shlex
from pathlib import Path

import pytest

from verify.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "code"
FILES = sorted(EXAMPLES.glob("*.py"))
EXPECT = re.compile(
    r"(?:status (?P<status>\w+)"
    r"|forward (?P<forward>\w+)"
    r"|(?P<every>d\w+) wrong at every draw"
    r"|(?P<gradient>d\w+) (?P<verdict>verified|wrong|inconclusive|skip)(?: (?P<kind>[\w-]+))?"
    r"|note: (?P<note>.+))$"
)


def checks(path: Path) -> list[tuple[list[str], list[re.Match]]]:
    """Each `# check:` line of a file as command arguments, with the expectations that follow it."""
    found: list[tuple[list[str], list[re.Match]]] = []
    for line in path.read_text().splitlines():
        if line.startswith("# check:"):
            name, *options = shlex.split(line.removeprefix("# check:"))
            found.append((["code", f"{path}:{name}", *options], []))
        elif line.startswith("# expect:"):
            m = EXPECT.match(line.removeprefix("# expect:").strip())
            assert m and found, f"{path.name}: malformed or misplaced: {line}"
            found[-1][1].append(m)
    assert found and all(expected for _, expected in found), (
        f"{path.name}: needs # check: and # expect: lines"
    )
    return found


CASES = [pytest.param(path, k, id=f"{path.stem}-{k}") for path in FILES for k in range(len(checks(path)))]


@pytest.mark.parametrize("path, k", CASES)
def test_example(path, k, tmp_path, capsys):
    args, expected = checks(path)[k]
    out = tmp_path / "report.json"
    status = main([*args, "--json", str(out)])
    table = capsys.readouterr().out
    report = json.loads(out.read_text())["code"]
    assert status == {"verified": 0, "wrong": 1, "inconclusive": 3}[report["status"]], table
    gradients = {g["name"]: g for g in report["gradients"]}
    pinned = set()
    for m in expected:
        if m["status"]:
            assert report["status"] == m["status"], table
        elif m["forward"]:
            assert report["forward"]["status"] == m["forward"], table
        elif m["every"]:
            draws = gradients[m["every"]]["per_draw"]
            assert len(draws) >= 3 and set(draws) == {"fail"}, f"{m['every']}: {draws}\n{table}"
        elif m["note"]:
            assert m["note"] in table, table
        else:
            g = gradients[m["gradient"]]
            pinned.add(m["gradient"])
            assert g["status"] == m["verdict"], table
            if m["kind"]:
                assert g["mistake"]["kind"] == m["kind"], table
    unpinned = {name for name, g in gradients.items() if g["status"] != "skip"} - pinned
    assert not unpinned, f"{path.name}: no expectation for {sorted(unpinned)}"
