"""REM as a method, on the session's poisoned resnet9, with tiny budgets (1 outer iteration).

Through the Python API (load_checkpoint -> resolve_inputs / read_identified -> unlearn) and the
CLI for the ablations and a torchvision checkpoint without remcli metadata.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file
from torch import nn
from typer.testing import CliRunner

from remcli.checkpoints import (
    Checkpoint,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from remcli.cli.main import app
from remcli.models import build_model
from remcli.models.resnet9 import ResNet9
from remcli.progress import NullReporter
from remcli.seeding import seeded_global_rng
from remcli.unlearning import build_task, unlearn
from remcli.unlearning.methods.rem import REMConfig
from remcli.unlearning.methods.rem.batchnorm import frozen_bn_stats

pytestmark = pytest.mark.slow  # REM runs on the session's poisoned model

runner = CliRunner()
SMALL = {"epochs": 1, "batch_size": 64}


class RecordingReporter(NullReporter):
    """A real reporter (the protocol the CLI's progress bars use) that keeps what it is told."""

    def __init__(self):
        self.events: list[tuple] = []

    def phase(self, name, total=None):
        self.events.append(("phase", name, total))

    def advance(self, steps=1, **fields):
        self.events.append(("advance", steps, fields))

    def flush_accuracies(self, iteration: int = 1) -> list[float]:
        """forget_acc reported after each flush epoch of outer iteration `iteration`."""
        out, inside = [], False
        for kind, a, b in self.events:
            if kind == "phase":
                inside = a.startswith(f"flush {iteration}/")
            elif inside and "flush_epochs" in b:
                assert b["flush_epochs"] == len(out) + 1
                out.append(b["forget_acc"])
        return out

    def steps_by_phase(self) -> dict[str, int]:
        steps: dict[str, int] = {}
        current = None
        for kind, a, _b in self.events:
            if kind == "phase":
                current = a
            elif current is not None:
                steps[current] = steps.get(current, 0) + a
        return steps


def run_rem(poisoned_setup, method="rem", seed=0, **overrides):
    ckpt, inputs, identified = poisoned_setup
    reporter = RecordingReporter()
    outcome = unlearn(ckpt, inputs, identified, method, {**SMALL, **overrides}, seed=seed, device="cpu", reporter=reporter)
    return outcome, reporter


@pytest.fixture(scope="module")
def main_run(poisoned_setup):
    """Default REM settings (gamma 0.2, flush cap 100), one outer iteration, batch 64, seed 0."""
    ckpt, _, _ = poisoned_setup
    before = {k: v.clone() for k, v in ckpt.state_dict.items()}
    outcome, reporter = run_rem(poisoned_setup)
    return outcome, reporter, before


@pytest.fixture(scope="module")
def capped_runs(poisoned_setup):
    """gamma 0 can only be met by 0% accuracy, so one flush epoch (the cap) always ends the flush."""
    settings = {"gamma": 0.0, "flush_max_epochs": 1, "keep": "last"}
    first = run_rem(poisoned_setup, **settings)
    second = run_rem(poisoned_setup, **settings)
    other_seed = run_rem(poisoned_setup, seed=1, **settings)
    return first, second, other_seed


def batches(n: int, size: int) -> int:
    return math.ceil(n / size)


def repair_batches(ckpt, inputs, identified, size: int = 64) -> int:
    """Batches of one repair epoch: every identified row and `repair_fraction` of the retain rows."""
    train = len(inputs.dataset.train) - len(ckpt.validation_indices)
    return batches(len(identified) + round(REMConfig().repair_fraction * (train - len(identified))), size)


# --- (a) the flush ---------------------------------------------------------------------------


def test_flush_runs_until_gamma(poisoned_setup, main_run):
    outcome, reporter, _ = main_run
    gamma = outcome.summary["config"]["gamma"]
    assert gamma == 0.2 and outcome.summary["config"]["flush_max_epochs"] == 100
    assert outcome.summary["config"]["flush_stop"] == "epoch"  # rem's default; rem-redirect checks every step
    iterations = outcome.summary["log"]["iterations"]
    assert iterations[0]["forget_acc"] > gamma, "precondition: the poisoned model fits its poisoned labels"
    flush_epochs = iterations[1]["flush_epochs"]
    assert flush_epochs >= 1
    # the flush's own accuracies come through the reporter, one per flush epoch
    accs = reporter.flush_accuracies(1)
    assert len(accs) == flush_epochs
    assert accs[-1] <= gamma or flush_epochs == 100
    assert all(a > gamma for a in accs[:-1]), f"the flush must stop at the first epoch at or below gamma: {accs}"
    assert iterations[1]["forget_acc_after_flush"] == pytest.approx(accs[-1], abs=1e-4)


def test_flush_checked_every_step_stops_closer_to_gamma(poisoned_setup):
    """Per-step checking stops within the epoch where gamma is reached; the research code's
    per-epoch check finishes the epoch first, and so overshoots (never less far)."""
    by_step, _ = run_rem(poisoned_setup, batch_size=32, flush_stop="step")
    by_epoch, _ = run_rem(poisoned_setup, batch_size=32, flush_stop="epoch")
    step_it, epoch_it = by_step.summary["log"]["iterations"][1], by_epoch.summary["log"]["iterations"][1]
    identified = len(poisoned_setup[2])
    per_epoch = batches(identified, 32)
    assert epoch_it["flush_steps"] == epoch_it["flush_epochs"] * per_epoch
    assert step_it["flush_steps"] <= epoch_it["flush_steps"]
    assert step_it["flush_steps"] < step_it["flush_epochs"] * per_epoch or step_it["flush_steps"] == epoch_it["flush_steps"]
    assert step_it["forget_acc_after_flush"] <= 0.2
    assert step_it["forget_acc_after_flush"] >= epoch_it["forget_acc_after_flush"] - 1e-6


def test_flush_stops_at_the_cap(capped_runs):
    (outcome, reporter), _, _ = capped_runs
    entry = outcome.summary["log"]["iterations"][1]
    assert entry["flush_epochs"] == 1
    accs = reporter.flush_accuracies(1)
    assert len(accs) == 1 and accs[0] > 0.0


def test_no_flush_when_already_below_gamma(poisoned_setup):
    ckpt, inputs, identified = poisoned_setup
    outcome, reporter = run_rem(poisoned_setup, gamma=1.0)
    assert outcome.summary["log"]["iterations"][1]["flush_epochs"] == 0
    assert "nothing to flush" in outcome.summary["log"]["warnings"][0]
    assert reporter.flush_accuracies(1) == []
    assert outcome.summary["steps"] == repair_batches(ckpt, inputs, identified)


def test_steps_count_flush_and_repair_batches(poisoned_setup, main_run):
    ckpt, inputs, identified = poisoned_setup
    outcome, reporter, _ = main_run
    flush_steps = outcome.summary["log"]["iterations"][1]["flush_steps"]
    flush_epochs = outcome.summary["log"]["iterations"][1]["flush_epochs"]
    assert (flush_epochs - 1) * batches(len(identified), 64) < flush_steps <= flush_epochs * batches(len(identified), 64)
    assert outcome.summary["steps"] == flush_steps + repair_batches(ckpt, inputs, identified)
    by_phase = reporter.steps_by_phase()
    assert by_phase["flush 1/1"] == flush_steps
    assert by_phase["repair 1/1"] == repair_batches(ckpt, inputs, identified)


# --- (b) the output checkpoint -------------------------------------------------------------


def test_output_has_the_input_tensors_names_shapes_and_dtypes(poisoned_setup, main_run):
    ckpt, _, _ = poisoned_setup
    outcome, _, before = main_run
    state = outcome.state_dict
    assert set(state) == set(ckpt.state_dict)
    for key, value in ckpt.state_dict.items():
        assert state[key].shape == value.shape and state[key].dtype == value.dtype, key
    assert not any("adapters" in k or "read" in k or "write" in k for k in state)
    assert any(not torch.equal(state[k].cpu(), before[k]) for k in state), "REM must change the model"
    # the input checkpoint's tensors are left alone
    assert all(torch.equal(ckpt.state_dict[k], before[k]) for k in before)


def test_output_loads_into_a_plain_resnet9(poisoned_setup, main_run, tmp_path):
    outcome, _, _ = main_run
    plain = ResNet9(num_classes=10, width=0.25)
    plain.load_state_dict(outcome.state_dict)  # strict
    built = build_model("resnet9", 10, width=0.25)
    built.load_state_dict(outcome.state_dict)
    path = tmp_path / "rem.safetensors"
    save_checkpoint(path, outcome.state_dict, outcome.meta)
    reloaded = load_checkpoint(path)
    assert all(torch.equal(reloaded.state_dict[k], outcome.state_dict[k].cpu()) for k in outcome.state_dict)
    model = reloaded.build().eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), plain.eval()(x))


