"""Tests of the custom BatchNorm and LayerNorm layers in implementations/torch (three forms each)."""

import pytest
import torch
import torch.nn.functional as F

from implementations.torch.custom_batchnorm import (
    CustomBatchNormAutograd,
    CustomBatchNormManualFunction,
    CustomBatchNormManualModule,
)
from implementations.torch.custom_layernorm import (
    CustomLayerNormAutograd,
    CustomLayerNormManualFunction,
    CustomLayerNormManualModule,
)

EPS = 1e-5
N_SAMPLES, N_NEURONS = 7, 5

# kind -> (autograd module, Function, module wrapping the Function, axis the statistics are taken over)
NORMS = {
    "batchnorm": (CustomBatchNormAutograd, CustomBatchNormManualFunction, CustomBatchNormManualModule, 0),
    "layernorm": (CustomLayerNormAutograd, CustomLayerNormManualFunction, CustomLayerNormManualModule, 1),
}


def torch_reference(kind, x, gamma, beta):
    """PyTorch's own op for the same layer: F.batch_norm in training mode or F.layer_norm."""
    if kind == "batchnorm":
        return F.batch_norm(x, None, None, gamma, beta, training=True, eps=EPS)
    return F.layer_norm(x, (x.shape[1],), gamma, beta, eps=EPS)


