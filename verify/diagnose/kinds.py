"""What a diagnosis says about a wrong gradient: the kind of mistake, a message, the worst entry, and a fix
that the exact oracle verified.

The kinds (`Kind`), each with a hand-written case in tests/cases (`# expect: wrong dx kind sign: ...`):

    scale             a multiple of the true gradient: "is N times the true gradient (a missing 1/N?)"
    sign              the whole gradient, or one term of it, has the wrong sign
    transpose         the transpose of the true gradient, or a read with two indices swapped
    batch-mixing      right on each sample's own entries, wrong on entries that mix different samples
    missing-path      the true gradient with a forward name held constant, or a direct dependence left
                      out: "dx treats var as a constant: it misses the path x -> var -> xhat"
    diagonal-only     the true gradient with a local Jacobian cut to its diagonal (or to its per-sample
                      blocks): "keeps only the diagonal of the Jacobian dy/dx"
    missing-term      adding a term of the true expansion fixes it
    extra-term        dropping a term fixes it
    missing-factor    multiplying by a factor of the chain rule (a mask, a local derivative) fixes it
    extra-factor      dropping a factor fixes it ("x[n,i] where 1 belongs")
    wrong-variable    a neighbouring variable of the same shape read instead (x for xhat, y for x)
    wrong-index       an index renamed (xhat[n,j] inside a sum over m where xhat[m,j] belongs)
    sum-axis          a sum over the other axis of what it reads
    wrong-size        one size where another belongs (N for J, N - 1 for N)
    exponent          a power off by one (-1/2 for -3/2)
    eps               a small fixed constant (eps) left out or put in where it does not belong
    threshold         a where() condition off its kink, or its comparison reversed
    upstream-missing  the gradient for an upstream gradient of ones: the factor dy is left out
    propagated        right when the gradients it uses are right: wrong only through an earlier one
    not-real          the written value is not a real number somewhere (sqrt or log of a negative)
    unknown           none of the above explains it

A kind read off the numbers (scale, sign, transpose, batch-mixing, missing-path, diagonal-only,
upstream-missing, propagated) names the cause; otherwise the kind is that of the smallest verified fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

SHORT = 40  # an edit described in at most this many characters is shown beside the fix


class Kind(StrEnum):
    SCALE = "scale"
    SIGN = "sign"
    TRANSPOSE = "transpose"
    BATCH_MIXING = "batch-mixing"
    MISSING_PATH = "missing-path"
    DIAGONAL_ONLY = "diagonal-only"
    MISSING_TERM = "missing-term"
    EXTRA_TERM = "extra-term"
    MISSING_FACTOR = "missing-factor"
    EXTRA_FACTOR = "extra-factor"
    WRONG_VARIABLE = "wrong-variable"
    WRONG_INDEX = "wrong-index"
    SUM_AXIS = "sum-axis"
    WRONG_SIZE = "wrong-size"
    EXPONENT = "exponent"
    EPS = "eps"
    THRESHOLD = "threshold"
    UPSTREAM_MISSING = "upstream-missing"
    PROPAGATED = "propagated"
    NOT_REAL = "not-real"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Fix:
    """A corrected statement the exact oracle verified: `text` is the statement as it would be written
    (at `line` of the file, replacing statement `target`), `edit` says what changed, in words, and
    `rewrite` is True when it is the true gradient written out rather than a small edit of the line."""

    target: str
    line: int
    text: str
    edit: str
    kind: Kind
    rewrite: bool = False
    rhs: object = field(default=None, compare=False, repr=False)  # the SymPy right-hand side, for LaTeX

    def to_json(self) -> dict:
        return {"statement": self.text, "line": self.line, "edit": self.edit, "rewrite": self.rewrite}


@dataclass(frozen=True)
class Worst:
    """The entry where the written value is furthest from the true one, with both values."""

    index: tuple[int, ...]
    written: float
    true: float
    oracle: str = ""

    def describe(self, claim: str) -> str:
        where = f"{claim}[{', '.join(map(str, self.index))}]" if self.index else claim
        by = f" ({self.oracle})" if self.oracle else ""
        if not (math.isfinite(self.written) and math.isfinite(self.true)):  # exact values past 1e308
            return f"worst at {where}: written and true values past float64's range{by}"
        return f"worst at {where}: written {self.written:.6g}, true {self.true:.6g}{by}"

    def to_json(self) -> dict:
        return {"index": list(self.index), "written": self.written, "true": self.true, "oracle": self.oracle}


@dataclass(frozen=True)
class Mistake:
    """What is wrong with one gradient: the kind, a one-line message naming the cause, the worst entry,
    a verified fix when one was found, and why there is none when the search stopped early."""

    kind: Kind
    message: str
    claim: str = ""
    worst: Worst | None = None
    fix: Fix | None = None
    note: str = ""  # e.g. "no fix found within 400 candidates"

    def summary(self) -> str:
        """The readable diagnosis: the message, the fix, the worst entry."""
        parts = [self.message] if self.message else []
        if self.fix is not None:
            parts.append(self.fix_phrase())
        if self.worst is not None:
            parts.append(self.worst.describe(self.claim))
        return "; ".join(parts)

    def fix_phrase(self) -> str:
        """The fix in the summary: "did you mean: <statement> (<edit>)" (the edit when it is short)."""
        if self.fix is None:
            return ""
        short = self.fix.edit and len(self.fix.edit) <= SHORT
        return f"did you mean: {self.fix.text}" + (f" ({self.fix.edit})" if short else "")

    def to_json(self) -> dict:
        out: dict = {"kind": str(self.kind), "message": self.message}
        if self.worst is not None:
            out["worst"] = self.worst.to_json()
        if self.fix is not None:
            out["fix"] = self.fix.text
            out["fix_detail"] = self.fix.to_json()
        if self.note:
            out["note"] = self.note
        return out
