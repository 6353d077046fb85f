"""Printers from lowered array programs to NumPy, JAX and PyTorch source.

Each backend is a subclass of the SymPy printer for that library, with one `_print_<Node>` method for
each node whose default printing is wrong or slow for whole arrays (SymPy prints `Max` as a reduction
and `Piecewise` as `select`), and for the array nodes of `verify.lower`.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable

import sympy as sp
from sympy.printing.numpy import JaxPrinter, NumPyPrinter
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.str import StrPrinter

from . import primitives

_EXACT_INTEGERS = 2**53
_SIZE_POWERS = 16  # a size below 2**63 to a power up to this stays within float64's range


class _ArrayMixin:
    """What all three backends share; `ns` is the module prefix as the generated code imports it."""

    # from the SymPy printer each backend mixes this into (SymPy has no type information)
    parenthesize: Callable[..., str]
    doprint: Callable[..., str]
    _stack: list[sp.Basic]  # the chain of expressions being printed, kept by `_print`

    backend = "numpy"
    ns = "np"
    ns_numpy = "np"
    axis_kw = "axis"
    amax = "max"
    # whether a pooling's scattered gradient whose terms vary with the window offset is printed as one
    # fold (col2im: `lower.Fold`) rather than as the backend's Scatter; only PyTorch has the op, F.fold
    folds = False
    # whether the forward may keep a comparison for the backward as a boolean array (relu's mask, which
    # jax.vjp's pullback reads too). Not in PyTorch: a boolean tensor argument makes torch.compile's loop
    # scalar (dy*m 2.1 ms against dy*(x > 0) 0.21, 512 x 1024 float64, one thread), and torch.autograd
    # keeps relu's output, a float, not a mask.
    saves_masks = True
    # whether the saved form's max pooling gradient is a scatter at the maxima its forward found
    # (`lower.scattered_at_maxima`), with the helpers `at_maxima_helper`: PyTorch, whose fold (col2im)
    # took five times torch.autograd's scatter
    scatters_at_maxima = False
    at_maxima_helper = ""
    # whether a convolution's input gradient at a stride is one library transposed convolution (reading
    # the upstream gradient spread out by the stride) rather than computed stride phase by stride phase
    # (see `lower._Lowering.phase_splits`): PyTorch's `convNd_input`. JAX keeps the phases: its
    # `lhs_dilation` convolution measured slower than them
    spreads = False

    def _module_format(self, fqn, register=True):
        for long in ("jax.numpy.", "numpy.", "torch."):
            if fqn.startswith(long):
                return self.ns + "." + fqn[len(long) :]
        return fqn

    def _call(self, fn: str, *args) -> str:
        return f"{self.ns}.{fn}({', '.join(args)})"

    def _operand(self, e) -> str:
        """`e` printed so that a postfix (`.T`, `[:, None]`, `.transpose(...)`) or an operator applies to
        all of it: parenthesized unless the text is one primary (a name, a call, an attribute, a
        subscript, a number). Decided on the printed text itself, so that no node whose printing is an
        operation (a mask `dy*(h > 0)` prints as a product) can lose its parentheses."""
        text = self._print(e)
        return text if _primary(text) else f"({text})"

    def _binds_like_product(self, text: str) -> str:
        """Text of an operation that binds like `*` (a mask product, `x @ y`), parenthesized inside a
        product or a power (`1/(dy*(h > 0))`, `(x @ y)**2`), whose SymPy printers would take it for a
        function call. Every other context places it through `_operand` or as a call argument."""
        parent = self._stack[-2] if len(self._stack) > 1 else None
        return f"({text})" if isinstance(parent, sp.Mul | sp.Pow) else text

    def _print_Symbol(self, e):
        return e.name

    def _print_Rational(self, e):
        if max(abs(e.p), e.q) >= _EXACT_INTEGERS:
            return repr(float(e))
        return f"{e.p}/{e.q}"

    def _print_Integer(self, e):
        # beyond 2**53 a Python int is no float64 and overflows torch's int64 conversion: print the float
        return repr(float(e)) if abs(e.p) >= _EXACT_INTEGERS else str(e.p)

    def _print_Half(self, e):
        return "0.5"

    def _print_Pow(self, e, rational=False):
        base, exp = e.args
        if exp.is_Number and _of_sizes(base) and not (exp.is_Integer and abs(exp) <= _SIZE_POWERS):
            # Sizes are Python numbers in generated code. A root of them (SymPy splits sqrt(16 + 1/N) out of
            # sqrt(g*(16 + 1/N))) is one torch.sqrt does not take, and a whole power past _SIZE_POWERS an
            # int that can pass float64's range, which no array can meet (int too large to convert). Both
            # in float64, as the formula's arithmetic is: inf or 0 past the range.
            power = exp.p if exp.is_Integer else repr(float(exp))
            return f"float(np.float64({self._print(base)})**{power})"
        if exp == sp.Rational(1, 2):
            return self._call("sqrt", self._print(base))
        if exp == sp.Rational(-1, 2):
            return f"1/{self._call('sqrt', self._print(base))}"
        if exp == -1:
            return f"1/{self.parenthesize(base, PRECEDENCE['Pow'])}"
        if exp.is_Rational and not exp.is_Integer:
            return f"{self.parenthesize(base, PRECEDENCE['Pow'])}**({float(exp)!r})"
        return f"{self.parenthesize(base, PRECEDENCE['Pow'])}**{self.parenthesize(exp, PRECEDENCE['Pow'])}"

    def _print_Relational(self, e):
        return f"({self._print(e.lhs)} {e.rel_op} {self._print(e.rhs)})"

    def _print_Piecewise(self, e):
        (a, cond), (b, _) = e.args[0], e.args[-1]
        if len(e.args) > 2:
            b = sp.Piecewise(*e.args[1:], evaluate=False)
        if b == 0:  # a mask multiplies faster than a select
            return self._binds_like_product(f"{self._operand(a)}*{self._print(cond)}")
        return self._call("where", self._print(cond), self._branch(a), self._branch(b))

    def _branch(self, e) -> str:
        return self._print(e)

    def _print(self, expr, **kwargs):
        # the chain of expressions being printed, so that `x @ y` knows what it sits in
        stack = self.__dict__.setdefault("_stack", [])
        if isinstance(expr, sp.Expr) and expr.is_number and not (expr.is_Rational or expr.is_Float):
            # an irrational constant (sqrt(10), which SymPy splits out of sqrt(x / 100000)) as a float literal:
            # a backend function takes no Python number (torch.sqrt(10) raises), and the value is the same
            value = expr.evalf(20)
            if value.is_Float:  # not an array node of numbers (a window of sizes), which has no one value
                return repr(float(value))
        stack.append(expr)
        try:
            return super()._print(expr, **kwargs)  # type: ignore[misc]  # the SymPy printer's, after this mixin
        finally:
            stack.pop()

    def _print_Einsum(self, e):
        spec, *operands = e.args
        if len(operands) == 2:
            ins, out = spec.name.split("->")
            a, b = ins.split(",")
            text = self._matmul(a, b, out, *operands)
            if text:
                return self._binds_like_product(text)
            if (
                a == b
                and len(set(a)) == len(a)
                and set(out) <= set(a)
                and out == "".join(c for c in a if c in out)
            ):
                axes = [k for k, c in enumerate(a) if c not in out] if out else []  # [] sums everything
                return self._product_sum(spec.name, axes, *operands)
        return self._einsum(spec.name, [self._print(x) for x in operands])

    def _matmul(self, a, b, out, x, y):
        """A contraction of one index between two vectors or matrices is a matrix product: `x @ y` with
        `.T` where needed, which every backend hands to its BLAS (einsum may not). None otherwise."""
        shared = set(a) & set(b)
        if len(a) > 2 or len(b) > 2 or len(shared) != 1 or len(set(a)) < len(a) or len(set(b)) < len(b):
            return None
        (k,) = shared
        free_a, free_b = a.replace(k, ""), b.replace(k, "")
        if out != free_a + free_b and out == free_b + free_a:
            (a, free_a, x), (b, free_b, y) = (b, free_b, y), (a, free_a, x)
        if out != free_a + free_b:
            return None
        left = self._operand(x) + (".T" if free_a and a == k + free_a else "")
        right = self._operand(y) + (".T" if free_b and b == free_b + k else "")
        return f"{left} @ {right}"

    def _product_sum(self, spec, axes, x, y):
        """sum(x * y) over `axes` (all of them when empty), both operands with the same axes in the same order: einsum computes
        it without the product's temporary (not optimize=True, whose BLAS route is far slower here)."""
        return self._call("einsum", repr(spec), self._print(x), self._print(y))

    def _reduce_product(self, axes, x, y):
        product = f"{self._operand(x)}*{self._operand(y)}"
        if not axes:
            return self._call("sum", product)
        ax = str(axes[0]) if len(axes) == 1 else "(" + ", ".join(map(str, axes)) + ")"
        return self._call("sum", product, f"{self.axis_kw}={ax}")

    def _einsum(self, spec, operands):
        return self._call("einsum", repr(spec), *operands, "optimize=True")

    def _print_MaxOver(self, e):
        x, *axes = e.args
        ax = ", ".join(str(int(a)) for a in axes)
        ax = ax if len(axes) == 1 else f"({ax})"
        return self._call(self.amax, self._print(x), f"{self.axis_kw}={ax}")

    def _print_Conv(self, e):
        return self._print(e.args[0])  # the einsum over a window (NumPy has no convolution)

    def _fill_text(self, fill) -> str:
        return "0.0" if fill == 0 else f"{'-' if fill.is_extended_negative else ''}{self.ns_numpy}.inf"

    def _print_Pad(self, e):
        x, pad, fill = e.args
        return self._call("pad", self._print(x), size_text(pad), f"constant_values={self._fill_text(fill)}")

    def _print_Window(self, e):
        x, pad, dilate, start, steps, shape, fill = e.args
        if _is_slice(e):
            # each view axis steps forwards along its own axis, nothing padded: a basic slice (a view in
            # NumPy and PyTorch, a strided slice in XLA)
            cut = [
                f"{size_text(s) if s != 0 else ''}:{size_text(s + row[k] * (n - 1) + 1)}"
                + (f":{row[k]}" if row[k] != 1 else "")
                for k, (s, row, n) in enumerate(zip(start, steps, shape, strict=True))
            ]
            return f"{self._operand(x)}[{', '.join(cut)}]"
        fill_text = "" if fill == 0 else f", fill={self._fill_text(fill)}"
        # an einsum or a reduction reads a strided view as fast as a copy (it copies what it needs);
        # elementwise work runs several times faster over a contiguous copy
        parent = self._stack[-2] if len(self._stack) > 1 else None
        copy = "" if type(parent).__name__ in ("Einsum", "ReduceSum", "MaxOver") else ", copy=True"
        return (
            f"window({self._print(x)}, pad={size_text(pad)}, dilate={size_text(dilate)}, "
            f"start={size_text(start)}, steps={size_text(steps)}, shape={size_text(shape)}{fill_text}{copy})"
        )

    def _print_ReduceSum(self, e):
        x, *axes = e.args
        ax = ", ".join(str(int(a)) for a in axes)
        ax = ax if len(axes) == 1 else f"({ax})"
        return self._call("sum", self._print(x), f"{self.axis_kw}={ax}")

    def _print_ReduceMax(self, e):
        x, axis = e.args
        return self._stop_gradient(self._call(self.amax, self._print(x), f"{self.axis_kw}={int(axis)}"))

    def _stop_gradient(self, text: str) -> str:
        """A value autodiff must treat as a constant (the shift of a stable softmax: it cancels)."""
        return text

    def _print_Align(self, e):
        x, src, dst = e.args
        src, dst = list(src), list(dst)
        text = self._operand(x)
        if src == dst[len(dst) - len(src) :]:
            return text  # trailing axes broadcast by themselves, in every backend
        present = [a for a in dst if a in src]
        if present != src:
            text = self._permute(text, [src.index(a) for a in present])
        if len(present) != len(dst):
            text += "[" + ", ".join(":" if a in src else "None" for a in dst) + "]"
        return text

    def _permute(self, text, perm):
        return f"{text}.transpose({', '.join(map(str, perm))})"

    def _eye_sizes(self, e) -> list[str]:
        return [self._print(a) for a in dict.fromkeys(e.args)]  # eye(N) for Eye(N, N)

    def _print_Eye(self, e):
        return self._call("eye", *self._eye_sizes(e))

    def _print_AsArray(self, e):
        return self._call("asarray", self._print(e.args[0]), "dtype=dtype")

    def _print_Merge(self, e):
        x, sizes, k, length = e.args
        k = int(k)
        shape = [size_text(a) for a in sizes.args]
        shape[k : k + 2] = ["-1"]
        cut = ":, " * k + f":{size_text(length)}"
        return f"{self._operand(x)}.reshape({', '.join(shape)})[{cut}]"

    def scatter_lines(self, name: str, e) -> list[str]:
        """Statements computing `name` = Scatter(...) (see `verify.lower.Scatter`): zeros padded so that
        every value lands inside, one strided slice-add per value, then the padding cut off."""
        values, shape, axes, strides, counts, offsets = e.args
        before, after = _scatter_padding(e)
        padded = [size + before.get(k, 0) + after.get(k, 0) for k, size in enumerate(shape)]
        lines = [f"{name} = {self._call('zeros', size_text(sp.Tuple(*padded)), 'dtype=dtype')}"]
        for value, offset in zip(values, offsets, strict=True):
            index = [":"] * len(shape)
            for k, stride, count, at in zip(axes, strides, counts, offset, strict=True):
                first = at + before[int(k)]
                step = f":{stride}" if stride != 1 else ""
                index[int(k)] = f"{size_text(first)}:{size_text(first + stride * (count - 1) + 1)}{step}"
            lines.append(f"{name}[{', '.join(index)}] += {self.doprint(value)}")
        if any(before.values()) or any(after.values()):
            cut = [
                f"{size_text(before[k])}:{size_text(before[k] + size)}" if k in before else ":"
                for k, size in enumerate(shape)
            ]
            lines.append(f"{name} = {name}[{', '.join(cut)}]")
        return lines

    def _print_Ones(self, e):
        shape = size_text(sp.Tuple(*e.args))  # whole numbers: a stride phase's count is a floor division
        return self._call("ones", shape, "dtype=dtype")

    def _print_Zeros(self, e):
        shape = size_text(sp.Tuple(*e.args))  # whole numbers: a stride phase's count is a floor division
        return self._call("zeros", shape, "dtype=dtype")


