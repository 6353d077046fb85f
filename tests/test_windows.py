"""Convolution and pooling: the catalogue's windowed layers at every stride and padding the course
uses, their generated code free of Python loops, and the sampler's promises for windows."""

import ast
import re
from pathlib import Path

import numpy as np
import pytest

import verify
from verify import catalogue, codegen, sampling
from verify.catalogue import load
from verify.catalogue import paths as catalogue_paths
from verify.code import target
from verify.oracles import Exact
from verify.oracles.handwritten import resolve

WINDOWED = [p for p in catalogue_paths() if load(p).windowed]
LAYERS = ["conv2d", "maxpool2d", "avgpool2d"]
SETTINGS = [(1, 0), (1, 1), (2, 0), (2, 1)]  # (stride, padding)
ORACLES = ("exact", "fd", "jax", "torch")


def with_settings(name: str, stride: int, padding: int) -> str:
    """The catalogue file's text with its stride and padding set to these values."""
    text = (catalogue.folder() / f"{name}.deriv").read_text()
    text = re.sub(r"^S = \d+$", f"S = {stride}", text, flags=re.M)
    return re.sub(r"^P = \d+$", f"P = {padding}", text, flags=re.M)


@pytest.mark.parametrize("stride,padding", SETTINGS)
@pytest.mark.parametrize("name", LAYERS)
def test_each_setting_is_checked_on_several_windows(name, stride, padding):
    """The stride and padding the tests set are the ones checked, and some draw has at least two windows
    along each spatial axis: with one window (a 1 x 1 output) a stride or padding offset left out of a
    formula reads the same entries, and the checks could not see it."""
    d = load(with_settings(name, stride, padding))
    assert d.constants == {"S": stride, "P": padding}
    drawn = [s.sizes for s in sampling.samples(d, seed=0)]
    assert any(sizes["I"] >= 2 and sizes["J"] >= 2 for sizes in drawn), drawn


@pytest.mark.parametrize("stride,padding", SETTINGS)
@pytest.mark.parametrize("name", LAYERS)
def test_every_oracle_verifies_at_each_stride_and_padding(name, stride, padding):
    """conv2d, maxpool2d and avgpool2d verify with every oracle at strides 1 and 2, padding 0 and 1."""
    report = verify.check(with_settings(name, stride, padding), oracles=ORACLES)
    rep = report.derivations[0]
    assert rep.status == "verified", report.table()
    for g in rep.gradients:
        for oracle in ORACLES:
            result = g.oracles[oracle]
            assert result.status == "pass" or (result.status == "skip" and "not installed" in result.reason)


