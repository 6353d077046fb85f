"""The values the programs' flags share: hidden layer widths, read one way by every program that takes
them (implementations.flags)."""

import argparse

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