def _with_units(text: str, count) -> str:
    """`text` with `count` unit axes appended (a convolution's missing batch, channel or output axis)."""
    return f"{text}[(..., {', '.join(['None'] * int(count))})]" if count else text


def _without_units(text: str, count) -> str:
    """`text` without its `count` trailing unit axes."""
    return f"{text}[(..., {', '.join(['0'] * int(count))})]" if count else text


def _arranged(text: str, order) -> str:
    """PyTorch `text` with its axes taken in `order` (a permute, unless already in order)."""
    order = [int(k) for k in order]
    return text if order == sorted(order) == list(range(len(order))) else f"{text}.permute{tuple(order)}"


def _is_slice(window) -> bool:
    """Whether a Window reads its array unpadded and unspread, view axis k stepping forwards along
    axis k alone."""
    _, pad, dilate, _, steps, _, _ = window.args
    return (
        all(p == (0, 0) for p in pad)
        and all(d == 1 for d in dilate)
        and len(steps) == len(dilate)
        and all((c > 0) if j == k else c == 0 for k, row in enumerate(steps) for j, c in enumerate(row))
    )


def _scatter_padding(e) -> tuple[dict[int, sp.Expr], dict[int, sp.Expr]]:
    """Per target axis of a Scatter, the padding before and after it that holds every value's entries."""
    _, shape, axes, strides, counts, offsets = e.args
    before, after = {}, {}
    for d, (k, stride, count) in enumerate(zip(axes, strides, counts, strict=True)):
        at = [offset[d] for offset in offsets]
        before[int(k)] = sp.Max(0, -sp.Min(*at))
        after[int(k)] = sp.Max(0, sp.Max(*at) + stride * (count - 1) - (shape[int(k)] - 1))
    return before, after