def test_logged_accuracies_are_those_of_the_returned_model(poisoned_setup, main_run):
    ckpt, inputs, identified = poisoned_setup
    outcome, _, _ = main_run
    log = outcome.summary["log"]
    selected = log["iterations"][log["kept_iteration"]]
    assert selected["selected"] and log["select_on"] == "validation"
    task = build_task(Checkpoint(outcome.state_dict, ckpt.meta), inputs, identified, device="cpu", precision=outcome.summary["precision"])
    model = task.model
    assert task.accuracy(model, task.forget_view) == pytest.approx(selected["forget_acc"], abs=1e-4)
    assert task.accuracy(model, task.validation_view) == pytest.approx(selected["validation_acc"], abs=1e-4)


def test_logged_seconds_split_each_iteration_within_the_run(main_run):
    """flush_s + repair_s + measure_s per iteration: where the time goes; together no more than the run's wall time."""
    outcome, _, _ = main_run
    iterations = outcome.summary["log"]["iterations"][1:]
    for it in iterations:
        assert it["repair_s"] > 0 and it["flush_s"] >= 0 and it["measure_s"] > 0
        assert it["flush_s"] > 0 or it["flush_steps"] == 0
    assert sum(it["flush_s"] + it["repair_s"] + it["measure_s"] for it in iterations) <= outcome.summary["wall_time_s"]


