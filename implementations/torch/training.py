"""The training loop shared by train_mlp and train_convnet: flags, data, evaluation, metrics and curves.

Both are the UvA course's PyTorch programs: every data set is prepared as the course prepares CIFAR-10
(`data.course_pixels`).

A run takes `max_steps` optimiser steps on mini-batches in the course order (`implementations.data.Batches`)
and evaluates at step 0, every `eval_freq` steps and at the last step. An evaluation runs the model in eval
mode on the whole test split and on a fixed random subset of the training split as large as the test split
(all of it when smaller), so the train and test figures are measured the same way and cost the same.
"""

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from implementations import data as datasets
from implementations import flags, report

EVAL_BATCH_SIZE = 500


@dataclass(frozen=True)
class CourseDefaults:
    """A program's course defaults for the flags both programs have."""

    max_steps: int
    batch_size: int
    learning_rate: float
    optimizer: str  # "sgd" or "adam"
    eval_freq: int
    program: str  # names the default --out folder
    # flags (by dest) whose course default does not learn the embedded digits, with the value there
    digits: Mapping[str, flags.DigitsDefault] = field(default_factory=dict)


def make_parser(description: str, defaults: CourseDefaults) -> argparse.ArgumentParser:
    """The flags both programs share, with the program's course defaults."""
    parser = argparse.ArgumentParser(description=description, epilog=datasets.UVA_PREPARATION)

    def default(name: str, value, help: str = "") -> dict:
        if name in defaults.digits:
            return {"default": None, "help": defaults.digits[name].help(help or name.replace("_", " "))}
        return {"default": value, "help": help or None}

    parser.add_argument("--dataset", choices=datasets.NAMES, default="digits")
    parser.add_argument(
        "--data_dir",
        "--data-dir",
        default=None,
        help="folder of the data set's files (default: per data set)",
    )
    parser.add_argument("--max_steps", type=int, **default("max_steps", defaults.max_steps))
    parser.add_argument("--batch_size", type=int, **default("batch_size", defaults.batch_size))
    parser.add_argument("--learning_rate", type=float, **default("learning_rate", defaults.learning_rate))
    parser.add_argument("--optimizer", choices=("sgd", "adam"), **default("optimizer", defaults.optimizer))
    parser.add_argument(
        "--lr_schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="constant (the course's) or cosine decay from --learning_rate to 0 over --max_steps",
    )
    parser.add_argument("--eval_freq", type=int, **default("eval_freq", defaults.eval_freq))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help=flags.run_folder_help(defaults.program))
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for PyTorch (default 1, as the NumPy programs: more threads than idle cores slow "
        "training down many times over, the digits MLP from 5 s to over 3 minutes on a busy 2-core machine); "
        "0 keeps PyTorch's choice, one per core",
    )
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace, defaults: CourseDefaults) -> None:
    """Fill in the defaults that depend on --dataset and the --out folder; refuse values that cannot run."""
    flags.resolve_defaults(args, defaults.digits)
    flags.resolve_out(args, defaults.program)
    flags.require_at_least_one(parser, args, ("max_steps", "batch_size", "eval_freq"))
    if args.learning_rate <= 0:
        parser.error(f"--learning_rate must be positive, got {args.learning_rate}")
    if args.threads < 0:
        parser.error(f"--threads must be 0 (PyTorch's choice) or more, got {args.threads}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")


@torch.no_grad()
def evaluate(model: nn.Module, split: datasets.Split, device: torch.device) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` in eval mode over every example of `split`."""
    was_training = model.training
    model.eval()
    total_loss, n_correct = 0.0, 0
    for start in range(0, len(split), EVAL_BATCH_SIZE):
        images = torch.from_numpy(split.images[start : start + EVAL_BATCH_SIZE]).to(device)
        labels = torch.from_numpy(split.labels[start : start + EVAL_BATCH_SIZE]).to(device)
        logits = model(images)
        total_loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        n_correct += (logits.argmax(dim=1) == labels).sum().item()
    model.train(was_training)
    return total_loss / len(split), n_correct / len(split)


def run(
    args: argparse.Namespace,
    build_model: Callable[[datasets.DataSet], nn.Module],
    description: str,
) -> dict:
    """Train the model `build_model(data)` as `args` say; write metrics.json and curves.png; return the
    metrics.

    Exits with status 2 and a one-line message when the data set cannot be read. --threads applies to this
    run only: the thread count is restored afterwards, for callers that train several models in-process.
    """
    threads_before = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _train(args, build_model, description)
    finally:
        torch.set_num_threads(threads_before)


def _train(args: argparse.Namespace, build_model: Callable[[datasets.DataSet], nn.Module], description: str):
    started = time.perf_counter()
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    data = datasets.course_pixels(datasets.load_or_exit(args.dataset, args.data_dir, args.batch_size))

    torch.manual_seed(args.seed)
    model = build_model(data).to(device)
    if args.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=args.learning_rate)
    # Cosine decay lets a short CPU run settle into a minimum instead of ending on a noisy step.
    schedule = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.max_steps)
        if args.lr_schedule == "cosine"
        else None
    )
    batches = datasets.Batches(data.train, args.batch_size, seed=args.seed)
    train_eval_order = np.random.default_rng(args.seed).permutation(len(data.train))[: len(data.test)]
    train_eval = datasets.Split(data.train.images[train_eval_order], data.train.labels[train_eval_order])

    def evaluation(step: int) -> dict:
        return report.evaluation(
            step, train=evaluate(model, train_eval, device), test=evaluate(model, data.test, device)
        )

    evaluations = [evaluation(0)]
    # Training throughput counts optimiser steps only, not evaluations.
    train_s = 0.0
    segment_start = time.perf_counter()
    model.train()
    progress = tqdm(range(1, args.max_steps + 1), desc=description, disable=args.no_progress, file=sys.stderr)
    for step in progress:
        images, labels = batches.next()
        images = torch.from_numpy(images).to(device)
        labels = torch.from_numpy(labels).to(device)
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        if step % args.eval_freq == 0 or step == args.max_steps:
            if device.type == "cuda":
                torch.cuda.synchronize()
            train_s += time.perf_counter() - segment_start
            evaluations.append(evaluation(step))
            progress.set_postfix(
                loss=f"{loss.item():.3f}", test_acc=f"{evaluations[-1]['test_accuracy']:.4f}", refresh=False
            )
            segment_start = time.perf_counter()
    progress.close()
    images_per_s = args.max_steps * args.batch_size / train_s
    final_test_accuracy = evaluations[-1]["test_accuracy"]
    facts = {
        "device": str(device),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "train_images": len(data.train),
        "test_images": len(data.test),
        "train_eval_images": len(train_eval),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    metrics = report.end_run(
        args, started, evaluations, final_test_accuracy, facts, extra={"images_per_s": images_per_s}
    )
    report.plot_curves(args.out, evaluations, title=f"{description} on {args.dataset}")
    print(
        f"final test accuracy {final_test_accuracy:.4f}, wall {metrics['wall_s']:.1f} s, "
        f"{images_per_s:.0f} training images/s; wrote {args.out}/metrics.json and curves.png"
    )
    return metrics
