"""The limits on what a derivation file may ask for, each checked where the text is read, so that a
file beyond one gets a one-line `file:line:col: message` at once rather than a hang, a memory error or
a recursion error somewhere later. The README states each of them.

The caps are far above any derivation of a layer or a loss (the catalogue's longest statement, batch
norm's dx, has 47 syntax nodes and nests 8 deep; its costliest check, the MLP's, 21,000 evaluation
steps per draw) and far below what would take the checks more than a few seconds.
"""

from __future__ import annotations

from fractions import Fraction

MAX_SIZE = 32  # a size fixed in [sizes]: the exact oracle evaluates every element in 50 digits
MAX_STATEMENTS = 200  # statements in one section
MAX_STATEMENT_CHARS = 5000  # characters in one statement
MAX_NODES = 1000  # syntax nodes in one statement: terms, names, operators (x[i] is three)
MAX_DEPTH = 40  # nesting of one statement: calls, parentheses, powers, unary minus, operands
MAX_LITERAL_CHARS = 100  # characters of one number literal
MAX_EXPONENT = 300  # a number, literal or computed from literals, lies within 1e-300 .. 1e300
# The exact evaluation of one draw: every element of every statement, a sum's body once per term (an
# index a delta of the summand fixes counting once), and the reverse accumulation through the forward: per
# element, the statement again and one local derivative per element it reads (a derivative holding the
# statement's sums costs what they cost, per read). At the sizes the check drew: the MLP takes up to
# 110,000, a convolution with its gradients up to 1,900,000 (1-3 s with the rounding bounds). Repeated
# draws (a draw too close to a kink is drawn again) stop at MAX_DRAWING in all.
MAX_EVALUATIONS = 2_000_000
MAX_DRAWING = 8_000_000
# The near draw moves input elements to place each kink of the forward just off it, evaluating the forward
# again for every step of its search: it stops placing after MAX_PLACING steps of those evaluations in all
# (the MLP's takes up to 230,000; a kink in a statement with a long sum took 4,000,000, 6 s).
MAX_PLACING = 1_000_000
MAX_UNIFORM = 10**9  # the bounds of uniform(a, b): samples are whole multiples of a grid step, in int64
MAX_POWER_BITS = 100_000  # the exact value of a power of two literals, before it is compared with 1e300

LARGEST = Fraction(10) ** MAX_EXPONENT


def magnitude_problem(value: Fraction) -> str | None:
    """Why the exact number `value` is beyond MAX_EXPONENT, or None. A number that far from 1 has no
    float64 value to check the generated code with."""
    if value == 0:
        return None
    size = abs(value)
    if size > LARGEST:
        return f"is larger than 1e{MAX_EXPONENT} in magnitude"
    if size < 1 / LARGEST:
        return f"is smaller than 1e-{MAX_EXPONENT} in magnitude"
    return None


# The fewest values a uniform(a, b) input may take: an input held at one value (uniform(0.999, 1.001)
# draws x = 1 alone) makes dy/x**2 equal dy/x at every sample, and a wrong formula verify.
MIN_UNIFORM_VALUES = 16


def uniform_problem(low: Fraction, high: Fraction, grid: int) -> str | None:
    """Why uniform(low, high) cannot be sampled on multiples of 1/grid, or None."""
    if max(abs(low), abs(high)) > MAX_UNIFORM:
        return f"needs bounds within -{MAX_UNIFORM:.0e} .. {MAX_UNIFORM:.0e}"
    count = (high * grid) // 1 + (-low * grid) // 1 + 1  # the multiples of 1/grid from low to high
    if count < MIN_UNIFORM_VALUES:
        held = "no multiple" if count <= 0 else f"only {count} multiple{'s' * (count > 1)}"
        return (
            f"holds {held} of 1/{grid}, the step of the samples drawn; at least {MIN_UNIFORM_VALUES} are "
            "needed, or a wrong formula that agrees at those few values would verify: widen it"
        )
    return None


