"""Models from elsewhere through the whole path: import -> unlearn (REM) -> evaluate, on real JPEGs.

A torchvision ViT at a small image size, and timm's ResNet and ViT families (`--arch timm:NAME`,
the `remcli[timm]` extra): REM must pick their blocks as targets, the family must pick the
optimiser, and timm's pretrained config must supply what import leaves unset.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from remcli.checkpoints import load_checkpoint, read_metadata
from remcli.cli.main import app
from remcli.errors import InputError
from remcli.models import arch_family, build_model
from remcli.models.recipes import default_optimizer, train_lr, unlearn_lr
from remcli.seeding import seeded_global_rng
from remcli.train import TrainConfig
from tests.conftest import copy_imagefolder_subset

pytest.importorskip("timm")
runner = CliRunner()


@pytest.fixture(scope="module")
def small_root(cifar_root, tmp_path_factory) -> Path:
    """100 train / 40 test real CIFAR-10 JPEGs (10 / 4 per class)."""
    return copy_imagefolder_subset(cifar_root, tmp_path_factory.mktemp("families") / "ds", {"train": 10, "test": 4})


def invoke(args: list) -> object:
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "100"})


def import_unlearn_evaluate(arch: str, weights: Path, root: Path, tmp_path: Path, import_args: list) -> tuple[dict, dict]:
    """The practitioner's path through the CLI; returns (unlearn JSON, evaluate JSON)."""
    model = tmp_path / "model.safetensors"
    result = invoke(["import", weights, "--arch", arch, "--num-classes", "10", *import_args, "--out", model])
    assert result.exit_code == 0, result.output
    cats = sorted(p.relative_to(root).as_posix() for p in (root / "train" / "cat").iterdir())[:2]
    (tmp_path / "bad.txt").write_text("\n".join(cats) + "\n")
    result = invoke(
        [
            "unlearn",
            model,
            "--data",
            f"imagefolder:{root}",
            "--forget",
            tmp_path / "bad.txt",
            "--epochs",
            "1",
            "--batch-size",
            "128",
            "--set",
            "flush_max_epochs=1",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            tmp_path / "healed.safetensors",
            "--json",
            "-",
        ]
    )
    assert result.exit_code == 0, result.output
    unlearned = json.loads(result.stdout)
    result = invoke(
        [
            "evaluate",
            tmp_path / "healed.safetensors",
            "--forget",
            tmp_path / "bad.txt",
            "--device",
            "cpu",
            "--json",
            "-",
            "--gate",
            "test_acc>=0.0,identified_corrupted_acc<=1.0",
        ]
    )
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.stdout)
    # the unlearned checkpoint rebuilds through the recorded arch and has the input's tensors
    before, after = load_checkpoint(model), load_checkpoint(tmp_path / "healed.safetensors")
    assert {k: v.shape for k, v in before.state_dict.items()} == {k: v.shape for k, v in after.state_dict.items()}
    after.build()
    return unlearned, evaluated


def save_weights(arch: str, path: Path, **kwargs) -> Path:
    with seeded_global_rng(0, "test/families"):
        torch.save(build_model(arch, 10, **kwargs).state_dict(), path)
    return path


@pytest.mark.slow
def test_torchvision_vit_through_import_unlearn_evaluate(small_root, tmp_path):
    weights = save_weights("vit_b_16", tmp_path / "vit.pth", input_size=32)
    unlearned, evaluated = import_unlearn_evaluate("vit_b_16", weights, small_root, tmp_path, ["--input-shape", "3,32,32"])
    log = unlearned["log"]
    assert log["targets"] == [f"encoder.layers.encoder_layer_{i}.mlp" for i in range(12)]
    assert log["optimizer"] == "adam" and log["lr"] == unlearn_lr("adam")
    assert 0.0 <= evaluated["metrics"]["test_acc"] <= 1.0


