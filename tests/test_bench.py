"""python -m verify bench --quick: the JSON contract (DESIGN.md section 4), one entry per catalogue derivation
and backend. Nothing here asserts a speed: the goals are measured by the full bench, never by tests."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from verify import codegen
from verify.bench import entries
from verify.catalogue import entry, load
from verify.catalogue import paths as catalogue
from verify.code import target
from verify.oracles.handwritten import resolve

ROOT = Path(__file__).parent.parent
KEYS = {"name", "what", "backend", "generated_s", "reference", "reference_s", "ratio"}
REFERENCES = {"numpy": "hand-written numpy", "torch": "torch.autograd", "jax": "jax.vjp"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    r = subprocess.run(
        [sys.executable, "-m", "verify", "bench", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(out.read_text()), r.stdout


def test_json_has_the_contract_keys(quick):
    data, _ = quick
    assert "verify_all_s" in data
    assert data["entries"]
    for e in data["entries"]:
        assert KEYS <= set(e), e
        assert e["what"] == "backward"
        assert e["reference"] == REFERENCES[e["backend"]]


def test_every_entry_has_a_positive_ratio(quick):
    data, _ = quick
    for e in data["entries"]:
        assert e["generated_s"] > 0 and e["reference_s"] > 0, e
        assert e["ratio"] > 0
        assert e["ratio"] == pytest.approx(e["generated_s"] / e["reference_s"])
        # the goal compares the outputs the reference computes: the input gradients alone, where timed
        assert e["goal_ratio"] == e.get("inputs_only_ratio", e["ratio"])


def test_elementwise_layers_have_a_traffic_floor(quick):
    """relu's generated backward (one output, every array it reads of that shape) has its floor timed
    beside it in every backend, its ratio against the same reference; batchnorm's (six outputs of two
    shapes) has none."""
    data, _ = quick
    relu = [e for e in data["entries"] if e["name"] == "relu"]
    assert relu
    for e in relu:
        assert e["floor_s"] > 0, e
        assert e["floor_ratio"] == pytest.approx(e["floor_s"] / e["reference_s"])
    assert all("floor_s" not in e for e in data["entries"] if e["name"] == "batchnorm")


def test_every_catalogue_entry_and_backend_is_there(quick):
    """Each catalogue derivation is timed in every installed backend for which its record names a
    reference; a reference it lacks is listed under "skipped" with the reason, never raised."""
    data, _ = quick
    have = {(e["name"], e["backend"]) for e in data["entries"]}
    backends = {"numpy"}
    for module in ("torch", "jax"):
        try:
            __import__(module)
            backends.add(module)
        except ImportError:
            pass
    for path in catalogue():
        record = entry(path.stem)
        for backend in backends:
            if record.numpy if backend == "numpy" else record.library(backend):
                assert (path.stem, backend) in have
            else:
                assert (path.stem, backend) not in have
                assert any(why.startswith(f"{backend}: ") for why in data["skipped"][path.stem])


def test_a_missing_hand_written_module_is_a_reported_skip(quick):
    """softplus has no hand-written NumPy module: the bench times its torch and jax pairs and says why
    its numpy pair is missing, in the JSON and in the printed summary."""
    data, stdout = quick
    reason = f"numpy: {entry('softplus').no_numpy}"
    assert data["skipped"]["softplus"] == [reason]
    assert {e["backend"] for e in data["entries"] if e["name"] == "softplus"} <= {"torch", "jax"}
    assert f"softplus: skipped {reason}" in stdout


def test_jax_from_inputs_is_for_information(quick):
    """Each JAX pair (the generated backward and the pullback, each reading what its forward saved) has a
    twin with nothing saved: the generated backward from the inputs and forward values against jax.vjp
    as one jitted function of the inputs and the upstream gradient: timed, printed, never a goal."""
    data, stdout = quick
    jax = [e for e in data["entries"] if e["backend"] == "jax"]
    if not jax:
        pytest.skip("jax is not installed")
    pullback = {e["name"] for e in jax if e["variant"] == "jit"}
    alike = [e for e in jax if e["variant"] == "from inputs"]
    assert {e["name"] for e in alike} == pullback
    assert all(e["goal"] is False and e["reference"] == "jax.vjp" and e["reference_s"] > 0 for e in alike)
    assert "jax.vjp as one jitted function of the inputs" in stdout


def test_table_is_printed(quick):
    _, stdout = quick
    assert "derivation" in stdout and "np x" in stdout
    for path in catalogue():
        assert path.stem in stdout


@pytest.mark.parametrize("name", [p.stem for p in catalogue()])
def test_hand_written_backward_matches_generated(name):
    """The hand-written backward that bench times (the numpy binding's prepared backward, at the bench's
    quick sizes and inputs) computes every gradient it returns as the generated backward does; an entry
    without a hand-written module skips with the reason the bench reports."""
    record = entry(name)
    if record.numpy is None:
        pytest.skip(record.no_numpy)
    d = load(name)
    values = entries.draw_inputs(d, entries.sizes_for(d, quick=True))
    gen = codegen.compile_derivation(d, "numpy")
    written = gen.backward(**values, **gen.forward(**values))
    forward = np.asarray(gen.forward(**values)[d.output], dtype=float)
    hand = target(resolve(record.numpy), d).prepare({**values, **entries.settings(d)}, forward).backward()
    assert hand
    for variable, grad in hand.items():
        grad_name = f"d{variable}"
        np.testing.assert_allclose(grad, written[grad_name], rtol=1e-9, atol=1e-12, err_msg=grad_name)


def test_sizes_come_from_the_catalogue_record():
    """The bench's sizes are its defaults unless the catalogue record fixes them: the MLP's K is its second
    hidden width (1024 wide, and at --quick distinct from the classes C), softmax's K its classes."""
    mlp = load("mlp")
    assert entries.sizes_for(mlp, quick=False) == {**entries.FULL, **entry("mlp").bench_sizes}
    assert entries.sizes_for(mlp, quick=False)["K"] == 1024
    quick = entries.sizes_for(mlp, quick=True)
    assert quick == {**entries.QUICK, **entry("mlp").bench_quick_sizes} and quick["K"] != quick["C"]
    assert entries.sizes_for(load("softmax"), quick=False) == {"N": 512, "K": entries.FULL["K"]}


