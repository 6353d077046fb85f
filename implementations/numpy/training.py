"""What the NumPy training programs (train_mlp, train_cmu) share: the flags that say how a program runs
rather than what it trains, and running the training under the BLAS thread limit they set."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from threadpoolctl import threadpool_limits


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