def sample_inputs(seed, requires_grad=(True, True, True)):
    """x with per-feature offsets and scales, gamma with a zero entry, beta far from zero (float64).

    gamma = sqrt(10 * arange) has gamma[0] = 0, which breaks a backward that divides by gamma (recovering
    xhat from y); beta = 100 * arange breaks one that forgets to subtract beta.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N_SAMPLES, N_NEURONS, generator=gen, dtype=torch.float64)
    x = 3 * x * torch.rand(N_NEURONS, generator=gen, dtype=torch.float64) + 5 * torch.randn(
        N_NEURONS, generator=gen, dtype=torch.float64
    )
    gamma = torch.sqrt(10 * torch.arange(N_NEURONS, dtype=torch.float64))
    beta = 100 * torch.arange(N_NEURONS, dtype=torch.float64)
    return [t.requires_grad_(r) for t, r in zip((x, gamma, beta), requires_grad, strict=True)]


@pytest.mark.parametrize("kind", NORMS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_manual_function_passes_gradcheck(kind, seed):
    """The hand-written backward equals finite differences of the forward, for x, gamma and beta."""
    function = NORMS[kind][1]
    x, gamma, beta = sample_inputs(seed)
    assert torch.autograd.gradcheck(lambda *a: function.apply(*a, EPS), (x, gamma, beta))


@pytest.mark.parametrize("kind", NORMS)
@pytest.mark.parametrize(
    "requires_grad",
    [
        (True, False, False),
        (False, True, False),
        (False, False, True),
        (False, True, True),
        (True, True, False),
    ],
)
def test_manual_function_computes_only_requested_gradients(kind, requires_grad):
    """Gradients come back for exactly the inputs that require them, and each equals autograd's."""
    autograd_module, function, _, _ = NORMS[kind]
    x, gamma, beta = sample_inputs(3, requires_grad)
    dy = torch.randn(N_SAMPLES, N_NEURONS, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    function.apply(x, gamma, beta, EPS).backward(dy)

    reference = autograd_module(N_NEURONS).double()
    with torch.no_grad():
        reference.gamma.copy_(gamma)
        reference.beta.copy_(beta)
    x_ref = x.detach().clone().requires_grad_()
    reference(x_ref).backward(dy)
    expected = (x_ref.grad, reference.gamma.grad, reference.beta.grad)

    for name, tensor, wanted, reference_grad in zip(
        ("x", "gamma", "beta"), (x, gamma, beta), requires_grad, expected, strict=True
    ):
        if wanted:
            torch.testing.assert_close(tensor.grad, reference_grad, msg=f"d{name}")
        else:
            assert tensor.grad is None, f"d{name} was computed though not requested"


@pytest.mark.parametrize("kind", NORMS)
def test_manual_function_saves_only_what_backward_needs(kind):
    """With only beta requiring a gradient nothing is saved; with only gamma, just xhat."""
    function = NORMS[kind][1]
    x, gamma, beta = sample_inputs(5, (False, False, True))
    assert function.apply(x, gamma, beta, EPS).grad_fn.saved_tensors == ()
    x, gamma, beta = sample_inputs(5, (False, True, False))
    assert len(function.apply(x, gamma, beta, EPS).grad_fn.saved_tensors) == 1


@pytest.mark.parametrize("kind", NORMS)
@pytest.mark.parametrize("form", [0, 2])
def test_forward_statistics_are_beta_and_gamma(kind, form):
    """Along the normalised axis, the output's mean is beta and its (biased) std is gamma.

    BatchNorm: per feature over the batch. LayerNorm: per sample over the features, so gamma and beta
    are set constant across features to make the per-sample statistics well defined.
    """
    module_class, axis = NORMS[kind][form], NORMS[kind][3]
    module = module_class(N_NEURONS).double()
    gen = torch.Generator().manual_seed(6)
    if kind == "batchnorm":
        gamma = 0.5 + torch.rand(N_NEURONS, generator=gen, dtype=torch.float64)
        beta = torch.randn(N_NEURONS, generator=gen, dtype=torch.float64)
        expected_mean, expected_std = beta, gamma
    else:
        gamma = torch.full((N_NEURONS,), 1.7, dtype=torch.float64)
        beta = torch.full((N_NEURONS,), -0.3, dtype=torch.float64)
        expected_mean, expected_std = beta[:1].expand(N_SAMPLES), gamma[:1].expand(N_SAMPLES)
    with torch.no_grad():
        module.gamma.copy_(gamma)
        module.beta.copy_(beta)
    x = 4 * torch.randn(N_SAMPLES, N_NEURONS, generator=gen, dtype=torch.float64) + 2
    y = module(x).detach()
    torch.testing.assert_close(y.mean(dim=axis), expected_mean)
    # eps inside the square root shrinks the std by sqrt(var / (var + eps)); 1e-5 relative is enough here.
    torch.testing.assert_close(y.std(dim=axis, correction=0), expected_std, rtol=1e-5, atol=0)


@pytest.mark.parametrize("kind", NORMS)
@pytest.mark.parametrize("form", [0, 2])
def test_modules_initialise_gamma_one_beta_zero(kind, form):
    """gamma and beta are trainable Parameters starting at 1 and 0; eps defaults to 1e-5."""
    module = NORMS[kind][form](N_NEURONS)
    assert isinstance(module.gamma, torch.nn.Parameter) and isinstance(module.beta, torch.nn.Parameter)
    assert torch.equal(module.gamma, torch.ones(N_NEURONS))
    assert torch.equal(module.beta, torch.zeros(N_NEURONS))
    assert module.eps == EPS
    assert {name for name, _ in module.named_parameters()} == {"gamma", "beta"}


@pytest.mark.parametrize("kind", NORMS)
def test_all_forms_agree_with_torch_functional(kind):
    """Autograd module, manual Function and manual module give F.batch_norm's / F.layer_norm's output
    and input/parameter gradients."""
    autograd_class, function, manual_class, _ = NORMS[kind]
    x, gamma, beta = sample_inputs(7)
    dy = torch.randn(N_SAMPLES, N_NEURONS, dtype=torch.float64, generator=torch.Generator().manual_seed(8))

    def outputs_and_grads(forward, params):
        x_ = x.detach().clone().requires_grad_()
        y = forward(x_)
        grads = torch.autograd.grad(y, [x_, *params], dy)
        return [y.detach(), *grads]

    g, b = gamma.detach().clone().requires_grad_(), beta.detach().clone().requires_grad_()
    expected = outputs_and_grads(lambda t: torch_reference(kind, t, g, b), [g, b])
    g, b = gamma.detach().clone().requires_grad_(), beta.detach().clone().requires_grad_()
    results = {"function": outputs_and_grads(lambda t: function.apply(t, g, b, EPS), [g, b])}
    for name, module_class in (("autograd module", autograd_class), ("manual module", manual_class)):
        module = module_class(N_NEURONS).double()
        with torch.no_grad():
            module.gamma.copy_(gamma)
            module.beta.copy_(beta)
        results[name] = outputs_and_grads(module, [module.gamma, module.beta])
    for name, got in results.items():
        for label, g_, e_ in zip(("y", "dx", "dgamma", "dbeta"), got, expected, strict=True):
            torch.testing.assert_close(g_, e_, msg=f"{name}: {label}")


@pytest.mark.parametrize("kind", NORMS)
@pytest.mark.parametrize("form", [0, 2])
@pytest.mark.parametrize("shape", [(N_SAMPLES, N_NEURONS + 1), (N_NEURONS,), (2, N_SAMPLES, N_NEURONS)])
def test_wrong_input_shape_is_a_clear_value_error(kind, form, shape):
    """Inputs that are not (batch, n_neurons) raise ValueError naming the expected and the actual shape."""
    module = NORMS[kind][form](N_NEURONS)
    with pytest.raises(
        ValueError, match=rf"expected input of shape \(batch, {N_NEURONS}\), got \({shape[0]}"
    ):
        module(torch.zeros(shape))


@pytest.mark.parametrize("kind", NORMS)
def test_manual_function_default_eps_is_1e_5(kind):
    """apply(x, gamma, beta) without eps runs forward and backward, and equals passing eps = 1e-5."""
    function = NORMS[kind][1]
    results = []
    for extra in ((), (EPS,)):
        x, gamma, beta = sample_inputs(9)
        y = function.apply(x, gamma, beta, *extra)
        y.backward(torch.ones_like(y) + x.detach())
        results.append((y.detach(), x.grad, gamma.grad, beta.grad))
    for default, explicit in zip(*results, strict=True):
        torch.testing.assert_close(default, explicit, rtol=0, atol=0)
