"""REM step 1 / step 4: new units hooked beside a model's layers, and their removal.

The drop view must be the wrapped model bit for bit, the redirect view must use the new units,
and removing them must leave the model exactly as its own state dict says.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock
from torchvision.models.vision_transformer import MLPBlock

from remcli.errors import InputError
from remcli.models import build_model
from remcli.models.blocks import block_outputs
from remcli.seeding import seeded_global_rng
from remcli.unlearning.methods.rem.expansion import Expansion
from remcli.unlearning.methods.rem.masks import unit_masks


def make(arch: str, **kwargs) -> nn.Module:
    with seeded_global_rng(0, f"test/{arch}"):
        model = build_model(arch, 10, **kwargs).eval()
        if arch.startswith("vit"):  # torchvision zero-initialises the ViT head: logits would all be 0
            nn.init.normal_(model.heads.head.weight, std=0.1)
    return model


def fixed_batch(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def state_shapes(model: nn.Module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def all_on(expansion: Expansion, n: int) -> torch.Tensor:
    return torch.ones(n, expansion.num_units)


def wake(expansion: Expansion) -> Expansion:
    """New units start with a silent (zero) write; give them random writes to see the plumbing."""
    with seeded_global_rng(0, "test/wake"), torch.no_grad():
        for adapter in expansion.adapters.values():
            nn.init.normal_(adapter.write.weight, std=0.5)
    return expansion


def check_views(model: nn.Module, capacity: float = 1.0) -> Expansion:
    """Drop view == plain model, redirect view != plain model, remove() restores; returns the expansion."""
    x = fixed_batch()
    plain = copy.deepcopy(model).eval()
    names_before, state_before = state_shapes(model), {k: v.clone() for k, v in model.state_dict().items()}
    n_params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        expected = plain(x)
        expansion = Expansion(model, block_outputs(model), capacity, x, seed=0)
        model.eval()
        expansion.train(False)
        with expansion.redirect(all_on(expansion, len(x))):
            assert torch.equal(model(x), expected), "new units start silent: the redirect view is the input model"
        wake(expansion)
        assert torch.equal(model(x), expected), "drop view must be bit for bit the input model"
        # the new units never enter the wrapped model's state dict or parameters
        assert state_shapes(model) == names_before
        assert sum(p.numel() for p in model.parameters()) == n_params
        with expansion.redirect(all_on(expansion, len(x))):
            redirected = model(x)
        assert redirected.shape == expected.shape
        assert not torch.allclose(redirected, expected), "the redirect view must use the new units"
        assert torch.equal(model(x), expected), "leaving redirect() must restore the drop view"
        expansion.remove()
        assert state_shapes(model) == names_before
        assert all(torch.equal(v, state_before[k]) for k, v in model.state_dict().items())
        assert torch.equal(model(x), expected)
        with expansion.redirect(all_on(expansion, len(x))):
            assert torch.equal(model(x), expected), "after remove() the units are gone even under redirect()"
    return expansion


def units_per_target(expansion: Expansion) -> list[int]:
    return [s.stop - s.start for s in expansion.slices.values()]


def test_resnet9_views_and_unit_counts():
    model = make("resnet9", width=0.25)
    expansion = check_views(model)
    assert block_outputs(model) == ["conv1", "conv2", "res1", "conv3", "res2", "conv4"]
    widths = [16, 32, 32, 64, 64, 32]  # block output channels at width 0.25
    assert units_per_target(expansion) == widths
    assert expansion.num_units == sum(widths)
    slices = list(expansion.slices.values())
    assert slices[0].start == 0 and all(a.stop == b.start for a, b in zip(slices, slices[1:]))


def test_resnet9_unit_count_scales_with_capacity():
    model = make("resnet9", width=0.25)
    expansion = Expansion(model, ["conv1", "res2"], 0.5, fixed_batch(), seed=0)
    assert units_per_target(expansion) == [8, 32]
    assert expansion.num_units == 40
    read = expansion.adapters["conv1"].read
    assert isinstance(read, nn.Conv2d) and read.in_channels == 16 and read.out_channels == 8


def test_resnet18_views_and_unit_counts():
    model = make("resnet18")
    targets = block_outputs(model)
    assert targets == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert all(isinstance(model.get_submodule(t), BasicBlock) for t in targets)
    expansion = check_views(model, capacity=0.5)
    assert units_per_target(expansion) == [32, 32, 64, 64, 128, 128, 256, 256]


def test_vit_cifar_views_and_unit_counts():
    model = make("vit_cifar", width=0.125)
    targets = block_outputs(model)
    assert len(targets) == 4 and all(isinstance(model.get_submodule(t), MLPBlock) for t in targets)
    expansion = check_views(model)
    mlp_dim = model.get_submodule(targets[0])[0].out_features
    assert mlp_dim == 192
    assert units_per_target(expansion) == [mlp_dim] * 4
    # the new units are extra MLP hidden neurons: they read the block's input (hidden dim 64)
    adapter = next(iter(expansion.adapters.values()))
    assert isinstance(adapter.read, nn.Linear) and adapter.read.in_features == 64 and adapter.write.out_features == 64
    assert isinstance(adapter.act, nn.GELU)


@pytest.mark.slow
def test_vit_b_16_views_and_unit_counts():
    model = make("vit_b_16", image_size=32)
    targets = block_outputs(model)
    assert len(targets) == 12
    expansion = check_views(model, capacity=1.0)
    assert units_per_target(expansion) == [3072] * 12


def test_mobilenet_views():
    model = make("mobilenet_v3_small")
    check_views(model, capacity=0.25)


def test_block_outputs_of_other_archs_skip_the_classifier():
    model = make("mobilenet_v3_small")
    targets = block_outputs(model)
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers[-1] == "classifier.3"
    assert targets == layers[:-1]
    assert "classifier.0" in targets and "classifier.3" not in targets
    assert all(isinstance(model.get_submodule(t), (nn.Conv2d, nn.Linear)) for t in targets)


def test_all_zero_mask_is_the_drop_view():
    model = make("resnet9", width=0.25)
    x = fixed_batch()
    expansion = Expansion(model, block_outputs(model), 1.0, x, seed=0)
    with torch.no_grad():
        drop = model(x)
        with expansion.redirect(torch.zeros(len(x), expansion.num_units)):
            assert torch.equal(model(x), drop)


def test_masks_are_per_sample():
    """Sample 0 with all units on, sample 1 with none: only sample 0's output moves."""
    model = make("resnet9", width=0.25)
    x = fixed_batch()
    expansion = wake(Expansion(model, block_outputs(model), 1.0, x, seed=0))
    expansion.train(False)
    mask = torch.zeros(2, expansion.num_units)
    mask[0] = 1
    with torch.no_grad():
        drop = model(x)
        with expansion.redirect(mask):
            out = model(x)
    assert torch.equal(out[1], drop[1])
    assert not torch.allclose(out[0], drop[0])