# --- (c) provenance ------------------------------------------------------------------------


def test_history_records_the_run(poisoned_setup, main_run, tmp_path):
    ckpt, _, identified = poisoned_setup
    outcome, _, _ = main_run
    history = outcome.meta["history"]
    assert len(history) == len(ckpt.history) + 1 and history[:-1] == ckpt.history
    entry = history[-1]
    assert entry["command"] == "unlearn --method rem" and entry["method"] == "rem"
    assert entry["seed"] == 0
    assert entry["steps"] == outcome.summary["steps"] > 0
    assert entry["wall_time_s"] > 0
    assert entry["identified"] == len(identified) == 75
    assert entry["parent_sha256"] == ckpt.sha256
    params = entry["params"]
    assert params["epochs"] == 1 and params["batch_size"] == 64
    for name in (
        "lr",
        "beta",
        "gamma",
        "flush_max_epochs",
        "flush_stop",
        "bn",
        "fresh_optimizer",
        "units",
        "capacity",
        "kernel_size",
        "chain",
        "new_units_lr_scale",
        "mask_density",
        "redirect",
        "continued_removal",
        "flush",
        "select_on",
    ):
        assert name in params, name
    iterations = entry["log"]["iterations"]
    assert [it["iteration"] for it in iterations] == [0, 1]
    assert all(isinstance(it["proxy"], float) and "forget_acc" in it and "validation_acc" in it for it in iterations)
    for view in ("drop", "redirect"):
        for data in ("identified", "retain"):
            assert all(f"{data}_{view}_{k}" in it for it in iterations for k in ("ce", "npo_weight", "acc")), (data, view)
    assert all(isinstance(it["redirecting"], bool) for it in iterations)
    assert entry["log"]["new_units"] == 240 and entry["log"]["targets"] == ["conv1", "conv2", "res1", "conv3", "res2", "conv4"]
    # the metadata survives a write and a read
    path = tmp_path / "rem.safetensors"
    save_checkpoint(path, outcome.state_dict, outcome.meta)
    assert read_metadata(path)["history"][-1] == json.loads(json.dumps(entry))


