"""The oracles, one module each, behind one interface (`base.Oracle`):

- exact: SymPy's derivative of the forward, propagated in 50-digit arithmetic (no generated code).
- fd:    central finite differences of the generated NumPy forward, float64.
- numpy: the hand-written backward of the matching module in implementations/numpy (catalogue only).
- jax:   jax.vjp of the generated JAX forward; catalogue forwards also against the jax library op.
- torch: torch.autograd of the generated PyTorch forward; catalogue forwards also against torch.
"""

from .base import Oracle, Skip
from .exact import Exact
from .finite_differences import FiniteDifferences
from .handwritten import HandWritten
from .jax_vjp import Jax
from .torch_autograd import Torch

ORACLE_CLASSES: dict[str, type[Oracle]] = {
    "exact": Exact,
    "fd": FiniteDifferences,
    "numpy": HandWritten,
    "jax": Jax,
    "torch": Torch,
}
ORACLES = tuple(ORACLE_CLASSES)

__all__ = ["ORACLES", "ORACLE_CLASSES", "Exact", "Oracle", "Skip"]