def test_inputs_are_drawn_from_their_domains():
    """Bench inputs come from each input's declared domain (cross_entropy: x rows on the simplex, t
    one-hot), fixed values stay fixed, and weight matrices are LeCun-scaled (std 1 / sqrt(fan-in))."""
    d = load("cross_entropy")
    values = entries.draw_inputs(d, entries.sizes_for(d, quick=True))
    np.testing.assert_allclose(values["x"].sum(axis=1), 1.0)
    assert (values["x"] > 0).all()
    np.testing.assert_array_equal(values["t"].sum(axis=1), 1.0)
    assert set(np.unique(values["t"])) == {0.0, 1.0}
    assert d.upstream not in values  # a scalar loss has no upstream gradient
    assert (
        entries.draw_inputs(load("batchnorm"), entries.sizes_for(load("batchnorm"), quick=True))["eps"]
        == 1e-5
    )
    mlp = load("mlp")
    w1 = entries.draw_inputs(mlp, entries.sizes_for(mlp, quick=False))["W1"]
    assert w1.std() == pytest.approx(1 / np.sqrt(w1.shape[1]), rel=0.01)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_input_gradients_only_backward(backend):
    """The backward bench times beside autograd: the input gradients alone, equal to the full backward's,
    without the adjoints of intermediates (batchnorm's dxhat, dvar, dmu) that no input gradient uses."""
    pytest.importorskip(backend)
    d = load("batchnorm")
    values = entries.draw_inputs(d, entries.sizes_for(d, quick=True))
    fwd = codegen.compile_derivation(d, "numpy", saved=True).forward(**values)  # what the bench times
    full, only = entries.backward_functions(d, backend)
    if backend == "torch":
        import torch

        convert = torch.from_numpy
    elif backend == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        convert = jax.numpy.asarray
    else:
        convert = np.asarray
    args = {k: convert(v) if isinstance(v, np.ndarray) else v for k, v in {**values, **fwd}.items()}
    want = full(**entries._kwargs(full, args))
    got = only(**entries._kwargs(only, args))
    assert set(got) == {"dx", "dgamma", "dbeta"}
    for name, value in got.items():
        np.testing.assert_allclose(np.asarray(value), np.asarray(want[name]), rtol=1e-12)
    assert entries.backward_functions(load("relu"), backend)[1] is None


MATMULS = """
[forward]
y[n,j] = 1 / (1 + sum(W[j,i] * x[n,i], i)**2) - sum(W[j,i] * x[n,i], i) / b[j] + c[n] * sum(V[m,n] * u[m], m)
[gradients]
db[j] = sum(dy[n,j] * sum(W[j,i] * x[n,i], i), n) / b[j]**2
du[m] = sum(dy[n,j] * c[n] * V[m,n], n, j)
"""


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_matrix_products_keep_their_precedence(backend):
    """The speed-ups bench measures print a contraction as `x @ W.T`, which binds like `*` and `/`:
    under a power, a division, a broadcast and a product it must be parenthesised, and the values must
    be those of the exact evaluation."""
    pytest.importorskip(backend)
    from verify import codegen, evaluate

    d = load(MATMULS)
    text = codegen.source(d, backend)
    assert "x @ W.T" in text and "einsum('ji,ni->nj'" not in text
    rng = np.random.default_rng(1)
    values = {
        "W": rng.standard_normal((3, 4)), "x": rng.standard_normal((5, 4)), "b": rng.uniform(1, 2, 3),
        "V": rng.standard_normal((2, 5)), "u": rng.standard_normal(2), "c": rng.standard_normal(5),
        "dy": rng.standard_normal((5, 3)),
    }  # fmt: skip
    want = evaluate(d, values)
    if backend == "torch":
        import torch

        args = {k: torch.from_numpy(v) for k, v in values.items()}
    elif backend == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        args = {k: jax.numpy.asarray(v) for k, v in values.items()}
    else:
        args = values
    gen = codegen.compile_derivation(d, backend)
    fwd = gen.forward(**args)
    got = {**fwd, **gen.backward(**args, **fwd)}
    for name in ("y", "db", "du"):
        np.testing.assert_allclose(np.asarray(got[name]), np.asarray(want[name], dtype=float), rtol=1e-10)


def test_bench_of_named_entries():
    """python -m verify bench NAME times only the entries named (the conv2d and maxpool2d goals are
    measured that way); a name not in the catalogue is a usage error, exit 2."""
    r = subprocess.run(
        [sys.executable, "-m", "verify", "bench", "relu", "--quick", "--json", "-"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert {e["name"] for e in json.loads(r.stdout)["entries"]} == {"relu"}
    bad = subprocess.run(
        [sys.executable, "-m", "verify", "bench", "nosuch", "--quick"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "nosuch" in bad.stderr
