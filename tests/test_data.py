"""The data loaders on tiny files written in the exact on-disk formats, and the batch order."""

import gzip
import pickle
import struct

import numpy as np
import pytest

from implementations import data


def write_idx(path, array, compress):
    """An IDX file as the MNIST site ships it: 0 0 0x08 ndim, big-endian uint32 sizes, unsigned bytes."""
    payload = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def write_idx_set(folder, n_train, n_test, side, compress, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array, compress)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_load_scaled_in_nchw(tmp_path, compress):
    """Fashion-MNIST IDX files, gzip or raw, load as float32 N x 1 x H x W in [0, 1] with int64 labels."""
    arrays = write_idx_set(tmp_path, n_train=7, n_test=5, side=4, compress=compress)
    ds = data.load("fashion-mnist", str(tmp_path))
    assert ds.validation is None and ds.n_classes == 10
    assert ds.train.images.shape == (7, 1, 4, 4) and ds.train.images.dtype == np.float32
    assert ds.test.labels.dtype == np.int64
    np.testing.assert_allclose(ds.train.images[:, 0], arrays["train-images-idx3-ubyte"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.test.labels, arrays["t10k-labels-idx1-ubyte"])


def test_mnist_keeps_last_10000_training_images_for_validation(tmp_path):
    """MNIST's training file is split as CMU does: the last 10,000 images become the validation set."""
    arrays = write_idx_set(tmp_path, n_train=10_003, n_test=2, side=1, compress=True)
    ds = data.load("mnist", str(tmp_path))
    assert len(ds.train) == 3 and len(ds.validation) == 10_000
    np.testing.assert_array_equal(ds.validation.labels, arrays["train-labels-idx1-ubyte"][3:])


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda raw: b"\x00\x00\x0d\x03" + raw[4:], "bad header"),  # float type code instead of ubyte
        (lambda raw: raw[:-3], "bytes; expected"),  # truncated payload
        (lambda raw: b"", "bad header"),
    ],
)
def test_malformed_idx_file_names_the_file(tmp_path, corrupt, message):
    """A corrupt IDX file raises DataError naming that file and saying what was expected."""
    write_idx_set(tmp_path, n_train=3, n_test=2, side=2, compress=False)
    target = tmp_path / "t10k-images-idx3-ubyte"
    target.write_bytes(corrupt(target.read_bytes()))
    with pytest.raises(data.DataError, match=message) as info:
        data.load("mnist", str(tmp_path))
    assert str(target) in str(info.value) and "\n" not in str(info.value)


def test_missing_idx_file(tmp_path):
    """A missing file is reported by name, not as a traceback from deep inside numpy."""
    write_idx_set(tmp_path, n_train=3, n_test=2, side=2, compress=True)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataError, match="train-labels-idx1-ubyte.*not found"):
        data.load("fashion-mnist", str(tmp_path))


def test_mismatched_image_and_label_counts(tmp_path):
    """Image and label files of different lengths are an error, not a silently truncated split."""
    write_idx_set(tmp_path, n_train=3, n_test=2, side=2, compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4), compress=True)
    with pytest.raises(data.DataError, match="do not match"):
        data.load("fashion-mnist", str(tmp_path))


def write_cifar(folder, n_per_batch, seed=0):
    """Six batches as the official cifar-10-batches-py holds them: dicts with bytes keys, uint8 rows."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    raw = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n_per_batch)],
            b"data": rng.integers(0, 256, (n_per_batch, 3072)).astype(np.uint8),
            b"filenames": [b"x.png"] * n_per_batch,
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        raw[name] = batch
    return raw


def test_cifar10_as_the_course_prepares_it(tmp_path):
    """CIFAR-10 loads as float32 N x 3 x 32 x 32 pixels / 255; course_pixels gives the UvA course's
    preparation: the 0-255 pixels less the training set's mean image, no division."""
    raw = write_cifar(tmp_path / "cifar-10-batches-py", n_per_batch=4)
    loaded = data.load("cifar10", str(tmp_path))  # the parent folder is accepted too
    np.testing.assert_allclose(
        loaded.test.images.reshape(4, -1), raw["test_batch"][b"data"] / 255.0, rtol=1e-6
    )
    ds = data.course_pixels(loaded)
    assert ds.train.images.shape == (20, 3, 32, 32) and ds.train.images.dtype == np.float32
    train_raw = np.concatenate([raw[f"data_batch_{i}"][b"data"] for i in range(1, 6)]).astype(np.float64)
    mean = train_raw.mean(axis=0)
    expected_test = (raw["test_batch"][b"data"] - mean).reshape(-1, 3, 32, 32)
    np.testing.assert_allclose(ds.test.images, expected_test, atol=1e-3)
    np.testing.assert_allclose(ds.train.images.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_array_equal(ds.train.labels[:4], raw["data_batch_1"][b"labels"])
    # The channel axis comes first: row 0 of the data holds 1024 red values, then green, then blue.
    np.testing.assert_allclose(ds.test.images[0, 1, 0, 0], raw["test_batch"][b"data"][0, 1024] - mean[1024])


def test_malformed_cifar_batch(tmp_path):
    """A CIFAR batch missing its 'labels' entry raises DataError naming the batch file."""
    folder = tmp_path / "cifar"
    write_cifar(folder, n_per_batch=2)
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8)}, f)
    with pytest.raises(data.DataError, match="data_batch_3.*expected 'data' and 'labels'"):
        data.load("cifar10", str(folder))


