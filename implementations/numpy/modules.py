"""The UvA Deep Learning Practical 1 modules, with every backward pass written by hand.

Shapes, stated once for the whole file: a batch is N x D (N samples, D features); every `forward(x)`
keeps the array it needs for `backward(dout)`, where `dout` = dL/d(output) has the output's shape and
the return value dL/dx has the input's shape. Gradients are those of a loss that already carries any
batch mean (CrossEntropyModule divides by N), so parameter gradients here are batch sums.

Modules with parameters hold them in `params` and their gradients, under the same keys, in `grads`.
Each formula is the one in the matching derivations/*.deriv file, which gradverify checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEIGHT_STD = 1e-4  # the course's N(0, 0.0001^2) weight initialisation


class Module:
    """A layer: `forward(x)` then `backward(dout)`. Parameterless modules keep `params` empty."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def train(self) -> None:
        """Switch to training mode; only layers that behave differently in evaluation override this."""

    def eval(self) -> None:
        """Switch to evaluation mode (see `train`)."""


@dataclass(frozen=True)
class _LinearCache:
    x: np.ndarray  # N x in, the input
    weight: np.ndarray  # out x in, the weight forward used (params may be replaced before backward)


class LinearModule(Module):
    """y = x W^T + b, with W = params['weight'] (out x in) and b = params['bias'] (out,).

    Weights are drawn from N(0, std^2) (the course's std is 1e-4) and biases start at 0. `forward`
    reads `params` on every call, so weights set after construction are the ones used.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        std: float = WEIGHT_STD,
        rng: np.random.Generator | None = None,
        dtype: np.dtype | type = np.float64,
    ) -> None:
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng()
        self.params = {
            "weight": (std * rng.standard_normal((out_features, in_features))).astype(dtype),
            "bias": np.zeros(out_features, dtype=dtype),
        }
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self._cache: _LinearCache | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        weight = self.params["weight"]
        self._cache = _LinearCache(x, weight)
        return x @ weight.T + self.params["bias"]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x, weight = self._cache.x, self._cache.weight
        self.grads["weight"] = dout.T @ x
        # Shaped like the bias the caller stored: (out,) by default, 1 x out if set that way.
        self.grads["bias"] = dout.sum(axis=0).reshape(np.shape(self.params["bias"]))
        return dout @ weight


class ReLUModule(Module):
    """y = max(x, 0); the derivative at 0 is taken as 0."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._positive = x > 0
        return np.where(self._positive, x, 0)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return np.where(self._positive, dout, 0)


class LeakyReLUModule(Module):
    """y = max(x, 0) + neg_slope * min(x, 0); neg_slope 0 is plain ReLU."""

    def __init__(self, neg_slope: float) -> None:
        super().__init__()
        self.neg_slope = neg_slope

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._positive = x > 0
        return np.where(self._positive, x, self.neg_slope * x)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return np.where(self._positive, dout, self.neg_slope * dout)


class ELUModule(Module):
    """y = x for x >= 0 and exp(x) - 1 below (alpha = 1); below zero the derivative exp(x) is y + 1."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._nonnegative = x >= 0
        # expm1 of min(x, 0) so that large positive x, whose branch is discarded, cannot overflow.
        y = np.where(self._nonnegative, x, np.expm1(np.minimum(x, 0)))
        self._y = y
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return np.where(self._nonnegative, dout, dout * (self._y + 1))


class SigmoidModule(Module):
    """y = 1 / (1 + exp(-x)); dx = dout * y * (1 - y)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        # The tanh form equals the logistic function and cannot overflow for large |x|.
        self._y = 0.5 * (np.tanh(0.5 * x) + 1)
        return self._y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self._y * (1 - self._y)


class TanhModule(Module):
    """y = tanh(x); dx = dout * (1 - y^2)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = np.tanh(x)
        return self._y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (1 - self._y**2)


class SoftMaxModule(Module):
    """Softmax over the feature axis of N x C: y[n,k] = exp(x[n,k]) / sum_m exp(x[n,m]).

    The backward pass is the vector-Jacobian product with J[n,k,m] = y[n,k] (delta_km - y[n,m]),
    dx[n,m] = y[n,m] (dout[n,m] - sum_k dout[n,k] y[n,k]), computed without forming J.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        # Subtracting each row's max leaves the softmax unchanged and keeps exp from overflowing.
        e = np.exp(x - x.max(axis=1, keepdims=True))
        self._y = e / e.sum(axis=1, keepdims=True)
        return self._y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        y = self._y
        return y * (dout - (dout * y).sum(axis=1, keepdims=True))


