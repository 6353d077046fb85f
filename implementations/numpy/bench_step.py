"""One training step of the NumPy MLP against the same step in PyTorch on the CPU, side by side.

python -m implementations.numpy.bench_step [--threads 1,2] [--repeats 300]

The step is the UvA MLP 784-[100]-10 (ReLU) on a float32 batch of 200: forward to probabilities,
cross-entropy, backward, plain SGD update. NumPy runs the hand-written modules; PyTorch runs nn.Linear
layers with F.cross_entropy on the logits and torch.optim.SGD. Both get the same number of threads (BLAS
threads for NumPy, intra-op threads for PyTorch). Each figure is the median over `repeats` timed steps
after a warm-up, the two sides timed in alternating rounds; the ratio is NumPy's median over PyTorch's.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from implementations.numpy.mlp import MLP, SGD
from implementations.numpy.modules import CrossEntropyModule

N_INPUTS, HIDDEN, N_CLASSES, BATCH = 784, 100, 10, 200
LEARNING_RATE = 1e-3
WARMUP = 20
ROUNDS = 10


def interleaved_medians(steps: list[Callable[[], None]], repeats: int) -> list[float]:
    """Median seconds per call of each step, timed in alternating rounds after a warm-up.

    Alternating rounds expose every step to the same background load, so that load on a shared machine
    shifts both medians rather than biasing the ratio.
    """
    for step in steps:
        for _ in range(WARMUP):
            step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(ROUNDS):
        for step, record in zip(steps, times, strict=True):
            for _ in range(max(1, repeats // ROUNDS)):
                start = time.perf_counter()
                step()
                record.append(time.perf_counter() - start)
    return [float(np.median(record)) for record in times]


def numpy_step(x: np.ndarray, targets: np.ndarray) -> Callable[[], None]:
    mlp = MLP(N_INPUTS, [HIDDEN], N_CLASSES, seed=0, dtype=np.float32)
    optimizer = SGD(mlp.modules, LEARNING_RATE)
    loss = CrossEntropyModule()

    def step() -> None:
        probabilities = mlp.forward(x)
        mlp.backward(loss.backward(probabilities, targets))
        optimizer.step()

    return step


def torch_step(x: np.ndarray, labels: np.ndarray) -> Callable[[], None]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(N_INPUTS, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, N_CLASSES)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(labels)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        prog="python -m implementations.numpy.bench_step", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--threads", default="1", help="comma-separated thread counts to measure (default 1)")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    x = rng.random((BATCH, N_INPUTS), dtype=np.float32)
    labels = rng.integers(0, N_CLASSES, BATCH)
    targets = np.eye(N_CLASSES, dtype=np.float32)[labels]
    saved_threads = torch.get_num_threads()
    rows = []
    print(
        f"MLP {N_INPUTS}-[{HIDDEN}]-{N_CLASSES}, batch {BATCH}, float32: median of {args.repeats} SGD steps"
    )
    print(f"{'threads':>7}  {'numpy ms':>9}  {'torch ms':>9}  {'numpy/torch':>11}")
    for threads in (int(part) for part in args.threads.split(",")):
        torch.set_num_threads(threads)
        with threadpool_limits(limits=threads, user_api="blas"):
            numpy_s, torch_s = interleaved_medians(
                [numpy_step(x, targets), torch_step(x, labels)], args.repeats
            )
        rows.append({"threads": threads, "numpy_s": numpy_s, "torch_s": torch_s, "ratio": numpy_s / torch_s})
        print(f"{threads:>7}  {numpy_s * 1e3:>9.3f}  {torch_s * 1e3:>9.3f}  {numpy_s / torch_s:>11.2f}")
    torch.set_num_threads(saved_threads)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"numpy": np.__version__, "torch": torch.__version__, "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
