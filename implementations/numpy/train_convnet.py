"""Train a small NumPy ConvNet: python -m implementations.numpy.train_convnet [flags].

The network is `convnet.ConvNet`: two blocks of 3x3 convolution (stride 1, padding 1), ReLU and the
course's 3x3 max pooling (stride 2, padding 1), then a linear layer into softmax; Adam (the UvA
ConvNets' optimiser) on mini-batches in the course order. Flags are named as in train_mlp; the data set
defaults to the embedded digits, and `--dataset fashion-mnist` reads Debian's Fashion-MNIST. A run
evaluates at step 0, every `eval_freq` steps and at the last step, on the whole test split and on a fixed
random subset of the training split as large as the test split, and writes metrics.json and curves.png
to --out (by default a new folder under runs/ per run).

`--backward generated` trains with every layer's backward pass (convolution, ReLU, max pooling, linear,
softmax, cross-entropy) generated from the verified catalogue formulas (derivations/*.deriv) instead of
the hand-written modules; the flatten between the convolutions and the linear layer is a reshape.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from implementations import data as datasets
from implementations import flags, report
from implementations.numpy import training
from implementations.numpy.convnet import Adam, ConvNet
from implementations.numpy.mlp import SGD
from implementations.numpy.modules import CrossEntropyModule

EVAL_BATCH_SIZE = 500
PROGRAM = "numpy_convnet"  # names the default --out folder


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m implementations.numpy.train_convnet", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--channels", default="16,32", help="comma-separated widths of the conv blocks")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (--optimizer sgd)")
    parser.add_argument("--max_steps", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--eval_freq", type=int, default=250)
    parser.add_argument("--data_dir", "--data-dir", default=None, help="folder of the data set's files")
    parser.add_argument("--dataset", choices=datasets.NAMES, default="digits")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help=flags.run_folder_help(PROGRAM))
    parser.add_argument("--backward", choices=("hand", "generated"), default="hand")
    training.add_run_arguments(parser)
    return parser


def evaluate(net: ConvNet, images: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `net` over all of `images` (N x C x H x W)."""
    net.eval()
    loss = CrossEntropyModule()
    total_loss, n_correct = 0.0, 0
    for start in range(0, len(images), EVAL_BATCH_SIZE):
        probabilities = net.forward(images[start : start + EVAL_BATCH_SIZE])
        batch_labels = labels[start : start + EVAL_BATCH_SIZE]
        targets = datasets.one_hot(batch_labels, n_classes)
        total_loss += loss.forward(probabilities, targets) * len(batch_labels)
        n_correct += int(np.sum(probabilities.argmax(axis=1) == batch_labels))
    net.train()
    return total_loss / len(images), n_correct / len(images)


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser()
    args = parser.parse_args(argv)
    args.channel_widths = flags.hidden_widths(parser, "--channels", args.channels)
    if not args.channel_widths:
        parser.error("--channels: give at least one width")
    flags.require_at_least_one(parser, args, ("max_steps", "batch_size", "eval_freq"))
    flags.resolve_out(args, PROGRAM)
    return training.run(train, args)


def train(args: argparse.Namespace) -> dict:
    """Run the training `args` describe (parsed and checked by `main`)."""
    started = time.perf_counter()
    data = datasets.load_or_exit(args.dataset, args.data_dir, args.batch_size)
    train_images, train_labels = data.train.images, data.train.labels
    test_images, test_labels = data.test.images, data.test.labels
    train_eval = np.random.default_rng(args.seed).permutation(len(train_labels))[: len(test_labels)]
    net = ConvNet(
        train_images.shape[1],
        train_images.shape[2:],
        data.n_classes,
        args.channel_widths,
        seed=args.seed,
        dtype=np.float32,
    )
    loss = CrossEntropyModule()
    if args.backward == "generated":
        # Imported here: only this mode needs the verifier's code generator (and SymPy).
        from implementations.numpy.generated import GeneratedCrossEntropy, use_generated_layers

        use_generated_layers(net, input_grad=False)  # the images need no gradient
        loss = GeneratedCrossEntropy()
    if args.optimizer == "adam":
        optimizer = Adam(net.modules, args.learning_rate)
    else:
        optimizer = SGD(net.modules, args.learning_rate, args.momentum)
    batches = datasets.Batches(datasets.Split(train_images, train_labels), args.batch_size, seed=args.seed)

    def evaluation(step: int) -> dict:
        return report.evaluation(
            step,
            train=evaluate(net, train_images[train_eval], train_labels[train_eval], data.n_classes),
            test=evaluate(net, test_images, test_labels, data.n_classes),
        )

    evaluations = training.steps(
        net,
        loss,
        optimizer,
        batches,
        data.n_classes,
        evaluation,
        args,
        desc=f"numpy convnet ({args.backward})",
    )
    final_test_accuracy = evaluations[-1]["test_accuracy"]
    facts = {
        "train_images": len(train_labels),
        "test_images": len(test_labels),
        "train_eval_images": len(train_eval),
        "numpy_version": np.__version__,
    }
    metrics = report.end_run(args, started, evaluations, final_test_accuracy, facts)
    title = f"NumPy ConvNet on {args.dataset} ({args.backward} backward)"
    report.plot_curves(args.out, evaluations, title=title)
    print(
        f"final test accuracy {final_test_accuracy:.4f}, wall {metrics['wall_s']:.1f} s; "
        f"wrote {args.out}/metrics.json and curves.png"
    )
    return metrics


if __name__ == "__main__":
    main()
