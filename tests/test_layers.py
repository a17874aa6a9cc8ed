"""The CPU paths of `remcli.models.layers` give torch's outputs and gradients."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from remcli.models import build_model
from remcli.models.layers import CELU, MaxPool2d, celu, max_pool2d

ALPHA = 0.075  # ResNet-9's


def _inputs(dtype: torch.dtype, shape=(8, 16, 12, 12)) -> torch.Tensor:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 3
    x.view(-1)[:5] = torch.tensor([0.0, -0.0, 1e-30, -1e-30, -100.0])  # zeros, tiny values, saturation
    return x.to(dtype)


def test_celu_matches_torch_bit_for_bit_in_bfloat16():
    x = _inputs(torch.bfloat16)
    assert torch.equal(celu(x, ALPHA), F.celu(x, ALPHA))


def test_celu_near_zero_is_within_1e_8_of_torch():
    """Where exp(x / alpha) - 1 cancels (|x| below ~2e-6) the float32 evaluation can differ from
    torch's expm1 by a bfloat16 step of a tiny number; never by more than 1e-8."""
    x = torch.cat([torch.logspace(-40, -5, 2000), -torch.logspace(-40, -5, 2000)])
    for dtype in (torch.bfloat16, torch.float32):
        assert (celu(x.to(dtype), ALPHA).float() - F.celu(x.to(dtype), ALPHA).float()).abs().max() <= 1e-8


def test_celu_matches_torch_in_float32_to_rounding():
    x = _inputs(torch.float32)
    assert (celu(x, ALPHA) - F.celu(x, ALPHA)).abs().max() <= 2e-8


def test_celu_keeps_special_values():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -1.0])
    out = celu(x, ALPHA)
    expected = F.celu(x, ALPHA)
    assert torch.isnan(out[0]) and torch.equal(out[1:], expected[1:])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_celu_gradient_is_torchs(dtype):
    x = _inputs(dtype)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    celu(ours, ALPHA).backward(grad)
    F.celu(theirs, ALPHA).backward(grad)
    assert torch.equal(ours.grad, theirs.grad)


def test_celu_does_not_touch_its_input():
    x = _inputs(torch.float32)
    before = x.clone()
    celu(x, ALPHA)
    assert torch.equal(x, before)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_max_pool_matches_torch_with_ties(dtype):
    x = _inputs(dtype)
    x = torch.where(x < -1, torch.tensor(-ALPHA, dtype=dtype), x)  # the ties a saturated CELU leaves
    with torch.no_grad():
        assert torch.equal(max_pool2d(x, 2), F.max_pool2d(x, 2))
    grad = torch.randn(8, 16, 6, 6, generator=torch.Generator().manual_seed(2)).to(dtype)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = max_pool2d(ours, 2)
    assert torch.equal(out, F.max_pool2d(theirs, 2)) and out.is_contiguous()
    out.backward(grad)
    F.max_pool2d(theirs, 2).backward(grad)
    assert torch.equal(ours.grad, theirs.grad)


def test_modules_are_torchs_modules():
    """Same classes to isinstance checks and no parameters, so checkpoints are unchanged."""
    assert isinstance(CELU(ALPHA), torch.nn.CELU) and isinstance(MaxPool2d(2), torch.nn.MaxPool2d)
    model = build_model("resnet9", 10, 3, 32, width=0.25)
    assert any(isinstance(m, CELU) for m in model.modules()) and any(isinstance(m, MaxPool2d) for m in model.modules())
    reference = build_model("resnet9", 10, 3, 32, width=0.25)
    assert list(model.state_dict()) == list(reference.state_dict())


def test_resnet9_forward_and_backward_equal_torchs_layers():
    """The whole network in bfloat16 autocast, with torch's own layers swapped back in."""
    torch.manual_seed(0)
    model = build_model("resnet9", 10, 3, 32, width=0.25)
    plain = build_model("resnet9", 10, 3, 32, width=0.25)
    plain.load_state_dict(model.state_dict())
    for module in plain.modules():
        for name, child in module.named_children():
            if isinstance(child, CELU):
                setattr(module, name, torch.nn.CELU(child.alpha))
            elif isinstance(child, MaxPool2d):
                setattr(module, name, torch.nn.MaxPool2d(child.kernel_size))
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    outputs = []
    for net in (model, plain):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = net(x)
        logits.float().sum().backward()
        outputs.append((logits, [p.grad for p in net.parameters()]))
    assert torch.equal(outputs[0][0], outputs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(outputs[0][1], outputs[1][1]))
