"""The values the programs' flags share: hidden layer widths, read one way by every program that takes
them (implementations.flags)."""

import argparse
import re

import pytest

from implementations import flags
from implementations.numpy import train_cmu
from implementations.numpy import train_mlp as numpy_train_mlp
from implementations.torch import bench_images
from implementations.torch import train_mlp as torch_train_mlp

PROGRAMS = {
    "numpy train_mlp": (numpy_train_mlp, "--dnn_hidden_units"),
    "numpy train_cmu": (train_cmu, "--hiddens"),
    "torch train_mlp": (torch_train_mlp, "--dnn_hidden_units"),
    "torch bench_images": (bench_images, "--mlp_hidden"),
}


@pytest.mark.parametrize(
    ("text", "widths"), [("100", [100]), ("512, 256", [512, 256]), (" 7 ,", [7]), ("", [])]
)
def test_hidden_widths_are_comma_separated_whole_numbers(text, widths):
    """Widths are whole numbers separated by commas, blanks around them ignored; '' is no hidden layer."""
    assert flags.hidden_widths(argparse.ArgumentParser(), "--hidden", text) == widths


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("text", ["10,x", "2.5", "0", "100,-3", "1e2", "²"])
def test_every_program_rejects_bad_hidden_widths(program, text, capsys):
    """A width that is not a whole number of at least 1 is a usage error (status 2, one line naming the
    flag) in every program that reads hidden widths, before anything is trained or timed."""
    module, flag = PROGRAMS[program]
    with pytest.raises(SystemExit) as info:
        module.main([flag, text])
    assert info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"error: {flag}: expected comma-separated whole numbers of at least 1, got {text!r}" in error


@pytest.mark.parametrize(
    ("argv", "lr", "momentum"),
    [
        ([], 0.2, 0.9),
        (["--dataset", "fashion-mnist"], 1e-3, 0.0),
        (["--lr", "0.01"], 0.01, 0.9),
        (["--dataset", "mnist", "--momentum", "0.5"], 1e-3, 0.5),
    ],
)
def test_digits_defaults_apply_on_digits_only_and_a_given_flag_wins(argv, lr, momentum):
    """train_cmu's course rate (1e-3, no momentum) is the default on the course's data sets; on digits the
    digits values are; a flag given on the command line is kept either way."""
    args = train_cmu.make_parser().parse_args(argv)
    flags.resolve_defaults(args, train_cmu.DIGITS_DEFAULTS)
    assert (args.lr, args.momentum) == (lr, momentum)


def test_torch_mlp_help_states_both_defaults_and_the_preparation(capsys):
    """--help names the course's default and the digits one, and how the data sets are prepared."""
    with pytest.raises(SystemExit):
        torch_train_mlp.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default sgd, the course's; adam on digits" in text
    assert "mean image subtracted" in text


def test_default_out_is_a_new_folder_per_run(tmp_path, monkeypatch):
    """Without --out a run writes to runs/PROGRAM-DATASET-YYYYMMDD-HHMMSS; when that folder exists (a
    second run within the second) the next gets a suffix instead of overwriting it; --out is kept."""
    monkeypatch.chdir(tmp_path)
    first = argparse.Namespace(out=None, dataset="digits")
    flags.resolve_out(first, "numpy_mlp")
    assert re.fullmatch(r"runs/numpy_mlp-digits-\d{8}-\d{6}", first.out)
    monkeypatch.setattr(flags.time, "strftime", lambda _: "20261125-153000")
    runs = []
    for _ in range(3):
        args = argparse.Namespace(out=None, dataset="mnist")
        flags.resolve_out(args, "numpy_cmu")
        (tmp_path / args.out).mkdir(parents=True)
        runs.append(args.out)
    base = "runs/numpy_cmu-mnist-20261125-153000"
    assert runs == [base, f"{base}-2", f"{base}-3"]
    given = argparse.Namespace(out="mine", dataset="digits")
    flags.resolve_out(given, "numpy_mlp")
    assert given.out == "mine"
