"""The whole pipeline through the CLI on real CIFAR-10 images: corrupt -> train -> unlearn -> evaluate."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from remcli.cli.main import app

pytestmark = pytest.mark.slow  # REM and NPO at working budgets, then evaluated

runner = CliRunner()


def evaluate_json(model, forget=None) -> dict:
    args = ["evaluate", str(model), "--json", "-", "--device", "cpu"]
    if forget:
        args += ["--forget", str(forget)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_rem_removes_backdoor_and_keeps_utility(poisoned_run):
    """With every poisoned sample identified the backdoor must go. (At 50 % discovery the repair
    relearns part of it from the undiscovered half on this small model: ASR 0.99 -> 0.54 measured;
    docs/results-cpu.md has the discovery-rate map.)"""
    before = evaluate_json(poisoned_run / "model.safetensors")["metrics"]
    assert before["attack_success_rate"] > 0.5, f"the poisoned model must have learned the backdoor: {before}"
    out = poisoned_run / "rem.safetensors"
    result = runner.invoke(
        app,
        [
            "unlearn",
            str(poisoned_run / "model.safetensors"),
            "--forget",
            str(poisoned_run / "c" / "forget-1.0.txt"),
            "--method",
            "rem",
            "--epochs",
            "3",
            "--batch-size",
            "64",
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
    assert summary["steps"] > 0 and summary["log"]["iterations"][0]["iteration"] == 0
    after = evaluate_json(out, poisoned_run / "c" / "forget-1.0.txt")["metrics"]
    assert after["attack_success_rate"] < before["attack_success_rate"] / 2, (before, after)
    assert after["utility"] > before["utility"] - 0.06, (before, after)
    assert after["healed"] > before["healed"]


def test_evaluate_against_the_input_reports_and_gates_the_change(poisoned_run, tmp_path):
    """`evaluate HEALED --against MODEL`: MODEL's metrics beside HEALED's, delta_METRIC = the
    difference of the two single evaluations, gateable, and MODEL recognised as HEALED's parent."""
    model, forget = poisoned_run / "model.safetensors", poisoned_run / "c" / "forget-1.0.txt"
    healed = tmp_path / "npo.safetensors"
    unlearn = ["unlearn", str(model), "--forget", str(forget), "--method", "npo", "--device", "cpu", "--quiet", "--out", str(healed)]
    assert runner.invoke(app, unlearn).exit_code == 0
    alone, before = evaluate_json(healed, forget)["metrics"], evaluate_json(model, forget)["metrics"]

    args = ["evaluate", str(healed), "--forget", str(forget), "--against", str(model), "--device", "cpu", "--json", "-"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["against"]["is_parent"] is True and payload["against"]["metrics"] == before
    for name in ("test_acc", "healed", "attack_success_rate", "identified_corrupted_acc"):
        assert payload["metrics"][name] == alone[name]
        assert payload["metrics"][f"delta_{name}"] == pytest.approx(alone[name] - before[name], abs=2e-6)
    assert payload["metrics"]["delta_identified_corrupted_acc"] < 0  # NPO removed what it was given

    drop = payload["metrics"]["delta_identified_corrupted_acc"]
    gated = runner.invoke(app, [*args[:-2], "--gate", f"delta_identified_corrupted_acc<={drop - 0.01}"])
    assert gated.exit_code == 3 and f"delta_identified_corrupted_acc={drop} >" in gated.stderr
    table = runner.invoke(app, args[:-2], env={"COLUMNS": "120"})  # the table: value, against, change
    assert table.exit_code == 0 and "against" in table.stdout and "change" in table.stdout and "delta_" not in table.stdout

    # the input against itself: every change is zero and it is not its own parent
    itself = json.loads(runner.invoke(app, ["evaluate", str(model), "--against", str(model), "--device", "cpu", "--json", "-"]).stdout)
    assert all(v == 0 for k, v in itself["metrics"].items() if k.startswith("delta_")) and itself["against"]["is_parent"] is not True
