"""Short runs of the NumPy training programs on the embedded digits, and their outputs."""

import json

import numpy as np
import pytest

from implementations import report
from implementations.numpy import train_cmu, train_mlp

EVALUATION_KEYS = {"step", "train_loss", "train_accuracy", "test_loss", "test_accuracy"}


def test_train_mlp_learns_digits(tmp_path, capsys):
    """With the course's learning rate and weight scale on digits prepared as the course prepares CIFAR-10,
    300 steps reach > 0.9 test accuracy and write metrics.json and curves.png as specified."""
    flags = "--max_steps 300 --eval_freq 100 --no_progress"
    result = train_mlp.main([*flags.split(), "--out", str(tmp_path)])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert [e["step"] for e in metrics["evaluations"]] == [0, 100, 200, 300]
    assert all(set(e) == EVALUATION_KEYS for e in metrics["evaluations"])
    assert metrics["final_test_accuracy"] == result["final_test_accuracy"] > 0.9
    assert metrics["evaluations"][0]["test_accuracy"] < 0.3  # it starts at chance: the gain is learnt
    assert metrics["config"]["dataset"] == "digits" and metrics["wall_s"] > 0
    assert "final test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("extra", [["--activation", "elu", "--norm", "layernorm"], ["--norm", "batchnorm"]])
def test_train_mlp_variants_learn(tmp_path, extra):
    """ELU with LayerNorm and ReLU with BatchNorm (evaluated in eval mode) also learn digits with the course's
    flags: far above chance (0.1) in 300 steps (BatchNorm is the slower one: 0.85 there, 0.96 at 1500)."""
    flags = "--max_steps 300 --eval_freq 300 --no_progress"
    result = train_mlp.main([*flags.split(), *extra, "--out", str(tmp_path)])
    assert result["final_test_accuracy"] > 0.8


def test_train_mlp_same_seed_same_run(tmp_path):
    """Two runs with one seed give identical evaluations (every random draw is seeded)."""
    flags = "--max_steps 30 --eval_freq 10 --no_progress --dnn_hidden_units 20,10".split()
    first = train_mlp.main([*flags, "--out", str(tmp_path / "a")])
    second = train_mlp.main([*flags, "--out", str(tmp_path / "b")])
    assert first["evaluations"] == second["evaluations"]


def test_train_mlp_missing_data_exits_2(tmp_path, capsys):
    """An unreadable data set ends the program with status 2 and one line naming the file."""
    with pytest.raises(SystemExit) as info:
        train_mlp.main(["--dataset", "mnist", "--data_dir", str(tmp_path), "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "train-images-idx3-ubyte" in err and "\n" not in err


def test_train_mlp_rejects_bad_hidden_units(tmp_path):
    """--dnn_hidden_units must be comma-separated positive integers (argparse exits 2)."""
    with pytest.raises(SystemExit) as info:
        train_mlp.main(["--dnn_hidden_units", "100,x", "--out", str(tmp_path)])
    assert info.value.code == 2


def test_train_cmu_writes_statistics(tmp_path):
    """train_cmu writes the five statistics, curves and confusion matrix; the network learns digits."""
    flags = "--epochs 4 --lr 0.1 --momentum 0.9 --weight_std 0.1 --hiddens 32 --num_bn_layers 1 --no_progress"
    result = train_cmu.main([*flags.split(), "--out", str(tmp_path)])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("curves.png", "confusion_matrix.png"):
        assert (tmp_path / name).stat().st_size > 0
    for key in ("training_losses", "training_errors", "validation_losses", "validation_errors"):
        assert len(metrics[key]) == 4
    confusion = np.array(metrics["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == metrics["config"]["test_images"] == 360
    assert metrics["final_test_accuracy"] == pytest.approx(np.trace(confusion) / 360)
    assert metrics["final_test_accuracy"] == pytest.approx(metrics["evaluations"][-1]["test_accuracy"])
    assert metrics["config"]["validation_images"] == 1437 // 6
    assert result["training_losses"][-1] < result["training_losses"][0]
    assert result["final_test_accuracy"] > 0.8


def test_train_cmu_normalises_each_split_by_its_own_statistics():
    """Each split is standardised by its own scalar mean and std, as the course runner does."""
    from implementations.data import Split

    split = Split(np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) * 3 + 5, np.array([0, 1]))
    x, labels = train_cmu.normalised(split)
    assert x.shape == (2, 12) and x.dtype == np.float64
    assert x.mean() == pytest.approx(0) and x.std() == pytest.approx(1)


def test_write_metrics_converts_numpy_values(tmp_path):
    """NumPy scalars and arrays in the metrics become plain JSON numbers and lists."""
    path = report.write_metrics(
        tmp_path / "new",
        {"lr": np.float32(0.5)},
        [],
        np.float64(0.25),
        1.5,
        extra={"m": np.eye(2, dtype=int)},
    )
    metrics = json.loads(path.read_text())
    assert metrics == {
        "config": {"lr": 0.5},
        "evaluations": [],
        "final_test_accuracy": 0.25,
        "wall_s": 1.5,
        "m": [[1, 0], [0, 1]],
    }


def test_end_run_writes_the_flags_and_facts_and_returns_them(tmp_path):
    """A run's metrics.json holds every flag but --no_progress, then the run's facts; end_run returns the
    same metrics, with the wall time since the run started."""
    import argparse
    import time

    args = argparse.Namespace(out=str(tmp_path), lr=0.5, no_progress=True)
    evaluations = [report.evaluation(0, train=(2.0, 0.1), test=(2.5, 0.2))]
    started = time.perf_counter()
    metrics = report.end_run(args, started, evaluations, 0.2, {"test_images": 360}, extra={"m": [1]})
    assert metrics["config"] == {"out": str(tmp_path), "lr": 0.5, "test_images": 360}
    assert 0 <= metrics["wall_s"] <= time.perf_counter() - started
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert set(metrics["evaluations"][0]) == EVALUATION_KEYS


def test_bench_step_reports_both_sides(tmp_path, capsys):
    """bench_step times the NumPy and the PyTorch step at each thread count and prints their ratio."""
    from implementations.numpy import bench_step

    rows = bench_step.main(["--repeats", "3", "--threads", "1", "--json", str(tmp_path / "bench.json")])
    assert [row["threads"] for row in rows] == [1]
    assert rows[0]["numpy_s"] > 0 and rows[0]["torch_s"] > 0
    assert rows[0]["ratio"] == pytest.approx(rows[0]["numpy_s"] / rows[0]["torch_s"])
    assert json.loads((tmp_path / "bench.json").read_text())["rows"] == rows
    assert "numpy/torch" in capsys.readouterr().out
