"""REM's mechanism on the session's poisoned resnet9 (real CIFAR-10 JPEGs): does it redirect?

* the diagnostics show the redirect view holding the identified set while the drop view forgets it;
* optimiser state is fresh at every flush/repair switch;
* BatchNorm running statistics follow the chosen policy;
* the new units have the configured size.
"""

from __future__ import annotations

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from remcli.errors import InputError
from remcli.inputs import read_identified
from remcli.progress import NullReporter
from remcli.unlearning import losses, unlearn
from remcli.unlearning.methods.rem import REMConfig
from remcli.unlearning.methods.rem import method as rem_method

pytestmark = pytest.mark.slow  # REM runs on the session's poisoned model


@pytest.fixture(scope="module")
def fully_identified(poisoned_run, poisoned_setup):
    ckpt, inputs, _ = poisoned_setup
    return ckpt, inputs, read_identified(poisoned_run / "c" / "forget-1.0.txt", inputs.dataset)


def test_rem_redirect_redirects_the_identified_samples_into_the_new_units(fully_identified):
    """The defining behaviour: after a few outer iterations the redirect view (old + new units)
    still fits the identified samples' corrupted labels while the drop view (what is kept) does not."""
    ckpt, inputs, identified = fully_identified
    outcome = unlearn(ckpt, inputs, identified, "rem-redirect", {"epochs": 3, "batch_size": 128}, seed=0, device="cpu")
    log = outcome.summary["log"]
    iterations = log["iterations"]
    start = iterations[0]
    assert start["identified_drop_acc"] > 0.9 and start["identified_drop_npo_weight"] == pytest.approx(1.0, abs=1e-3)
    last = iterations[-1]
    assert last["identified_redirect_acc"] >= 0.8, iterations
    assert last["identified_drop_acc"] <= 0.2, iterations
    assert last["redirecting"] is True and log["redirecting_iterations"] >= 1
    # the identified samples still take part in the repair: their NPO weight in the redirect view is far from 0
    assert last["identified_redirect_npo_weight"] > 0.5
    # the retain sample is fitted about equally in both views: the new units did not take over the task
    assert abs(last["retain_redirect_acc"] - last["retain_drop_acc"]) < 0.15
    assert log["new_parameters"] > 0.9 * log["model_parameters"], "new capacity about as large as the trained network"


@pytest.mark.parametrize(("method", "bn"), [("rem", "batch"), ("rem", "frozen"), ("rem-full", "batch")])
def test_removal_while_preferred_reaches_the_loss_with_the_identified_rows_drop_view(poisoned_setup, monkeypatch, method, bn):
    """`removal="while-preferred"`: on every repair step with identified rows, the loss gets the drop
    view of exactly those rows and the gate (the gate itself is tested on tiny tensors in
    test_rem_losses.py); after the flush some identified rows are no longer predicted as labelled,
    so the gate has rows to let go."""
    ckpt, inputs, identified = poisoned_setup
    seen = []

    def recording_loss(fit_logits, labels, identified_rows, ref_ce, drop_logits=None, beta=1.0, retain_loss="npo", **options):
        if identified_rows.any():
            seen.append((int(identified_rows.sum()), drop_logits.detach().clone(), labels[identified_rows].clone(), options["removal"]))
        return losses.rem_repair_loss(fit_logits, labels, identified_rows, ref_ce, drop_logits, beta, retain_loss, **options)

    monkeypatch.setattr(rem_method, "rem_repair_loss", recording_loss)
    settings = {"epochs": 1, "batch_size": 64, "bn": bn, "removal": "while-preferred", "fresh_optimizer": True}
    unlearn(ckpt, inputs, identified, method, settings, seed=0, device="cpu")
    assert seen
    for rows, drop, labels, removal in seen:
        assert removal == "while-preferred" and drop.shape[0] == rows == labels.shape[0]
    let_go = sum(int((drop.argmax(1) != labels).sum()) for _, drop, labels, _ in seen)
    assert let_go > 0, "after the flush some identified rows are no longer predicted"


class StepRecorder(NullReporter):
    """Records, for every optimiser step, the phase it belongs to and whether state existed before it."""

    def __init__(self):
        self.phase_name = None
        self.steps: list[tuple[str, bool]] = []

    def phase(self, name, total=None):
        self.phase_name = name

    def hook(self, optimizer, args, kwargs):
        self.steps.append((self.phase_name, len(optimizer.state) > 0))