# --- (d) ablations through the CLI ---------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "method", "expect"),
    [
        (["--no-redirect"], "rem", {"redirect": False, "continued_removal": True, "flush": "npo"}),
        (["--no-continued-removal"], "rem", {"redirect": True, "continued_removal": False, "flush": "npo"}),
        ([], "rem-ga", {"redirect": True, "continued_removal": True, "flush": "ga"}),
    ],
    ids=["no-redirect", "no-continued-removal", "rem-ga"],
)
def test_ablations_run_from_the_cli(poisoned_run, main_run, tmp_path, flags, method, expect):
    out = tmp_path / "out.safetensors"
    result = runner.invoke(
        app,
        [
            "unlearn",
            str(poisoned_run / "model.safetensors"),
            "--forget",
            str(poisoned_run / "c" / "forget-0.5.txt"),
            "--method",
            method,
            *flags,
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--set",
            "keep=last",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(out),
            "--json",
            "-",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["method"] == method and summary["steps"] > 0
    for key, value in expect.items():
        assert summary["config"][key] == value, key
    entry = read_metadata(out)["history"][-1]
    assert entry["method"] == method and all(entry["params"][k] == v for k, v in expect.items())
    state = load_file(str(out))
    reference = main_run[0].state_dict
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in reference.items()}
    assert any(not torch.equal(state[k], reference[k].cpu()) for k in state), "the ablation must change the result"


# --- (e) reproducibility -------------------------------------------------------------------


def test_same_seed_gives_bitwise_identical_output(capped_runs):
    (first, _), (second, _), _ = capped_runs
    assert first.state_dict.keys() == second.state_dict.keys()
    for key in first.state_dict:
        assert torch.equal(first.state_dict[key], second.state_dict[key]), key
    assert without_seconds(first.summary["log"]) == without_seconds(second.summary["log"])
    assert first.summary["steps"] == second.summary["steps"]


def without_seconds(log: dict) -> dict:
    """The log minus each iteration's wall-clock seconds (flush_s, repair_s, measure_s): measurements
    of the machine, not results of the run."""
    return {**log, "iterations": [{k: v for k, v in it.items() if not k.endswith("_s")} for it in log["iterations"]]}


def test_another_seed_gives_another_output(capped_runs):
    (first, _), _, (other, _) = capped_runs
    assert any(not torch.equal(first.state_dict[k], other.state_dict[k]) for k in first.state_dict)


# --- REM's BatchNorm handling --------------------------------------------------------------


def test_frozen_bn_stats_uses_batch_stats_but_keeps_running_stats():
    with seeded_global_rng(0, "test/bn"):
        model = build_model("resnet9", 10, width=0.25).train()
    x = torch.randn(8, 3, 32, 32) * 3 + 1
    running = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    with frozen_bn_stats(model):
        out_frozen = model(x)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in running.items())
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    out_train = model(x)  # batch statistics in both cases: same output; now the stats move
    assert torch.allclose(out_frozen, out_train, atol=1e-5)
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in running.items())


# --- (f) a torchvision checkpoint without remcli metadata -----------------------------------


def test_rem_on_plain_torchvision_resnet18(cifar_spec, poisoned_run, tmp_path):
    with seeded_global_rng(0, "test/resnet18"):
        original = build_model("resnet18", 10).state_dict()
    source = tmp_path / "resnet18.safetensors"
    save_file(original, str(source))  # no metadata at all
    out = tmp_path / "resnet18-rem.safetensors"
    result = runner.invoke(
        app,
        [
            "unlearn",
            str(source),
            "--arch",
            "resnet18",
            "--num-classes",
            "10",
            "--data",
            cifar_spec,
            "--corruption",
            str(poisoned_run / "c" / "corruption.json"),
            "--forget",
            str(poisoned_run / "c" / "forget-0.5.txt"),
            "--epochs",
            "1",
            "--batch-size",
            "128",
            "--set",
            "flush_max_epochs=1",
            "--set",
            "keep=last",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(out),
            "--json",
            "-",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["config"]["flush_max_epochs"] == 1
    assert summary["log"]["select_on"] == "retain"  # no validation split recorded
    assert len(summary["log"]["targets"]) == 8
    state = load_file(str(out))
    model = torchvision.models.get_model("resnet18", num_classes=10)
    model.load_state_dict(state)  # strict: same names and shapes
    assert state.keys() == original.keys()
    changed = any(not torch.equal(state[k], original[k]) for k in state)
    assert changed and summary["changed"] and summary["log"]["kept"] == "last", summary["log"]  # keep=last: the final iterate
    meta = read_metadata(out)
    assert meta["arch"] == "resnet18" and meta["num_classes"] == "10"
    assert meta["history"][-1]["method"] == "rem"