def _primary(text: str) -> bool:
    """Whether `text` is one Python primary, which every postfix and operator applies to as a whole."""
    if text.startswith("(") and text.endswith(")") and _closes_at_end(text):
        return True
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return False
    return isinstance(node, ast.Name | ast.Attribute | ast.Call | ast.Subscript | ast.Constant)


def _closes_at_end(text: str) -> bool:
    """Whether the parenthesis opening `text` is the one closing it."""
    depth = 0
    for k, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0:
            return k == len(text) - 1
    return False


def _of_sizes(e: sp.Expr) -> bool:
    """Whether `e` is arithmetic of sizes alone (Python ints in generated code): no array, no scalar
    input, no array node (AsArray makes a 0-d array of sizes), only the integer functions of sizes."""
    symbols = e.free_symbols
    functions = e.atoms(sp.Function) - e.atoms(sp.floor, sp.ceiling, sp.Mod)
    return bool(symbols) and all(s.is_integer for s in symbols) and not functions


class _SizePrinter(StrPrinter):
    """Size arithmetic as Python integers: max(a, b), floor division, tuples."""

    def _print_Max(self, e):
        return f"max({', '.join(self._print(a) for a in e.args)})"

    def _print_Min(self, e):
        return f"min({', '.join(self._print(a) for a in e.args)})"

    def _print_floor(self, e):
        numerator, denominator = sp.fraction(sp.together(e.args[0]))
        text = self._print(denominator)
        # parenthesised whole: 2*floor(n/2) is 2*((n)//2), not (2*n)//2
        return f"(({self._print(numerator)})//" + (text if denominator.is_Atom else f"({text})") + ")"

    def _print_Tuple(self, e):
        return "(" + ", ".join(self._print(a) for a in e.args) + ("," if len(e.args) == 1 else "") + ")"


