"""Smoke tests of the PyTorch training programs on the embedded digits data set (seconds each)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from implementations.torch import train_convnet, train_mlp

REPO = Path(__file__).resolve().parents[1]
EVALUATION_KEYS = {"step", "train_loss", "train_accuracy", "test_loss", "test_accuracy"}


def test_mlp_learns_digits_and_writes_metrics_and_curves(tmp_path):
    """300 Adam steps take the MLP well above chance (0.1) on digits; metrics.json follows the contract
    (evaluations at step 0, every eval_freq and the last step) and agrees with the returned metrics."""
    argv = ["--optimizer", "adam", "--learning_rate", "3e-3", "--max_steps", "300", "--batch_size", "64"]
    argv += ["--eval_freq", "100", "--seed", "1", "--out", str(tmp_path), "--no_progress"]
    result = train_mlp.main(argv)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [e["step"] for e in metrics["evaluations"]] == [0, 100, 200, 300]
    assert all(set(e) == EVALUATION_KEYS for e in metrics["evaluations"])
    assert metrics["final_test_accuracy"] == metrics["evaluations"][-1]["test_accuracy"]
    assert metrics["final_test_accuracy"] == pytest.approx(result["final_test_accuracy"])
    assert metrics["final_test_accuracy"] >= 0.9
    assert metrics["evaluations"][-1]["train_loss"] < metrics["evaluations"][0]["train_loss"] / 4
    assert metrics["config"]["dataset"] == "digits" and metrics["config"]["dnn_hidden_units"] == "100"
    assert metrics["wall_s"] > 0 and metrics["images_per_s"] > 0
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_same_seed_gives_the_same_run(tmp_path):
    """Initialisation and batch order are seeded: two runs with one seed evaluate identically on CPU,
    and another seed gives a different run."""
    base = [
        "--max_steps",
        "40",
        "--eval_freq",
        "20",
        "--optimizer",
        "adam",
        "--no_progress",
        "--device",
        "cpu",
    ]
    runs = [
        train_mlp.main([*base, "--seed", seed, "--out", str(tmp_path / name)])["evaluations"]
        for name, seed in (("a", "3"), ("b", "3"), ("c", "4"))
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_cosine_schedule_changes_the_run(tmp_path):
    """--lr_schedule cosine is wired in: with the same seed, its run differs from the constant one from the
    first evaluation after step 0 on, and it still learns."""
    base = ["--max_steps", "60", "--eval_freq", "30", "--optimizer", "adam", "--learning_rate", "3e-3"]
    base += ["--no_progress", "--device", "cpu"]
    constant, cosine = (
        train_mlp.main([*base, "--lr_schedule", schedule, "--out", str(tmp_path / schedule)])["evaluations"]
        for schedule in ("constant", "cosine")
    )
    assert constant[0] == cosine[0]
    assert constant[1]["train_loss"] != cosine[1]["train_loss"]
    assert cosine[-1]["test_accuracy"] >= 0.8


@pytest.mark.parametrize("arch", ["vgg", "preact"])
def test_width_reduced_convnet_learns_digits(tmp_path, arch):
    """An eighth-width ConvNet of either architecture passes 0.75 test accuracy on digits in 150 steps
    (one thread, so a busy machine slows it down only in proportion); the caller's thread count is restored."""
    argv = ["--arch", arch, "--width", "0.125", "--max_steps", "150", "--batch_size", "32", "--threads", "1"]
    argv += ["--learning_rate", "1e-3", "--eval_freq", "150", "--out", str(tmp_path), "--no_progress"]
    threads_before = torch.get_num_threads()
    result = train_convnet.main(argv)
    assert torch.get_num_threads() == threads_before, "--threads leaked out of the run"
    assert [e["step"] for e in result["evaluations"]] == [0, 150]
    assert result["final_test_accuracy"] >= 0.75
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["arch"] == arch


def run_module(module: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *argv], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_command_line_runs_and_reports_missing_data_in_one_line(tmp_path):
    """`python -m implementations.torch.train_mlp` runs from the repository root; a data folder without
    the files exits with status 2 and a one-line error naming the file, without a traceback."""
    done = run_module("implementations.torch.train_mlp", "--max_steps", "3", "--out", str(tmp_path / "ok"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ok" / "metrics.json").is_file()

    missing = run_module(
        "implementations.torch.train_convnet",
        "--dataset",
        "fashion-mnist",
        "--data_dir",
        str(tmp_path / "none"),
    )
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    assert missing.stderr.strip().count("\n") == 0
    assert "train-images-idx3-ubyte" in missing.stderr


@pytest.mark.parametrize(
    ("program", "argv", "message"),
    [
        (train_mlp, ["--max_steps", "0"], "--max_steps must be at least 1"),
        (train_mlp, ["--dnn_hidden_units", "10,x"], "--dnn_hidden_units"),
        (train_convnet, ["--width", "-1"], "--width must be positive"),
        (train_convnet, ["--arch", "resnet"], "invalid choice"),
    ],
)
def test_bad_flags_exit_with_status_2(program, argv, message, capsys):
    """Invalid flag values are usage errors (status 2) that say which flag is wrong."""
    with pytest.raises(SystemExit) as exit_info:
        program.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