def constant_problem(value) -> str | None:
    """Why a constant the parser computed from literals (`0/0`, `sqrt(-1)`, `exp(1000)`, `2**2**2**2**2`)
    cannot stand in a formula, or None. `value` is a SymPy expression without symbols."""
    import sympy as sp

    if value is sp.nan:
        return "is not a number (0/0)"
    if value.is_infinite or value in (sp.zoo, sp.oo, -sp.oo):
        return "is infinite (a division by zero?)"
    if value.is_Rational:
        return magnitude_problem(Fraction(int(value.p), int(value.q)))
    approx = value.rewrite(sp.exp).evalf(20)
    if approx is sp.nan or approx.is_infinite:
        return "is not finite"
    if approx.has(sp.I) or approx.is_extended_real is False:
        return "is not a real number"
    if approx.is_Float and abs(approx) > sp.Integer(10) ** MAX_EXPONENT:
        return f"is larger than 1e{MAX_EXPONENT} in magnitude"
    return None


def power_problem(base, exponent) -> str | None:
    """Why SymPy should not compute the power of two numbers exactly (its digits would not fit in
    memory: `10**10**10`), or None. Checked before computing it."""
    if base in (0, 1, -1) or not exponent.is_Rational:
        return None
    bits = max(int(base.p).bit_length(), int(base.q).bit_length()) if base.is_Rational else 64
    whole = abs(int(exponent.p)) // int(exponent.q) + 1
    if whole * bits > MAX_POWER_BITS:
        return f"is too large to compute exactly (about {float(whole * bits):.2g} bits)"
    return None


def _fixed_by_deltas(expr) -> set:
    """The summed indices that a Kronecker delta factor of the summand fixes with coefficient +-1, one
    per delta: the exact evaluator takes each from its delta rather than running over its range."""
    import sympy as sp

    from .model import deltas_out

    bound = [lim[0] for lim in expr.limits]
    fixed = set()
    for f in sp.Mul.make_args(deltas_out(expr.function)):
        if isinstance(f, sp.KroneckerDelta):
            difference = f.args[0] - f.args[1]
            fixed |= set([i for i in bound if i not in fixed and difference.diff(i) in (1, -1)][:1])
    return fixed


def _terms(expr, sizes) -> int:
    """How many times the exact evaluator runs the body of a sum or windowed maximum `expr`: its ranges
    multiplied, an index a delta of the body fixes counting once."""
    terms = 1
    fixed = _fixed_by_deltas(expr)
    for i, low, high in expr.limits:
        if i not in fixed:
            terms *= max(0, int(high.xreplace(sizes)) - int(low.xreplace(sizes)) + 1)
    return terms


def evaluations(expr, sizes) -> int:
    """How many steps the exact evaluation of `expr` takes for one element: one per node, a sum's body
    once per term (`sizes` maps size symbols to values)."""
    from sympy.concrete.expr_with_limits import ExprWithLimits

    if isinstance(expr, ExprWithLimits):  # a sum, or a windowed maximum
        return 1 + _terms(expr, sizes) * evaluations(expr.function, sizes)
    return 1 + sum(evaluations(a, sizes) for a in expr.args)


def reads(expr, names, sizes) -> dict[str, int]:
    """How many reads of each tensor in `names` the exact evaluation of `expr` makes for one element (a
    sum's body once per term, as `evaluations` counts): the reverse accumulation evaluates one local
    derivative per element read."""
    from sympy.concrete.expr_with_limits import ExprWithLimits
    from sympy.tensor.indexed import Indexed

    if isinstance(expr, Indexed):
        return {expr.base.label.name: 1}
    if getattr(expr, "is_Symbol", False):
        return {expr.name: 1} if expr.name in names else {}
    terms, inner = 1, expr.args
    if isinstance(expr, ExprWithLimits):
        terms, inner = _terms(expr, sizes), (expr.function,)
    out: dict[str, int] = {}
    for a in inner:
        for name, count in reads(a, names, sizes).items():
            out[name] = out.get(name, 0) + terms * count
    return out
