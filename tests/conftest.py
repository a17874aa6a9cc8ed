"""Shared fixtures: tiny real datasets extracted from ../shared/data into a temporary cache.

The shared data folder is read-only, so everything is extracted under pytest's tmp dirs. Where
it is absent (a checkout elsewhere), the real CIFAR-10 JPEGs shipped in sample_data/ stand in.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("REMCLI_SHARED_DATA", REPO.parent / "shared" / "data"))


def profile_script_env(tmp_path: Path, **extra) -> dict:
    """Environment for running a benchmark profile script (sweep_cpu.sh, sweep_finetuned.sh) on the
    shared CIFAR-10 tarball into a temporary cache, with this interpreter's remcli."""
    import sys

    source = SHARED_DATA / "cifar10" / "cifar10-jpeg.tar.gz"
    if not source.is_file():
        pytest.skip(f"{source} not available")
    env = {
        **os.environ,
        "SOURCE": str(source),
        "CACHE_DIR": str(tmp_path / "data"),
        "REMCLI": str(Path(sys.executable).parent / "remcli"),
        "PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "120",
        **extra,
    }
    env.pop("REMCLI_DEBUG", None)
    return env


def copy_imagefolder_subset(source: Path, dest: Path, per_class: dict[str, int | slice], classes: tuple[str, ...] | None = None) -> Path:
    """Copy the first `per_class[split]` images (or that slice of them, in name order) of every class
    of an imagefolder tree, or of `classes` only."""
    for split, keep in per_class.items():
        part = keep if isinstance(keep, slice) else slice(keep)
        for class_dir in sorted((source / split).iterdir()):
            if classes is not None and class_dir.name not in classes:
                continue
            target = dest / split / class_dir.name
            target.mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[part]:
                shutil.copy(image, target / image.name)
    return dest


TINY_TRAIN = ["--width", "0.25", "--epochs", "1", "--batch-size", "256", "--val-fraction", "0", "--device", "cpu", "--quiet"]


def invoke(args: list) -> object:
    """The real CLI in-process, at a fixed width (help and tables wrap the same everywhere)."""
    from typer.testing import CliRunner

    from remcli.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "100"})


def error_line(result, code: int = 2) -> str:
    """Exactly one stderr line, `error: ...`, the given exit code, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def small_root(cifar_root, tmp_path_factory) -> Path:
    """100 train / 40 test real CIFAR-10 JPEGs (10 / 4 per class)."""
    return copy_imagefolder_subset(cifar_root, tmp_path_factory.mktemp("small") / "ds", {"train": 10, "test": 4})


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A plain torchvision-style `.pth` state dict of a seeded resnet9 (width 0.25), for `remcli import`."""
    import torch

    from remcli.models import build_model

    path = tmp_path_factory.mktemp("weights") / "w.pth"
    torch.manual_seed(0)
    torch.save(build_model("resnet9", 10, 3, 32, width=0.25).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def small_run(small_root, tmp_path_factory) -> Path:
    """corrupt (label noise, 10 of 100) + a tiny train with the default --precision auto (model.safetensors),
    and a clean tiny train (clean.safetensors), on the small data."""
    out = tmp_path_factory.mktemp("small-run")
    spec = f"imagefolder:{small_root}"
    result = invoke(["corrupt", spec, "--kind", "label-noise", "--count", "10", "--discovery", "0.5,1.0", "--out", out / "c"])
    assert result.exit_code == 0, result.output
    result = invoke(["train", "--data", spec, "--corruption", out / "c" / "corruption.json", *TINY_TRAIN, "--out", out / "model.safetensors"])
    assert result.exit_code == 0, result.output
    result = invoke(["train", "--data", spec, *TINY_TRAIN, "--out", out / "clean.safetensors"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    """imagefolder root with 1,000 train / 200 test real CIFAR-10 JPEGs (100 / 20 per class)."""
    root = tmp_path_factory.mktemp("cifar10-sample")
    archive = SHARED_DATA / "cifar10" / "cifar10-jpeg-sample.tar.gz"
    if archive.is_file():
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
    else:
        copy_imagefolder_subset(REPO / "sample_data" / "cifar10", root, {"train": 100, "test": 20})
    return root


@pytest.fixture(scope="session")
def cifar_spec(cifar_root) -> str:
    return f"imagefolder:{cifar_root}"


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    """torchvision MNIST layout (ROOT/MNIST/raw/*-ubyte) gunzipped from ../shared/data/mnist."""
    source = SHARED_DATA / "mnist" / "raw"
    if not source.is_dir():
        pytest.skip(f"MNIST not available at {source}")
    root = tmp_path_factory.mktemp("mnist")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in source.glob("*.gz"):
        with gzip.open(gz, "rb") as src, open(raw / gz.name[:-3], "wb") as dst:
            shutil.copyfileobj(src, dst)
    return root


@pytest.fixture(scope="session")
def poisoned_run(tmp_path_factory, cifar_spec):
    """A resnet9 (width 0.25) trained on real images with 100 poisoned samples, via the CLI.

    Shared by the evaluate / unlearn tests so the suite trains it once.
    """
    from typer.testing import CliRunner

    from remcli.cli.main import app

    out = tmp_path_factory.mktemp("poisoned")
    runner = CliRunner()
    result = runner.invoke(
        app, ["corrupt", cifar_spec, "--kind", "poison", "--count", "150", "--patch-size", "4", "--discovery", "0.5,1.0", "--out", str(out / "c")]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            cifar_spec,
            "--corruption",
            str(out / "c" / "corruption.json"),
            "--width",
            "0.25",
            "--epochs",
            "20",
            "--batch-size",
            "64",
            "--lr",
            "0.05",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(out / "model.safetensors"),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def poisoned_setup(poisoned_run):
    """(checkpoint, resolved inputs, identified positions at discovery 0.5) of the poisoned model."""
    from remcli.checkpoints import load_checkpoint
    from remcli.inputs import read_identified, resolve_inputs

    ckpt = load_checkpoint(poisoned_run / "model.safetensors")
    inputs = resolve_inputs(ckpt, None, None)
    return ckpt, inputs, read_identified(poisoned_run / "c" / "forget-0.5.txt", inputs.dataset)
