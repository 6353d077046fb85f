"""The real Fashion-MNIST, as Debian's dataset-fashion-mnist installs it (.ci/run installs it): the
loader reads the official files, and the NumPy MLP learns from them. Skipped, with the reason, where
the package is not installed."""

import json
from pathlib import Path

import numpy as np
import pytest

from implementations import data

pytestmark = pytest.mark.skipif(
    not Path(data.FASHION_MNIST_DIR).is_dir(),
    reason=f"Debian's dataset-fashion-mnist is not installed ({data.FASHION_MNIST_DIR} is missing)",
)


def test_loads_the_official_files():
    """60,000 training and 10,000 test images of 1x28x28 in [0, 1], ten balanced classes."""
    ds = data.load("fashion-mnist")
    assert ds.train.images.shape == (60000, 1, 28, 28) and ds.test.images.shape == (10000, 1, 28, 28)
    assert ds.train.images.dtype == np.float32 and 0.0 <= ds.train.images.min() < ds.train.images.max() <= 1.0
    assert ds.n_classes == 10
    assert np.all(np.bincount(ds.test.labels, minlength=10) == 1000)


def test_numpy_mlp_learns_fashion_mnist(tmp_path):
    """A short run with the course's flags (300 steps instead of the documented 6000) is well past chance:
    prepared as the course prepares CIFAR-10, Fashion-MNIST suits its learning rate and weight scale."""
    from implementations.numpy import train_mlp

    train_mlp.main(
        f"--dataset fashion-mnist --dnn_hidden_units 256 --max_steps 300 --eval_freq 300 --out {tmp_path}".split()
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["final_test_accuracy"] > 0.75
