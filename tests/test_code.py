"""`python -m verify code` and `verify.check_code`: the edge cases examples/code/ does not show (bad input,
code that raises or returns nan, instances, the test-suite helper, what gets imported)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import verify
from implementations.numpy.modules import BatchNormModule, LinearModule, SigmoidModule
from verify.cli import main
from verify.code import CodeError, Target
from verify.code.kinds import ArrayModule
from verify.code.source import resolve
from verify.oracles.handwritten import HandWritten
from verify.testing import NotVerified, assert_backward_matches

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, text: str, name: str = "mine.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "verify", "code", *map(str, args)], capture_output=True, text=True, cwd=ROOT
    )


SIGMOID = """
    import numpy as np

    def forward(x):
        return 1 / (1 + np.exp(-x))

    def backward(dy, x):
        y = forward(x)
        return dy * y * (1 - y)
"""


@pytest.mark.parametrize(
    "text, spec, message",
    [
        ("import nosuchmodule\n", "mine.py:f", "importing it raised at line 1: ModuleNotFoundError"),
        ("def f(:\n", "mine.py:f", "mine.py:1:"),
        ("raise SystemExit(3)\n", "mine.py:f", "called sys.exit(3)"),
        (SIGMOID, "mine.py:nothing", "no 'nothing' in it (it defines: backward, forward, np)"),
        (SIGMOID, "mine.py:np", "mine.py:np is the module numpy, not a layer"),
        ("f = 3\n", "mine.py:f", "is an int, none of the kinds gradverify checks"),
        ("x = 1\n", "mine.py", "defines no functions forward and backward"),
        (
            "def f(q, r):\n    return q\n\ndef b(dy):\n    return dy\n",
            "mine.py:f,b",
            "argument 'q' matches no input",
        ),
    ],
)
def test_code_that_cannot_be_checked_is_one_line_and_exit_2(tmp_path, text, spec, message):
    """A file that does not import, a name it lacks, a library it imports named instead of a layer, an
    object of no supported kind, an argument that matches no derivation input: exit 2 and one line on
    stderr, no traceback, no verdict."""
    write(tmp_path, text)
    r = run_cli(tmp_path / spec, "--against", "sigmoid")
    assert r.returncode == 2, r.stderr + r.stdout
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr and not r.stdout


UNMATCHED_PARAMS = """
    import numpy as np
    import torch

    class Linear:
        def __init__(self, in_features, out_features):
            self.params = {"W_mat": np.ones((out_features, in_features)), "bias": np.zeros(out_features)}
            self.grads = {}

        def forward(self, x):
            self.x = x
            return x @ self.params["W_mat"].T + self.params["bias"]

        def backward(self, dout):
            self.grads["W_mat"] = dout.T @ self.x
            self.grads["bias"] = dout.sum(axis=0)
            return dout @ self.params["W_mat"]

    class TorchLinear(torch.nn.Module):
        def __init__(self, in_features, out_features):
            super().__init__()
            self.W_mat = torch.nn.Parameter(torch.ones(out_features, in_features))
            self.bias = torch.nn.Parameter(torch.zeros(out_features))

        def forward(self, x):
            return x @ self.W_mat.T + self.bias
