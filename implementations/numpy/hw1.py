"""The CMU 11-785 Homework 1 Part 1 interface, with every backward pass written by hand.

Conventions (they differ from the UvA modules in `modules.py`; each is the course's):
- Shapes: a batch is N x D. Linear layers compute y = x W + b with W of shape in x out and b a 1 x out
  row.
- The criterion returns the per-example loss, shape (N,); its `derivative()` is softmax - y, the
  gradient of the summed loss, not divided by N.
- The MLP stores dW and db as batch means: the gradient of the summed loss divided by N, which is the
  gradient of the mean loss.
- BatchNorm: eps 1e-8 inside the square root, biased batch variance, and dgamma and dbeta are batch sums
  of the delta it receives (so they are not divided by N); running statistics are updated as
  running = alpha * running + (1 - alpha) * batch and used in eval mode.
- Momentum: v = momentum * v - lr * grad; W = W + v. gamma and beta take plain SGD steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


class Activation:
    """An activation: `forward(x)` stores its output in `state`; `derivative()` is dy/dx at that x."""

    def __init__(self) -> None:
        self.state: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def derivative(self) -> np.ndarray:
        raise NotImplementedError


class Identity(Activation):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.state = x
        return x

    def derivative(self) -> np.ndarray:
        return np.ones_like(self.state)


class Sigmoid(Activation):
    def forward(self, x: np.ndarray) -> np.ndarray:
        # Equal to 1 / (1 + exp(-x)), without overflow for large negative x.
        self.state = 0.5 * (np.tanh(0.5 * x) + 1)
        return self.state

    def derivative(self) -> np.ndarray:
        return self.state * (1 - self.state)


class Tanh(Activation):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.state = np.tanh(x)
        return self.state

    def derivative(self) -> np.ndarray:
        return 1 - self.state**2


class ReLU(Activation):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.state = np.maximum(x, 0)
        return self.state

    def derivative(self) -> np.ndarray:
        # The derivative at 0 is taken as 0.
        return (self.state > 0).astype(self.state.dtype)


class SoftmaxCrossEntropy:
    """Softmax of N x C logits x followed by cross-entropy against targets y (one-hot rows), per example.

    `forward(x, y)` returns loss[n] = -sum_k y[n,k] log softmax(x)[n,k], shape (N,), computed with the
    log-sum-exp trick; `derivative()` returns softmax(x) - y, the gradient of sum_n loss[n] (each row
    of y must sum to 1 for this form).
    """

    def __init__(self) -> None:
        self.logits: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        self.sm: np.ndarray | None = None
        self.loss: np.ndarray | None = None

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.forward(x, y)

    def forward(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        self.logits, self.labels = x, y
        shifted = x - x.max(axis=1, keepdims=True)
        log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.sm = np.exp(log_softmax)
        self.loss = -(y * log_softmax).sum(axis=1)
        return self.loss

    def derivative(self) -> np.ndarray:
        return self.sm - self.labels


class BatchNorm:
    """Batch normalisation of N x fan_in; every statistic and parameter is a 1 x fan_in row.

    Training mode: out = gamma * norm + beta with norm = (x - mean) / sqrt(var + eps), the batch mean
    and biased variance, eps 1e-8; the running statistics move towards the batch's. Eval mode
    (`forward(x, eval=True)`) normalises with the running statistics instead.
    """

    def __init__(self, fan_in: int, alpha: float = 0.9) -> None:
        self.alpha = alpha
        self.eps = 1e-8
        self.x: np.ndarray | None = None
        self.norm: np.ndarray | None = None
        self.out: np.ndarray | None = None
        self.mean = np.zeros((1, fan_in))
        self.var = np.ones((1, fan_in))
        self.gamma = np.ones((1, fan_in))
        self.dgamma = np.zeros((1, fan_in))
        self.beta = np.zeros((1, fan_in))
        self.dbeta = np.zeros((1, fan_in))
        self.running_mean = np.zeros((1, fan_in))
        self.running_var = np.ones((1, fan_in))

    def __call__(self, x: np.ndarray, eval: bool = False) -> np.ndarray:
        return self.forward(x, eval)

    def forward(self, x: np.ndarray, eval: bool = False) -> np.ndarray:
        if eval:
            self.norm = (x - self.running_mean) / np.sqrt(self.running_var + self.eps)
            self.out = self.gamma * self.norm + self.beta
            return self.out
        self.x = x
        self.mean = x.mean(axis=0, keepdims=True)
        self.var = x.var(axis=0, keepdims=True)
        self.norm = (x - self.mean) / np.sqrt(self.var + self.eps)
        self.out = self.gamma * self.norm + self.beta
        self.running_mean = self.alpha * self.running_mean + (1 - self.alpha) * self.mean
        self.running_var = self.alpha * self.running_var + (1 - self.alpha) * self.var
        return self.out

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """delta = dL/d(out) of the last training-mode forward; fills dgamma, dbeta; returns dL/dx.

        dx = (N dnorm - sum(dnorm) - norm sum(dnorm norm)) / (N sqrt(var + eps)) with dnorm = delta
        gamma and sums over the batch, written with means so that N cancels.
        """
        self.dbeta = delta.sum(axis=0, keepdims=True)
        self.dgamma = (delta * self.norm).sum(axis=0, keepdims=True)
        dnorm = delta * self.gamma
        centred = dnorm - dnorm.mean(axis=0, keepdims=True)
        return (centred - self.norm * (dnorm * self.norm).mean(axis=0, keepdims=True)) / np.sqrt(
            self.var + self.eps
        )


def random_normal_weight_init(d0: int, d1: int) -> np.ndarray:
    """A d0 x d1 (in x out) weight matrix of standard normal values, from NumPy's global generator."""
    return np.random.randn(d0, d1)


