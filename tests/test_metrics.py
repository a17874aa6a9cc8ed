"""Metric formulas on hand-built prediction tensors, and the --gate (--fail-under) parsing/gating helpers."""

from __future__ import annotations

import pytest
import torch

from remcli.errors import InputError
from remcli.evaluation import Gate, compare, gates_summary, missed_gates, parse_gates
from remcli.evaluation.metrics import (
    accuracy,
    attack_success_rate,
    product,
    utility_mask,
)


def t(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


# --- accuracy ----------------------------------------------------------------------------------


def test_accuracy_is_fraction_correct():
    assert accuracy(t(0, 1, 2, 3), t(0, 1, 0, 0)) == pytest.approx(0.5)
    assert accuracy(t(1, 1, 1), t(1, 1, 1)) == 1.0
    assert accuracy(t(0, 0, 0), t(1, 2, 3)) == 0.0
    assert accuracy(t(4, 2, 2), t(4, 2, 9)) == pytest.approx(2 / 3)


def test_accuracy_returns_python_float():
    value = accuracy(t(0, 1), t(0, 0))
    assert type(value) is float


def test_accuracy_with_keep_mask_only_counts_kept():
    preds, labels = t(0, 1, 2, 3), t(0, 9, 9, 3)
    keep = torch.tensor([True, False, False, True])
    assert accuracy(preds, labels, keep) == 1.0
    assert accuracy(preds, labels, ~keep) == 0.0


def test_accuracy_empty_is_none():
    assert accuracy(t(), t()) is None
    assert accuracy(t(1, 2), t(1, 2), torch.tensor([False, False])) is None


# --- utility mask ------------------------------------------------------------------------------


def test_utility_mask_without_exclusions_keeps_everything():
    labels = t(0, 3, 5, 7)
    assert utility_mask(labels, ()).tolist() == [True, True, True, True]


def test_utility_mask_drops_the_swapped_classes():
    labels = t(0, 3, 5, 7, 3, 5, 1)
    assert utility_mask(labels, (3, 5)).tolist() == [True, False, False, True, False, False, True]


def test_utility_uses_the_mask():
    labels = t(0, 3, 5, 7)
    preds = t(0, 5, 3, 7)  # the swapped classes are wrong, the rest right
    assert accuracy(preds, labels) == 0.5
    assert accuracy(preds, labels, utility_mask(labels, (3, 5))) == 1.0
    assert accuracy(t(3, 5), t(3, 5), utility_mask(t(3, 5), (3, 5))) is None


# --- attack success rate -----------------------------------------------------------------------


def test_asr_counts_target_predictions_among_non_target_images():
    target = 0
    true = t(1, 2, 3, 4)
    preds = t(0, 0, 3, 0)  # 3 of 4 non-target images flipped to the target
    assert attack_success_rate(preds, true, target) == pytest.approx(0.75)


def test_asr_excludes_target_class_images():
    target = 2
    true = t(2, 2, 2, 1, 3)
    preds = t(2, 2, 2, 1, 3)  # target images predicted as target must not count as attack success
    assert attack_success_rate(preds, true, target) == 0.0
    preds = t(0, 0, 0, 2, 3)  # target-class images wrongly predicted must not lower the rate either
    assert attack_success_rate(preds, true, target) == pytest.approx(0.5)


def test_asr_none_when_every_test_image_is_target_class():
    assert attack_success_rate(t(1, 1), t(1, 1), 1) is None


# --- product -----------------------------------------------------------------------------------


def test_product():
    assert product(0.5, 0.4) == pytest.approx(0.2)
    assert product(1.0, 0.0) == 0.0
    assert product(None, 0.5) is None
    assert product(0.5, None) is None
    assert product(None, None) is None


# --- gates (--gate / --fail-under) -------------------------------------------------------------


def test_parse_gates_floors_and_ceilings():
    assert parse_gates("utility>=0.8") == [Gate("utility", ">=", 0.8)]
    assert parse_gates("attack_success_rate<=0.05") == [Gate("attack_success_rate", "<=", 0.05)]
    assert parse_gates(" utility >= 0.8 , attack_success_rate <= 5e-2,") == [Gate("utility", ">=", 0.8), Gate("attack_success_rate", "<=", 0.05)]
    assert parse_gates("") == []


def test_parse_gates_plain_equals_is_a_floor_as_before():
    assert parse_gates("utility=0.8") == [Gate("utility", ">=", 0.8)]
    assert parse_gates("utility=0.8, healed = 0.7,") == [Gate("utility", ">=", 0.8), Gate("healed", ">=", 0.7)]


def test_parse_gates_floor_and_ceiling_on_one_metric():
    assert parse_gates("utility>=0.5,utility<=0.99") == [Gate("utility", ">=", 0.5), Gate("utility", "<=", 0.99)]


@pytest.mark.parametrize(
    "text",
    [
        "utility",
        "utility=abc",
        "utility=0.8,healed",
        "=",
        "utility:0.8",
        "utility>0.8",
        "utility<0.1",
        "utility==0.8",
        "utility=>0.8",
        "utility>=nan",
        ">=0.5",
    ],
)
def test_parse_gates_rejects_malformed(text):
    with pytest.raises(InputError, match="--gate") as err:
        parse_gates(text)
    assert "\n" not in str(err.value) and "NAME<=VALUE" in str(err.value)


def test_parse_gates_rejects_the_same_gate_twice():
    with pytest.raises(InputError, match="utility>= twice"):
        parse_gates("utility>=0.8,utility=0.9")


def result_with(**metrics) -> dict:
    return {"metrics": metrics}


def test_missed_gates_lists_only_missed_floors():
    result = result_with(utility=0.75, healed=0.9, test_acc=0.8)
    assert missed_gates(result, parse_gates("utility>=0.8,healed>=0.5")) == ["utility=0.75 < 0.8"]
    assert missed_gates(result, parse_gates("utility>=0.75")) == []  # equal to the floor passes
    assert missed_gates(result, []) == []
    assert len(missed_gates(result, parse_gates("utility>=0.99,healed>=0.99,test_acc>=0.0"))) == 2


def test_missed_gates_ceilings():
    result = result_with(attack_success_rate=0.12, utility=0.8)
    assert missed_gates(result, parse_gates("attack_success_rate<=0.05")) == ["attack_success_rate=0.12 > 0.05"]
    assert missed_gates(result, parse_gates("attack_success_rate<=0.12")) == []  # equal to the ceiling passes
    assert missed_gates(result, parse_gates("attack_success_rate<=0.05,utility>=0.9")) == ["attack_success_rate=0.12 > 0.05", "utility=0.8 < 0.9"]


def test_missed_gates_none_value_counts_as_missed_either_way():
    assert missed_gates(result_with(healed=None), parse_gates("healed>=0.0")) == ["healed=None < 0.0"]
    assert missed_gates(result_with(healed=None), parse_gates("healed<=1.0")) == ["healed=None > 1.0"]


def test_missed_gates_unknown_metric_is_an_error_naming_available_ones():
    with pytest.raises(InputError, match=r"unknown metric 'heald'.*utility"):
        missed_gates(result_with(utility=0.5), parse_gates("heald>=0.1"))


def test_gates_summary_keeps_floors_under_required():
    gates = parse_gates("utility=0.8,attack_success_rate<=0.05")
    assert gates_summary(gates, ["x"]) == {"required": {"utility": 0.8}, "at_most": {"attack_success_rate": 0.05}, "missed": ["x"]}


def test_compare_adds_the_change_of_every_metric_measured_in_both():
    result = {"checkpoint": "h.safetensors", "metrics": {"test_acc": 0.5, "healed": 0.9, "attack_success_rate": 0.01, "mine_acc": None}}
    baseline = {"checkpoint": "m.safetensors", "checkpoint_sha256": "abc", "metrics": {"test_acc": 0.52, "healed": 0.1, "attack_success_rate": 0.9}}
    out = compare(result, baseline, is_parent=True)
    assert out["metrics"]["delta_test_acc"] == pytest.approx(-0.02)
    assert out["metrics"]["delta_healed"] == pytest.approx(0.8)
    assert out["metrics"]["delta_attack_success_rate"] == pytest.approx(-0.89)
    assert "delta_mine_acc" not in out["metrics"]  # not measured in one of them: no change to report
    assert out["against"] == {"checkpoint": "m.safetensors", "checkpoint_sha256": "abc", "is_parent": True, "metrics": baseline["metrics"]}
    assert result["metrics"] == {"test_acc": 0.5, "healed": 0.9, "attack_success_rate": 0.01, "mine_acc": None}  # inputs untouched
    # the deltas gate like any metric
    assert missed_gates(out, parse_gates("delta_test_acc>=-0.01,delta_attack_success_rate<=-0.5")) == ["delta_test_acc=-0.02 < -0.01"]


def test_a_delta_gate_without_a_baseline_says_what_it_needs():
    with pytest.raises(InputError, match="delta_utility needs --against BASELINE"):
        missed_gates(result_with(utility=0.7), parse_gates("delta_utility>=-0.02"))
