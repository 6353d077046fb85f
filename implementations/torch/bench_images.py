"""Training throughput in images per second: forward, backward and optimiser step on random batches.

    python -m implementations.torch.bench_images [--input 1x28x28] [--widths 1.0 0.25] [--batch_size 32]

Measures the MLP and both ConvNet architectures on one input shape, so figures for the course networks
(width 1.0) sit beside those of the width-reduced ones used for CPU training. Data loading is excluded;
the training programs' own figure (`images_per_s` in metrics.json) includes it.
"""

import argparse
import json
import time

import torch
from torch import nn

from implementations import flags
from implementations.torch.convnet import ConvNet
from implementations.torch.mlp import MLP


def images_per_second(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int, seconds: float
) -> float:
    """Steps of Adam on random (batch_size, *input_shape) images for about `seconds`, after two warm-up steps."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, *input_shape, generator=generator)
    labels = torch.randint(0, 10, (batch_size,), generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    n_steps, start = 0, time.perf_counter()
    while n_steps < 3 or time.perf_counter() - start < seconds:
        step()
        n_steps += 1
    return n_steps * batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="1x28x28", help="C x H x W of one image")
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.25])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--mlp_hidden", default="100", help='hidden widths of the MLP, comma-separated ("" for none)'
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="time spent on each model")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    hidden = flags.hidden_widths(parser, "--mlp_hidden", args.mlp_hidden)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    input_shape = tuple(int(size) for size in args.input.lower().split("x"))
    torch.manual_seed(0)

    models = [(f"MLP {args.mlp_hidden}", MLP(int(torch.tensor(input_shape).prod()), hidden, 10))]
    for arch in ("vgg", "preact"):
        for width in args.widths:
            models.append((f"ConvNet {arch} width {width}", ConvNet(input_shape[0], 10, arch, width)))
    results = []
    for name, model in models:
        rate = images_per_second(model, input_shape, args.batch_size, args.seconds)
        results.append(
            {"model": name, "input": args.input, "batch_size": args.batch_size, "images_per_s": rate}
        )
        print(f"{name:<28} {args.input} batch {args.batch_size}: {rate:10.1f} images/s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch_threads": torch.get_num_threads(), "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