def size_span(e: sp.Expr) -> tuple[sp.Rational, sp.Rational] | None:
    """The least and the greatest value of size expression `e` over all sizes, where it reads them only
    through floor divisions' remainders (L - 2*floor(L/2) is 0 or 1): floor(a/q) is a/q - t for some t
    from 0 to 1 - 1/q, a a whole number; None where `e` is not so."""
    spans: dict[sp.Symbol, sp.Rational] = {}

    def remainder(f):
        a = f.args[0]
        q = sp.fraction(sp.together(a))[1]
        if not q.is_Integer:
            raise ValueError(f)
        t = sp.Dummy()
        spans[t] = 1 - sp.Rational(1, q)
        return a - t

    try:
        linear = sp.expand(e.replace(lambda n: isinstance(n, sp.floor), remainder))
    except ValueError:
        return None
    if linear.free_symbols - set(spans) or not linear.is_polynomial(*spans):
        return None
    if any(sp.degree(linear, t) > 1 for t in spans):
        return None
    low = high = linear.xreplace(dict.fromkeys(spans, 0))
    for t, top in spans.items():
        c = linear.coeff(t)
        low, high = low + min(0, c * top), high + max(0, c * top)
    return low, high


def size_text(e: sp.Expr) -> str:
    """A size expression (or a tuple of them) as Python integer arithmetic."""
    return _SizePrinter().doprint(e)


# The helper every backend's generated code defines when it reads a shifted subscript: the view
# v[j...] = a'[start + sum_j steps[j] * v_j] of `a` spread out by `dilate` (zeros between entries) and
# padded with `fill`, so that a convolution is an einsum and a pooling a reduction, with no loop.
WINDOW_NUMPY = '''
def window(a, pad, dilate, start, steps, shape, fill=0.0, copy=False):
    """The reads a[(start + steps.T @ v) / dilate] for every v < shape, outside a as `fill`: a view, or
    a contiguous copy of it."""
    if max(dilate) > 1:
        spread = np.zeros(np.multiply(np.subtract(a.shape, 1), dilate) + 1, dtype=a.dtype)
        spread[tuple(map(slice, a.ndim * (None,), a.ndim * (None,), dilate))] = a
        a = spread
    # C order, so that the flat array below is a view of it and its strides are the ones applied: a
    # transposed or Fortran-ordered input would otherwise be read through another array's strides
    padded = np.ascontiguousarray(np.pad(a, pad, constant_values=fill) if np.any(pad) else a)
    flat = padded.reshape(-1)[np.dot(start, padded.strides) // padded.itemsize :]
    strides = tuple(np.dot(np.reshape(steps, (len(shape), a.ndim)), padded.strides))
    view = np.lib.stride_tricks.as_strided(flat, shape, strides, writeable=False)
    return np.ascontiguousarray(view) if copy else view
'''

WINDOW_TORCH = '''
def window(a, pad, dilate, start, steps, shape, fill=0.0, copy=False):
    """The reads a[(start + steps.T @ v) / dilate] for every v < shape, outside a as `fill`: a strided
    view (a contiguous copy with `copy`). PyTorch takes no negative stride: an axis of `a` read
    backwards only is flipped first, and a view axis that still steps backwards is read forwards and
    flipped after (a copy). Plain Python integers (no NumPy, no storage offset), so that torch.compile
    traces it into the graph of its caller."""
    if max(dilate) > 1:
        spread = a.new_zeros(tuple(map(lambda n, d: (n - 1) * d + 1, a.shape, dilate)))
        spread[tuple(map(lambda d: slice(None, None, d), dilate))] = a
        a = spread
    sides = sum(map(list, pad[::-1]), [])
    padded = torch.nn.functional.pad(a, sides, value=fill) if any(sides) else a
    backwards = list(map(lambda *column: max(column) <= 0 and min(column) < 0, *steps))  # per axis of a
    if any(backwards):
        padded = padded.flip(list(filter(lambda j: backwards[j], range(a.ndim))))
        start = list(map(lambda n, b, back: n - 1 - b if back else b, padded.shape, start, backwards))
        steps = list(map(lambda row: list(map(lambda c, back: -c if back else c, row, backwards)), steps))
    strides = list(map(lambda row: sum(map(lambda c, s: c * s, row, padded.stride())), steps))
    reverse = list(map(lambda s: s < 0, strides))  # read from the other end, forwards, then flipped
    start = list(map(lambda b, *column: b + sum(map(lambda c, n, back: c * (n - 1) * back, column, shape, reverse)),
                     start, *steps))
    # the first read by slicing rather than by a storage offset, which torch.compile does not trace
    view = padded[tuple(map(lambda b: slice(b, None), start))].as_strided(tuple(shape), list(map(abs, strides)))
    if any(reverse):
        return view.flip(list(filter(lambda k: reverse[k], range(len(shape)))))
    return view.contiguous() if copy else view
'''

