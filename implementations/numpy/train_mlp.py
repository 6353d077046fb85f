"""Train the UvA NumPy MLP: python -m implementations.numpy.train_mlp [flags].

The UvA Practical 1 flags keep their names and course defaults (hidden "100", lr 2e-3, 1500 steps,
batch 200, evaluation every 100 steps, weights N(0, 1e-4^2)); the data set defaults to the embedded
digits, prepared as the course prepares CIFAR-10 (`data.course_pixels`), the input scale those defaults
are tuned for. A run takes `max_steps` SGD steps on mini-batches in the course order and evaluates at step 0,
every `eval_freq` steps and at the last step: on the whole test split, and on a fixed random subset of
the training split as large as the test split (so both figures cost the same and are measured alike),
with batch-norm layers in eval mode. It writes metrics.json and curves.png to --out (by default a new
folder per run).

`--backward generated` trains with every layer's forward and backward pass generated from the verified
catalogue formulas (derivations/*.deriv) instead of the hand-written modules.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from implementations import data as datasets
from implementations import flags, report
from implementations.numpy import training
from implementations.numpy.mlp import ACTIVATIONS, MLP, SGD
from implementations.numpy.modules import WEIGHT_STD, CrossEntropyModule

EVAL_BATCH_SIZE = 1000
PROGRAM = "numpy_mlp"  # names the default --out folder


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m implementations.numpy.train_mlp",
        description=__doc__.split("\n")[0],
        epilog=datasets.UVA_PREPARATION,
    )
    parser.add_argument(
        "--dnn_hidden_units", default="100", help='comma-separated hidden layer widths ("" for none)'
    )
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--max_steps", type=int, default=1500)
    parser.add_argument("--batch_size", type=int, default=200)
    parser.add_argument("--eval_freq", type=int, default=100)
    parser.add_argument("--data_dir", "--data-dir", default=None, help="folder of the data set's files")
    parser.add_argument("--dataset", choices=datasets.NAMES, default="digits")
    parser.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    parser.add_argument("--neg_slope", type=float, default=0.02, help="slope of leaky_relu below 0")
    parser.add_argument("--norm", choices=("none", "batchnorm", "layernorm"), default="none")
    parser.add_argument("--weight_std", type=float, default=WEIGHT_STD, help="std of the initial weights")
    parser.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (the course uses 0)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help=flags.run_folder_help(PROGRAM))
    parser.add_argument("--backward", choices=("hand", "generated"), default="hand")
    training.add_run_arguments(parser)
    return parser


def flatten(split: datasets.Split) -> tuple[np.ndarray, np.ndarray]:
    """(N x D float32 images, int64 labels) for an MLP."""
    return split.images.reshape(len(split), -1), split.labels


def evaluate(mlp: MLP, images: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `mlp` in eval mode over all of `images` (N x D)."""
    mlp.eval()
    loss = CrossEntropyModule()
    total_loss, n_correct = 0.0, 0
    for start in range(0, len(images), EVAL_BATCH_SIZE):
        probabilities = mlp.forward(images[start : start + EVAL_BATCH_SIZE])
        batch_labels = labels[start : start + EVAL_BATCH_SIZE]
        total_loss += loss.forward(probabilities, datasets.one_hot(batch_labels, n_classes)) * len(
            batch_labels
        )
        n_correct += int(np.sum(probabilities.argmax(axis=1) == batch_labels))
    mlp.train()
    return total_loss / len(images), n_correct / len(images)


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser()
    args = parser.parse_args(argv)
    args.hidden_widths = flags.hidden_widths(parser, "--dnn_hidden_units", args.dnn_hidden_units)
    flags.require_at_least_one(parser, args, ("max_steps", "batch_size", "eval_freq"))
    flags.resolve_out(args, PROGRAM)
    return training.run(train, args)


def train(args: argparse.Namespace) -> dict:
    """Run the training `args` describe (parsed and checked by `main`)."""
    started = time.perf_counter()
    data = datasets.course_pixels(datasets.load_or_exit(args.dataset, args.data_dir, args.batch_size))

    train_images, train_labels = flatten(data.train)
    test_images, test_labels = flatten(data.test)
    train_eval = np.random.default_rng(args.seed).permutation(len(train_labels))[: len(test_labels)]
    norm = None if args.norm == "none" else args.norm
    mlp = MLP(
        train_images.shape[1],
        args.hidden_widths,
        data.n_classes,
        activation=args.activation,
        neg_slope=args.neg_slope,
        norm=norm,
        std=args.weight_std,
        seed=args.seed,
        dtype=np.float32,
    )
    loss = CrossEntropyModule()
    if args.backward == "generated":
        # Imported here: only this mode needs the verifier's code generator (and SymPy).
        from implementations.numpy.generated import GeneratedCrossEntropy, use_generated_layers

        use_generated_layers(mlp)
        loss = GeneratedCrossEntropy()
    optimizer = SGD(mlp.modules, args.learning_rate, args.momentum)
    batches = datasets.Batches(datasets.Split(train_images, train_labels), args.batch_size, seed=args.seed)

    def evaluation(step: int) -> dict:
        return report.evaluation(
            step,
            train=evaluate(mlp, train_images[train_eval], train_labels[train_eval], data.n_classes),
            test=evaluate(mlp, test_images, test_labels, data.n_classes),
        )

    evaluations = training.steps(
        mlp, loss, optimizer, batches, data.n_classes, evaluation, args, desc=f"numpy mlp ({args.backward})"
    )
    final_test_accuracy = evaluations[-1]["test_accuracy"]
    facts = {
        "train_images": len(train_labels),
        "test_images": len(test_labels),
        "train_eval_images": len(train_eval),
        "numpy_version": np.__version__,
    }
    metrics = report.end_run(args, started, evaluations, final_test_accuracy, facts)
    report.plot_curves(args.out, evaluations, title=f"NumPy MLP on {args.dataset} ({args.backward} backward)")
    print(
        f"final test accuracy {final_test_accuracy:.4f}, wall {metrics['wall_s']:.1f} s; "
        f"wrote {args.out}/metrics.json and curves.png"
    )
    return metrics


if __name__ == "__main__":
    main()
