"""Real MNIST (60,000 + 10,000 grayscale digits) through the data paths the CLI uses, cheaply.

Training on MNIST is too slow for the CPU suite, so this checks loading, corruption, grayscale
input handling, triggers on one channel, and `evaluate` of an (untrained) 1-channel checkpoint.
"""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from remcli.checkpoints import save_checkpoint
from remcli.cli.main import app
from remcli.data import InputSpec, Trigger, load_dataset, load_manifest
from remcli.data.views import clean_view
from remcli.models import build_model, input_spec, model_channels
from remcli.seeding import seeded_global_rng
from remcli.train import model_metadata

runner = CliRunner()
CPU = torch.device("cpu")
TRAIN_PER_CLASS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_PER_CLASS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist(mnist_root):
    return load_dataset(f"mnist:{mnist_root}")


def test_mnist_loads_whole_splits(mnist, mnist_root):
    assert mnist.spec == f"mnist:{mnist_root}"
    assert tuple(mnist.train.images.shape) == (60000, 1, 28, 28)
    assert tuple(mnist.test.images.shape) == (10000, 1, 28, 28)
    assert mnist.train.images.dtype == torch.uint8 and mnist.train.labels.dtype == torch.int64
    assert torch.bincount(mnist.train.labels).tolist() == TRAIN_PER_CLASS
    assert torch.bincount(mnist.test.labels).tolist() == TEST_PER_CLASS
    assert mnist.num_classes == 10 and mnist.input_shape == (1, 28, 28)
    assert mnist.mean == (0.1307,) and mnist.std == (0.3081,)
    assert int(mnist.train.images.max()) == 255 and int(mnist.train.images.min()) == 0
    # the published first training labels: 5 0 4 1 9 2 1 3 1 4
    assert mnist.train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.fingerprint == load_dataset(f"mnist:{mnist_root}").fingerprint


def test_resnet9_forwards_grayscale_batches(mnist):
    assert model_channels("resnet9", 1) == 1
    spec = input_spec(mnist, "resnet9")
    with seeded_global_rng(0, "test/mnist"):
        model = build_model("resnet9", 10, in_channels=1, image_size=28, width=0.25).eval()
    view = clean_view(mnist.train, torch.arange(300), CPU)
    sizes = []
    with torch.no_grad():
        for batch in view.batches(spec, 128, generator=torch.Generator().manual_seed(0), augment=True):
            assert tuple(batch.inputs.shape[1:]) == (1, 28, 28)
            assert torch.equal(batch.labels, mnist.train.labels[batch.indices])
            logits = model(batch.inputs)
            assert tuple(logits.shape) == (len(batch.indices), 10) and bool(torch.isfinite(logits).all())
            sizes.append(len(batch.indices))
    assert sizes == [128, 128, 44]


def test_grayscale_input_is_expanded_for_rgb_architectures(mnist):
    assert model_channels("resnet18", 1) == 3
    spec = input_spec(mnist, "resnet18")
    batch = next(clean_view(mnist.test, torch.arange(8), CPU).batches(spec, 8))
    assert tuple(batch.inputs.shape) == (8, 3, 28, 28)
    assert torch.equal(batch.inputs[:, 0], batch.inputs[:, 2])
    expected = (mnist.test.images[:8, 0].float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(batch.inputs[:, 1], expected, atol=1e-6)


def test_trigger_on_grayscale_uses_colour_intensity(mnist):
    trigger = Trigger(3, "top-left", (1.0, 0.0, 0.0))  # red -> intensity 1/3 on one channel
    spec = InputSpec(mnist.mean, mnist.std, 1)
    view = clean_view(mnist.train, torch.arange(64), CPU, trigger)
    batch = next(view.batches(spec, 64, generator=torch.Generator().manual_seed(2), augment=True))
    pixels = batch.inputs * 0.3081 + 0.1307
    assert torch.allclose(pixels[:, :, :3, :3], torch.full((64, 1, 3, 3), 1 / 3), atol=1e-5)


@pytest.mark.slow
def test_corrupt_then_evaluate_on_mnist(mnist, mnist_root, tmp_path):
    spec = f"mnist:{mnist_root}"
    out = tmp_path / "c"
    result = runner.invoke(
        app, ["corrupt", spec, "--kind", "label-noise", "--count", "200", "--discovery", "0.5,1.0", "--out", str(out), "--json", "-"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["corrupted"] == 200 and summary["discovery"] == {"0.5": 100, "1.0": 200}
    manifest = load_manifest(out / "corruption.json")
    assert manifest.dataset == spec and manifest.num_train == 60000 and manifest.fingerprint == mnist.fingerprint

    # an untrained 1-channel resnet9 saved with the metadata `train` would write
    with seeded_global_rng(0, "test/mnist"):
        model = build_model("resnet9", 10, in_channels=1, image_size=28, width=0.125)
    meta = model_metadata("resnet9", {"width": 0.125}, mnist, None, None, {"seed": 0, "fraction": 0.0, "indices": []}, [])
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, model.state_dict(), meta)

    result = runner.invoke(
        app,
        [
            "evaluate",
            str(ckpt),
            "--corruption",
            str(out / "corruption.json"),
            "--forget",
            str(out / "forget-0.5.txt"),
            "--device",
            "cpu",
            "--json",
            "-",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dataset"] == spec and report["arch"] == "resnet9"
    assert report["counts"] == {"test": 10000, "corrupted": 200, "identified_corrupted": 100, "undiscovered": 100, "identified": 100}
    metrics = report["metrics"]
    assert set(metrics) >= {"test_acc", "utility", "healed", "healed_identified", "healed_undiscovered", "identified_corrupted_acc"}
    assert "attack_success_rate" not in metrics  # no trigger in label noise
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert metrics["utility"] == metrics["test_acc"]  # nothing excluded for label noise