# The helpers of a max pooling's gradient scattered at the maxima its forward found (see
# `lower.scattered_at_maxima`): PyTorch's generated code, saved form.
AT_MAXIMA_TORCH = '''
def first_at(mask, kernel, places, strides, dilations, paddings, target, rows):
    """Where a boolean `mask` (axes: batch.., kernel offsets k.., window positions i..) holds, as flat
    positions in its m trailing target axes (sizes `target`, rows `rows` long; h = stride*i + dilation*k
    - padding along each; `places`: the kernel offsets' digits in the flattened offset). Returns (at,
    ties): at (batch.., i..), the position of the one offset where it holds, -1 where it holds at none
    or at several; ties (2 x T), for each entry of a window where it holds at several, the entry's flat
    position in the whole target and its window's flat index. Entries outside the target do not count."""
    m = len(kernel)
    nb = mask.dim() - 2 * m
    flat = mask.flatten(nb, nb + m - 1)  # (batch.., K, i..)
    counts = flat.shape[nb + 1 :]

    def place(k):  # the flat positions of offsets k (broadcast with the i..), and whether inside
        h = list(map(lambda d: strides[d] * torch.arange(counts[d], device=k.device).reshape((-1,) + (1,) * (m - 1 - d))
                     + dilations[d] * (k // places[d] % kernel[d]) - paddings[d], range(m)))
        outside = sum(map(lambda t, n: ((t < 0) | (t >= n)).to(torch.uint8), h, target))
        return sum(map(lambda t, r: t * r, h, rows)), outside == 0

    every, inside = place(torch.arange(flat.shape[nb], device=flat.device).reshape((-1,) + (1,) * m))
    held = flat & inside
    hits = held.sum(nb)
    at = torch.where(hits == 1, place(held.to(torch.uint8).argmax(nb))[0], -1)  # the first offset held
    tied = held & (hits > 1).unsqueeze(nb)
    batch = flat.shape[:nb]
    windows = torch.arange(at.numel(), device=at.device).reshape(at.shape).unsqueeze(nb).expand(flat.shape)
    starts = torch.arange(batch.numel(), device=at.device).reshape(tuple(batch) + (1,) * (m + 1))
    positions = (starts * (rows[0] * target[0]) + every).expand(flat.shape)
    return at, torch.stack([positions[tied], windows[tied]])


def scatter_at(value, at, ties, shape, m):
    """Zeros of `shape` with each entry of `value` (axes: batch.., window positions i..) added at its flat
    position `at` in the m trailing axes (none where -1), and at each tie's position (see `first_at`)."""
    nb = len(shape) - m
    out = value.new_zeros(shape).flatten(nb)
    out.scatter_add_(nb, at.clamp(min=0).flatten(nb), torch.where(at >= 0, value, 0).flatten(nb))
    return out.reshape(-1).index_add_(0, ties[0], value.reshape(-1)[ties[1]]).reshape(shape)
'''

WINDOW_JAX = '''
def window(a, pad, dilate, start, steps, shape, fill=0.0, copy=False):
    """The reads a[(start + steps.T @ v) / dilate] for every v < shape, outside a as `fill`: one small
    gather (jnp.take) per axis of `a` where each index moves along one axis (a convolution's, a
    pooling's), else one gather of every position."""
    low, high = np.transpose(pad)
    padded = jax.lax.pad(a, jnp.asarray(fill, a.dtype), tuple(zip(low.tolist(), high.tolist(), np.subtract(dilate, 1).tolist())))
    steps, start = np.reshape(steps, (len(shape), a.ndim)), np.asarray(start)
    moves = steps != 0
    if (moves.sum(axis=1) != 1).any():
        at = np.tensordot(steps.T, np.indices(shape), 1) + np.reshape(start, (-1,) + (1,) * len(shape))
        return padded[tuple(at)]
    owner = moves.argmax(axis=1)  # the axis of `a` each view axis moves along

    def take(array, m):
        mine = np.flatnonzero(owner == m)
        index = start[m] + np.tensordot(steps[mine, m], np.indices(np.asarray(shape)[mine]), 1)
        return jnp.take(array, index, axis=m)

    gathered = functools.reduce(take, range(a.ndim - 1, -1, -1), padded)
    return jnp.transpose(gathered, np.argsort(np.argsort(owner, kind="stable")))
'''


def _print_primitive(printer: _ArrayMixin, e: sp.Expr, prim: primitives.Primitive) -> str:
    """A function of `verify.primitives`, from its record's array code for this backend."""
    if prim.arity == 2 and len(e.args) > 2:
        # SymPy merges min(min(a, b), c) into one Min of three: the two-argument code takes it nested
        e = e.func(e.args[0], e.func(*e.args[1:], evaluate=False), evaluate=False)
    code = prim.code(printer.backend)
    if callable(code):
        return code(printer, e)
    args = [printer._print(a) for a in e.args]
    operands = {f"p{k}": printer._operand(a) for k, a in enumerate(e.args)}
    return code.format(*args, ns=printer.ns, **operands)


primitives.install(_ArrayMixin, _print_primitive)


class NumpyArrayPrinter(_ArrayMixin, NumPyPrinter):
    ns = "np"
    imports = "import numpy as np"
    window_helper = WINDOW_NUMPY


class KinkNumpyPrinter(NumpyArrayPrinter):
    """NumPy code that passes the argument of every max, min, abs and comparison through `_kink(argument,
    value)` (provided by the caller): how the fd oracle sees a step cross a kink."""

    def _print_Relational(self, e):
        return f"_kink({self._operand(e.lhs)} - {self._operand(e.rhs)}, {super()._print_Relational(e)})"


def _print_observed(printer: KinkNumpyPrinter, e: sp.Expr, prim: primitives.Primitive) -> str:
    text = _print_primitive(printer, e, prim)
    if prim.kink is None:
        return text
    args = [printer._operand(a) for a in e.args]
    argument = args[0] if prim.kink == "abs" else f"{args[0]} - {args[1]}"
    return f"_kink({argument}, {text})"


primitives.install(KinkNumpyPrinter, _print_observed)


def kink_printer() -> KinkNumpyPrinter:
    return KinkNumpyPrinter({"fully_qualified_modules": True})