class _Exploit:
    def __reduce__(self):
        return (print, ("this must not run",))


def test_cifar_pickle_cannot_run_code(tmp_path, capsys):
    """A batch file referring to anything but NumPy arrays is refused before any of it runs."""
    folder = tmp_path / "cifar"
    write_cifar(folder, n_per_batch=2)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": _Exploit(), b"labels": [0]}, f)
    with pytest.raises(data.DataError, match="test_batch.*refusing"):
        data.load("cifar10", str(folder))
    assert "must not run" not in capsys.readouterr().out


def test_digits_is_embedded_and_split_fixed():
    """digits needs no file: 1437/360 images of 1 x 8 x 8 in [0, 1], the same split on every call."""
    first, second = data.load("digits"), data.load("digits")
    assert first.train.images.shape == (1437, 1, 8, 8) and len(first.test) == 360
    assert first.train.images.min() == 0.0 and first.train.images.max() == 1.0
    np.testing.assert_array_equal(first.test.labels, second.test.labels)
    assert set(np.unique(first.test.labels)) == set(range(10))


def test_course_pixels_scale_digits_to_0_255_and_centre_every_split_on_the_training_mean():
    """Digits' values 0-16 become 0-255 intensities; the training mean image is subtracted from train and
    test alike (so train is centred and test is not, exactly); labels are untouched."""
    loaded = data.load("digits")
    ds = data.course_pixels(loaded)
    mean_image = 255 * loaded.train.images.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(ds.train.images.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(ds.test.images, 255 * loaded.test.images - mean_image, atol=1e-3)
    assert ds.train.images.dtype == np.float32 and ds.validation is None
    np.testing.assert_array_equal(ds.test.labels, loaded.test.labels)


def test_one_hot():
    """one_hot puts a single 1 in each row at the label's column."""
    labels = np.array([2, 0, 2])
    out = data.one_hot(labels, 3)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.argmax(axis=1), labels)
    np.testing.assert_array_equal(out.sum(axis=1), 1.0)


def test_batches_follow_the_course_order():
    """First epoch in file order, leftover examples skipped, then a fresh permutation each epoch."""
    n, size = 10, 3
    split = data.Split(np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1), np.arange(n, dtype=np.int64))
    batches = data.Batches(split, size, seed=1)
    first_epoch = np.concatenate([batches.next()[1] for _ in range(n // size)])
    np.testing.assert_array_equal(first_epoch, np.arange(9))
    assert batches.epochs_completed == 0
    epochs = []
    for _ in range(2):
        images, labels = zip(*[batches.next() for _ in range(n // size)], strict=True)
        np.testing.assert_array_equal(np.concatenate(images).ravel(), np.concatenate(labels))
        epochs.append(np.concatenate(labels))
        assert len(set(epochs[-1])) == 9  # a permutation: no example repeated within an epoch
    assert batches.epochs_completed == 2
    assert not np.array_equal(epochs[0], np.arange(9)) or not np.array_equal(epochs[1], np.arange(9))


def test_with_validation_moves_the_tail():
    """with_validation carves the last examples of train into a validation split, nothing lost."""
    ds = data.load("digits")
    carved = data.with_validation(ds, 100)
    assert len(carved.train) == 1337 and len(carved.validation) == 100
    np.testing.assert_array_equal(carved.validation.labels, ds.train.labels[-100:])
