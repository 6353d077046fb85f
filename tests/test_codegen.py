"""Generated code, for every catalogue entry and every shape the fuzzer found wrong code for
(tests/shapes/), per backend, in float32 and float64, against the exact oracle's high-precision values:
at distinct sizes, with every axis of length 1, and with every pair of sizes equal above one (N = K),
where a transpose or a mask applied by axis position instead of by axis name still has the right shape
but the wrong values. Generated: a new .deriv file in either folder is covered with no new test code."""

import dataclasses
import functools
import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from verify import codegen, lower, sampling
from verify.catalogue import load
from verify.catalogue import paths as catalogue

CATALOGUE = catalogue()
SHAPES = sorted((Path(__file__).parent / "shapes").glob("*.deriv"))
BACKENDS = ["numpy", "jax", "torch"]
TOLERANCE = {"float64": 1e-9, "float32": 2e-4}
EQUAL = 3  # the common value of two sizes made equal: above one, so that no axis broadcasts


def size_patterns(path) -> list[str]:
    """'distinct', 'ones', and 'A=B' for every pair of the derivation's sizes that a draw chooses (not
    one that [sizes] fixes, as a pooling window, or computes, as a convolution's output size)."""
    d = load(path)
    names = [n for n in d.sizes if n not in d.fixed_sizes and n not in d.size_relations]
    return ["distinct", "ones"] + [f"{a}={b}" for a, b in itertools.combinations(names, 2)]


def case(path, sizes):
    """One entry at one size pattern. Its tests are one xdist_group (pyproject.toml runs --dist
    loadgroup), so that its exact draw (`exact_sample`, seconds for a convolution) is made in one worker."""
    return pytest.param(
        path,
        sizes,
        id=f"{path.stem}-{sizes}",
        marks=pytest.mark.xdist_group(f"exact-{path.parent.name}-{path.stem}-{sizes}"),
    )


CASES = [case(path, sizes) for path in CATALOGUE + SHAPES for sizes in size_patterns(path)]


def to_backend(value, backend, dtype):
    if backend == "numpy":
        return np.asarray(value, dtype=dtype)
    if backend == "jax":
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        return jax.numpy.asarray(value, dtype=dtype)
    torch = pytest.importorskip("torch")
    return torch.tensor(value, dtype=getattr(torch, dtype))


def to_numpy(value):
    return np.asarray(value.detach().numpy() if hasattr(value, "detach") else value, dtype=np.float64)


@functools.cache  # one exact draw per case, shared by its backends and dtypes
def exact_sample(path, sizes):
    d = load(path)
    if sizes == "ones":
        # every free size 1; a window's fixed size stays, and a related size follows from the others
        ones = {name: 1 for name in d.sizes if name not in d.size_relations}
        d = dataclasses.replace(d, fixed_sizes={**ones, **d.fixed_sizes})
        try:
            return d, sampling.draw(d, seed=7)
        except ValueError as e:
            pytest.skip(f"{d.name} has no sample with these sizes at 1: {e}")
    elif sizes != "distinct":
        d = dataclasses.replace(d, fixed_sizes={**d.fixed_sizes, **dict.fromkeys(sizes.split("="), EQUAL)})
    return d, sampling.draw(d, seed=7)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("path", "sizes"), CASES)
def test_generated_matches_exact(path, sizes, backend, dtype):
    d, sample = exact_sample(path, sizes)
    if sizes not in ("distinct", "ones"):
        assert len({sample.sizes[n] for n in sizes.split("=")}) == 1, sample.sizes
    gen = codegen.compile_derivation(d, backend)
    values = {k: to_backend(v, backend, dtype) for k, v in sample.values.items()}
    fwd = gen.forward(**values)
    grads = gen.backward(**values, **fwd)
    for name, value in {**fwd, **grads}.items():
        got = to_numpy(value)
        want = np.array([float(v) for v in np.ravel(sample.forward[name])]).reshape(
            np.shape(sample.forward[name])
        )
        assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
        scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
        tol = TOLERANCE[dtype]
        assert np.allclose(got, want, rtol=tol, atol=tol * scale), (
            f"{name}: max err {np.max(np.abs(got - want))}"
        )
    assert set(fwd) | set(grads) == {st.target for st in d.forward + d.checked}


