"""Chains, Jacobian statements and matrix notation, beyond the verdicts tests/cases pins: what `show`
prints for them, what the JSON report says about them, and the products of vectors in matrix notation."""

import json

import pytest

import verify
from verify.catalogue import load
from verify.cli import main as cli_main
from verify.model import DerivationError

MATRIX = """[forward]
Y = X @ W.T + b
[gradients]
dW = dY.T @ X
[inputs]
X: (N, D)
W: (K, D)
b: (K,)
"""


def test_show_prints_the_index_form_of_a_matrix_statement(tmp_path, capsys):
    """`show` prints each matrix statement as written, then the index notation it stands for, with the
    sizes the [inputs] declaration named."""
    path = tmp_path / "m.deriv"
    path.write_text(MATRIX)
    assert cli_main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "sizes: N, D, K" in out
    assert "  # Y = X @ W.T + b\n  Y[n, k] = b[k] + sum(W[k, d]*X[n, d], d)" in out
    assert "  # dW = dY.T @ X\n  dW[k, d] = sum(X[n, d]*dY[n, k], n)    (checked: dL/dW)" in out


CHAIN_AND_JACOBIAN = """[forward]
y[n,k] = exp(x[n,k]) / sum(exp(x[n,m]), m)
[gradients]
Jac[n,k,m] = dy[n,k]/dx[n,m] = y[n,k] * (delta(k,m) - y[n,m])
dx[n,m] = sum(dy[n,k] * Jac[n,k,m], k) = y[n,m] * (dy[n,m] - sum(dy[n,k] * y[n,k], k))
"""


def test_json_names_steps_and_jacobians():
    """In the JSON report a chain's step carries its claim, step number, step count and column, and a
    Jacobian statement what it differentiates by what."""
    report = json.loads(verify.check(CHAIN_AND_JACOBIAN, oracles=("exact",)).dumps())
    rows = {g["name"]: g for g in report["derivations"][0]["gradients"]}
    assert set(rows) == {"dy/dx", "dx step 1/2", "dx step 2/2"}
    assert rows["dy/dx"]["jacobian"] == {"of": "y", "wrt": "x"}
    second = rows["dx step 2/2"]
    assert (second["claim"], second["step"], second["steps"], second["column"]) == ("dx", 2, 2, 42)
    assert all(g["status"] == "verified" for g in rows.values())


def test_a_jacobian_off_its_claimed_block_is_diagnosed():
    """A Jacobian claimed block-diagonal over the batch index, whose off-block entries are not zero, is
    wrong, and the diagnosis names the letter."""
    text = CHAIN_AND_JACOBIAN.replace("Jac[n,k,m] = dy[n,k]/dx[n,m]", "Jac[n,k,m] = dy[n,k]/dx[n,m]", 1)
    text = text.replace(
        "y[n,k] = exp(x[n,k]) / sum(exp(x[n,m]), m)", "y[n,k] = exp(x[n,k]) / sum(exp(x[p,m]), p, m)"
    )
    gradient = verify.check(text, oracles=("exact",)).derivations[0].gradients[0]
    assert gradient.status == "wrong"
    assert "the Jacobian is not block-diagonal over n" in gradient.diagnosis


@pytest.mark.parametrize(
    "rhs,index_form",
    [
        ("u @ v", "sum(u[k]*v[k], k)"),  # NumPy: two vectors, a dot product
        ("outer(u, v)", "u[k]*v[k2]"),
        ("diag(u)", "delta(k, k2)*u[k]"),
        ("eye(K) * 2", "2*delta(k, k2)"),
    ],
)
def test_vector_products_in_matrix_notation(rhs, index_form):
    """Products of vectors read as NumPy reads them; outer, diag and eye build matrices."""
    from verify.unparse import DerivPrinter

    rank = 0 if rhs == "u @ v" else 2
    target = "g" if rank == 0 else "G"
    text = f"[forward]\ny = u @ v\n[gradients]\ndu = dy * v\n{target} = {rhs}\n[inputs]\nu: (K,)\nv: (K,)\n"
    d = verify.load(text)
    assert DerivPrinter().doprint(d.statement(target).rhs) == index_form


