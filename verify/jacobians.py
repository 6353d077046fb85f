"""Checking Jacobian statements: a written Jacobian `dy[n,k]/dx[n,m] = expr` holds one value per
distinct letter; the claim it makes is about the full Jacobian, of shape y.shape + x.shape, with every
entry off the stated block (where a shared letter would take two values) claimed zero. Oracles compare
the written claim expanded to full size with their own full Jacobian; the diagnosis says when the
only disagreement is the block structure ("the Jacobian is not block-diagonal over n")."""

from __future__ import annotations

import itertools

import numpy as np

from .comparison import as_array
from .model import Statement


def full(st: Statement, written) -> np.ndarray:
    """The written Jacobian at full size: entry [e, f] is written[letters] where the letters' values
    agree between e (y's indices) and f (x's indices), and 0 off the block. `written` is indexed by
    st.indices; `of_shape` and `wrt_shape` come from the statement's ranges through the written array."""
    jac = st.jacobian
    assert jac is not None, "full() expands a Jacobian statement"
    w = as_array(written)
    extent = dict(zip(st.indices, w.shape, strict=True))
    axes = jac.of_indices + jac.wrt_indices
    out = np.zeros(tuple(extent[i] for i in axes), dtype=object)
    for e in itertools.product(*(range(extent[i]) for i in axes)):
        env: dict = {}
        if all(env.setdefault(i, v) == v for i, v in zip(axes, e, strict=True)):
            out[e] = w[tuple(env[i] for i in st.indices)]
    return out


def block_mismatch(st: Statement, reference: np.ndarray, tol: float) -> str:
    """Where the true Jacobian (`reference`, full size, floats) is not zero off the block the statement
    claims: "y[0,.] depends on x[1,.]: the Jacobian is not block-diagonal over n". Empty when it is."""
    jac = st.jacobian
    assert jac is not None, "block_mismatch() reads a Jacobian statement's block"
    r = np.array([float(v) for v in np.ravel(reference)]).reshape(np.shape(reference))
    ny = len(jac.of_indices)
    scale = max(1.0, float(np.max(np.abs(r)))) if r.size else 1.0
    for letter in jac.shared:
        a, b = jac.of_indices.index(letter), ny + jac.wrt_indices.index(letter)
        for e in zip(*np.nonzero(np.abs(r) > tol * scale), strict=False):
            if e[a] != e[b]:
                y = ",".join(str(e[a]) if k == a else "." for k in range(ny))
                x = ",".join(str(e[b]) if ny + k == b else "." for k in range(len(jac.wrt_indices)))
                return (
                    f"{jac.of}[{y}] depends on {jac.wrt}[{x}]: the Jacobian is not block-diagonal "
                    f"over {letter.name}"
                )
    return ""