SAVED_CASES = [case(path, sizes) for path in CATALOGUE + SHAPES for sizes in ("distinct", "ones")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("path", "sizes"), SAVED_CASES)
def test_saved_for_backward_matches_exact(path, sizes, backend):
    """The code whose forward keeps what its backward reads of it alone (relu's mask; what `verify bench`
    times and `export` runs) computes the same values as the exact oracle, and its forward returns the
    derivation's values and exactly the arrays it names as saved."""
    d, sample = exact_sample(path, sizes)
    gen = codegen.compile_derivation(d, backend, saved=True)
    values = {k: to_backend(v, backend, "float64") for k, v in sample.values.items()}
    fwd = gen.forward(**values)
    grads = gen.backward(**values, **fwd)
    assert set(fwd) == {st.target for st in d.forward} | set(gen.saved)
    for name, value in {**{k: v for k, v in fwd.items() if k not in gen.saved}, **grads}.items():
        got, want = to_numpy(value), np.array(sample.forward[name], dtype=np.float64)
        scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
        assert np.allclose(got, want, rtol=1e-9, atol=1e-9 * scale), (
            f"{name}: max err {np.max(np.abs(got - want))}"
        )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_generated_keeps_dtype(backend, dtype):
    """float32 in, float32 out: the generated code introduces no float64 constants arrays."""
    d, sample = exact_sample(CATALOGUE[0].parent / "batchnorm.deriv", "distinct")
    gen = codegen.compile_derivation(d, backend)
    values = {k: to_backend(v, backend, dtype) for k, v in sample.values.items()}
    out = gen.backward(**values, **gen.forward(**values))["dx"]
    assert str(out.dtype).endswith(dtype)


MEAN = """
[forward]
L = sum(x[n,i] * x[n,i], n, i) / N
[gradients]
dx[n,i] = 2 * x[n,i] / N
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_division_by_a_size_survives(backend):
    """SymPy 1.14's convert_indexed_to_array drops a division by a size symbol; ours must not: with
    N = 4 rows of ones, L = 12/4 = 3 and every dx is 2/4."""
    d = load(MEAN)
    gen = codegen.compile_derivation(d, backend)
    x = to_backend(np.ones((4, 3)), backend, "float64")
    assert float(gen.forward(x=x)["L"]) == 3.0
    assert np.all(to_numpy(gen.backward(x=x)["dx"]) == 0.5)
    assert "/N" in codegen.source(d, backend).replace(" ", "")


def test_softmax_jacobian_is_contracted():
    """The softmax Jacobian helper J[n,k,m] is never built: its delta contracts against the sum, so the
    generated backward has no N x K x K array and no eye()."""
    text = codegen.source(load("softmax"), "numpy")
    backward = text[text.index("def backward") :]
    assert "eye" not in backward and "J" not in backward.split('"""')[2]


def test_hoisted_sums_are_computed_once():
    """Batch-norm dx: a sum over the batch that does not depend on n is computed once and broadcast,
    never folded into one contraction with the outer index (measured 80x slower at 512 x 1024)."""
    text = codegen.source(load("batchnorm"), "numpy")
    dx_line = next(line for line in text.splitlines() if line.strip().startswith("dx ="))
    assert "einsum('mj,mj->j'" in dx_line
    assert "->nj" not in dx_line


def test_row_divisor_is_one_reciprocal_per_row():
    """Layernorm dx divides an N x J array by J*sqrt(var[n] + eps): the generated code computes that
    divisor's reciprocal once per row, as its own array of axis n, and multiplies; no entry of dx is
    divided (a division costs several multiplications, and torch.compile and XLA keep a / b as
    written)."""
    program = lower.backward_program(load("layernorm"))
    dx = next(a for a in program.body if a.name == "dx")
    assert not [p for p in dx.expr.atoms(sp.Pow) if p.exp.is_Number and p.exp < 0]
    reciprocals = [
        a for a in program.body if not a.statement and a.name in {s.name for s in dx.expr.free_symbols}
        and any(p.exp.is_Number and p.exp < 0 for p in a.expr.atoms(sp.Pow))
    ]  # fmt: skip
    assert [len(a.axes) for a in reciprocals] == [1]


