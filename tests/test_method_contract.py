"""One contract for every registered method, through the CLI: same inputs, same kind of output.

Parametrised over the registry, so a newly registered method is covered without editing this file
(its budget settings are cut to TINY_BUDGETS).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from remcli.checkpoints import read_metadata
from remcli.cli.main import app
from remcli.unlearning import get_method, list_methods

runner = CliRunner()
METHODS = [m.name for m in list_methods()]
TINY_BUDGETS = {"epochs": 1, "max_epochs": 2, "max_tries": 20}  # the smallest budget of each budget setting a method may have


def tiny(method: str) -> list[str]:
    """`--set` arguments giving METHOD the tiny budget of each budget setting it has."""
    fields = {f.name for f in dataclasses.fields(get_method(method).config_cls)}
    return [arg for name, value in TINY_BUDGETS.items() if name in fields for arg in ("--set", f"{name}={value}")]


def variants_slow() -> list:
    """Every method; a variant (a registration of a function already registered, e.g. rem-full of
    rem's) is marked slow: the quick subset runs each function once, the whole suite every name."""
    seen, params = set(), []
    for info in list_methods():
        params.append(pytest.param(info.name, marks=pytest.mark.slow) if info.fn in seen else info.name)
        seen.add(info.fn)
    return params


def test_every_issue_method_is_registered():
    expected = {"rem", "retrain", "finetune", "cf-k", "eu-k", "ga", "neggrad+", "npo", "scrub", "badteacher", "ssd", "potion", "salun"}
    assert expected <= set(METHODS)


def test_methods_lists_each_method_with_data_budget_and_cost():
    result = runner.invoke(app, ["methods", "--json", "-"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)["methods"]}
    assert set(rows) == set(METHODS)
    for row in rows.values():
        assert all(row[key] for key in ("summary", "data", "budget", "cost_vs_retrain")), row
    assert rows["retrain"]["cost_vs_retrain"] == "100%"
    data_parallel = {name for name, row in rows.items() if row["data_parallel"]}
    assert data_parallel == {"rem", "rem-full", "rem-redirect", "rem-ga", "retrain", "finetune", "ga", "npo"}
    table = runner.invoke(app, ["methods"])
    assert all(name in table.stdout for name in METHODS)


@pytest.mark.parametrize("method", variants_slow())
def test_method_contract(poisoned_run, tmp_path, method):
    source = poisoned_run / "model.safetensors"
    out = tmp_path / f"{method}.safetensors"
    args = [
        "unlearn",
        str(source),
        "--forget",
        str(poisoned_run / "c" / "forget-0.5.txt"),
        "--method",
        method,
        "--batch-size",
        "128",
        "--device",
        "cpu",
        "--quiet",
        "--json",
        "-",
        "--out",
        str(out),
        *tiny(method),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["method"] == method and summary["checkpoint"] == str(out) and summary["wall_time_s"] > 0
    # even at a tiny budget every method changes the model, and one that learns takes gradient steps
    # (a dampening method registers gradient_steps=False and reports none)
    assert summary["changed"] and "left the model unchanged" not in result.stderr
    assert summary["steps"] > 0 if get_method(method).gradient_steps else summary["steps"] == 0, summary["steps"]

    before, after = load_file(source), load_file(out)
    assert {k: (v.shape, v.dtype) for k, v in before.items()} == {k: (v.shape, v.dtype) for k, v in after.items()}
    assert any(not torch.equal(before[k], after[k]) for k in before)
    meta = read_metadata(out)
    entry = meta["history"][-1]
    assert entry["method"] == method and entry["steps"] == summary["steps"] and entry["parent_sha256"]
    assert entry["params"] == summary["config"] and entry["seed"] == 0
    assert meta["arch"] == "resnet9" and meta["corruption_sha256"]


@pytest.mark.parametrize("method", METHODS)
def test_method_rejects_unknown_settings_without_output(poisoned_run, tmp_path, method):
    out = tmp_path / "never.safetensors"
    result = runner.invoke(
        app,
        [
            "unlearn",
            str(poisoned_run / "model.safetensors"),
            "--forget",
            str(poisoned_run / "c" / "forget-0.5.txt"),
            "--method",
            method,
            "--set",
            "no_such_setting=1",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 2
    assert "no setting" in result.output and "no_such_setting" in result.output
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("method", "setting", "message"),
    [
        ("finetune", "lr=abc", "must be float"),
        ("finetune", "epochs=0", "epochs must be >= 1"),
        ("cf-k", "k=99", "out of range"),
        ("scrub", "variant=nope", "variant"),
        ("salun", "mask_fraction=1.5", "mask_fraction"),
        ("ssd", "reference=test", "reference"),
        ("ga", "select_on=test", "never test"),
        ("npo", "beta=0", "beta"),
    ],
)
def test_bad_method_settings_are_one_line_usage_errors(poisoned_run, tmp_path, method, setting, message):
    out = tmp_path / "never.safetensors"
    result = runner.invoke(
        app,
        [
            "unlearn",
            str(poisoned_run / "model.safetensors"),
            "--forget",
            str(poisoned_run / "c" / "forget-0.5.txt"),
            "--method",
            method,
            "--set",
            setting,
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_unchanged_output_is_reported_and_can_fail_ci(poisoned_run, tmp_path):
    """SSD with an impossible threshold dampens nothing: the output is the input. It is written with a
    warning and "changed": false (JSON and history); --fail-if-unchanged makes it exit 4 with nothing written."""
    out = tmp_path / "same.safetensors"
    args = [
        "unlearn",
        str(poisoned_run / "model.safetensors"),
        "--forget",
        str(poisoned_run / "c" / "forget-0.5.txt"),
        "--method",
        "ssd",
        "--set",
        "alpha=1e12",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    ]
    written = runner.invoke(app, [*args, "--json", "-"])
    assert written.exit_code == 0, written.output
    assert json.loads(written.stdout)["changed"] is False and "ssd left the model unchanged" in written.stderr
    assert read_metadata(out)["history"][-1]["changed"] is False
    before, after = load_file(poisoned_run / "model.safetensors"), load_file(out)
    assert all(torch.equal(before[k], after[k]) for k in before)
    gated = tmp_path / "gated.safetensors"
    refused = runner.invoke(app, [*args[:-1], str(gated), "--fail-if-unchanged"])
    assert refused.exit_code == 4, refused.output
    assert "left the model unchanged" in refused.output and not gated.exists()
