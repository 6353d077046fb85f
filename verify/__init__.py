"""gradverify: checks hand-written gradient formulas in index notation against independent oracles."""

from .catalogue import load
from .check import check
from .model import Derivation, DerivationError

__all__ = [
    "Derivation",
    "DerivationError",
    "check",
    "check_code",
    "evaluate",
    "load",
    "load_ipython_extension",
]


def check_code(obj, derivation, names=None, dtype="float64", **options):
    """Check a user's implementation (a torch.autograd.Function, a jax.custom_vjp function, a UvA- or
    CMU-style module, a (forward, backward) pair of functions) against a derivation: see
    `verify.code.check_code`."""
    from .code import check_code

    return check_code(obj, derivation, names, dtype, **options)


def load_ipython_extension(ipython):
    """`%load_ext verify`: the %%deriv cell magic (see verify.notebook)."""
    from .notebook import load_ipython_extension

    load_ipython_extension(ipython)


def evaluate(derivation, values):
    """Every forward value and every written gradient of `derivation`, in float64, from `values` (every
    input by name, and the upstream gradient `d<output>` unless the output is a scalar). Fixed scalars
    from the file's [inputs] are filled in. Computed by the generated NumPy code."""
    from .codegen import compile_derivation

    d = derivation if isinstance(derivation, Derivation) else load(derivation)
    gen = compile_derivation(d, "numpy")
    values = {**{k: float(v) for k, v in d.fixed_values.items()}, **values}
    fwd = gen.forward(**values)
    return {**fwd, **gen.backward(**values, **fwd)}
