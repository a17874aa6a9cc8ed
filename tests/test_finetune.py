"""Fine-tuning from an init (`train --init`) on real CIFAR-10 images: what is recorded, what the
classifier does when the class count changes, retrain restarting from the init, and sweeps.

One tiny 10-class model (width 0.125, one epoch) plays the pretrained backbone; a 3-class
imagefolder copied from the same images is the practitioner's own smaller set.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from remcli.checkpoints import load_checkpoint, save_checkpoint
from remcli.cli.main import app
from remcli.data.datasets import load_dataset
from remcli.errors import InputError
from remcli.fileio import sha256_file
from remcli.seeding import seeded_global_rng
from remcli.train import TrainConfig, train_model
from tests.conftest import copy_imagefolder_subset

pytestmark = pytest.mark.slow  # trains a backbone, fine-tunes and retrains from it

runner = CliRunner()
TINY = ["--width", "0.125", "--epochs", "1", "--batch-size", "64", "--device", "cpu"]
STILL = ["--lr", "1e-12"]  # lr ~0: the weights stay where training started


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "120"})


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def parameters(path: Path) -> dict[str, torch.Tensor]:
    """The learned tensors (BatchNorm running statistics move even at lr 0, so they are left out)."""
    return {k: v for k, v in load_checkpoint(path).state_dict.items() if "running" not in k and "num_batches" not in k}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, cifar_spec) -> Path:
    out = tmp_path_factory.mktemp("pretrained") / "init.safetensors"
    result = invoke("train", "--data", cifar_spec, *TINY, "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory, cifar_root) -> str:
    """airplane, automobile, bird: 40 training and 10 test images each."""
    root = copy_imagefolder_subset(
        cifar_root, tmp_path_factory.mktemp("three-classes"), {"train": 40, "test": 10}, ("airplane", "automobile", "bird")
    )
    return f"imagefolder:{root}"


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, pretrained, three_classes) -> tuple[Path, Path]:
    """(init, model): a copy of the pretrained init, and a 3-class model really fine-tuned from it."""
    folder = tmp_path_factory.mktemp("finetuned")
    init = folder / "init.safetensors"
    shutil.copy(pretrained, init)
    out = folder / "model.safetensors"
    result = invoke("train", "--data", three_classes, "--init", init, *TINY, "--epochs", "3", "--batch-size", "32", "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    return init, out


def test_train_init_records_the_init_and_starts_from_its_weights(pretrained, cifar_spec, tmp_path):
    out = tmp_path / "ft.safetensors"
    result = invoke("train", "--data", cifar_spec, "--init", pretrained, *TINY, *STILL, "--out", out, "--json", "-")
    assert result.exit_code == 0, result.output
    sha = sha256_file(pretrained)
    record = {"path": str(pretrained.resolve()), "sha256": sha, "num_classes": 10, "reinitialised": []}
    assert json.loads(result.stdout)["init"] == record
    ckpt = load_checkpoint(out)
    assert ckpt.init == record and ckpt.history[-1]["parent_sha256"] == sha
    assert ckpt.train_params["init"] == str(pretrained.resolve())
    assert "classifier" not in result.stderr  # same classes: nothing re-initialised, nothing to say
    shown = invoke("inspect", out)
    assert f"fine-tuned from {pretrained.resolve()} (sha256 {sha[:12]})" in shown.stdout, shown.output
    init, tuned = parameters(pretrained), parameters(out)
    for name, tensor in init.items():
        assert torch.allclose(tuned[name], tensor, atol=1e-6), name
    with seeded_global_rng(0, "train/init"):
        fresh = ckpt.build_untrained().state_dict()
    assert not torch.allclose(tuned["conv1.0.weight"], fresh["conv1.0.weight"], atol=1e-3)  # not a fresh initialisation


def test_a_different_class_count_reinitialises_only_the_classifier(pretrained, three_classes, tmp_path):
    out = tmp_path / "ft3.safetensors"
    result = invoke("train", "--data", three_classes, "--init", pretrained, *TINY, *STILL, "--out", out)
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if "classifier" in line]
    assert len(said) == 1 and "10 classes, the data 3" in said[0] and "fc.weight" in said[0], result.stderr
    init, tuned = parameters(pretrained), parameters(out)
    assert tuned.keys() == init.keys()
    assert tuned["fc.weight"].shape == (3, init["fc.weight"].shape[1])
    for name in init.keys() - {"fc.weight"}:
        assert torch.allclose(tuned[name], init[name], atol=1e-6), name
    ckpt = load_checkpoint(out)
    with seeded_global_rng(0, "train/init"):
        fresh = ckpt.build_untrained().state_dict()
    assert torch.allclose(tuned["fc.weight"], fresh["fc.weight"], atol=1e-6)  # the fresh, seeded classifier
    assert ckpt.init["reinitialised"] == ["fc.weight"] and ckpt.init["num_classes"] == 10 and ckpt.num_classes == 3


def test_an_init_of_another_arch_or_width_is_refused_in_one_line(pretrained, cifar_spec, tmp_path):
    out = tmp_path / "never.safetensors"
    wider = invoke("train", "--data", cifar_spec, "--init", pretrained, *TINY, "--width", "0.25", "--out", out)
    one_line_error(wider, str(pretrained), "does not fit", "--width")
    other = invoke("train", "--data", cifar_spec, "--init", pretrained, *TINY, "--arch", "vit_cifar", "--out", out)
    one_line_error(other, "is a resnet9 checkpoint, not vit_cifar", "--arch resnet9")
    assert not out.exists()
    with pytest.raises(InputError, match="is a resnet9 checkpoint"):  # the Python API refuses it the same way
        TrainConfig(arch="vit_cifar", init=str(pretrained))
    with pytest.raises(InputError, match="does not fit"):
        train_model(load_dataset(cifar_spec), TrainConfig(arch_kwargs={"width": 0.25}, epochs=1, device="cpu", init=str(pretrained)))


def test_retrain_of_a_finetuned_model_restarts_from_its_init(finetuned, tmp_path):
    init, model = finetuned
    forget = tmp_path / "forget.txt"
    forget.write_text("0\n1\n2\n")
    out = tmp_path / "retrained.safetensors"
    result = invoke(
        "unlearn",
        model,
        "--forget",
        forget,
        "--method",
        "retrain",
        "--set",
        "epochs=1",
        "--set",
        "lr=1e-12",
        "--device",
        "cpu",
        "--out",
        out,
        "--json",
        "-",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["log"]["init"] == {"path": str(init.resolve()), "sha256": sha256_file(init)}
    start, tuned, retrained = parameters(init), parameters(model), parameters(out)
    assert not torch.allclose(tuned["conv1.0.weight"], start["conv1.0.weight"], atol=1e-4)  # fine-tuning moved it
    for name in start.keys() - {"fc.weight"}:
        assert torch.allclose(retrained[name], start[name], atol=1e-6), name  # back at the init, not at the fine-tuned weights
    assert retrained["fc.weight"].shape == tuned["fc.weight"].shape


def test_retrain_refuses_an_init_that_changed_or_is_gone(finetuned, tmp_path):
    init, model = finetuned
    forget = tmp_path / "forget.txt"
    forget.write_text("0\n")
    args = ("unlearn", model, "--forget", forget, "--method", "retrain", "--set", "epochs=1", "--device", "cpu", "--out", tmp_path / "r.safetensors")
    original, recorded = init.read_bytes(), sha256_file(init)
    try:
        ckpt = load_checkpoint(init)
        save_checkpoint(init, ckpt.state_dict, {**ckpt.meta, "dataset": "edited"}, force=True)  # same weights, another file
        one_line_error(invoke(*args), str(init.resolve()), f"not the {recorded[:12]}", "put the original init back")
        init.unlink()
        one_line_error(invoke(*args), str(init.resolve()), "is missing", "put that file back")
    finally:
        init.write_bytes(original)
    assert not (tmp_path / "r.safetensors").exists()


def test_sweep_trains_its_models_from_the_init_and_records_it(pretrained, three_classes, tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "--data", three_classes, "--width", "0.125", "--count", "6", "--train-epochs", "1", "--train-batch-size", "64"]
    args += ["--kinds", "poison", "--discovery", "0.5", "--methods", "retrain", "--set", "retrain.epochs=1", "--device", "cpu", "--quiet"]
    result = invoke(*args, "--init", pretrained, "--out", out)
    assert result.exit_code == 0, result.output
    sha = sha256_file(pretrained)
    config = json.loads((out / "sweep.json").read_text())["config"]
    assert (config["init"], config["init_sha256"]) == (str(pretrained.resolve()), sha)
    model = load_checkpoint(out / "models" / "poison-s0" / "model.safetensors")
    assert model.init["sha256"] == sha and model.init["reinitialised"] == ["fc.weight"]
    assert json.loads((out / "models" / "poison-s0" / "train.json").read_text())["config"]["init_sha256"] == sha
    cell = json.loads((out / "cells" / "poison-s0-retrain-r0.5.json").read_text())
    assert cell["config"]["model"]["init_sha256"] == sha
    assert cell["unlearn"]["log"]["init"]["sha256"] == sha  # retrain cells restart from the init too
    assert f"Every model fine-tuned from `{pretrained.resolve()}` (sha256 {sha[:12]})." in (out / "summary.md").read_text()
    one_line_error(invoke(*args, "--out", out), "--init")  # the folder's models came from the init: resuming without it is refused
