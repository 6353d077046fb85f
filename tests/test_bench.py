"""python -m verify bench --quick: the JSON contract (DESIGN.md section 4), one entry per catalogue derivation
and backend. Nothing here asserts a speed: the goals are measured by the full bench, never by tests."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from verify import bench
from verify.catalogue import load
from verify.catalogue import paths as catalogue

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


def test_every_catalogue_entry_and_backend_is_there(quick):
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
        for backend in backends:
            assert (path.stem, backend) in have


def test_table_is_printed(quick):
    _, stdout = quick
    assert "derivation" in stdout and "np x" in stdout
    for path in catalogue():
        assert path.stem in stdout


@pytest.mark.parametrize("name", [p.stem for p in catalogue()])
def test_hand_written_backward_matches_generated(name):
    """The hand-written backward that bench times computes the gradients the generated one does."""
    d = load(name)
    values = bench.draw_inputs(d, bench.sizes_for(d, quick=True))
    from verify import codegen

    gen = codegen.compile_derivation(d, "numpy")
    written = gen.backward(**values, **gen.forward(**values))
    out = bench.hand_backward(name, values)()
    # the layers return dx (or nothing of interest for the MLP, whose dx is not written)
    if "dx" in written and name != "mlp":
        dx = out if not isinstance(out, tuple) else out[0]
        np.testing.assert_allclose(
            np.reshape(dx, np.shape(written["dx"])), written["dx"], rtol=1e-9, atol=1e-12
        )


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_input_gradients_only_backward(backend):
    """The backward bench times beside autograd: the input gradients alone, equal to the full backward's,
    without the adjoints of intermediates (batchnorm's dxhat, dvar, dmu) that no input gradient uses."""
    pytest.importorskip(backend)
    d = load("batchnorm")
    values = bench.draw_inputs(d, bench.sizes_for(d, quick=True))
    from verify import codegen

    fwd = codegen.compile_derivation(d, "numpy").forward(**values)
    full, only = bench.backward_functions(d, backend)
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
    want = full(**bench._kwargs(full, args))
    got = only(**bench._kwargs(only, args))
    assert set(got) == {"dx", "dgamma", "dbeta"}
    for name, value in got.items():
        np.testing.assert_allclose(np.asarray(value), np.asarray(want[name]), rtol=1e-12)
    assert bench.backward_functions(load("relu"), backend)[1] is None


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