def test_saved_for_backward_is_what_autograd_keeps():
    """With `saved`, relu's backward reads the boolean mask its forward kept (1 byte an entry, as
    jax.vjp's pullback does), never x; softplus's reads sigmoid(x) computed once in the forward; a
    gradient with no upstream (the MLP's loss) keeps its own statements, no window's scatter is looked
    into (NumPy's and JAX's maxpool save nothing; PyTorch's keeps where the maxima are, as autograd
    does: see test_torch_max_pooling_scatters_at_its_maxima), and PyTorch's code keeps no mask."""
    relu = codegen.compile_derivation(load("relu"), "numpy", saved=True)
    x = np.array([[-1.0, 0.0, 2.0]])
    kept = relu.forward(x=x)
    assert relu.saved == ("saved0",) and kept["saved0"].dtype == bool
    assert codegen._names(relu._backward) == ("saved0", "dy")
    assert relu.backward(**kept, dy=np.ones_like(x))["dx"].tolist() == [[0.0, 0.0, 1.0]]
    softplus = codegen.source(load("softplus"), "jax", saved=True)
    assert "def backward(saved0, dy)" in softplus and softplus.count("sigmoid") == 1
    mlp = codegen.source(load("mlp"), "numpy", saved=True)
    assert "dz = (p - t)/N" in mlp and "saved" not in mlp.split("dz =")[1].split("\n")[0]
    assert codegen.compile_derivation(load("maxpool2d"), "numpy", saved=True).saved == ()
    assert codegen.compile_derivation(load("maxpool2d"), "torch", saved=True).saved == (
        "saved_dx_at",
        "saved_dx_ties",
    )


