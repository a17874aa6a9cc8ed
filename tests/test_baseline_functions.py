"""The baselines' small pure functions, on tiny tensors and models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from remcli.data.pipeline import Batch
from remcli.errors import InputError
from remcli.unlearning.importance import (
    apply_factors,
    dampening_factors,
    importance_ratios,
    logit_norm_loss,
    parameter_importance,
    percentile,
    top_fraction_mask,
)
from remcli.unlearning.methods.potion import selection_percentile
from remcli.unlearning.methods.scrub import distill_kl
from remcli.unlearning.training import freeze_outside, head_blocks, reinitialise


def test_dampening_selects_by_ratio_and_never_grows():
    forget = {"w": torch.tensor([1.0, 10.0, 100.0, 0.0])}
    reference = {"w": torch.tensor([1.0, 1.0, 1.0, 1.0])}
    factors = dampening_factors(forget, reference, alpha=5.0, lam=1.0)["w"]
    assert torch.allclose(factors, torch.tensor([1.0, 0.1, 0.01, 1.0]))
    big_lambda = dampening_factors(forget, reference, alpha=5.0, lam=1000.0)["w"]
    assert torch.all(big_lambda <= 1.0)  # min(lam * I_r / I_f, 1)


def test_apply_factors_starts_from_the_originals_each_time():
    model = nn.Linear(2, 1, bias=False)
    originals = {"weight": torch.tensor([[2.0, -4.0]])}
    apply_factors(model, originals, {"weight": torch.tensor([[0.5, 1.0]])})
    changed = apply_factors(model, originals, {"weight": torch.tensor([[1.0, 0.25]])})
    assert torch.equal(model.weight.data, torch.tensor([[2.0, -1.0]])) and changed == 1


def test_percentile_and_ratios():
    values = torch.arange(1, 101, dtype=torch.float32)
    assert percentile(values, 0) == 1 and percentile(values, 100) == 100 and percentile(values, 50) in (50, 51)
    assert percentile(torch.empty(0), 50) == float("inf")
    ratios = importance_ratios({"a": torch.tensor([1.0, 0.0, 2.0, 3.0])}, {"a": torch.tensor([0.0, 0.0, 4.0, 1.0])})
    assert torch.equal(ratios, torch.tensor([0.5, 3.0]))  # inf and nan removed, sorted ascending


def test_potion_percentile_schedule():
    assert selection_percentile(0.0) == 100.0
    assert math.isclose(selection_percentile(0.01), 100 - math.log(2))
    assert selection_percentile(0.02) < selection_percentile(0.01)


def test_top_fraction_mask_keeps_exactly_the_fraction_even_with_ties():
    scores = {"a": torch.tensor([5.0, 1.0, 1.0]), "b": torch.tensor([[1.0, 3.0], [1.0, 0.0]])}
    masks = top_fraction_mask(scores, 3 / 7)
    assert sum(int(m.sum()) for m in masks.values()) == 3
    assert masks["a"][0] and masks["b"][0, 1]  # the two largest always kept
    assert sum(int(m.sum()) for m in top_fraction_mask(scores, 1.0).values()) == 7


def test_parameter_importance_is_a_mean_over_batches():
    model = nn.Linear(1, 1, bias=False)
    model.weight.data.fill_(2.0)
    batches = [Batch(torch.tensor([[1.0]]), torch.tensor([0]), torch.tensor([0])), Batch(torch.tensor([[3.0]]), torch.tensor([0]), torch.tensor([1]))]
    # logit norm |w x| has gradient |x| w.r.t. w: batches give 1 and 3
    assert torch.allclose(parameter_importance(model, batches, logit_norm_loss, power=1)["weight"], torch.tensor([[2.0]]))
    assert torch.allclose(parameter_importance(model, batches, logit_norm_loss, power=2)["weight"], torch.tensor([[5.0]]))


def test_distill_kl_is_zero_for_equal_logits_and_positive_otherwise():
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    assert distill_kl(logits, logits, 4.0).abs() < 1e-6
    assert distill_kl(logits, logits.flip(1), 4.0) > 0


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def test_head_blocks_and_freezing():
    model = tiny_net()
    assert head_blocks(model, 2, "cf-k") == ["1", "4"] and head_blocks(model, -1, "cf-k") == ["0", "1", "4"]
    with pytest.raises(InputError, match="out of range"):
        head_blocks(model, 4, "cf-k")
    params, set_mode = freeze_outside(model, ["4"])
    assert params == [model[4].weight, model[4].bias]
    set_mode(model)
    assert model[4].training and not model[1].training and not model[0].weight.requires_grad


def test_reinitialise_is_seeded():
    first, second = tiny_net(), tiny_net()
    reinitialise([first[4]], seed=3, purpose="x")
    reinitialise([second[4]], seed=3, purpose="x")
    assert torch.equal(first[4].weight, second[4].weight)
    reinitialise([second[4]], seed=4, purpose="x")
    assert not torch.equal(first[4].weight, second[4].weight)