def test_redirect_with_real_masks_and_gradients_reach_new_units():
    model = make("resnet9", width=0.25)
    x = fixed_batch(4)
    expansion = wake(Expansion(model, block_outputs(model), 1.0, x, seed=0))
    masks = unit_masks(torch.arange(4), torch.tensor([True, True, False, False]), expansion.num_units, 0.2, 0)
    with expansion.redirect(masks):
        out = model(x)
    out.sum().backward()
    grads = [p.grad for p in expansion.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads), "every new tensor (read, norm, write) must get a gradient"


def test_conv_units_topology_size_and_chain():
    """Default units: k x k conv + own BatchNorm per target, each reading the previous target's new channels."""
    model = make("resnet9", width=0.25)
    expansion = Expansion(model, block_outputs(model), 1.0, fixed_batch(), seed=0)
    widths = [16, 32, 32, 64, 64, 32]
    previous = 0
    for (key, adapter), width in zip(expansion.adapters.items(), widths):
        assert expansion.kinds[key] == "conv"
        assert adapter.read.kernel_size == (3, 3) and adapter.read.out_channels == width
        assert adapter.read.in_channels == width + previous, f"{key} must read its block output plus the previous new channels"
        assert isinstance(adapter.norm, nn.BatchNorm2d) and adapter.norm.num_features == width
        assert adapter.write.in_channels == width and adapter.write.out_channels == width
        assert torch.count_nonzero(adapter.write.weight) == 0
        previous = width
    model_params = sum(p.numel() for p in model.parameters())
    assert expansion.parameter_count() > 0.9 * model_params, "new capacity about as large as the trained network"