def test_torch_max_pooling_scatters_at_its_maxima():
    """PyTorch's saved max pooling keeps, per window, where its one maximum is, and its backward adds dy
    there: torch.autograd's scatter, where col2im took five times as long, and the backward reads no x
    and no y. Where a window has several entries equal to its maximum, the formula sends dy to every
    one, which one position per window cannot say: those entries are kept as ties, each added dy. Where
    the maxima are single, against torch.autograd's gradient; with ties (a window of zeros beside one
    with a single maximum), against the count of windows each entry is a maximum of; with many, against
    the plain backward's fold."""
    torch = pytest.importorskip("torch")
    gen = codegen.compile_derivation(load("maxpool2d"), "torch", saved=True)
    assert "y" not in codegen._names(gen._backward)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.max_pool2d(x, 3, 2, 1)
    dy = torch.randn_like(y)
    (want,) = torch.autograd.grad(y, x, dy)
    kept = gen.forward(x=x.detach())
    assert kept["saved_dx_at"].dtype == torch.int64 and bool((kept["saved_dx_at"] >= 0).all())
    assert kept["saved_dx_ties"].shape == (2, 0)
    assert torch.equal(gen.backward(x=x.detach(), **kept, dy=dy)["dx"], want)
    tied = torch.zeros(1, 1, 3, 4, dtype=torch.float64)
    tied[0, 0, 1, 3] = 1.0  # windows (i, j) cover rows 2i-1..2i+1, columns 2j-1..2j+1
    kept = gen.forward(x=tied)
    assert kept["saved_dx_at"].tolist() == [[[[-1, 7], [-1, 7]]]]  # 7: row 1, column 3
    assert kept["saved_dx_ties"].shape == (2, 8)  # the four zeros of windows (0, 0) and (1, 0)
    dx = gen.backward(x=tied, **kept, dy=torch.ones(1, 1, 2, 2, dtype=torch.float64))["dx"]
    # the zeros of columns 0, 1 are maxima of windows (0, 0) and (1, 0); x[1, 3] of (0, 1) and (1, 1)
    assert dx[0, 0].tolist() == [[1.0, 1.0, 0.0, 0.0], [2.0, 2.0, 0.0, 2.0], [1.0, 1.0, 0.0, 0.0]]
    # many ties (x of three values), against the plain backward's fold of where(x == y, dy, 0)
    x = torch.randint(0, 3, (2, 3, 9, 8), generator=torch.Generator().manual_seed(0)).to(torch.float64)
    kept = gen.forward(x=x)
    dy = torch.randn(kept["y"].shape, dtype=torch.float64)
    plain = codegen.compile_derivation(load("maxpool2d"), "torch").backward(x=x, y=kept["y"], dy=dy)["dx"]
    assert kept["saved_dx_ties"].shape[1] > 0
    assert torch.allclose(gen.backward(x=x, **kept, dy=dy)["dx"], plain, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "name",
    ["cases/softmax_scaled_logits.deriv", "shapes/equal_branches.deriv"],
    ids=lambda n: n.split("/")[0],
)
def test_generated_code_is_the_same_in_every_process(name):
    """The generated code is a function of the derivation alone, not of the process's hash seed: these
    two once printed differently from run to run, where two reads of equal rank (a stable softmax's
    z[a, m, c] and its shift's, whose fresh indices share the name m; w[k] and b[n]) took a set's order."""
    path = Path(__file__).parent / name
    texts = {
        subprocess.run(
            [sys.executable, "-m", "verify", "codegen", str(path), "--backend", "numpy"],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in (1, 2, 3)
    }
    assert len(texts) == 1


def test_library_convolution_pads_without_a_copy():
    """Where a library convolution's own zero padding (the same on both sides) makes exactly the windows
    the formula reads, the PyTorch code passes `padding=` and copies no x through F.pad (a fifth of
    conv1d's kernel gradient at the bench's sizes), and its input gradient, a transposed convolution at
    stride 2, pads nothing either (the library's output padding makes x's length), with the same values
    whichever way the window tiles the input (L - KL even or odd at stride 2). A kernel gradient reading x one place too far keeps
    F.pad: the library's padding would make another window there."""
    torch = pytest.importorskip("torch")
    conv1d = codegen.source(load("conv1d"), "torch")
    assert conv1d.count("padding=(1,)") == 3 and "nn.functional.pad(" not in conv1d
    gen = codegen.compile_derivation(load("conv1d"), "torch")
    for L in (9, 10):
        x, K, b = (
            torch.randn(*shape, dtype=torch.float64, requires_grad=True)
            for shape in [(2, 3, L), (4, 3, 3), (4,)]
        )
        y = torch.nn.functional.conv1d(x, K, b, stride=2, padding=1)
        dy = torch.randn_like(y)
        want = dict(zip(("dx", "dK", "db"), torch.autograd.grad(y, (x, K, b), dy), strict=True))
        x, K, b = x.detach(), K.detach(), b.detach()
        assert torch.allclose(gen.forward(x=x, K=K, b=b)["y"], y, rtol=1e-12, atol=1e-12)
        got = gen.backward(x=x, K=K, dy=dy)
        for name, value in want.items():
            assert torch.allclose(got[name], value, rtol=1e-12, atol=1e-12), (L, name)
    shifted = codegen.source(
        load(Path(__file__).parent / "cases" / "wrong_conv_padding_off_by_one.deriv"), "torch"
    )
    assert "conv2d_weight(torch.nn.functional.pad(x" in shifted


@pytest.mark.parametrize("path", [p for p in catalogue() if load(p).windowed], ids=lambda p: p.stem)
def test_numpy_windows_read_any_memory_layout(path):
    """The generated NumPy forward and backward of a convolution or pooling give the same values for an
    input held in Fortran order or as a transposed view (x_nhwc.transpose(0, 3, 1, 2)) as for a C-ordered
    one: the strided window view once applied an array's strides to a C-ordered copy of it."""
    d = load(path)
    sample = sampling.draw(d, 0)
    gen = codegen.compile_derivation(d, "numpy")
    values = {k: v for k, v in sample.values.items()}
    want = {**gen.forward(**values)}
    want.update(gen.backward(**values, **want))

    def layouts(v):
        if not isinstance(v, np.ndarray) or v.ndim < 2:
            return [v]
        turned = np.moveaxis(np.ascontiguousarray(np.moveaxis(v, 1, -1)), -1, 1)  # channels last, viewed NCHW
        return [np.asfortranarray(v), turned]

    for k in range(2):
        held = {name: layouts(v)[min(k, len(layouts(v)) - 1)] for name, v in values.items()}
        got = {**gen.forward(**held)}
        got.update(gen.backward(**held, **got))
        for name, value in want.items():
            np.testing.assert_array_equal(got[name], value, err_msg=f"{name}, layout {k}")
