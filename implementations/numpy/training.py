"""What the NumPy training programs (train_mlp, train_cmu) share: the flags that say how a program runs
rather than what it trains, and running the training under the BLAS thread limit they set."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from threadpoolctl import threadpool_limits
from tqdm import tqdm

from implementations import data as datasets


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS threads (default 1: at these matrix sizes more threads gain little, and OpenBLAS threads "
        "competing with other processes for the cores can make each product many times slower); 0 keeps "
        "the library's default",
    )
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")


def run(train: Callable[[argparse.Namespace], dict], args: argparse.Namespace) -> dict:
    """`train(args)` with BLAS limited to --threads threads for its duration (0: the library's default)."""
    with threadpool_limits(limits=args.threads or None, user_api="blas"):
        return train(args)


def steps(net, loss, optimizer, batches, n_classes: int, evaluation: Callable[[int], dict], args, desc: str):
    """The training loop both NumPy programs share: args.max_steps SGD/Adam steps of `net` (a layer stack
    with forward/backward) on `batches`, evaluated at step 0, every args.eval_freq steps and at the end;
    returns the evaluations in order."""
    evaluations = [evaluation(0)]
    progress = tqdm(range(1, args.max_steps + 1), desc=desc, disable=args.no_progress, file=sys.stderr)
    for step in progress:
        images, labels = batches.next()
        targets = datasets.one_hot(labels, n_classes)
        probabilities = net.forward(images)
        net.backward(loss.backward(probabilities, targets))
        optimizer.step()
        if step % args.eval_freq == 0 or step == args.max_steps:
            evaluations.append(evaluation(step))
            progress.set_postfix(
                loss=f"{loss.forward(probabilities, targets):.3f}",
                test_acc=f"{evaluations[-1]['test_accuracy']:.4f}",
                refresh=False,
            )
    progress.close()
    return evaluations
