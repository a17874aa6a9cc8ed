"""The README's "Bring your own model" walk-through, start to finish, on real JPEGs:
import a torchvision resnet18 saved with torch.save (ImageNet normalisation given at import),
list bad images by path, unlearn with REM, evaluate with a gate from another directory."""

from __future__ import annotations

import json
import os

import pytest
import torch
from typer.testing import CliRunner

from remcli.checkpoints import read_metadata
from remcli.cli.main import app
from remcli.models import build_model
from remcli.seeding import seeded_global_rng

runner = CliRunner()


@pytest.mark.slow
def test_bring_your_own_model(cifar_root, tmp_path, monkeypatch):
    with seeded_global_rng(0, "test/byom"):
        weights = build_model("resnet18", 10).state_dict()
    torch.save(weights, tmp_path / "resnet18.pth")

    # 1. import with the normalisation the weights were trained with
    imported = runner.invoke(
        app,
        [
            "import",
            str(tmp_path / "resnet18.pth"),
            "--arch",
            "resnet18",
            "--num-classes",
            "10",
            "--input-shape",
            "3,32,32",
            "--mean",
            "0.485,0.456,0.406",
            "--std",
            "0.229,0.224,0.225",
            "--out",
            str(tmp_path / "model.safetensors"),
        ],
    )
    assert imported.exit_code == 0, imported.output
    meta = read_metadata(tmp_path / "model.safetensors")
    assert meta["mean"] == [0.485, 0.456, 0.406] and meta["std"] == [0.229, 0.224, 0.225]

    # 2. the bad images, by path relative to the data root
    cats = sorted(p.relative_to(cifar_root).as_posix() for p in (cifar_root / "train" / "cat").iterdir())[:2]
    (tmp_path / "bad.txt").write_text("\n".join(cats) + "\n")

    # 3. unlearn, with the data given as a path relative to the working directory
    monkeypatch.chdir(cifar_root.parent)
    relative = os.path.relpath(cifar_root, cifar_root.parent)
    unlearned = runner.invoke(
        app,
        [
            "unlearn",
            str(tmp_path / "model.safetensors"),
            "--data",
            f"imagefolder:{relative}",
            "--forget",
            str(tmp_path / "bad.txt"),
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
            str(tmp_path / "healed.safetensors"),
            "--json",
            "-",
        ],
    )
    assert unlearned.exit_code == 0, unlearned.output
    summary = json.loads(unlearned.stdout)
    assert summary["method"] == "rem" and summary["identified"] == 2 and isinstance(summary["changed"], bool)
    healed_meta = read_metadata(tmp_path / "healed.safetensors")
    assert healed_meta["mean"] == [0.485, 0.456, 0.406]
    assert os.path.isabs(healed_meta["dataset"].split(":", 1)[1]), healed_meta["dataset"]

    # 4. evaluate from another directory, with a gate of each kind
    monkeypatch.chdir(tmp_path)
    evaluated = runner.invoke(
        app,
        [
            "evaluate",
            str(tmp_path / "healed.safetensors"),
            "--forget",
            "bad.txt",
            "--device",
            "cpu",
            "--json",
            "-",
            "--gate",
            "test_acc>=0.0,identified_corrupted_acc<=1.0",
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout)["metrics"]
    assert 0.0 <= metrics["test_acc"] <= 1.0 and metrics["identified_corrupted_acc"] is not None
    missed = runner.invoke(app, ["evaluate", str(tmp_path / "healed.safetensors"), "--device", "cpu", "--gate", "test_acc>=1.1"])
    assert missed.exit_code == 3 and "test_acc" in missed.output


def test_index_lists_positions_paths_and_labels_usable_as_a_forget_file(cifar_root, tmp_path):
    """`remcli index DATA`: one line per training sample; its first or second column is a --forget entry."""
    listed = runner.invoke(app, ["index", f"imagefolder:{cifar_root}"])
    assert listed.exit_code == 0, listed.output
    rows = [line.split("\t") for line in listed.stdout.splitlines() if not line.startswith("#")]
    train_files = sorted(p for p in (cifar_root / "train").rglob("*.jpg"))
    assert len(rows) == len(train_files) and [int(r[0]) for r in rows] == list(range(len(rows)))
    assert all((cifar_root / r[1]).is_file() and r[1].startswith("train/") for r in rows)
    assert all(r[2].split(" (")[1].rstrip(")") == r[1].split("/")[1] for r in rows), "the label is the class folder"
    # the same samples by position and by path give the same identified set
    cat = [r for r in rows if r[1].startswith("train/cat/")][:3]
    (tmp_path / "by-path.txt").write_text("\n".join(r[1] for r in cat) + "\n")
    (tmp_path / "by-position.txt").write_text("\n".join(r[0] for r in cat) + "\n")
    from remcli.data.datasets import load_dataset
    from remcli.inputs import read_identified

    dataset = load_dataset(f"imagefolder:{cifar_root}")
    assert torch.equal(read_identified(tmp_path / "by-path.txt", dataset), read_identified(tmp_path / "by-position.txt", dataset))
    written = runner.invoke(app, ["index", f"imagefolder:{cifar_root}", "--out", str(tmp_path / "index.tsv")])
    assert written.exit_code == 0 and (tmp_path / "index.tsv").read_text() == listed.stdout
    again = runner.invoke(app, ["index", f"imagefolder:{cifar_root}", "--out", str(tmp_path / "index.tsv")])
    assert again.exit_code == 2, "an existing output needs --force"