def test_conv_units_chain_carries_information_forward():
    """With writes silent everywhere except the last target, the last target's output still depends
    on the first target's new channels: the chain is real."""
    model = make("resnet9", width=0.25)
    x = fixed_batch()
    expansion = Expansion(model, block_outputs(model), 1.0, x, seed=0)
    expansion.train(False)
    with torch.no_grad():
        nn.init.normal_(expansion.adapters["conv4"].write.weight, std=0.5)
        first = expansion.slices["conv1"]
        on = all_on(expansion, len(x))
        off_first = on.clone()
        off_first[:, first] = 0
        with expansion.redirect(on):
            a = model(x)
        with expansion.redirect(off_first):
            b = model(x)
    assert not torch.allclose(a, b)


def test_unchained_and_bottleneck_units():
    model = make("resnet9", width=0.25)
    unchained = Expansion(copy.deepcopy(model), ["conv1", "conv2"], 1.0, fixed_batch(), seed=0, chain=False, kernel_size=5)
    assert unchained.adapters["conv2"].read.in_channels == 32 and unchained.adapters["conv2"].read.kernel_size == (5, 5)
    bottleneck = Expansion(copy.deepcopy(model), ["conv1", "conv2"], 1.0, fixed_batch(), seed=0, units="bottleneck")
    adapter = bottleneck.adapters["conv2"]
    assert bottleneck.kinds["conv2"] == "bottleneck" and adapter.read.kernel_size == (1, 1) and adapter.read.in_channels == 32
    assert torch.count_nonzero(adapter.write.weight) > 0, "the earlier design keeps its random write"


@pytest.mark.parametrize("kwargs, match", [({"units": "dense"}, "units"), ({"kernel_size": 2}, "kernel_size")])
def test_bad_unit_settings_raise_input_error(kwargs, match):
    with pytest.raises(InputError, match=match):
        Expansion(make("resnet9", width=0.25), ["conv1"], 1.0, fixed_batch(), seed=0, **kwargs)


def test_new_units_are_seeded():
    model = make("resnet9", width=0.25)
    a = Expansion(copy.deepcopy(model), ["res1"], 1.0, fixed_batch(), seed=0)
    b = Expansion(copy.deepcopy(model), ["res1"], 1.0, fixed_batch(), seed=0)
    c = Expansion(copy.deepcopy(model), ["res1"], 1.0, fixed_batch(), seed=1)
    sa, sb, sc = (e.adapters.state_dict() for e in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_expansion_does_not_touch_the_global_rng():
    model = make("resnet9", width=0.25)
    torch.manual_seed(5)
    before = torch.get_rng_state().clone()
    Expansion(model, ["conv1", "conv4"], 1.0, fixed_batch(), seed=3)
    assert torch.equal(torch.get_rng_state(), before)


def test_probe_leaves_training_mode_and_bn_statistics_alone():
    model = make("resnet9", width=0.25).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Expansion(model, ["conv1"], 1.0, fixed_batch(), seed=0)
    assert model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("targets", [["nope"], ["conv1", "layer9.0"], ["res1.branch.7"]])
def test_unknown_targets_raise_input_error(targets):
    model = make("resnet9", width=0.25)
    with pytest.raises(InputError, match="not modules of this model"):
        Expansion(model, targets, 1.0, fixed_batch(), seed=0)


def test_unknown_target_installs_no_hooks():
    model = make("resnet9", width=0.25)
    with pytest.raises(InputError):
        Expansion(model, ["conv1", "nope"], 1.0, fixed_batch(), seed=0)
    assert not model.conv1._forward_hooks


@pytest.mark.parametrize("capacity", [0.0, -1.0])
def test_non_positive_capacity_raises_input_error(capacity):
    model = make("resnet9", width=0.25)
    with pytest.raises(InputError, match="capacity"):
        Expansion(model, ["conv1"], capacity, fixed_batch(), seed=0)


def test_target_without_tensor_output_raises_input_error():
    model = make("vit_cifar", width=0.125)
    with pytest.raises(InputError, match="produced no tensor output"):
        Expansion(model, ["encoder.layers.encoder_layer_0.self_attention"], 1.0, fixed_batch(), seed=0)
