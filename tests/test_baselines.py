"""The baseline methods do what they claim, on the session's poisoned resnet9 (real CIFAR-10 images).

Budgets are tiny (1-3 epochs); each test asserts the property that defines the method: what data
it touches, which parameters move, which way the identified samples' accuracy goes.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision

from remcli.checkpoints import Checkpoint
from remcli.data.datasets import Split
from remcli.evaluation import evaluate
from remcli.inputs import RunInputs
from remcli.models.blocks import list_blocks
from remcli.seeding import seeded_global_rng
from remcli.unlearning import build_task, unlearn
from remcli.unlearning.methods.scrub import SCRUBConfig, run_scrub

pytestmark = pytest.mark.slow  # each method run at its behaviour's budget

FAST = {"batch_size": 128}


def run(poisoned_setup, method, inputs=None, seed=0, **overrides):
    ckpt, default_inputs, identified = poisoned_setup
    return unlearn(ckpt, inputs or default_inputs, identified, method, overrides, seed=seed, device="cpu")


def metrics(poisoned_setup, state_dict) -> dict:
    ckpt, inputs, identified = poisoned_setup
    return evaluate(Checkpoint(state_dict, ckpt.meta), inputs.dataset, inputs.manifest, identified, device="cpu").metrics


@pytest.fixture(scope="module")
def original_metrics(poisoned_setup):
    return metrics(poisoned_setup, poisoned_setup[0].state_dict)


def test_ga_lowers_identified_accuracy_and_respects_its_step_cap(poisoned_setup, original_metrics):
    outcome = run(poisoned_setup, "ga")
    after = metrics(poisoned_setup, outcome.state_dict)
    assert original_metrics["identified_corrupted_acc"] > 0.9
    assert after["identified_corrupted_acc"] < original_metrics["identified_corrupted_acc"] - 0.3
    log = outcome.summary["log"]
    assert log["epochs"][0]["epoch"] == 0 and log["select_on"] == "validation"

    capped = run(poisoned_setup, "ga", gamma=0.0, max_epochs=1, lr=1e-6)
    assert capped.summary["log"]["stopped"] == "max_epochs"
    assert capped.summary["steps"] == 1  # 75 identified samples, batch 512: one step per epoch


def test_npo_lowers_identified_accuracy(poisoned_setup, original_metrics):
    after = metrics(poisoned_setup, run(poisoned_setup, "npo").state_dict)
    assert after["identified_corrupted_acc"] < original_metrics["identified_corrupted_acc"] - 0.3


def test_neggrad_plus_lowers_identified_accuracy(poisoned_setup, original_metrics):
    after = metrics(poisoned_setup, run(poisoned_setup, "neggrad+", epochs=2, retain_weight=0.5, **FAST).state_dict)
    assert after["identified_corrupted_acc"] < original_metrics["identified_corrupted_acc"] - 0.2


def test_retrain_never_sees_an_identified_sample(poisoned_setup):
    """Replacing the identified samples' pixels and labels changes nothing, bit for bit."""
    ckpt, inputs, identified = poisoned_setup
    train = inputs.dataset.train
    images, labels = train.images.clone(), train.labels.clone()
    images[identified] = 255 - images[identified]
    labels[identified] = (labels[identified] + 1) % inputs.dataset.num_classes
    altered = RunInputs(
        dataclasses.replace(inputs.dataset, train=Split(images, labels)), inputs.manifest, inputs.manifest_sha256, inputs.manifest_path
    )
    first = run(poisoned_setup, "retrain", epochs=1, **FAST)
    second = run(poisoned_setup, "retrain", inputs=altered, epochs=1, **FAST)
    assert first.summary["log"]["trained_samples"] == len(train) - len(ckpt.validation_indices) - len(identified)
    for name, tensor in first.state_dict.items():
        assert torch.equal(tensor, second.state_dict[name]), name


def test_retrain_starts_from_a_fresh_seeded_init(poisoned_setup):
    ckpt = poisoned_setup[0]
    outcome = run(poisoned_setup, "retrain", epochs=1, lr=1e-12, **FAST)  # lr ~0: the weights stay at their init
    with seeded_global_rng(0, "unlearn/retrain/init"):
        fresh = ckpt.build_untrained().state_dict()
    weight = "conv1.0.weight"
    assert torch.allclose(outcome.state_dict[weight], fresh[weight], atol=1e-6)
    assert not torch.allclose(outcome.state_dict[weight], ckpt.state_dict[weight], atol=1e-3)
    assert outcome.summary["log"]["from_recorded_training"] is True
    assert outcome.summary["config"]["epochs"] == 1


def test_retrain_defaults_to_the_recorded_recipe(poisoned_setup):
    from remcli.unlearning.methods.retrain import RetrainConfig, resolve_budget

    budget = resolve_budget(RetrainConfig(), poisoned_setup[0].train_params)
    assert (budget.epochs, budget.batch_size, budget.lr, budget.optimizer) == (20, 64, 0.05, "sgd")


@pytest.mark.parametrize("method", ["cf-k", "eu-k"])
def test_last_k_leaves_everything_outside_the_head_bit_identical(poisoned_setup, method):
    ckpt = poisoned_setup[0]
    outcome = run(poisoned_setup, method, k=2, epochs=1, **FAST)
    head = outcome.summary["log"]["blocks"]
    assert head == list_blocks(ckpt.build())[-2:] == ["conv4", "fc"]
    inside = [n for n in ckpt.state_dict if any(n.startswith(b + ".") for b in head)]
    outside = [n for n in ckpt.state_dict if n not in inside]
    assert inside and outside
    for name in outside:
        assert torch.equal(outcome.state_dict[name], ckpt.state_dict[name]), name
    assert any(not torch.equal(outcome.state_dict[n], ckpt.state_dict[n]) for n in inside)