@pytest.mark.parametrize("fresh", [True, False])
def test_optimizer_state_is_fresh_at_each_phase_switch(poisoned_setup, fresh):
    ckpt, inputs, identified = poisoned_setup
    recorder = StepRecorder()
    handle = register_optimizer_step_pre_hook(recorder.hook)
    try:
        unlearn(ckpt, inputs, identified, "rem", {"epochs": 2, "batch_size": 64, "fresh_optimizer": fresh}, seed=0, device="cpu", reporter=recorder)
    finally:
        handle.remove()
    firsts = [had_state for i, (phase, had_state) in enumerate(recorder.steps) if i == 0 or recorder.steps[i - 1][0] != phase]
    assert len(firsts) >= 3, recorder.steps  # flush 1, repair 1, (flush 2,) repair 2
    later = [had_state for i, (phase, had_state) in enumerate(recorder.steps) if i > 0 and recorder.steps[i - 1][0] == phase]
    assert all(later), "momentum builds up within a phase"
    if fresh:
        assert not any(firsts), "every phase must start without optimiser state"
    else:
        assert firsts[0] is False and all(firsts[1:]), "the research code's single optimiser carries momentum across phases"


def _running_stats(state: dict) -> dict:
    return {k: v for k, v in state.items() if "running_" in k}


@pytest.mark.parametrize(("bn", "unchanged"), [("frozen", True), ("batch", False)])
def test_batchnorm_running_statistics_follow_the_policy(poisoned_setup, bn, unchanged):
    ckpt, inputs, identified = poisoned_setup
    before = _running_stats(ckpt.state_dict)
    outcome = unlearn(ckpt, inputs, identified, "rem", {"epochs": 1, "batch_size": 64, "bn": bn, "keep": "last"}, seed=0, device="cpu")
    assert any(not torch.equal(outcome.state_dict[k].cpu(), v) for k, v in ckpt.state_dict.items() if "running_" not in k), "weights must move"
    after = _running_stats(outcome.state_dict)
    same = all(torch.equal(after[k].cpu(), v) for k, v in before.items())
    assert same == unchanged


def test_keep_latest_tied_keeps_what_the_rule_chooses_over_the_logged_proxies(poisoned_setup):
    """The iterate ProxySelection keeps as the run goes is the one `kept_by_rule` picks from the
    whole run's proxies (kept_iteration in the log)."""
    from remcli.unlearning.selection import kept_by_rule, proxy_standard_error

    ckpt, inputs, identified = poisoned_setup
    outcome = unlearn(ckpt, inputs, identified, "rem", {"epochs": 4, "batch_size": 64, "keep": "latest-tied"}, seed=0, device="cpu")
    log = outcome.summary["log"]
    its = log["iterations"]
    acc_key = f"{log['select_on']}_acc"
    samples = len(ckpt.validation_indices) if log["select_on"] == "validation" else len(inputs.dataset.train) - len(identified)
    errors = [proxy_standard_error(it[acc_key], it["forget_acc"], 0.2, samples) for it in its]
    assert log["kept_iteration"] == kept_by_rule([it["proxy"] for it in its], errors, "latest-tied") >= log["best_iteration"]
    assert [it["selected"] for it in its].count(True) >= 1 and its[log["kept_iteration"]]["selected"]


@pytest.mark.parametrize(
    ("setting", "value", "match"),
    [
        ("bn", "train", "bn"),
        ("flush_stop", "batch", "flush_stop"),
        ("units", "dense", "units"),
        ("capacity", 0.0, "capacity"),
        ("kernel_size", 4, "kernel_size"),
        ("mask_density", 1.7, "mask_density"),
        ("new_units_lr_scale", -1.0, "new_units_lr_scale"),
        ("epochs", 0, "epochs"),
        ("diagnostic_samples", -1, "diagnostic_samples"),
        ("keep", "first", "keep"),
        ("removal", "always", "removal"),
    ],
)
def test_config_rejects_values_no_run_could_use(setting, value, match):
    with pytest.raises(InputError, match=match):
        REMConfig(**{setting: value})


def test_unlearn_set_parses_like_sweep_set():
    """One grammar: `unlearn --set fresh_optimizer=false` is the boolean False, as in `sweep --set`."""
    from remcli.cli.commands.unlearn import collect_overrides
    from remcli.sweep.grid import parse_method_settings
    from remcli.unlearning import get_method
    from remcli.unlearning.base import build_config

    overrides = collect_overrides(["fresh_optimizer=false", "capacity=0.5", "bn=batch", "targets=conv1,conv4"], epochs=3)
    cfg = build_config(get_method("rem"), overrides)
    assert cfg.fresh_optimizer is False and cfg.capacity == 0.5 and cfg.bn == "batch" and cfg.targets == ("conv1", "conv4") and cfg.epochs == 3
    swept = parse_method_settings(["rem.fresh_optimizer=false", "rem.capacity=0.5", "rem.targets=conv1,conv4"])["rem"]
    assert swept == {"fresh_optimizer": False, "capacity": 0.5, "targets": ["conv1", "conv4"]}