"""


@pytest.mark.parametrize("name, what", [("Linear", "params['W_mat']"), ("TorchLinear", "parameter 'W_mat'")])
def test_a_parameter_that_matches_no_input_is_exit_2(tmp_path, name, what):
    """A module parameter whose name the tables do not know (W_mat) is no input of the derivation: left
    as the module built it, correct code would be compared against another W and called wrong. It is exit
    2 with the --map that names it; with the --map the same code is verified."""
    path = write(tmp_path, UNMATCHED_PARAMS)
    r = run_cli(f"{path}:{name}", "--against", "linear")
    assert r.returncode == 2, r.stderr + r.stdout
    assert f"its {what} matches no input of linear" in r.stderr and "--map W_mat=NAME" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not r.stdout
    r = run_cli(f"{path}:{name}", "--against", "linear", "--map", "W_mat=W")
    assert r.returncode == 0, r.stderr + r.stdout


def test_json_to_stdout_is_json_alone_when_the_code_prints(tmp_path):
    """With --json -, standard output holds the JSON alone: what the checked code prints while it is
    imported and run goes to stderr."""
    path = write(
        tmp_path,
        """
        import numpy as np
        print("importing")

        def forward(x):
            print("forward")
            return np.maximum(x, 0.0)

        def backward(dy, x):
            print("backward")
            return dy * (x > 0)
        """,
    )
    r = run_cli(path, "--against", "relu", "--json", "-")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["code"]["status"] == "verified"
    assert "importing" in r.stderr and "backward" in r.stderr


@pytest.mark.parametrize(
    "where, message", [("no/such/folder/out.json", "no folder"), (".", "is a directory")]
)
def test_a_json_file_that_cannot_be_written_is_exit_2_before_the_check(tmp_path, where, message):
    """--json FILE in a folder that does not exist (or naming a folder) is a bad argument: exit 2 and one
    line before anything runs, not an internal error after the verdict is printed."""
    r = run_cli(write(tmp_path, SIGMOID), "--against", "sigmoid", "--json", tmp_path / where)
    assert r.returncode == 2 and not r.stdout, r.stdout + r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_map_names_an_argument_and_must_name_something(tmp_path, capsys):
    """`--map q=x` matches an argument the tables cannot; mapping to a name the derivation lacks is exit 2."""
    path = write(tmp_path, SIGMOID.replace("x)", "q)").replace("-x", "-q"))
    assert main(["code", f"{path}:forward,backward", "--against", "sigmoid", "--map", "q=x"]) == 0
    assert "x <- forward's argument q" in capsys.readouterr().out
    assert main(["code", f"{path}:forward,backward", "--against", "sigmoid", "--map", "q=nope"]) == 2
    assert "sigmoid has no 'nope'" in capsys.readouterr().err


def test_code_that_raises_or_returns_nan_is_wrong_with_its_kind(tmp_path):
    """Code raising in its backward is wrong ("raised", the exception named); a gradient that is nan
    where the true one is a moderate number is wrong ("not-finite")."""
    raising = write(tmp_path, SIGMOID.replace("return dy * y * (1 - y)", "raise ValueError('no')"), "r.py")
    report = verify.check_code(resolve(f"{raising}:forward,backward"), "sigmoid")
    dx = report.gradients[0]
    assert report.status == "wrong" and dx.mistake.kind == "raised" and "ValueError: no" in dx.mistake.message
    nan = write(tmp_path, SIGMOID.replace("return dy * y * (1 - y)", "return dy * np.nan"), "n.py")
    report = verify.check_code(resolve(f"{nan}:forward,backward"), "sigmoid")
    assert report.status == "wrong" and report.gradients[0].mistake.kind == "not-finite"


def test_an_instance_is_checked_at_its_own_sizes():
    """An instance keeps the shapes it was built with: every draw takes its sizes from its parameters
    (LinearModule(3, 5): I = 3, J = 5), and the instance itself is left as it was."""
    layer = LinearModule(3, 5)
    weight = layer.params["weight"].copy()
    report = verify.check_code(layer, "linear")
    assert report.status == "verified"
    assert all(s["I"] == 3 and s["J"] == 5 for s in report.sizes)
    assert len({s["N"] for s in report.sizes}) > 1
    np.testing.assert_array_equal(layer.params["weight"], weight)


def test_a_transposed_weight_is_found_and_named(tmp_path):
    """A UvA-style layer that holds W in x out is run with W transposed, and the report says so; its
    gradient is compared transposed back."""
    path = write(
        tmp_path,
        """
        import numpy as np

        class Linear:
            def __init__(self, in_features, out_features):
                self.params = {"weight": np.zeros((in_features, out_features)), "bias": np.zeros(out_features)}
                self.grads = {}

            def forward(self, x):
                self.x = x
                return x @ self.params["weight"] + self.params["bias"]

            def backward(self, dout):
                self.grads = {"weight": self.x.T @ dout, "bias": dout.sum(0)}
                return dout @ self.params["weight"].T
        """,
    )
    report = verify.check_code(resolve(f"{path}:Linear"), "linear")
    assert report.status == "verified"
    assert any("holds W as I x J (in x out)" in c for c in report.conventions), report.conventions


def test_assert_backward_matches_fails_a_wrong_backward_and_passes_a_right_one():
    """The test-suite helper: NotVerified (an AssertionError) with the report's table for a wrong
    gradient or a gradient the code does not return; the report back when everything is verified."""
    assert assert_backward_matches(SigmoidModule, "sigmoid").status == "verified"

    class Wrong(SigmoidModule):
        def backward(self, dout):
            return dout * self._y

    with pytest.raises(NotVerified, match="dx +wrong"):
        assert_backward_matches(Wrong, "sigmoid")
    with pytest.raises(NotVerified, match="not returned: dW"):
        assert_backward_matches(SigmoidModule, "sigmoid", returns={"dW"})


def test_the_numpy_oracle_runs_modules_through_the_same_path():
    """One mechanism: the numpy oracle's module is a verify.code Target, built from the catalogue's
    binding, as `python -m verify code` builds one."""
    target = HandWritten(verify.load("batchnorm")).target()
    assert isinstance(target, Target) and isinstance(target.code, ArrayModule)
    assert target.code.obj is BatchNormModule


def test_numpy_code_imports_no_framework():
    """Checking NumPy code imports neither torch nor jax (a cold check stays fast)."""
    code = (
        "import sys, verify\n"
        "from implementations.numpy.modules import LinearModule\n"
        "assert verify.check_code(LinearModule, 'linear').status == 'verified'\n"
        "print(sorted(m for m in ('torch', 'jax') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


def test_a_bad_dtype_or_convention_is_a_code_error():
    """dtype other than float64/float32, a convention of no known kind: CodeError, one line."""
    with pytest.raises(CodeError, match="dtype 'float16'"):
        verify.check_code(SigmoidModule, "sigmoid", dtype="float16")
    with pytest.raises(CodeError, match="expected NAME=transposed"):
        verify.check_code(LinearModule, "linear", conventions=["W=sideways"])


def test_a_wrong_gradient_in_json_has_the_keys_check_gives_it(tmp_path):
    """A wrong gradient's JSON is read as `check`'s is: its comparison under oracles.exact, its mistake's
    kind from verify.diagnose, the worst entry as {index, written, true, oracle} at the comparison's
    worst index; the message names the code's gradient."""
    flipped = write(tmp_path, SIGMOID.replace("return dy * y * (1 - y)", "return -dy * y * (1 - y)"))
    report = verify.check_code(resolve(f"{flipped}:forward,backward"), "sigmoid").to_json()["code"]
    dx = report["gradients"][0]
    exact = dx["oracles"]["exact"]
    assert dx["status"] == "wrong" and exact["status"] == "fail"
    mistake = dx["mistake"]
    assert mistake["kind"] == "sign" and mistake["message"] == "your dx has the wrong sign"
    assert mistake["worst"]["index"] == exact["worst_index"] and mistake["worst"]["oracle"] == "exact"
    assert mistake["worst"]["written"] == -mistake["worst"]["true"]


