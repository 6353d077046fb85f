"""Train a course ConvNet: python -m implementations.torch.train_convnet [--arch preact] [--width 0.25] ...

Defaults are the UvA Practical 1 ConvNet settings: Adam, learning rate 1e-4, 5000 steps of batch 32,
evaluation every 500 steps, full width (the course architecture). Run with --help for every flag.
"""

from implementations.torch.convnet import ConvNet
from implementations.torch.training import CourseDefaults, check_args, make_parser, run

DEFAULTS = CourseDefaults(
    max_steps=5000,
    batch_size=32,
    learning_rate=1e-4,
    optimizer="adam",
    eval_freq=500,
    program="torch_convnet",
)


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser("Train the course ConvNet in PyTorch.", DEFAULTS)
    parser.add_argument(
        "--arch", choices=("vgg", "preact"), default="vgg", help="2018/2019 VGG or 2020 PreAct"
    )
    parser.add_argument(
        "--width", type=float, default=1.0, help="channel multiplier; 1.0 is the course network"
    )
    args = parser.parse_args(argv)
    check_args(parser, args, DEFAULTS)
    if args.width <= 0:
        parser.error(f"--width must be positive, got {args.width}")

    def build(data):
        return ConvNet(data.train.images.shape[1], data.n_classes, args.arch, args.width)

    return run(args, build, f"ConvNet {args.arch}")


if __name__ == "__main__":
    main()