@pytest.mark.parametrize("stride,padding", SETTINGS)
@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_forward_matches_the_library_at_each_stride_and_padding(name, stride, padding, framework):
    """The generated forward equals torch.nn.functional / jax.lax at each stride and padding, on the
    sizes the checks draw."""
    d = load(with_settings(name, stride, padding))
    op = catalogue.entry(name).library(framework)
    sample = sampling.draw(d, seed=1)
    settings = {**d.constants, **d.fixed_sizes}
    if framework == "torch":
        torch = pytest.importorskip("torch")
        values = {k: torch.tensor(v, dtype=torch.float64) for k, v in sample.values.items()}
        library = op.fn(catalogue.torch_namespace(), {**values, **settings}).numpy()
    else:
        jax = pytest.importorskip("jax")
        with jax.enable_x64(True):
            values = {k: jax.numpy.asarray(v, dtype=jax.numpy.float64) for k, v in sample.values.items()}
            library = np.asarray(op.fn(catalogue.jax_namespace(), {**values, **settings}))
    generated = codegen.compile_derivation(d, "numpy").forward(**sample.values)[d.output]
    assert generated.shape == library.shape
    assert np.allclose(generated, library, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride,padding", SETTINGS)
@pytest.mark.parametrize("name", LAYERS)
def test_hand_written_module_at_each_stride_and_padding(name, stride, padding):
    """The hand-written NumPy layer (Conv2dModule, MaxPool2dModule, AvgPool2dModule, im2col) computes
    the true gradients at strides 1 and 2 and paddings 0 and 1, as the exact oracle has them."""
    d = load(with_settings(name, stride, padding))
    layer = target(resolve(catalogue.entry(name).numpy), d)
    oracle = Exact(d)
    for sample in sampling.samples(d, seed=2):
        values = {**sample.values, **d.constants, **d.fixed_sizes}
        expected = as_floats(sample.forward[d.output])
        prepared = layer.prepare(values, expected)
        assert np.allclose(prepared.output, expected, rtol=1e-12, atol=1e-12)
        grads = prepared.backward()
        for gradient, _, true, _ in oracle.gradients(sample):
            assert np.allclose(grads[gradient[1:]], as_floats(true), rtol=1e-10, atol=1e-12), gradient


def as_floats(values) -> np.ndarray:
    return np.array([float(v) for v in np.ravel(values)]).reshape(np.shape(values))


def loops(source: str) -> list[str]:
    """The loop constructs of a Python source: for, while and comprehensions, with their lines."""
    kinds = (ast.For, ast.AsyncFor, ast.While, ast.comprehension)
    return [
        f"{type(n).__name__} on line {getattr(n, 'lineno', '?')}"
        for n in ast.walk(ast.parse(source))
        if isinstance(n, kinds)
    ]


@pytest.mark.parametrize("backend", codegen.BACKENDS)
@pytest.mark.parametrize("path", WINDOWED, ids=[p.stem for p in WINDOWED])
def test_generated_code_has_no_python_loop(path, backend):
    """Every windowed layer's generated forward and backward, with their window helper, loop over no
    element in Python: no for, no while, no comprehension anywhere in the source, also in the saved
    form (PyTorch's max pooling then has helpers of its own)."""
    assert loops(codegen.display_source(load(path), backend)) == []
    assert loops(codegen.display_source(load(path), backend, saved=True)) == []


def test_torch_phases_of_no_window_are_zeros():
    """An average pool's PyTorch gradient adds shifted copies of dy per stride phase: with a window
    longer than x and padding (K = 4, P = 1, H = 1, so I = 0) every copy is cut past both ends of an
    empty axis, which F.pad's negative padding refuses; the gradient is zeros of x's shape, and at
    H = 2, 3 it is the NumPy backend's."""
    torch = pytest.importorskip("torch")
    text = (Path(__file__).parent / "shapes" / "pool_phases_stride_past_window.deriv").read_text()
    d = load(text.replace("K = 2", "K = 4").replace("S = 3", "S = 1").replace("P = 0", "P = 1"))
    backward = codegen.compile_derivation(d, "torch").backward
    reference = codegen.compile_derivation(d, "numpy").backward
    for H in (1, 2, 3):
        I = d.complete_sizes({"N": 2, "H": H})["I"]
        x, dy = np.arange(2.0 * H).reshape(2, H), np.arange(1.0, 2.0 * I + 1).reshape(2, I)
        got = backward(x=torch.from_numpy(x), y=torch.from_numpy(dy), dy=torch.from_numpy(dy))["dx"]
        assert np.array_equal(got.numpy(), reference(x=x, y=dy, dy=dy)["dx"]), H
        if I == 0:
            assert not got.numpy().any()


def test_strided_first_draw_does_not_tile_evenly():
    """At stride 2 the first draw's windows do not tile the input evenly: (H + 2P - KH) leaves a
    remainder modulo the stride, so the last rows of x are read by no window."""
    d = load(with_settings("conv2d", 2, 1))
    sizes = sampling.samples(d, seed=0)[0].sizes
    assert (sizes["H"] + 2 - sizes["KH"]) % 2 == 1
    assert (sizes["W"] + 2 - sizes["KW"]) % 2 == 1


def test_max_pool_windows_have_one_clear_maximum():
    """The input of a windowed maximum is drawn as distinct values at least 1/16 apart, so each window's
    largest entry beats the next by more than the sampler's margin."""
    d = load("maxpool2d")
    x = np.asarray(sampling.draw(d, seed=0).values["x"], dtype=np.float64)
    gaps = np.diff(np.sort(x.ravel()))
    assert gaps.min() >= 1 / 16 > sampling.MARGIN


def test_reads_outside_are_zero_for_sums_and_absent_for_maxima():
    """A shifted read past the edge is zero in a sum (zero padding) and takes no part in a maximum: an
    all-negative input pooled with padding keeps its negative maxima, as F.max_pool2d does."""
    text = """
[forward]
y[i] = max(x[i + k - 1], k)
[gradients]
dx[h] = sum(dy[i] * where(x[h] == y[i], 1, 0) * delta(h, i + k - 1), i, k)
[inputs]
x: (H,)
[sizes]
I = H
K = 3
"""
    d = load(text)
    gen = codegen.compile_derivation(d, "numpy")
    x = -np.arange(1.0, 6.0)
    assert np.array_equal(gen.forward(x=x)["y"], [-1.0, -1.0, -2.0, -3.0, -4.0])
    padded = load(
        "[forward]\ny[i] = sum(x[i + k - 1], k)\n[gradients]\ndx[h] = sum(dy[i] * delta(h, i + k - 1), i, k)\n[inputs]\nx: (H,)\n[sizes]\nI = H\nK = 3\n"
    )
    assert np.array_equal(
        codegen.compile_derivation(padded, "numpy").forward(x=x)["y"], [-3.0, -6.0, -9.0, -12.0, -9.0]
    )


def test_flipped_bonus_formula_reads_as_written():
    """The report's formula keeps its 1-based subscripts: show prints K[l + 2, m + 2] * X[i - l, j - m]
    and the sums from -1 to 0."""
    from verify.cli import show_text

    text = show_text(load("conv2d_flipped"))
    assert "sum(K[l + 2, m + 2]*X[i - l, j - m], (l, -1, 0), (m, -1, 0))" in text


def test_torch_fold_of_no_window_is_zeros():
    """PyTorch's pooling gradient is an F.fold, which refuses an empty input: with no window at all
    (H = 2 < K = 3, no padding, so I = 0) the generated gradient is zeros of x's shape."""
    torch = pytest.importorskip("torch")
    text = (Path(__file__).parent / "shapes" / "pool_fold_1d.deriv").read_text().replace("P = 1", "P = 0")
    backward = codegen.compile_derivation(load(text), "torch").backward
    x = torch.tensor([[[1.0, 2.0]]], dtype=torch.float64)
    empty = torch.zeros(1, 1, 0, dtype=torch.float64)
    assert torch.equal(backward(x=x, y=empty, dy=empty)["dx"], torch.zeros_like(x))
