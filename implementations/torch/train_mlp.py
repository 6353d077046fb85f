"""Train the PyTorch MLP: python -m implementations.torch.train_mlp [--dataset fashion-mnist] ...

Defaults are the UvA Practical 1 (2018/2019) MLP settings: one hidden layer of 100, SGD, learning rate
2e-3, 1500 steps of batch 200, evaluation every 100 steps. Run with --help for every flag.
"""

from implementations.torch.mlp import ACTIVATIONS, MLP
from implementations.torch.training import check_args, make_parser, run

DEFAULTS = {
    "max_steps": 1500,
    "batch_size": 200,
    "learning_rate": 2e-3,
    "optimizer": "sgd",
    "eval_freq": 100,
    "out": "runs/torch_mlp",
}


def parse_hidden_units(text: str) -> list[int]:
    """'100' -> [100]; '512,256' -> [512, 256]; '' -> [] (a linear classifier)."""
    return [int(unit) for unit in text.split(",") if unit.strip()]


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser("Train an MLP classifier in PyTorch.", DEFAULTS)
    parser.add_argument("--dnn_hidden_units", default="100", help="comma-separated hidden layer widths")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    parser.add_argument("--batchnorm", action="store_true", help="BatchNorm after each hidden linear layer")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout after each hidden activation")
    args = parser.parse_args(argv)
    check_args(parser, args)
    try:
        hidden = parse_hidden_units(args.dnn_hidden_units)
    except ValueError:
        parser.error(f"--dnn_hidden_units must be comma-separated integers, got {args.dnn_hidden_units!r}")
    if not 0.0 <= args.dropout < 1.0:
        parser.error(f"--dropout must be in [0, 1), got {args.dropout}")

    def build(data):
        n_inputs = int(data.train.images[0].size)
        return MLP(n_inputs, hidden, data.n_classes, args.activation, args.batchnorm, args.dropout)

    return run(args, build, "MLP")


if __name__ == "__main__":
    main()
