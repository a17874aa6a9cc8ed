"""REM does only the work its loss reads, and spends what its budget settings allow.

* Skipped work is exact where it claims to be: on a batch without identified rows the default
  repair step has the research code's loss and gradients (same retain loss), and before any update
  the drop view is the input model bit for bit.
* BatchNorm statistics are re-estimated as the plain average of the recalibration batches.
* `repair_fraction`, `patience` and `budget` do what they say, and the log reports the compute spent.
"""

from __future__ import annotations

import copy
import re

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from remcli.cli.main import app
from remcli.errors import InputError
from remcli.unlearning import build_task, unlearn
from remcli.unlearning.methods.rem import REMConfig, REMFullConfig
from remcli.unlearning.methods.rem.batchnorm import recalibrate_batchnorm
from remcli.unlearning.methods.rem.method import REMRun

pytestmark = pytest.mark.slow  # REM runs on the session's poisoned model

runner = CliRunner()
SMALL = {"epochs": 1, "batch_size": 64}


def _run(poisoned_setup, **settings) -> REMRun:
    ckpt, inputs, identified = poisoned_setup
    task = build_task(copy.deepcopy(ckpt), inputs, identified, seed=0, device="cpu", precision="fp32")
    return REMRun(task, REMConfig(**{**SMALL, **settings}))


def _loss_and_grads(run: REMRun, batch) -> tuple[torch.Tensor, dict]:
    run.model.train()
    run.model.zero_grad(set_to_none=True)
    loss = run.repair_loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in run.model.named_parameters() if p.grad is not None}


def test_a_batch_without_identified_rows_has_the_research_codes_loss_and_gradients(poisoned_setup):
    """drop_view="identified" skips the drop view on this batch; drop_view="batch" runs it over every
    row, where its removal term is zero. Same retain loss (live NPO), so the two must agree."""
    lean = _run(poisoned_setup, drop_view="identified", retain_loss="npo")
    full = _run(poisoned_setup, drop_view="batch", retain_loss="npo")
    view = lean.task.retain_view  # no identified rows
    batch = next(view.batches(lean.task.spec, 32))
    assert not lean.task.identified_mask[batch.indices].any()
    lean_loss, lean_grads = _loss_and_grads(lean, batch)
    full_loss, full_grads = _loss_and_grads(full, batch)
    assert torch.allclose(lean_loss, full_loss, rtol=1e-6, atol=1e-7)
    assert lean_grads.keys() == full_grads.keys() and lean_grads
    for name, grad in lean_grads.items():
        assert torch.allclose(grad, full_grads[name], rtol=1e-5, atol=1e-7), name


def test_a_batch_with_identified_rows_runs_the_drop_view_on_those_rows_only(poisoned_setup):
    run = _run(poisoned_setup)
    seen = []
    handle = run.model.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    batch = next(run.task.train_view.batches(run.task.spec, 256))
    rows = int(run.task.identified_mask[batch.indices].sum())
    assert 0 < rows < batch.labels.shape[0]
    run.model.train()
    run.repair_loss(batch)
    handle.remove()
    assert seen == [batch.labels.shape[0], rows]  # the redirect view on every row, the drop view on the identified ones


def test_the_drop_view_is_the_input_model_bit_for_bit_before_any_update(poisoned_setup):
    ckpt, _, _ = poisoned_setup
    run = _run(poisoned_setup)
    images = next(run.task.train_view.batches(run.task.spec, 64)).inputs
    plain = copy.deepcopy(run.reference.model)
    plain.load_state_dict(ckpt.state_dict)
    with torch.no_grad():
        assert torch.equal(run.model.eval()(images), plain.eval()(images))


def test_recalibrated_batchnorm_statistics_are_the_average_of_the_batch_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    model.train()
    for m in model.modules():
        m.training = isinstance(m, nn.Conv2d)  # mixed modes, restored afterwards
    images = [torch.randn(8, 3, 6, 6) for _ in range(3)]

    class Batch:
        def __init__(self, x):
            self.inputs, self.labels = x, torch.zeros(x.shape[0])

    seen = recalibrate_batchnorm(model, [Batch(x) for x in images], "fp32", torch.device("cpu"))
    assert seen == 24
    with torch.no_grad():
        features = [model[0](x) for x in images]
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in features]).mean(0)
    variances = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in features]).mean(0)
    norm = model[1]
    assert torch.allclose(norm.running_mean, means, atol=1e-6)
    assert torch.allclose(norm.running_var, variances, atol=1e-5)
    assert norm.momentum == 0.1 and int(norm.num_batches_tracked) == 3
    assert [m.training for m in model.modules()] == [isinstance(m, nn.Conv2d) for m in model.modules()]