def test_a_file_imports_its_neighbours_and_leaves_the_import_path_as_it_was(tmp_path):
    """A file given as FILE.py:NAME may import a module beside it while it is imported, and resolving it
    from Python takes its folder off sys.path again (no module changes its caller's process)."""
    write(tmp_path, "SCALE = 2\n", name="helper_beside.py")
    write(tmp_path, "from helper_beside import SCALE\n\ndef forward(x):\n    return SCALE * x\n")
    before = list(sys.path)
    forward = resolve(f"{tmp_path / 'mine.py'}:forward")
    assert forward(3) == 6
    assert sys.path == before


def test_a_backward_that_adds_to_its_stored_gradient_is_noted(tmp_path):
    """A UvA-style layer whose backward does `grads[...] += ...` is right on a fresh module, so its
    gradients are verified; but a second backward after the same forward doubles them, which the report
    notes for each such gradient (and not for dx, which it returns afresh). The library's own
    LinearModule, which sets its gradients, gets no such note."""
    path = write(
        tmp_path,
        """
        import numpy as np

        class Linear:
            def __init__(self, in_features, out_features):
                self.params = {"weight": np.zeros((out_features, in_features)), "bias": np.zeros(out_features)}
                self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

            def forward(self, x):
                self.x = x
                return x @ self.params["weight"].T + self.params["bias"]

            def backward(self, dout):
                self.grads["weight"] += dout.T @ self.x
                self.grads["bias"] += dout.sum(0)
                return dout @ self.params["weight"]
        """,
    )
    report = verify.check_code(resolve(f"{path}:Linear"), "linear")
    assert report.status == "verified"
    doubled = [n for n in report.notes if "a second backward after the same forward makes it twice" in n]
    assert sorted(n.split(":")[0] for n in doubled) == ["dW", "db"], report.notes
    assert not any("second backward" in n for n in verify.check_code(LinearModule, "linear").notes)