class CrossEntropyModule:
    """L = -1/N sum_n sum_k y[n,k] log x[n,k] for probabilities x and one-hot targets y, both N x C.

    Stateless: `backward(x, y)` = dL/dx = -y / (N x) needs no earlier `forward`. Probabilities that
    underflowed to 0 are read as the smallest positive float, so the loss and gradient stay finite.
    """

    def forward(self, x: np.ndarray, y: np.ndarray) -> float:
        tiny = np.finfo(x.dtype).tiny
        return float(-np.sum(y * np.log(np.maximum(x, tiny))) / x.shape[0])

    def backward(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        tiny = np.finfo(x.dtype).tiny
        return -y / (x.shape[0] * np.maximum(x, tiny))


@dataclass(frozen=True)
class _NormCache:
    xhat: np.ndarray  # N x D, the normalised input
    inv_std: np.ndarray  # 1 / sqrt(var + eps), broadcastable against N x D
    gamma: np.ndarray  # D, the scale forward used


class _Normalization(Module):
    """Shared by BatchNorm (statistics over the batch axis 0) and LayerNorm (over the feature axis 1).

    y = gamma * xhat + beta with xhat = (x - mean) / sqrt(var + eps), biased variance; gamma starts at 1
    and beta at 0 (params 'gamma' and 'beta', length D). dgamma and dbeta are batch sums.
    """

    axis: int

    def __init__(self, n_neurons: int, eps: float = 1e-5, dtype: np.dtype | type = np.float64) -> None:
        super().__init__()
        self.n_neurons = n_neurons
        self.eps = eps
        self.params = {"gamma": np.ones(n_neurons, dtype=dtype), "beta": np.zeros(n_neurons, dtype=dtype)}
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self._cache: _NormCache | None = None

    def _check(self, x: np.ndarray) -> None:
        if x.ndim != 2 or x.shape[1] != self.n_neurons:
            raise ValueError(f"expected input of shape N x {self.n_neurons}, got {x.shape}")

    def _normalise(self, x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
        inv_std = 1 / np.sqrt(var + self.eps)
        xhat = (x - mean) * inv_std
        gamma = self.params["gamma"]
        self._cache = _NormCache(xhat, inv_std, gamma)
        return gamma * xhat + self.params["beta"]

    def _backward_batch_stats(self, dout: np.ndarray) -> np.ndarray:
        """dx when mean and var were computed from x itself along `axis`, with M values per statistic:

        dx = (M dxhat - sum(dxhat) - xhat sum(dxhat xhat)) / (M sqrt(var + eps)), sums along `axis`,
        written here with means so that M cancels.
        """
        xhat, inv_std, gamma = self._cache.xhat, self._cache.inv_std, self._cache.gamma
        self.grads["gamma"] = (dout * xhat).sum(axis=0)
        self.grads["beta"] = dout.sum(axis=0)
        dxhat = dout * gamma
        centred = dxhat - dxhat.mean(axis=self.axis, keepdims=True)
        return (centred - xhat * (dxhat * xhat).mean(axis=self.axis, keepdims=True)) * inv_std


class BatchNormModule(_Normalization):
    """Batch normalisation of N x D, statistics per feature over the batch.

    Training mode (the default, `train()`) normalises with the batch mean and biased variance and
    updates the running statistics as running = momentum * running + (1 - momentum) * batch; eval mode
    (`eval()`) normalises with the running statistics, and its backward pass treats them as constants.
    """

    axis = 0

    def __init__(
        self, n_neurons: int, eps: float = 1e-5, momentum: float = 0.9, dtype: np.dtype | type = np.float64
    ) -> None:
        super().__init__(n_neurons, eps, dtype)
        self.momentum = momentum
        self.running_mean = np.zeros(n_neurons, dtype=dtype)
        self.running_var = np.ones(n_neurons, dtype=dtype)
        self.training = True

    def train(self) -> None:
        self.training = True

    def eval(self) -> None:
        self.training = False

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check(x)
        if not self.training:
            self._used_batch_stats = False
            return self._normalise(x, self.running_mean, self.running_var)
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mean
        self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        self._used_batch_stats = True
        return self._normalise(x, mean, var)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._used_batch_stats:
            return self._backward_batch_stats(dout)
        # With fixed statistics the layer is an affine map per feature.
        xhat, inv_std, gamma = self._cache.xhat, self._cache.inv_std, self._cache.gamma
        self.grads["gamma"] = (dout * xhat).sum(axis=0)
        self.grads["beta"] = dout.sum(axis=0)
        return dout * gamma * inv_std


class LayerNormModule(_Normalization):
    """Layer normalisation of N x D: statistics per sample over its D features; the same in every mode."""

    axis = 1

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check(x)
        return self._normalise(x, x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return self._backward_batch_stats(dout)


# -- convolution and pooling -----------------------------------------------------------------------------
# Images are N x C x H x W. A layer with windows KH x KW, stride S and zero padding P has outputs of
# I = (H + 2P - KH) // S + 1 rows and J = (W + 2P - KW) // S + 1 columns; position h of the padded input
# is entry kh of window i when h = S*i + kh. The windows are a strided view (no copy); im2col copies them
# once into a (N I J) x (C KH KW) matrix, and col2im adds a window-shaped gradient back onto the input
# with one strided addition per kernel position (KH x KW of them, each over every element at once).


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class _Windows:
    """The geometry of a windowed layer: kernel KH x KW, stride, zero padding."""

    def __init__(self, kernel_size: int | tuple[int, int], stride: int, padding: int) -> None:
        self.kernel_height, self.kernel_width = _pair(kernel_size)
        self.stride, self.padding = int(stride), int(padding)

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """(I, J) for an H x W input."""
        i = (h + 2 * self.padding - self.kernel_height) // self.stride + 1
        j = (w + 2 * self.padding - self.kernel_width) // self.stride + 1
        if i < 1 or j < 1:
            raise ValueError(
                f"a {h} x {w} input is smaller than a {self.kernel_height} x {self.kernel_width} window"
            )
        return i, j

    def pad(self, x: np.ndarray, fill: float = 0.0) -> np.ndarray:
        p = self.padding
        return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill) if p else x

    def windows(self, padded: np.ndarray, i: int, j: int) -> np.ndarray:
        """The N x C x I x J x KH x KW view of the windows of a padded input."""
        view = np.lib.stride_tricks.sliding_window_view(
            padded, (self.kernel_height, self.kernel_width), axis=(2, 3)
        )
        s = self.stride
        return view[:, :, : s * (i - 1) + 1 : s, : s * (j - 1) + 1 : s]

    def col2im(self, dwindows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """dx (N x C x H x W) from the gradient of every window entry, N x C x I x J x KH x KW: each entry
        added back where it was read; the padding's share dropped."""
        n, c, h, w = shape
        _, _, i, j, kh, kw = dwindows.shape
        p, s = self.padding, self.stride
        dpadded = np.zeros((n, c, h + 2 * p, w + 2 * p), dtype=dwindows.dtype)
        for a in range(kh):  # over kernel positions, each addition covering every element
            for b in range(kw):
                dpadded[:, :, a : a + s * (i - 1) + 1 : s, b : b + s * (j - 1) + 1 : s] += dwindows[..., a, b]
        return dpadded[:, :, p : p + h, p : p + w]


@dataclass(frozen=True)
class _ConvCache:
    shape: tuple[int, ...]  # N x C x H x W, the input's
    columns: np.ndarray  # (N I J) x (C KH KW): the input's windows, im2col
    weight: np.ndarray  # O x C x KH x KW, the kernel forward used


class Conv2dModule(Module, _Windows):
    """2-D convolution (cross-correlation, as torch.nn.Conv2d): y[n,o,i,j] = sum_{c,kh,kw}
    x[n, c, S*i + kh - P, S*j + kw - P] W[o,c,kh,kw] + b[o], zero padding P.

    params 'weight' (O x C x KH x KW) and 'bias' (O,). Weights are drawn from N(0, 2 / (C KH KW)) (He
    initialisation, for ReLU networks; `std` overrides it), biases start at 0. The forward pass keeps
    the im2col matrix of its input; the backward pass is two matrix products and a col2im:
    dW = dY^T cols, dcols = dY W, dx = col2im(dcols) (the kernel read flipped, in effect).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int = 0,
        std: float | None = None,
        rng: np.random.Generator | None = None,
        dtype: np.dtype | type = np.float64,
    ) -> None:
        Module.__init__(self)
        _Windows.__init__(self, kernel_size, stride, padding)
        rng = rng if rng is not None else np.random.default_rng()
        shape = (out_channels, in_channels, self.kernel_height, self.kernel_width)
        std = np.sqrt(2.0 / (in_channels * self.kernel_height * self.kernel_width)) if std is None else std
        self.params = {
            "weight": (std * rng.standard_normal(shape)).astype(dtype),
            "bias": np.zeros(out_channels, dtype=dtype),
        }
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self._cache: _ConvCache | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        i, j = self.output_size(*x.shape[2:])
        weight = self.params["weight"]
        columns = self.windows(self.pad(x), i, j).transpose(0, 2, 3, 1, 4, 5).reshape(n * i * j, -1)
        self._cache = _ConvCache(x.shape, columns, weight)
        y = columns @ weight.reshape(weight.shape[0], -1).T + self.params["bias"]
        return y.reshape(n, i, j, -1).transpose(0, 3, 1, 2)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        shape, columns, weight = self._cache.shape, self._cache.columns, self._cache.weight
        n, o, i, j = dout.shape
        dy = dout.transpose(0, 2, 3, 1).reshape(n * i * j, o)
        self.grads["weight"] = (dy.T @ columns).reshape(weight.shape)
        self.grads["bias"] = dout.sum(axis=(0, 2, 3))
        dcolumns = (dy @ weight.reshape(o, -1)).reshape(
            n, i, j, shape[1], self.kernel_height, self.kernel_width
        )
        return self.col2im(dcolumns.transpose(0, 3, 1, 2, 4, 5), shape)


class _Pool2d(Module, _Windows):
    """What both pooling layers take, as torch.nn's do: the stride defaults to the kernel size."""

    def __init__(
        self, kernel_size: int | tuple[int, int], stride: int | None = None, padding: int = 0
    ) -> None:
        Module.__init__(self)
        _Windows.__init__(self, kernel_size, stride if stride is not None else _pair(kernel_size)[0], padding)


class MaxPool2dModule(_Pool2d):
    """2-D max pooling (torch.nn.MaxPool2d): each output is the largest entry of its window; positions in
    the padding take no part (padded with -inf). The gradient goes to the entry that was the maximum
    (the first one, should two be equal); overlapping windows add up."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        i, j = self.output_size(*x.shape[2:])
        windows = self.windows(self.pad(x, -np.inf), i, j)
        flat = windows.reshape(*windows.shape[:4], -1)  # a copy: N x C x I x J x (KH KW)
        self._argmax = flat.argmax(axis=-1)
        self._shape = x.shape
        return np.take_along_axis(flat, self._argmax[..., None], axis=-1)[..., 0]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        kh, kw = self.kernel_height, self.kernel_width
        positions = np.arange(kh * kw).reshape(kh, kw)
        dwindows = np.where(self._argmax[..., None, None] == positions, dout[..., None, None], 0)
        return self.col2im(dwindows, self._shape)


class AvgPool2dModule(_Pool2d):
    """2-D average pooling (torch.nn.AvgPool2d with count_include_pad=True, its default): each output
    is its window's sum over KH x KW entries, padding zeros included; every entry gets dy / (KH KW)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        i, j = self.output_size(*x.shape[2:])
        self._shape = x.shape
        return self.windows(self.pad(x), i, j).mean(axis=(4, 5))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        size = self.kernel_height * self.kernel_width
        shape = (*dout.shape, self.kernel_height, self.kernel_width)
        return self.col2im(np.broadcast_to(dout[..., None, None] / size, shape), self._shape)


class FlattenModule(Module):
    """N x C x H x W to N x (C H W), for the linear layer after the convolutions; backward reshapes back."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self._shape)
