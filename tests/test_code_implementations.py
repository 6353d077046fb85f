"""Every hand-written backward in implementations/ through `python -m verify code`, the command a user
runs on their own code: each must be verified against its catalogue derivation. The table is the list
the README documents; a new hand-written layer adds a line."""

import pytest

from verify.bench.harness import CODE_CHECKS
from verify.cli import main

TORCH = "implementations/torch"
NUMPY = "implementations/numpy"
IMPLEMENTATIONS = [
    *[(f"{TORCH}/custom_batchnorm.py:CustomBatchNorm{form}", "batchnorm") for form in ("Autograd", "ManualFunction", "ManualModule")],
    *[(f"{TORCH}/custom_layernorm.py:CustomLayerNorm{form}", "layernorm") for form in ("Autograd", "ManualFunction", "ManualModule")],
    (f"{NUMPY}/modules.py:LinearModule", "linear"),
    (f"{NUMPY}/modules.py:LinearModule", "linear_column --convention x=row"),
    (f"{NUMPY}/modules.py:ReLUModule", "relu"),
    (f"{NUMPY}/modules.py:LeakyReLUModule", "leaky_relu"),
    (f"{NUMPY}/modules.py:ELUModule", "elu"),
    (f"{NUMPY}/modules.py:SigmoidModule", "sigmoid"),
    (f"{NUMPY}/modules.py:TanhModule", "tanh"),
    (f"{NUMPY}/modules.py:SoftMaxModule", "softmax"),
    (f"{NUMPY}/modules.py:CrossEntropyModule", "cross_entropy"),
    (f"{NUMPY}/modules.py:BatchNormModule", "batchnorm"),
    (f"{NUMPY}/modules.py:LayerNormModule", "layernorm"),
    (f"{NUMPY}/hw1.py:Identity", "identity"),
    (f"{NUMPY}/hw1.py:Sigmoid", "sigmoid"),
    (f"{NUMPY}/hw1.py:Tanh", "tanh"),
    (f"{NUMPY}/hw1.py:ReLU", "relu"),
    (f"{NUMPY}/hw1.py:SoftmaxCrossEntropy", "softmax_cross_entropy"),
    (f"{NUMPY}/hw1.py:BatchNorm", "batchnorm"),
    (f"{NUMPY}/hw1.py:MLP", "linear_cmu"),
    (f"{NUMPY}/hw1.py:MLP", "linear"),
    (f"{NUMPY}/catalogue.py:SoftmaxCrossEntropyMean", "softmax_cross_entropy_mean"),
    (f"{NUMPY}/catalogue.py:mlp", "mlp"),
]  # fmt: skip


@pytest.mark.parametrize(
    "spec, against", IMPLEMENTATIONS, ids=[f"{s.split('/')[-1]}-{a.split()[0]}" for s, a in IMPLEMENTATIONS]
)
def test_implementation_is_verified(spec, against, capsys):
    """`python -m verify code SPEC --against AGAINST` exits 0 with the report saying verified."""
    status = main(["code", spec, "--against", *against.split()])
    table = capsys.readouterr().out
    assert status == 0 and "verified:" in table, table


def test_the_bench_times_checks_from_this_table():
    """`python -m verify bench` times `python -m verify code` on implementations this table verifies."""
    for _, args, _ in CODE_CHECKS:
        assert (args[0], args[2]) in IMPLEMENTATIONS, args