def test_mixing_notations_in_one_expression_is_an_error():
    """A formula is in index notation or in matrix notation; one with both is refused at the indexed
    tensor, with the way out: a bracketed matrix part `(A @ B)[i, j]`."""
    with pytest.raises(DerivationError) as e:
        verify.load(MATRIX.replace("dW = dY.T @ X", "dW = dY.T @ X + W[k, d]"))
    assert "an indexed tensor in a matrix formula" in e.value.message
    d = verify.load(MATRIX.replace("dW = dY.T @ X", "dW[k, d] = (dY.T @ X)[k, d]"))
    assert str(d.statement("dW").rhs) == "Sum(X[n, d]*dY[n, k], (n, 0, N - 1))"


def test_deltas_pinned_by_sums_are_contracted_for_the_exact_oracle():
    """A step written with deltas inside nested sums, as reports write them, is evaluated in its
    contracted form (so that its cost is that of the contracted form), and the value is the same."""
    import mpmath
    import numpy as np
    import sympy as sp

    from verify.exacteval import Evaluator, contracted, elements

    d = verify.load(
        "[forward]\nY[m,n] = sum(X[m,k] * W[n,k], k)\n[gradients]\n"
        "dW[i,j] = sum(dY[m,n] * sum(delta(n,i) * delta(k,j) * X[m,k], k), m, n)\n"
    )
    rhs = d.statement("dW").rhs
    short = contracted(rhs)
    X, dY = (next(a.base for a in rhs.atoms(sp.Indexed) if a.base.label.name == name) for name in ("X", "dY"))
    i, j, m = (sp.Symbol(name, integer=True) for name in "ijm")
    # the summed index is renamed apart from every other (verify.model.fresh_sums): equal up to its name
    expected = sp.Sum(X[m, j] * dY[m, i], (m, 0, d.sizes["M"] - 1))
    assert not short.has(sp.KroneckerDelta) and short.as_dummy() == expected.as_dummy(), short
    sizes = {d.sizes["M"]: 3, d.sizes["N"]: 2, d.sizes["K"]: 4}
    rng = np.random.default_rng(0)
    values = {
        name: rng.integers(-5, 5, size=(3, 4 if name == "X" else 2)).astype(object) for name in ("X", "dY")
    }
    ev = Evaluator({k: np.vectorize(mpmath.mpf, otypes=[object])(v) for k, v in values.items()}, sizes)
    for i, j in elements((2, 4)):
        env = {sp.Symbol("i", integer=True): i, sp.Symbol("j", integer=True): j}
        assert ev(rhs, env) == ev(short, env)


UNDECLARED_BIAS = """[inputs]
X: (N, D)
W: (D, K)
{extra}[forward]
Z = X @ W + b
[gradients]
{gradient}
"""


@pytest.mark.parametrize(
    "gradient, said",
    [
        ("db = sum(dZ, axis=0)", "declare its shape there, as `b: (K)`"),
        ("db[k] = sum(dZ[n, k], n)", "declare its shape there)"),
    ],
)
def test_a_bias_left_out_of_inputs_is_said_to_be_a_scalar_for_that_reason(gradient, said):
    """A student's `Z = X @ W + b` with b not in [inputs] makes b a scalar, so a vector db is an error;
    the error says why b is a scalar and how to declare it (in matrix notation with the sizes db has).
    A scalar input named in [inputs] gets no such hint: there a scalar is what was asked for."""
    with pytest.raises(
        DerivationError, match="b is not in \\[inputs\\], so \\[forward\\] made it a scalar"
    ) as e:
        load(UNDECLARED_BIAS.format(extra="", gradient=gradient))
    assert said in str(e.value)
    with pytest.raises(DerivationError) as e:
        load(UNDECLARED_BIAS.format(extra="b: normal\n", gradient=gradient))
    assert "not in [inputs]" not in str(e.value)