def test_eu_k_reinitialises_the_head(poisoned_setup):
    ckpt = poisoned_setup[0]
    outcome = run(poisoned_setup, "eu-k", k=1, epochs=1, lr=1e-12, **FAST)
    assert outcome.summary["log"]["blocks"] == ["fc"]
    change = (outcome.state_dict["fc.weight"] - ckpt.state_dict["fc.weight"]).abs().mean()
    assert change > 0.1 * ckpt.state_dict["fc.weight"].abs().mean()


def assert_only_shrinks(before: dict, after: dict) -> int:
    shrunk = 0
    for name, old in before.items():
        if not old.is_floating_point() or "running" in name:
            continue
        new = after[name]
        assert torch.all(new.abs() <= old.abs() + 1e-12), name
        assert torch.all(new * old >= 0), name  # no sign flips
        shrunk += int((new.abs() < old.abs()).sum())
    return shrunk


def test_ssd_only_shrinks_parameters(poisoned_setup):
    ckpt = poisoned_setup[0]
    outcome = run(poisoned_setup, "ssd", alpha=1.0)
    shrunk = assert_only_shrinks(ckpt.state_dict, outcome.state_dict)
    assert shrunk == outcome.summary["log"]["dampened"] > 0
    for name in ckpt.state_dict:  # no training: BatchNorm statistics are untouched
        if "running" in name:
            assert torch.equal(outcome.state_dict[name], ckpt.state_dict[name])


def test_potion_only_shrinks_and_its_search_reaches_the_target(poisoned_setup):
    ckpt = poisoned_setup[0]
    outcome = run(poisoned_setup, "potion")
    log = outcome.summary["log"]
    assert assert_only_shrinks(ckpt.state_dict, outcome.state_dict) > 0
    assert log["accepted"] is True
    assert log["final"]["forget_acc"] <= log["target_forget_acc"] + 1e-9
    sizes = [t["s"] for t in log["trace"]]
    assert sizes == sorted(sizes) and log["tries"] == len(sizes)
    assert [t["dampened"] for t in log["trace"]] == sorted(t["dampened"] for t in log["trace"])


def test_scrub_teacher_stays_frozen(poisoned_setup):
    task = build_task(*poisoned_setup, device="cpu")
    teacher = task.frozen_copy()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    result = run_scrub(task, SCRUBConfig(epochs=1), teacher)
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    student = result.model.state_dict()
    assert any(not torch.equal(student[n], before[n]) for n in before if before[n].is_floating_point())
    assert result.log["epochs"][0]["max_loss"] <= 0  # the original's max pass is -KL


def test_scrub_bench_variant_stops_max_passes_after_max_steps(poisoned_setup):
    outcome = run(poisoned_setup, "scrub", variant="bench", epochs=2, max_steps=1, batch_size=256, forget_batch_size=64)
    epochs = outcome.summary["log"]["epochs"]
    assert "max_loss" in epochs[0] and "max_loss" not in epochs[1]
    assert outcome.summary["log"]["budget"]["lr"] == 0.0025


def test_badteacher_pushes_identified_samples_away(poisoned_setup, original_metrics):
    after = metrics(poisoned_setup, run(poisoned_setup, "badteacher", epochs=3, lr=1e-3).state_dict)
    assert after["identified_corrupted_acc"] < original_metrics["identified_corrupted_acc"] - 0.2


def test_salun_mask_keeps_the_requested_fraction(poisoned_setup):
    ckpt = poisoned_setup[0]
    outcome = run(poisoned_setup, "salun", mask_fraction=0.3, epochs=1, **FAST)
    log = outcome.summary["log"]
    params = {n for n, _ in ckpt.build().named_parameters()}
    total = sum(ckpt.state_dict[n].numel() for n in params)
    assert abs(log["mask_kept"] - 0.3 * total) <= 1
    changed = sum(int((outcome.state_dict[n] != ckpt.state_dict[n]).sum()) for n in params)
    assert 0 < changed <= log["mask_kept"]


def test_salun_rem_code_variant_is_unmasked_retain_finetuning(poisoned_setup):
    outcome = run(poisoned_setup, "salun", variant="rem-code", epochs=1, **FAST)
    assert outcome.summary["log"]["variant"] == "rem-code" and "mask_kept" not in outcome.summary["log"]
    assert outcome.summary["config"]["lr"] is None  # resolved at run time to the REM code's 0.005


def test_blocks_are_generic_on_torchvision_models():
    model = torchvision.models.get_model("resnet18", weights=None, num_classes=10)
    assert list_blocks(model)[-3:] == ["layer4.0", "layer4.1", "fc"]


def test_inspect_lists_the_blocks_of_an_architecture_by_name():
    import json

    from typer.testing import CliRunner

    from remcli.cli.main import app

    result = CliRunner().invoke(app, ["inspect", "resnet18", "--blocks", "--json", "-"])
    assert result.exit_code == 0, result.output
    model = torchvision.models.get_model("resnet18", weights=None, num_classes=10)
    assert json.loads(result.stdout) == {"arch": "resnet18", "blocks": list_blocks(model)}