class JaxArrayPrinter(_ArrayMixin, JaxPrinter):
    backend = "jax"
    ns = "jnp"
    imports = "import functools\n\nimport jax\nimport jax.numpy as jnp\nimport numpy as np"
    window_helper = WINDOW_JAX

    def _einsum(self, spec, operands):
        return self._call("einsum", repr(spec), *operands)

    def _stop_gradient(self, text):
        return f"jax.lax.stop_gradient({text})"

    def _print_Conv(self, e):
        _, x, a, lhs, rhs, out, su, sv, dilate, low, high, *_, (to_x, to_a, to_out) = e.args
        kernel = _with_units(self._print(a), to_a)
        flipped = tuple(int(rhs[2 + k]) for k, s in enumerate(sv) if s < 0)
        if flipped:
            kernel = f"jax.lax.rev({kernel}, {flipped})"
        numbers = ", ".join(
            f"{name}={size_text(sp.Tuple(*values))}"
            for name, values in (
                ("window_strides", [abs(s) for s in su]),
                ("padding", [sp.Tuple(lo, hi) for lo, hi in zip(low, high, strict=True)]),
                ("lhs_dilation", dilate),
                ("rhs_dilation", [abs(s) for s in sv]),
            )
        )
        numbers += f", dimension_numbers=jax.lax.ConvDimensionNumbers({size_text(lhs)}, {size_text(rhs)}, {size_text(out)})"
        text = f"jax.lax.conv_general_dilated({_with_units(self._print(x), to_x)}, {kernel}, {numbers})"
        backwards = tuple(int(out[2 + k]) for k, s in enumerate(su) if s < 0)
        if backwards:
            text = f"jax.lax.rev({text}, {backwards})"
        return _without_units(text, to_out)

    def scatter_lines(self, name, e):
        """One sum of the values, each spread out and padded into place by `jax.lax.pad` (a negative
        padding cuts): XLA fuses it into one loop, where `.at[].add` would be a scatter per value."""
        values, shape, axes, strides, counts, offsets = e.args
        terms = []
        for value, offset in zip(values, offsets, strict=True):
            config = [(0, 0, 0)] * len(shape)
            for k, stride, count, at in zip(axes, strides, counts, offset, strict=True):
                config[int(k)] = (at, shape[int(k)] - at - stride * (count - 1) - 1, stride - 1)
            text = size_text(sp.Tuple(*(sp.Tuple(*c) for c in config)))
            terms.append(f"jax.lax.pad({self.doprint(value)}, jnp.zeros((), dtype=dtype), {text})")
        return [f"{name} = {' + '.join(terms)}"]