def zeros_bias_init(d: int) -> np.ndarray:
    """A 1 x d bias row of zeros."""
    return np.zeros((1, d))


class MLP:
    """x W[0] + b[0] -> [bn_layers[0]] -> activations[0] -> ... -> activations[-1] (the logits).

    `hiddens` lists the hidden widths; `activations` has one activation per linear layer
    (len(hiddens) + 1, the last usually Identity). The first `num_bn_layers` hidden layers put a
    BatchNorm between their linear map and their activation. `W`, `dW`, `b`, `db` are lists with one
    entry per linear layer (W in x out, b 1 x out).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hiddens: Sequence[int],
        activations: Sequence[Activation],
        weight_init_fn: Callable[[int, int], np.ndarray],
        bias_init_fn: Callable[[int], np.ndarray],
        criterion: SoftmaxCrossEntropy,
        lr: float,
        momentum: float = 0.0,
        num_bn_layers: int = 0,
    ) -> None:
        if len(activations) != len(hiddens) + 1:
            raise ValueError(
                f"{len(hiddens)} hidden layers need {len(hiddens) + 1} activations, got {len(activations)}"
            )
        if not 0 <= num_bn_layers <= len(hiddens):
            raise ValueError(f"num_bn_layers {num_bn_layers} must be between 0 and {len(hiddens)}")
        self.train_mode = True
        self.num_bn_layers = num_bn_layers
        self.bn = num_bn_layers > 0
        self.nlayers = len(hiddens) + 1
        self.input_size = input_size
        self.output_size = output_size
        self.activations = list(activations)
        self.criterion = criterion
        self.lr = lr
        self.momentum = momentum
        sizes = [input_size, *hiddens, output_size]
        self.W = [weight_init_fn(sizes[i], sizes[i + 1]) for i in range(self.nlayers)]
        self.b = [np.reshape(bias_init_fn(sizes[i + 1]), (1, sizes[i + 1])) for i in range(self.nlayers)]
        self.dW = [np.zeros_like(w) for w in self.W]
        self.db = [np.zeros_like(b) for b in self.b]
        self.bn_layers = [BatchNorm(sizes[i + 1]) for i in range(num_bn_layers)]
        self._vW = [np.zeros_like(w) for w in self.W]
        self._vb = [np.zeros_like(b) for b in self.b]
        self._inputs: list[np.ndarray] = []
        self.output: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """N x input_size -> N x output_size logits (the last activation's output)."""
        self._inputs = []
        for i in range(self.nlayers):
            self._inputs.append(x)
            z = x @ self.W[i] + self.b[i]
            if i < self.num_bn_layers:
                z = self.bn_layers[i](z, eval=not self.train_mode)
            x = self.activations[i](z)
        self.output = x
        return x

    def zero_grads(self) -> None:
        for grads in (self.dW, self.db):
            for g in grads:
                g.fill(0.0)
        for bn in self.bn_layers:
            bn.dgamma.fill(0.0)
            bn.dbeta.fill(0.0)

    def backward(self, labels: np.ndarray) -> np.ndarray:
        """Criterion on the last forward's output against one-hot `labels` (N x output_size).

        Fills dW and db (batch means) and each BatchNorm's dgamma and dbeta (batch sums), and returns
        the gradient of the summed per-example loss with respect to the input, N x input_size.
        """
        self.criterion(self.output, labels)
        delta = self.criterion.derivative()
        n = labels.shape[0]
        for i in reversed(range(self.nlayers)):
            delta = delta * self.activations[i].derivative()
            if i < self.num_bn_layers:
                delta = self.bn_layers[i].backward(delta)
            self.dW[i] = self._inputs[i].T @ delta / n
            self.db[i] = delta.sum(axis=0, keepdims=True) / n
            delta = delta @ self.W[i].T
        return delta

    def step(self) -> None:
        for i in range(self.nlayers):
            self._vW[i] = self.momentum * self._vW[i] - self.lr * self.dW[i]
            self._vb[i] = self.momentum * self._vb[i] - self.lr * self.db[i]
            self.W[i] = self.W[i] + self._vW[i]
            self.b[i] = self.b[i] + self._vb[i]
        for bn in self.bn_layers:
            bn.gamma = bn.gamma - self.lr * bn.dgamma
            bn.beta = bn.beta - self.lr * bn.dbeta

    def train(self) -> None:
        self.train_mode = True

    def eval(self) -> None:
        self.train_mode = False


def _class_indices(labels: np.ndarray) -> np.ndarray:
    """Class indices from either indices (N,) or one-hot rows (N x C)."""
    return labels if labels.ndim == 1 else labels.argmax(axis=1)


def _one_hot(indices: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes)[indices]


def evaluate(mlp: MLP, x: np.ndarray, labels: np.ndarray, batch_size: int) -> tuple[float, float, np.ndarray]:
    """(mean loss, error rate, predicted classes) of `mlp` in eval mode over all of x, in batches."""
    mlp.eval()
    loss_sum = 0.0
    predictions = []
    for start in range(0, len(x), batch_size):
        logits = mlp.forward(x[start : start + batch_size])
        targets = _one_hot(labels[start : start + batch_size], mlp.output_size)
        loss_sum += float(mlp.criterion(logits, targets).sum())
        predictions.append(logits.argmax(axis=1))
    predicted = np.concatenate(predictions)
    return loss_sum / len(x), float(np.mean(predicted != labels)), predicted


def get_training_stats(
    mlp: MLP,
    dset: tuple,
    nepochs: int,
    batch_size: int,
    seed: int = 0,
    epoch_callback: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train `mlp` for `nepochs` epochs on dset = ((trainx, trainy), (valx, valy), (testx, testy)).

    Labels may be class indices (N,) or one-hot rows. The training set is reshuffled every epoch (a
    generator seeded by `seed`) and cut into consecutive batches (the last may be smaller). Returns
    (training_losses, training_errors, validation_losses, validation_errors, confusion_matrix): per-epoch
    arrays, the training figures averaged over the epoch's training batches as they were trained (train
    mode), the validation figures over the whole validation set after the epoch (eval mode); and the
    output_size x output_size test confusion matrix, rows the predicted class and columns the true one.
    `epoch_callback(epoch, figures)`, if given, is called after each epoch with that epoch's figures.
    """
    (trainx, trainy), (valx, valy), (testx, testy) = dset
    trainy, valy, testy = _class_indices(trainy), _class_indices(valy), _class_indices(testy)
    rng = np.random.default_rng(seed)
    stats: dict[str, list[float]] = {
        key: [] for key in ("train_loss", "train_error", "val_loss", "val_error")
    }
    for epoch in range(nepochs):
        mlp.train()
        order = rng.permutation(len(trainx))
        loss_sum, wrong = 0.0, 0
        for start in range(0, len(trainx), batch_size):
            batch = order[start : start + batch_size]
            mlp.zero_grads()
            logits = mlp.forward(trainx[batch])
            mlp.backward(_one_hot(trainy[batch], mlp.output_size))
            mlp.step()
            loss_sum += float(mlp.criterion.loss.sum())
            wrong += int(np.sum(logits.argmax(axis=1) != trainy[batch]))
        val_loss, val_error, _ = evaluate(mlp, valx, valy, batch_size)
        figures = {
            "train_loss": loss_sum / len(trainx),
            "train_error": wrong / len(trainx),
            "val_loss": val_loss,
            "val_error": val_error,
        }
        for key, value in figures.items():
            stats[key].append(value)
        if epoch_callback is not None:
            epoch_callback(epoch, figures)
    _, _, predicted = evaluate(mlp, testx, testy, batch_size)
    confusion = np.zeros((mlp.output_size, mlp.output_size), dtype=np.int64)
    np.add.at(confusion, (predicted, testy), 1)
    return (
        np.array(stats["train_loss"]),
        np.array(stats["train_error"]),
        np.array(stats["val_loss"]),
        np.array(stats["val_error"]),
        confusion,
    )
