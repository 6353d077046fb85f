"""Data sets for the training programs, loaded as pixels, and prepared the way each course prepares them.

Every loader returns a `DataSet` whose images are float32 N x C x H x W pixel intensities in [0, 1] and
whose labels are int64 class indices of shape (N,):

- ``digits``: scikit-learn's embedded 8x8 digits (1797 images), values 0 to 16 divided by 16, 1 x 8 x 8,
  split by a fixed seed into 1437 training and 360 test images. No file is read.
- ``mnist`` and ``fashion-mnist``: the official IDX files (``train-images-idx3-ubyte`` and so on, gzip
  or raw), pixels divided by 255, 1 x 28 x 28. MNIST's 60,000 training images are split 50,000 / 10,000
  into training and validation, as CMU 11-785 HW1 does.
- ``cifar10``: the python-pickle batches of ``cifar-10-batches-py``, pixels divided by 255, 3 x 32 x 32.

A training program then prepares them as its course does, because its default learning rate and
weight scale are tuned for inputs of that scale: `course_pixels` is the UvA course's preparation of
CIFAR-10 (0-255 intensities, the training set's mean image subtracted), applied to every data set by
the UvA programs; the CMU program standardises each split itself. `UVA_PREPARATION` says so in --help.

A missing or malformed file raises `DataError`, whose one-line message names the file and what was
expected; the training programs print it and exit with status 2.

`Batches` hands out mini-batches in the UvA course order: consecutive slices, the first epoch in file
order, the order reshuffled at each epoch boundary.
"""

from __future__ import annotations

import gzip
import importlib
import pickle
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NAMES = ("digits", "mnist", "fashion-mnist", "cifar10")

# Where Debian's dataset-fashion-mnist package installs the four IDX files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
# Defaults for the data sets that cannot be installed here; users pass --data_dir for their own copy.
DEFAULT_DIRS = {
    "mnist": "data/mnist",
    "fashion-mnist": FASHION_MNIST_DIR,
    "cifar10": "data/cifar-10-batches-py",
}

DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0
MNIST_VALIDATION_SIZE = 10_000
DIGITS_MAX = 16  # the 8x8 digits count the set pixels of 4x4 blocks: integers 0 to 16
PIXEL_MAX = 255  # the 8-bit pixels of MNIST, Fashion-MNIST and CIFAR-10

UVA_PREPARATION = (
    "Data preparation (the UvA course's, for which its learning rate and weight scale are tuned): "
    "every data set as the course prepares CIFAR-10, pixel intensities on the 0-255 scale (digits' values "
    "0-16 scaled by 255/16) with the training set's mean image subtracted from every split."
)

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_UBYTE = 0x08  # the IDX type code for unsigned bytes, the only one the MNIST files use
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_BATCH = "test_batch"
_CIFAR_SHAPE = (3, 32, 32)


