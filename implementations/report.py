"""What every training program writes: metrics.json and its curves as PNG, in one format.

metrics.json is {"config": {...}, "evaluations": [{"step", "train_loss", "train_accuracy", "test_loss",
"test_accuracy"}, ...], "final_test_accuracy", "wall_s"} plus any extra keys a program adds. Figures are
drawn with matplotlib's Agg canvas directly (no pyplot), so nothing needs a display and no global state
is touched.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"


def _plain(value):
    """`value` with NumPy scalars and arrays turned into the Python numbers and lists JSON holds."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _metrics(
    config: Mapping,
    evaluations: Sequence[Mapping],
    final_test_accuracy: float,
    wall_s: float,
    extra: Mapping | None = None,
) -> dict:
    return {
        "config": config,
        "evaluations": list(evaluations),
        "final_test_accuracy": final_test_accuracy,
        "wall_s": wall_s,
        **(extra or {}),
    }


def write_metrics(
    out_dir: str | Path,
    config: Mapping,
    evaluations: Sequence[Mapping],
    final_test_accuracy: float,
    wall_s: float,
    extra: Mapping | None = None,
) -> Path:
    """Write out_dir/metrics.json (creating out_dir) and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / METRICS_FILE
    metrics = _metrics(config, evaluations, final_test_accuracy, wall_s, extra)
    path.write_text(json.dumps(_plain(metrics), indent=2) + "\n")
    return path


def evaluation(step: int, train: tuple[float, float], test: tuple[float, float]) -> dict:
    """One entry of "evaluations": the step, and the (mean loss, accuracy) measured on each split."""
    (train_loss, train_accuracy), (test_loss, test_accuracy) = train, test
    return {
        "step": step,
        "train_loss": train_loss,
        "train_accuracy": train_accuracy,
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
    }


def end_run(
    args: argparse.Namespace,
    started: float,
    evaluations: Sequence[Mapping],
    final_test_accuracy: float,
    facts: Mapping,
    extra: Mapping | None = None,
) -> dict:
    """Write a training run's metrics.json to --out and return the metrics, its wall time since `started`
    (a time.perf_counter() reading) included. The config is every flag but --no_progress, which changes
    only what is shown, followed by `facts` about the run (split sizes, versions)."""
    wall_s = time.perf_counter() - started
    config = {**{key: value for key, value in vars(args).items() if key != "no_progress"}, **facts}
    write_metrics(args.out, config, evaluations, final_test_accuracy, wall_s, extra)
    return _metrics(config, evaluations, final_test_accuracy, wall_s, extra)


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)
    return path


def plot_series(
    path: str | Path,
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    xlabel: str,
    title: str = "",
) -> Path:
    """One panel per entry of `panels` (its y label) holding lines {label: (x values, y values)}."""
    figure = Figure(figsize=(5 * len(panels), 4), layout="constrained")
    for axes, (ylabel, lines) in zip(
        figure.subplots(1, len(panels), squeeze=False)[0], panels.items(), strict=True
    ):
        for label, (xs, ys) in lines.items():
            axes.plot(xs, ys, marker="." if len(xs) < 30 else None, label=label)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        axes.legend()
    if title:
        figure.suptitle(title)
    return _save(figure, Path(path))


def plot_curves(out_dir: str | Path, evaluations: Sequence[Mapping], title: str = "") -> Path:
    """out_dir/curves.png: loss and accuracy, train and test, against the training step."""
    steps = [e["step"] for e in evaluations]
    panels = {
        quantity: {
            split: (steps, [e[f"{split}_{quantity}"] for e in evaluations]) for split in ("train", "test")
        }
        for quantity in ("loss", "accuracy")
    }
    return plot_series(Path(out_dir) / CURVES_FILE, panels, "step", title)


def plot_confusion(path: str | Path, confusion: np.ndarray, title: str = "") -> Path:
    """A confusion matrix as a heat map with counts, rows the predicted class and columns the true one."""
    confusion = np.asarray(confusion)
    figure = Figure(figsize=(6, 5.5), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=axes)
    threshold = confusion.max() / 2
    for (row, column), count in np.ndenumerate(confusion):
        colour = "white" if count > threshold else "black"
        axes.text(column, row, str(count), ha="center", va="center", fontsize=7, color=colour)
    axes.set_xlabel("true class")
    axes.set_ylabel("predicted class")
    axes.set_xticks(range(confusion.shape[1]))
    axes.set_yticks(range(confusion.shape[0]))
    if title:
        axes.set_title(title)
    return _save(figure, Path(path))