def _torch_printer():
    # sympy.printing.pytorch imports torch itself: only pay for that when torch code is wanted
    from sympy.printing.pytorch import TorchPrinter

    class TorchArrayPrinter(_ArrayMixin, TorchPrinter):
        backend = "torch"
        ns = "torch"
        ns_numpy = "torch"
        axis_kw = "dim"
        amax = "amax"
        imports = "import numpy as np\nimport torch"
        window_helper = WINDOW_TORCH
        folds = True
        saves_masks = False
        spreads = True
        scatters_at_maxima = True
        at_maxima_helper = AT_MAXIMA_TORCH

        def _print_FirstAt(self, e):
            mask, kernel, strides, dilations, paddings, target, _ = e.args
            places = [sp.Mul(*kernel[d + 1 :]) for d in range(len(kernel))]
            rows = [sp.Mul(*target[d + 1 :]) for d in range(len(target))]
            numbers = ", ".join(
                f"{name}={size_text(sp.Tuple(*values))}"
                for name, values in [
                    ("kernel", kernel),
                    ("places", places),
                    ("strides", strides),
                    ("dilations", dilations),
                    ("paddings", paddings),
                    ("target", target),
                    ("rows", rows),
                ]
            )
            return f"first_at({self._print(mask)}, {numbers})"

        def _print_ScatterAt(self, e):
            value, at, ties, shape, m = e.args
            return f"scatter_at({self._print(value)}, {at}, {ties}, {size_text(shape)}, {m})"

        def _stop_gradient(self, text):
            return f"{text}.detach()"

        def _einsum(self, spec, operands):
            return self._call("einsum", repr(spec), *operands)

        def _product_sum(self, spec, axes, x, y):
            # torch.einsum makes a batched matmul of it: hundreds of times slower on the CPU
            return self._reduce_product(axes, x, y)

        def _print_Conv(self, e):
            """A library convolution: the kernel gradient by `torch.nn.grad.convNd_weight`, a kernel read
            backwards at unit stride by `convNd_input` (the transposed convolution), anything else by
            `conv{1,2,3}d` (the array padded and the kernel flipped as needed). PyTorch has no spread-out
            input: the einsum then."""
            fallback, x, a, lhs, rhs, out, su, sv, dilate, low, high, U, V, L, weight, (nb, nf), units = (
                e.args
            )
            if any(d != 1 for d in dilate) and not e.transposed:
                return self._print(fallback)
            n = len(su)
            x_text, a_text = _with_units(self._print(x), units[0]), _with_units(self._print(a), units[1])
            spatial_x, spatial_a = list(lhs[2:]), list(rhs[2:])
            reach = [abs(s) for s in sv]
            backwards = [int(out[2 + k]) for k, s in enumerate(su) if s < 0]
            su = [abs(s) for s in su]
            if weight:
                # out[f, b, u] = sum(Bc[g, b, su*u + |sv|*v] * A[g, f, v]): a kernel's gradient, u its taps
                x_text, padding = self._conv_input(
                    _arranged(x_text, [lhs[1], lhs[0], *spatial_x]), low, high, L, U, su, reach, V
                )
                text = self._call(
                    f"nn.grad.conv{n}d_weight",
                    x_text,
                    size_text(sp.Tuple(nf, nb, *U)),
                    _arranged(a_text, [rhs[1], rhs[0], *spatial_a]),
                    f"stride={size_text(sp.Tuple(*reach))}",
                    *padding,
                    f"dilation={size_text(sp.Tuple(*su))}",
                )
                roles = [1, 0, *range(2, n + 2)]
            elif e.transposed:
                # the adjoint of a convolution with A as its kernel (g out, f in), padded by p, at the
                # stride that spreads x out (x spread out is L' = S*(L - 1) + 1 long)
                p = [r * (v - 1) - lo for r, v, lo in zip(reach, V, low, strict=True)]
                kept = [sp.Max(0, q) for q in p]
                cut = [k - q for q, k in zip(p, kept, strict=True)]
                # the padding trims `kept` entries from the far end too: x lengthened there by zeros
                # gives the result's entries up to U - 1 (entry u is the library's u - cut). Up to S - 1
                # of them the library adds itself (its output padding, asked for by the size); each
                # further S takes one more zero after x.
                full = [
                    d * (n_ - 1) + 1 - 2 * k + r * (v - 1)
                    for n_, d, k, r, v in zip(L, dilate, kept, reach, V, strict=True)
                ]
                need = [u - c - m for u, c, m in zip(U, cut, full, strict=True)]
                zeros = []
                for k, (e_, d) in enumerate(zip(need, dilate, strict=True)):
                    span = size_span(e_)
                    if span is not None:  # the zeros known, the rest as the library pads (below S)
                        low_, high_ = (max(0, sp.ceiling(sp.Rational(v - d + 1, d))) for v in span)
                        if low_ == high_ and span[0] - d * low_ >= 0:
                            zeros.append(low_)
                            full[k] += e_
                            continue
                    zeros.append(sp.floor((sp.Max(0, e_ - d + 1) + d - 1) / d))
                    full[k] += d * zeros[-1] + sp.Min(sp.Max(0, e_) - d * zeros[-1], d - 1)
                stride = (f"stride={size_text(sp.Tuple(*dilate))}",) if any(d != 1 for d in dilate) else ()
                text = self._call(
                    f"nn.grad.conv{n}d_input",
                    size_text(sp.Tuple(nb, nf, *full)),
                    _arranged(a_text, [rhs[1], rhs[0], *spatial_a]),
                    self._padded(_arranged(x_text, list(lhs)), [0] * n, zeros),
                    *stride,
                    f"padding={size_text(sp.Tuple(*kept))}",
                    f"dilation={size_text(sp.Tuple(*reach))}",
                )
                text = self._padded(text, cut, [u - m - c for u, m, c in zip(U, full, cut, strict=True)])
                roles = list(range(n + 2))
            else:
                kernel = _arranged(a_text, list(rhs))
                flipped = tuple(k + 2 for k, s in enumerate(sv) if s < 0)
                if flipped:
                    kernel = f"{kernel}.flip({flipped})"
                x_text, padding = self._conv_input(
                    _arranged(x_text, list(lhs)), low, high, L, V, reach, su, U
                )
                text = self._call(
                    f"nn.functional.conv{n}d",
                    x_text,
                    kernel,
                    f"stride={size_text(sp.Tuple(*su))}",
                    *padding,
                    f"dilation={size_text(sp.Tuple(*reach))}",
                )
                roles = list(range(n + 2))
            # the result's axes hold roles (b, f, u...) in the order `roles`; `out` places each role
            at = {int(k): role for role, k in enumerate(out)}
            text = _arranged(text, [roles.index(at[k]) for k in range(n + 2)])
            if backwards:
                text = f"{text}.flip({tuple(backwards)})"
            return _without_units(text, units[2])

        def scatter_lines(self, name, e):
            """A Scatter (see `verify.lower.Scatter`) built stride phase by stride phase, where slice-adds
            into strided positions would each be a scatter: writing a target position h = S*m + t, the
            values landing on phase t are whole arrays over m, each shifted by a padding (negative to
            cut), added, and the phases interleaved by one stack and reshape; torch.compile fuses it
            into one loop over the target. When every value is the same array at every combination of
            the axes' offsets (an average pool's gradient), the sum separates: one axis after the other.
            Offsets known only at run time keep the slice-adds."""
            values, shape, axes, strides, counts, offsets = e.args
            if not all(o.is_Integer for offset in offsets for o in offset):
                return super().scatter_lines(name, e)
            order = sorted(range(len(axes)), key=lambda d: int(axes[d]))  # stacks go in axis order
            axes = [int(axes[d]) for d in order]
            strides, counts = [int(strides[d]) for d in order], [counts[d] for d in order]
            offsets = [tuple(int(offset[d]) for d in order) for offset in offsets]
            value_shape = list(shape)
            for k, count in zip(axes, counts, strict=True):
                value_shape[k] = count
            grid = [sorted({offset[d] for offset in offsets}) for d in range(len(axes))]
            if len(set(values)) == 1 and sorted(offsets) == sorted(itertools.product(*grid)):
                lines = [f"{name} = {self.doprint(values[0])}"]
                for d, k in enumerate(axes):
                    text = self._phases(
                        [(name, (at,)) for at in grid[d]], value_shape, [k], [strides[d]], shape
                    )
                    lines.append(f"{name} = {text}")
                    value_shape[k] = shape[k]
                return lines
            placed = [(self.doprint(v), offset) for v, offset in zip(values, offsets, strict=True)]
            return [f"{name} = {self._phases(placed, value_shape, axes, strides, shape)}"]

        def _phases(self, placed, value_shape, axes, strides, shape) -> str:
            """The sum of the values (text, offsets) of `value_shape`, entry q along axes[d] landing at
            offsets[d] + strides[d]*q of the target `shape`: per phase t, the values with offset = t
            modulo the stride, each padded along m by offset // stride (the rows m of the target, M =
            ceil(length / stride) of them), stacked after each axis, merged and cut to the target."""
            rows = [sp.floor((shape[k] + s - 1) / s) for k, s in zip(axes, strides, strict=True)]
            phase_shape = list(value_shape)
            for k, m in zip(axes, rows, strict=True):
                phase_shape[k] = m

            def phase(t) -> str:
                terms = []
                for text, offset in placed:
                    if tuple(at % s for at, s in zip(offset, strides, strict=True)) != t:
                        continue
                    # rows m - c of the value land on row m: padded by what is missing on either side,
                    # then cut to the M rows (F.pad's negative padding refuses to cut past an end)
                    low, high, cut = [0] * len(shape), [0] * len(shape), [":"] * (max(axes) + 1)
                    for k, s, at, m in zip(axes, strides, offset, rows, strict=True):
                        c = at // s
                        low[k], high[k] = max(0, c), sp.Max(0, m - value_shape[k] - c)
                        cut[k] = f"{max(0, -c)}:{size_text(max(0, -c) + m)}"
                    first = min(axes)  # F.pad pads the trailing axes: from the first target on
                    terms.append(f"{self._padded(text, low[first:], high[first:])}[{', '.join(cut)}]")
                if not terms:  # a stride longer than the window: no value lands on this phase
                    return self._call("zeros", size_text(sp.Tuple(*phase_shape)), "dtype=dtype")
                return " + ".join(terms)

            def stacked(d: int, t: tuple) -> str:
                if d == len(axes):
                    return phase(t)
                if strides[d] == 1:
                    return stacked(d + 1, (*t, 0))
                parts = ", ".join(stacked(d + 1, (*t, r)) for r in range(strides[d]))
                return f"{self.ns}.stack([{parts}], dim={axes[d] + 1})"

            if all(s == 1 for s in strides):  # one phase, as long as the target
                return stacked(0, ())
            merged = list(phase_shape)
            for k, s, m in zip(axes, strides, rows, strict=True):
                merged[k] = m * s
            text = self._call("reshape", stacked(0, ()), size_text(sp.Tuple(*merged)))
            cut = [f":{size_text(shape[k])}" if k in axes else ":" for k in range(len(shape))]
            return f"{text}[{', '.join(cut)}]"

        def _conv_input(self, text, low, high, lengths, taps, dilation, stride, count):
            """(x, padding argument) for a library convolution reading x padded by (low, high) per
            spatial axis with `taps` at `dilation`, `count` windows `stride` apart. The library's own
            zero padding is the same on both sides and costs no copy of x (F.pad's took a fifth of
            conv1d's kernel gradient): `low` serves wherever it is no cut and the library then makes
            exactly `count` windows, which read no zero past what (low, high) pads. Otherwise x padded."""
            same = all(
                sp.S(p).is_nonnegative is True
                and sp.expand(sp.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1 - m) == 0
                for p, n, k, d, s, m in zip(low, lengths, taps, dilation, stride, count, strict=True)
            )
            if not same:
                return self._padded(text, low, high), ()
            if all(p == 0 for p in low):
                return text, ()
            return text, (f"padding={size_text(sp.Tuple(*low))}",)

        def _padded(self, text, low, high):
            if all(x == 0 for x in (*low, *high)):
                return text
            pairs = sp.Tuple(
                *(side for lo, hi in reversed(list(zip(low, high, strict=True))) for side in (lo, hi))
            )
            return self._call("nn.functional.pad", text, size_text(pairs))

        def _print_Pad(self, e):
            x, pad, fill = e.args
            last_first = sp.Tuple(*(side for before_after in reversed(pad.args) for side in before_after))
            return self._call(
                "nn.functional.pad", self._print(x), size_text(last_first), f"value={self._fill_text(fill)}"
            )

        def _branch(self, e):
            # torch.where takes a Python float for a branch, not an int or a fraction
            return f"{float(e)!r}" if e.is_Number else self._print(e)

        def _permute(self, text, perm):
            return f"{text}.permute({', '.join(map(str, perm))})"

        def _print_Eye(self, e):
            return self._call("eye", *self._eye_sizes(e), "dtype=dtype")

        def _print_Fold(self, e):
            """`F.fold` (col2im) of the window's terms, one axis per kernel offset, flattened as it takes
            them: (batch, kernel offsets, window positions). A one-axis target folds as 1 x length. Unless
            the counts are the library's output counts of the target, it folds unpadded into the size the
            counts give, then pads or cuts (a negative padding) to the target."""
            value, shape, kernel, strides, dilations, paddings, counts, fits = e.args
            m = len(kernel)
            batch, target = shape[: len(shape) - m], shape[len(shape) - m :]
            if m == 1:  # F.fold is 2-D: a unit axis first (one window of size 1, unpadded)
                kernel, strides, dilations, counts, target = (
                    sp.Tuple(1, *t) for t in (kernel, strides, dilations, counts, target)
                )
                paddings = sp.Tuple(0, *paddings)
            full = sp.Tuple(*batch, *kernel[len(kernel) - m :], *counts[len(counts) - m :])
            flat = self._call(
                "reshape",
                self._call("broadcast_to", self._print(value), size_text(full)),
                size_text(sp.Tuple(sp.Mul(*batch), sp.Mul(*kernel), sp.Mul(*counts))),
            )
            if fits:
                size, pad = target, paddings
            else:
                size = sp.Tuple(
                    *(
                        s * (c - 1) + d * (k - 1) + 1
                        for s, c, d, k in zip(strides, counts, dilations, kernel, strict=True)
                    )
                )
                pad = sp.Tuple(*(0 for _ in paddings))
            text = self._call(
                "nn.functional.fold",
                flat,
                size_text(size),
                size_text(kernel),
                f"dilation={size_text(dilations)}",
                f"padding={size_text(pad)}",
                f"stride={size_text(strides)}",
            )
            if not fits:
                text = self._padded(
                    text,
                    [-p for p in paddings],
                    [t - z + p for t, z, p in zip(target, size, paddings, strict=True)],
                )
            # no window at all (a count of 0): F.fold refuses an empty input, and the sum is zeros
            empty = self._call("zeros", size_text(shape), "dtype=dtype")
            return f"({self._call('reshape', text, size_text(shape))} if {size_text(sp.Mul(*counts))} else {empty})"

    return TorchArrayPrinter


PRINTERS = {"numpy": lambda: NumpyArrayPrinter, "jax": lambda: JaxArrayPrinter, "torch": _torch_printer}


def printer(backend: str):
    return PRINTERS[backend]()({"fully_qualified_modules": True})


__all__ = ["PRINTERS", "kink_printer", "printer", "precedence"]
