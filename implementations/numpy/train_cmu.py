"""Train the CMU 11-785 HW1 MLP with get_training_stats: python -m implementations.numpy.train_cmu [flags].

Defaults are the course's reference run (hiddens 32,32,32, sigmoid, lr 1e-3, no momentum, batch 100,
100 epochs, standard-normal weights, zero biases), but for two on the embedded digits (`DIGITS_DEFAULTS`):
100 epochs of digits are 1,200 steps where the course's MNIST gives 50,000, and at lr 1e-3 the network
is still at 0.23 test accuracy then (0.85 after 50,000 steps). As in the course, each split's inputs are
normalised by that split's own mean and standard deviation (one scalar each, over all pixels).
A data set without a validation split (digits, Fashion-MNIST, CIFAR-10) has the last sixth of its
training set held out as one (for Fashion-MNIST: 50,000 / 10,000, the CMU sizes).

Writes to --out: metrics.json (the common format, one evaluation per epoch with validation and test
figures, plus the five statistics get_training_stats returns), curves.png (training and validation loss
and error per epoch) and confusion_matrix.png (rows predicted class, columns true class).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from tqdm import tqdm

from implementations import data as datasets
from implementations import flags, report
from implementations.numpy import hw1, training

PROGRAM = "numpy_cmu"  # names the default --out folder
PREPARATION = (
    "Data preparation (the CMU course's): pixels in [0, 1] (digits' values 0-16 divided by 16, the others' "
    "0-255 by 255), then each split standardised by its own scalar mean and std."
)
DIGITS_DEFAULTS = {
    "lr": flags.DigitsDefault(1e-3, 0.2, "the course's rate leaves it at 0.23 after 100 epochs of digits"),
    "momentum": flags.DigitsDefault(0.0, 0.9, "with lr 0.2, 0.96 to 0.975 test accuracy over five seeds"),
}
ACTIVATIONS = {"identity": hw1.Identity, "sigmoid": hw1.Sigmoid, "tanh": hw1.Tanh, "relu": hw1.ReLU}
VALIDATION_FRACTION = 6  # hold out 1/6 of the training set when a data set has no validation split


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m implementations.numpy.train_cmu",
        description=__doc__.split("\n")[0],
        epilog=PREPARATION,
    )
    parser.add_argument("--hiddens", default="32,32,32", help='comma-separated hidden widths ("" for none)')
    parser.add_argument(
        "--activations",
        default="sigmoid",
        help="one activation for every hidden layer, or a comma-separated list, one per hidden layer "
        f"({', '.join(ACTIVATIONS)}); the output layer is always identity (logits)",
    )
    parser.add_argument("--lr", type=float, help=DIGITS_DEFAULTS["lr"].help("learning rate"))
    parser.add_argument("--momentum", type=float, help=DIGITS_DEFAULTS["momentum"].help("SGD momentum"))
    parser.add_argument("--num_bn_layers", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument(
        "--weight_std", type=float, default=1.0, help="std of the initial weights (course: 1)"
    )
    parser.add_argument("--dataset", choices=datasets.NAMES, default="digits")
    parser.add_argument("--data_dir", "--data-dir", default=None, help="folder of the data set's files")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help=flags.run_folder_help(PROGRAM))
    training.add_run_arguments(parser)
    return parser


def normalised(split: datasets.Split) -> tuple[np.ndarray, np.ndarray]:
    """(N x D float64 inputs standardised by this split's own scalar mean and std, int64 labels)."""
    x = split.images.reshape(len(split), -1).astype(np.float64)
    return (x - x.mean()) / x.std(), split.labels


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser()
    args = parser.parse_args(argv)
    hiddens = args.hidden_widths = flags.hidden_widths(parser, "--hiddens", args.hiddens)
    names = [name.strip() for name in args.activations.split(",") if name.strip()]
    if len(names) == 1:
        names *= len(hiddens)
    args.activation_names = names
    if len(names) != len(hiddens) or any(name not in ACTIVATIONS for name in names):
        parser.error(
            f"--activations: expected one or {len(hiddens)} of {', '.join(ACTIVATIONS)}, got {args.activations!r}"
        )
    if not 0 <= args.num_bn_layers <= len(hiddens):
        parser.error(f"--num_bn_layers must be between 0 and {len(hiddens)}")
    flags.require_at_least_one(parser, args, ("epochs", "batch_size"))
    flags.resolve_defaults(args, DIGITS_DEFAULTS)
    flags.resolve_out(args, PROGRAM)
    return training.run(train, args)


def train(args: argparse.Namespace) -> dict:
    """Run the training `args` describe (parsed and checked by `main`)."""
    started = time.perf_counter()
    data = datasets.load_or_exit(args.dataset, args.data_dir)
    if data.validation is None:
        data = datasets.with_validation(data, len(data.train) // VALIDATION_FRACTION)
    train, validation, test = normalised(data.train), normalised(data.validation), normalised(data.test)

    # The course initialisers draw from NumPy's global generator; seeding it makes runs repeatable.
    np.random.seed(args.seed)
    mlp = hw1.MLP(
        train[0].shape[1],
        data.n_classes,
        args.hidden_widths,
        [ACTIVATIONS[name]() for name in args.activation_names] + [hw1.Identity()],
        lambda d0, d1: args.weight_std * hw1.random_normal_weight_init(d0, d1),
        hw1.zeros_bias_init,
        hw1.SoftmaxCrossEntropy(),
        args.lr,
        args.momentum,
        args.num_bn_layers,
    )
    steps_per_epoch = math.ceil(len(train[1]) / args.batch_size)
    evaluations = []
    progress = tqdm(
        total=args.epochs, desc="cmu mlp", unit="epoch", disable=args.no_progress, file=sys.stderr
    )

    def after_epoch(epoch: int, figures: dict[str, float]) -> None:
        # Test figures per epoch fill the common metrics format; get_training_stats only tests at the end.
        test_loss, test_error, _ = hw1.evaluate(mlp, *test, args.batch_size)
        evaluations.append(
            {
                "step": (epoch + 1) * steps_per_epoch,
                "epoch": epoch + 1,
                "train_loss": figures["train_loss"],
                "train_accuracy": 1 - figures["train_error"],
                "validation_loss": figures["val_loss"],
                "validation_accuracy": 1 - figures["val_error"],
                "test_loss": test_loss,
                "test_accuracy": 1 - test_error,
            }
        )
        progress.update()
        progress.set_postfix(
            loss=f"{figures['train_loss']:.3f}", val_err=f"{figures['val_error']:.4f}", refresh=False
        )

    losses, errors, val_losses, val_errors, confusion = hw1.get_training_stats(
        mlp,
        (train, validation, test),
        args.epochs,
        args.batch_size,
        seed=args.seed,
        epoch_callback=after_epoch,
    )
    progress.close()
    final_test_accuracy = float(np.trace(confusion) / confusion.sum())
    facts = {
        "train_images": len(train[1]),
        "validation_images": len(validation[1]),
        "test_images": len(test[1]),
    }
    statistics = {
        "training_losses": losses,
        "training_errors": errors,
        "validation_losses": val_losses,
        "validation_errors": val_errors,
        "confusion_matrix": confusion,
        "confusion_matrix_axes": "rows predicted class, columns true class",
    }
    metrics = report.end_run(args, started, evaluations, final_test_accuracy, facts, extra=statistics)

    epochs = list(range(1, args.epochs + 1))
    report.plot_series(
        f"{args.out}/{report.CURVES_FILE}",
        {
            "loss": {"training": (epochs, losses), "validation": (epochs, val_losses)},
            "error": {"training": (epochs, errors), "validation": (epochs, val_errors)},
        },
        "epoch",
        title=f"CMU HW1 MLP on {args.dataset}",
    )
    report.plot_confusion(
        f"{args.out}/confusion_matrix.png", confusion, title="test confusion (rows predicted)"
    )
    print(
        f"final training loss {losses[-1]:.4f} error {errors[-1]:.4f}; validation loss {val_losses[-1]:.4f} "
        f"error {val_errors[-1]:.4f}; test accuracy {final_test_accuracy:.4f}; wall {metrics['wall_s']:.1f} s; "
        f"wrote {args.out}"
    )
    return metrics


if __name__ == "__main__":
    main()
