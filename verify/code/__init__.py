"""Checking a user's own backward implementation against a derivation (`verify.check_code`,
`python -m verify code FILE.py:NAME --against DERIVATION`).

- `names`: matching the code's names to the derivation's (aliases, --map);
- `kinds`: the kinds of code and how each is run (torch.autograd.Function, torch.nn.Module,
  jax.custom_vjp, UvA and CMU NumPy modules, functions forward/backward);
- `layout`: conventions (W transposed, a bias row, a batch mean), found and named;
- `target`: code bound to a derivation, what check_code, the numpy oracle and the benchmark run;
- `judge`: the check itself; `explain`: why a gradient is wrong; `report`: table and JSON;
- `source`: `FILE.py:NAME` to an object.
"""

from .judge import check_code
from .layout import Convention
from .names import CodeError
from .report import CodeReport
from .target import Binding, Prepared, Target, target

__all__ = ["Binding", "CodeError", "CodeReport", "Convention", "Prepared", "Target", "check_code", "target"]