@pytest.mark.parametrize(
    ("name", "targets", "optimizer"),
    [
        ("test_resnet", ["layer1.0", "layer2.0", "layer3.0", "layer4.0"], "sgd"),
        ("test_vit", [f"blocks.{i}.mlp" for i in range(6)], "adam"),
    ],
)
@pytest.mark.slow
def test_timm_models_through_import_unlearn_evaluate(small_root, tmp_path, name, targets, optimizer):
    import timm

    with seeded_global_rng(0, "test/families"):
        model = timm.create_model(name, num_classes=10, **({"img_size": 32} if name == "test_vit" else {}))
    torch.save(model.state_dict(), tmp_path / "w.pth")
    unlearned, evaluated = import_unlearn_evaluate(f"timm:{name}", tmp_path / "w.pth", small_root, tmp_path, ["--input-shape", "3,32,32"])
    log = unlearned["log"]
    assert log["targets"] == targets
    assert log["optimizer"] == optimizer and log["new_units"] > 0
    assert unlearned["identified"] == 2
    assert evaluated["metrics"]["identified_corrupted_acc"] is not None
    meta = read_metadata(tmp_path / "healed.safetensors")
    assert meta["arch"] == f"timm:{name}" and meta["input_shape"] == [3, 32, 32]


def test_timm_pretrained_config_supplies_input_size_and_normalisation(tmp_path):
    import timm

    torch.save(timm.create_model("test_resnet", num_classes=10).state_dict(), tmp_path / "w.pth")
    result = invoke(["import", tmp_path / "w.pth", "--arch", "timm:test_resnet", "--num-classes", "10", "--out", tmp_path / "a.safetensors"])
    assert result.exit_code == 0, result.output
    cfg = timm.models.get_pretrained_cfg("test_resnet")
    meta = read_metadata(tmp_path / "a.safetensors")
    assert meta["input_shape"] == list(cfg.input_size)
    assert meta["mean"] == list(cfg.mean) and meta["std"] == list(cfg.std)
    assert "timm's pretrained mean" in result.stderr
    # explicit values win over the pretrained config
    result = invoke(
        [
            "import",
            tmp_path / "w.pth",
            "--arch",
            "timm:test_resnet",
            "--num-classes",
            "10",
            "--input-shape",
            "3,32,32",
            "--mean",
            "0.4,0.4,0.4",
            "--std",
            "0.2,0.2,0.2",
            "--out",
            tmp_path / "b.safetensors",
        ]
    )
    assert result.exit_code == 0, result.output
    meta = read_metadata(tmp_path / "b.safetensors")
    assert meta["input_shape"] == [3, 32, 32] and meta["mean"] == [0.4] * 3 and meta["std"] == [0.2] * 3


def test_fixed_size_timm_models_are_built_for_the_data_size():
    model = build_model("timm:test_vit", 10, input_size=32)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert build_model("timm:test_resnet", 10, in_channels=1, input_size=28)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_timm_model_is_one_line_error(tmp_path):
    torch.save({}, tmp_path / "w.pth")
    result = invoke(
        ["import", tmp_path / "w.pth", "--arch", "timm:resnet_does_not_exist", "--num-classes", "10", "--out", tmp_path / "x.safetensors"]
    )
    assert result.exit_code == 2 and "unknown timm model 'resnet_does_not_exist'" in result.stderr
    assert not (tmp_path / "x.safetensors").exists()


def test_without_the_extra_the_error_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # what `import timm` sees when timm is not installed
    with pytest.raises(InputError, match=r"pip install 'remcli\[timm\]'"):
        build_model("timm:test_resnet", 10)
    result = invoke(["archs"])
    assert result.exit_code == 0 and "needs pip install 'remcli[timm]'" in result.stdout
    result = invoke(["inspect", "timm:test_resnet", "--blocks"])
    assert (
        result.exit_code == 2
        and result.stderr.strip() == "error: --arch timm:NAME needs timm, which is not installed; install the extra: pip install 'remcli[timm]'"
    )


@pytest.mark.parametrize(
    ("arch", "family"),
    [
        ("resnet9", "cnn"),
        ("resnet18", "cnn"),
        ("mobilenet_v3_small", "cnn"),
        ("timm:test_resnet", "cnn"),
        ("vit_cifar", "transformer"),
        ("vit_b_16", "transformer"),
        ("swin_t", "transformer"),
        ("timm:test_vit", "transformer"),
    ],
)
def test_the_family_picks_the_recipe(arch, family):
    assert arch_family(arch) == family
    optimizer = default_optimizer(arch)
    assert optimizer == {"cnn": "sgd", "transformer": "adam"}[family]
    optim = TrainConfig(arch=arch).optim()
    assert (optim.name, optim.lr) == (optimizer, train_lr(optimizer))
    assert TrainConfig(arch=arch, lr=0.5).optim().lr == 0.5