class DataError(Exception):
    """A data file is missing or not in the expected format; the message is one line naming the file."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # float32, N x C x H x W
    labels: np.ndarray  # int64 class indices, shape (N,)

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class DataSet:
    name: str
    train: Split
    test: Split
    validation: Split | None
    n_classes: int


def load(name: str, data_dir: str | None = None) -> DataSet:
    """Load data set `name` (one of `NAMES`); `data_dir` overrides the default folder of its files."""
    if name == "digits":
        return _load_digits()
    if name not in NAMES:
        raise ValueError(f"unknown data set {name!r}; expected one of {', '.join(NAMES)}")
    folder = Path(data_dir if data_dir is not None else DEFAULT_DIRS[name]).expanduser()
    if name == "cifar10":
        return _load_cifar10(folder)
    return _load_idx_set(name, folder)


def load_or_exit(name: str, data_dir: str | None = None, batch_size: int | None = None) -> DataSet:
    """`load` for the training programs: a missing or malformed file, or a batch larger than the
    training set, is one line on stderr and exit status 2."""
    try:
        data = load(name, data_dir)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if batch_size is not None and batch_size > len(data.train):
        print(
            f"error: --batch_size {batch_size} exceeds the {len(data.train)} training images", file=sys.stderr
        )
        sys.exit(2)
    return data


def course_pixels(data: DataSet) -> DataSet:
    """`data` (pixels in [0, 1]) prepared as the UvA course prepares CIFAR-10: intensities on the 0-255
    scale, the training set's per-pixel mean image subtracted from every split, no division by a std."""
    mean_image = (PIXEL_MAX * data.train.images.mean(axis=0, dtype=np.float64)).astype(np.float32)

    def centred(split: Split | None) -> Split | None:
        if split is None:
            return None
        return Split(PIXEL_MAX * split.images - mean_image, split.labels)

    return DataSet(
        data.name, centred(data.train), centred(data.test), centred(data.validation), data.n_classes
    )


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows of the identity for int `labels` of shape (N,): float32, N x n_classes."""
    labels = np.asarray(labels)
    out = np.zeros((labels.shape[0], n_classes), dtype=np.float32)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def with_validation(data: DataSet, size: int) -> DataSet:
    """`data` with its last `size` training examples moved to a validation split (for sets without one)."""
    if not 0 < size < len(data.train):
        raise ValueError(f"validation size {size} must be between 1 and {len(data.train) - 1}")
    cut = len(data.train) - size
    train = Split(data.train.images[:cut], data.train.labels[:cut])
    validation = Split(data.train.images[cut:], data.train.labels[cut:])
    return DataSet(data.name, train, data.test, validation, data.n_classes)


class Batches:
    """Mini-batches of `split` in the UvA course order.

    `next()` returns the next consecutive slice of `batch_size` examples (images, int64 labels). The
    first epoch runs in file order; when a slice would run past the end, the examples left over are
    skipped, the order is reshuffled (with a generator seeded by `seed`) and the slice starts again at 0.
    """

    def __init__(self, split: Split, batch_size: int, seed: int = 0) -> None:
        if not 0 < batch_size <= len(split):
            raise ValueError(f"batch size {batch_size} must be between 1 and the split size {len(split)}")
        self._images = split.images
        self._labels = split.labels
        self.batch_size = batch_size
        self.epochs_completed = 0
        self._rng = np.random.default_rng(seed)
        self._start = 0

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        if self._start + self.batch_size > len(self._labels):
            order = self._rng.permutation(len(self._labels))
            self._images = self._images[order]
            self._labels = self._labels[order]
            self.epochs_completed += 1
            self._start = 0
        stop = self._start + self.batch_size
        batch = self._images[self._start : stop], self._labels[self._start : stop]
        self._start = stop
        return batch


def _load_digits() -> DataSet:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / DIGITS_MAX).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
    test, train = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
    return DataSet(
        "digits",
        Split(images[train], labels[train]),
        Split(images[test], labels[test]),
        None,
        10,
    )


def _load_idx_set(name: str, folder: Path) -> DataSet:
    arrays = {key: _read_idx(_find_idx(folder, stem)) for key, stem in _IDX_FILES.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{folder}: {part} images of shape {images.shape} do not match labels of shape "
                f"{labels.shape}; expected N x rows x cols images and N labels"
            )
    train = _idx_split(arrays["train_images"], arrays["train_labels"])
    test = _idx_split(arrays["test_images"], arrays["test_labels"])
    validation = None
    if name == "mnist" and len(train) > MNIST_VALIDATION_SIZE:
        cut = len(train) - MNIST_VALIDATION_SIZE
        validation = Split(train.images[cut:], train.labels[cut:])
        train = Split(train.images[:cut], train.labels[:cut])
    return DataSet(name, train, test, validation, 10)


def _idx_split(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split((images.astype(np.float32) / PIXEL_MAX)[:, None, :, :], labels.astype(np.int64))


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder / stem}(.gz): file not found; expected the IDX file {stem} (gzip or raw)")


def _read_idx(path: Path) -> np.ndarray:
    """The array in an IDX file: magic 0 0 type ndim, ndim big-endian uint32 sizes, then the data."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read ({error}); expected an IDX file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE or raw[3] == 0:
        raise DataError(
            f"{path}: bad header {raw[:4].hex() or 'empty'}; expected IDX magic 0000 08 nn (unsigned bytes)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header; expected {ndim} sizes after the magic number")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{path}: {len(raw)} bytes; expected {expected} for an IDX array of shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists and NumPy arrays only, so that a data file cannot run code when loaded."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Python 3 pickles bytes under protocol 2 as _codecs.encode(str, "latin1").
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        # Batches pickled under NumPy 1 name numpy.core, which NumPy 2 keeps only as a deprecated alias.
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = "numpy._core" + module[len("numpy.core") :]
        return getattr(importlib.import_module(module), name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N x 3 x 32 x 32 uint8 images, int64 labels) from one CIFAR-10 python batch file."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected a CIFAR-10 python batch (cifar-10-batches-py)")
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as error:  # a corrupt pickle can raise almost anything; all mean the same here
        raise DataError(f"{path}: not a readable pickle ({type(error).__name__}: {error})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: holds a {type(batch).__name__}; expected a dict with 'data' and 'labels'")
    # Official batches were pickled by Python 2 (bytes keys); accept str keys too.
    entries = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
    if "data" not in entries or "labels" not in entries:
        raise DataError(f"{path}: keys {sorted(entries)}; expected 'data' and 'labels'")
    data, labels = np.asarray(entries["data"]), np.asarray(entries["labels"])
    size = int(np.prod(_CIFAR_SHAPE))
    if data.ndim != 2 or data.shape[1] != size or labels.shape != (data.shape[0],):
        raise DataError(
            f"{path}: data of shape {data.shape} and labels of shape {labels.shape}; "
            f"expected N x {size} data and N labels"
        )
    return data.reshape((-1, *_CIFAR_SHAPE)), labels.astype(np.int64)


def _load_cifar10(folder: Path) -> DataSet:
    # Accept the folder holding cifar-10-batches-py as well as that folder itself.
    if not (folder / _CIFAR_TEST_BATCH).exists() and (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    parts = [_read_cifar_batch(folder / name) for name in _CIFAR_TRAIN_BATCHES]
    train_images = np.concatenate([images for images, _ in parts]).astype(np.float32) / PIXEL_MAX
    train_labels = np.concatenate([labels for _, labels in parts])
    test_images, test_labels = _read_cifar_batch(folder / _CIFAR_TEST_BATCH)
    test_images = test_images.astype(np.float32) / PIXEL_MAX
    return DataSet("cifar10", Split(train_images, train_labels), Split(test_images, test_labels), None, 10)


__all__ = [
    "NAMES",
    "UVA_PREPARATION",
    "Batches",
    "DataError",
    "DataSet",
    "Split",
    "course_pixels",
    "load",
    "one_hot",
    "with_validation",
]