def test_repair_fraction_repairs_every_identified_row_and_that_share_of_the_rest(poisoned_setup):
    ckpt, inputs, identified = poisoned_setup
    outcome = unlearn(ckpt, inputs, identified, "rem", {**SMALL, "repair_fraction": 0.25}, seed=0, device="cpu")
    log = outcome.summary["log"]
    train = len(inputs.dataset.train) - len(ckpt.validation_indices)
    assert log["iterations"][1]["repair_samples"] == len(identified) + round(0.25 * (train - len(identified)))
    assert log["compute"]["repair_fraction"] == 0.25
    assert 0 < log["compute"]["fraction_of_training"] < 1 and log["compute"]["sample_passes"] > 0


@pytest.mark.parametrize("keep", ["best", "latest-tied"])
def test_patience_stops_once_the_keep_rule_has_kept_nothing_for_that_long(poisoned_setup, keep):
    """keep=best: `patience` iterations without a better proxy; latest-tied: without an iterate tied
    with the best, so a run whose later iterates stay within noise of the best keeps going."""
    ckpt, inputs, identified = poisoned_setup
    settings = {**SMALL, "epochs": 6, "patience": 1, "repair_fraction": 0.2, "keep": keep}
    log = unlearn(ckpt, inputs, identified, "rem", settings, seed=0, device="cpu").summary["log"]
    ran = len(log["iterations"]) - 1
    kept = log["kept_iteration"]
    if keep == "best":
        assert kept == log["best_iteration"]
    if log["stopped"] == "patience":
        assert ran == kept + 1 and ran < 6
    else:  # the rule kept every iteration's model
        assert ran == 6 and kept == 6


def test_patience_with_keep_last_is_refused():
    with pytest.raises(InputError, match="keep=last keeps every one"):
        REMConfig(patience=2, keep="last")


def test_a_budget_picks_the_repair_fraction_and_is_not_exceeded(poisoned_setup):
    """The smallest budget is what the refusal names; just above it the repair fraction is small,
    with more budget it grows, and what is spent never exceeds the budget."""
    ckpt, inputs, identified = poisoned_setup
    settings = {**SMALL, "epochs": 2}
    with pytest.raises(InputError, match="at least") as refused:
        unlearn(ckpt, inputs, identified, "rem", {**settings, "budget": 1e-4}, seed=0, device="cpu")
    needed = float(re.search(r"at least ([0-9.]+)", str(refused.value)).group(1))
    spent = {}
    for budget in (1.3 * needed, 2.6 * needed):
        outcome = unlearn(ckpt, inputs, identified, "rem", {**settings, "budget": budget}, seed=0, device="cpu")
        compute = outcome.summary["log"]["compute"]
        assert compute["fraction_of_training"] <= budget
        spent[budget] = compute["repair_fraction"]
    low, high = spent.values()
    assert 0 < low < 1 and high > low


def test_a_budget_too_small_for_the_iterations_is_one_line_naming_what_is_needed(poisoned_setup, poisoned_run, tmp_path):
    ckpt, inputs, identified = poisoned_setup
    with pytest.raises(InputError, match=r"--budget 0.001 is too small for 10 iterations.*at least"):
        unlearn(ckpt, inputs, identified, "rem", {"budget": 0.001}, seed=0, device="cpu")
    result = runner.invoke(
        app,
        ["unlearn", str(poisoned_run / "model.safetensors"), "--forget", str(poisoned_run / "c" / "forget-0.5.txt"), "--budget", "0.001"]
        + ["--out", str(tmp_path / "out.safetensors")],
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--budget 0.001 is too small" in result.output and not (tmp_path / "out.safetensors").exists()


def test_rem_full_is_the_research_codes_repair():
    full = REMFullConfig()
    assert (full.drop_view, full.retain_loss, full.repair_fraction, full.patience, full.bn_recalibration) == ("batch", "npo", 1.0, 0, 0)
    lean = REMConfig()
    assert (lean.drop_view, lean.retain_loss) == ("identified", "npo-cached") and lean.repair_fraction < 1


@pytest.mark.parametrize(
    ("setting", "value"), [("repair_fraction", 0.0), ("repair_fraction", 1.5), ("patience", -1), ("budget", 0.0), ("retain_loss", "mse")]
)
def test_budget_settings_refuse_values_no_run_could_use(setting, value):
    with pytest.raises(InputError, match=setting):
        REMConfig(**{setting: value})


def test_unlearn_says_why_rem_had_nothing_to_remove(poisoned_run, tmp_path):
    """When the identified samples are already at or below gamma on their training labels, the flush
    has nothing to do; the user is told why, on one line, and the run still writes its output."""
    out = tmp_path / "out.safetensors"
    result = runner.invoke(
        app,
        ["unlearn", str(poisoned_run / "model.safetensors"), "--forget", str(poisoned_run / "c" / "forget-0.5.txt"), "--gamma", "1.0"]
        + ["--epochs", "1", "--set", "repair_fraction=0.1", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "nothing to flush" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: rem:") and out.exists()
