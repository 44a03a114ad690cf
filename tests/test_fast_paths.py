"""Speed paths that must not change what the models compute (issue 17, "faster steps").

The instrument CNN folds its batch norm into the convolutions when it is frozen and in eval
mode; it must give the unfolded network's values (to float32 rounding), follow changes of its
weights, and leave training untouched.
"""

from __future__ import annotations

import copy

import pytest
import torch

from dreamsound.models.instrument import ConvUnit, new_model


@pytest.fixture
def frozen():
    """A random instrument model with non-trivial batch-norm statistics, frozen like a dream's."""
    torch.manual_seed(0)
    model = new_model().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.2, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    model.requires_grad_(False)
    return model


def _plain(unit: ConvUnit, x: torch.Tensor) -> torch.Tensor:
    """The three modules one after the other (no folding)."""
    return torch.nn.Sequential.forward(unit, x)


def _units(model) -> list[ConvUnit]:
    return [m for m in model.modules() if isinstance(m, ConvUnit)]


def test_folded_units_equal_the_modules(frozen):
    x = torch.randn(3, 1, 43, 128)
    for unit in _units(frozen):
        y = torch.randn(3, unit[0].in_channels, 15, 20)
        torch.testing.assert_close(unit(y), _plain(unit, y), atol=2e-5, rtol=1e-5)
    assert all(unit._folded_cache is not None for unit in _units(frozen))
    assert frozen.network(x)[0].shape == (3, 11)


def test_folded_network_gradient_equals_the_modules(frozen):
    log_mel = torch.randn(200, 128)
    reference = copy.deepcopy(frozen)
    for unit in _units(reference):
        unit.forward = lambda x, unit=unit: _plain(unit, x)
    grads = []
    for model in (frozen, reference):
        x = log_mel.clone().requires_grad_(True)
        value = model.logits_from_log_mel(x)[:, 3].mean()
        grads.append((value.detach(), torch.autograd.grad(value, x)[0]))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-5, rtol=1e-5)
    cosine = torch.nn.functional.cosine_similarity(grads[0][1].flatten(), grads[1][1].flatten(),
                                                   dim=0)
    assert cosine > 0.99999


def test_fold_follows_weight_changes(frozen):
    unit = _units(frozen)[2]
    y = torch.randn(2, unit[0].in_channels, 10, 12)
    before = unit(y)
    with torch.no_grad():
        unit[1].running_var.mul_(4.0)  # in place: a new version
    after = unit(y)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, _plain(unit, y), atol=2e-5, rtol=1e-5)
    unit[0].weight = torch.nn.Parameter(unit[0].weight.detach() * 0.5, requires_grad=False)
    torch.testing.assert_close(unit(y), _plain(unit, y), atol=2e-5, rtol=1e-5)
    frozen.load_state_dict(new_model().state_dict())  # copies in place into the same tensors
    torch.testing.assert_close(unit(y), _plain(unit, y), atol=2e-5, rtol=1e-5)


def test_dtype_change_refolds(frozen):
    unit = _units(frozen)[1]
    y = torch.randn(2, unit[0].in_channels, 8, 8)
    unit(y)
    frozen.double()  # swaps .data of the same parameters
    out = unit(y.double())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, _plain(unit, y.double()))


def test_training_and_parameter_gradients_use_the_modules(frozen):
    unit = _units(frozen)[0]
    y = torch.randn(4, 1, 12, 16)
    unit.train()
    torch.testing.assert_close(unit(y), _plain(unit, y))  # batch statistics, not running ones
    unit.eval()
    unit.requires_grad_(True)
    unit(y).sum().backward()
    assert unit[0].weight.grad is not None and unit[1].weight.grad is not None


def test_fold_made_under_inference_mode_serves_a_later_gradient(frozen):
    log_mel = torch.randn(200, 128)
    with torch.inference_mode():
        before = frozen.logits_from_log_mel(log_mel)
    x = log_mel.clone().requires_grad_(True)
    value = frozen.logits_from_log_mel(x)[:, 3].mean()
    (grad,) = torch.autograd.grad(value, x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    torch.testing.assert_close(value.detach(), before[:, 3].mean())


def test_model_built_under_inference_mode_folds_without_caching():
    with torch.inference_mode():
        model = new_model().eval()
        model.requires_grad_(False)
        unit = _units(model)[0]
        y = torch.randn(2, 1, 8, 8)
        torch.testing.assert_close(unit(y), _plain(unit, y), atol=2e-5, rtol=1e-5)
    assert unit._folded_cache is None


def test_every_folded_layer_writes_channels_last(frozen):
    """On the CPU every folded convolution writes NHWC, the first (one input channel) too:
    otherwise the second layer copies its input, and its input gradient, to NHWC every step."""
    x = torch.randn(3, 1, 43, 128)
    outputs: list[torch.Tensor] = []
    handles = [unit.register_forward_hook(lambda _m, _i, out: outputs.append(out))
               for unit in _units(frozen)]
    try:
        with torch.no_grad():
            frozen.network(x)
    finally:
        for handle in handles:
            handle.remove()
    assert len(outputs) == len(_units(frozen))
    for out in outputs:
        assert out.stride(1) == 1, out.stride()  # channels innermost
