"""`remcli unlearn` refuses bad input with exit code 2, one line on stderr, and no output file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from safetensors.torch import save_file
from typer.testing import CliRunner

from remcli.checkpoints import read_metadata
from remcli.cli.main import app
from remcli.fileio import sha256_file
from remcli.models import build_model
from remcli.seeding import seeded_global_rng
from tests.conftest import copy_imagefolder_subset

runner = CliRunner()


def unlearn_args(model: Path, forget: Path, out: Path, *extra: str) -> list[str]:
    return [
        "unlearn",
        str(model),
        "--forget",
        str(forget),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]


def assert_refused(args: list[str], out: Path, *, match: str, out_existed: bool = False) -> str:
    listing = sorted(p.name for p in out.parent.iterdir())
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output)
    message = result.stderr.strip()
    assert message.startswith("error:"), message
    assert "\n" not in message, f"the error must be one line: {message!r}"
    assert "Traceback" not in result.output
    assert match in message, message
    assert result.stdout == ""
    assert out.exists() == out_existed
    assert sorted(p.name for p in out.parent.iterdir()) == listing, "no output or temporary file may be left behind"
    return message


@pytest.fixture
def work(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    return tmp_path, out_dir / "unlearned.safetensors"


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory, cifar_root) -> Path:
    """Another imagefolder dataset: same classes and image size, far fewer images."""
    return copy_imagefolder_subset(cifar_root, tmp_path_factory.mktemp("cifar-small"), {"train": 5, "test": 2})


@pytest.fixture(scope="module")
def plain_resnet18(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plain") / "resnet18.safetensors"
    with seeded_global_rng(0, "test/bad-input/resnet18"):
        save_file(build_model("resnet18", 10).state_dict(), str(path))
    return path


# --- index files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (["3", "1000"], "outside the training split"),
        (["3", "250000"], "outside the training split"),
        (["-1"], "is negative"),
        (["7", "seven"], "is not an integer"),
        (["5", "5"], "repeats indices"),
    ],
    ids=["one-past-end", "far-out", "negative", "not-a-number", "duplicate"],
)
def test_index_outside_training_set(poisoned_run, work, lines, match):
    tmp, out = work
    forget = tmp / "forget.txt"
    forget.write_text("\n".join(lines) + "\n")
    assert_refused(unlearn_args(poisoned_run / "model.safetensors", forget, out), out, match=match)


def test_index_of_a_held_out_validation_sample(poisoned_run, work):
    """Validation samples were never trained on: unlearning them is a user error."""
    tmp, out = work
    held_out = read_metadata(poisoned_run / "model.safetensors")["validation"]["indices"]
    assert held_out
    forget = tmp / "forget.txt"
    forget.write_text(f"{held_out[0]}\n")
    assert_refused(unlearn_args(poisoned_run / "model.safetensors", forget, out), out, match="held out for validation")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "HEADER"], ids=["empty", "blank-lines", "comments-only", "header-only"])
def test_empty_index_file(poisoned_run, work, text):
    tmp, out = work
    if text == "HEADER":  # the header `remcli corrupt` writes, with the right fingerprint, and no indices
        lines = (poisoned_run / "c" / "forget-0.5.txt").read_text().splitlines()
        text = "\n".join(line for line in lines if line.startswith("#")) + "\n"
        assert "# fingerprint:" in text
    forget = tmp / "forget.txt"
    forget.write_text(text)
    assert_refused(unlearn_args(poisoned_run / "model.safetensors", forget, out), out, match="lists no samples")


def test_missing_index_file(poisoned_run, work):
    tmp, out = work
    assert_refused(unlearn_args(poisoned_run / "model.safetensors", tmp / "nope.txt", out), out, match="not found")


# --- checkpoint / data mismatches ----------------------------------------------------------


def test_checkpoint_and_other_data(poisoned_run, work, small_folder):
    _, out = work
    args = unlearn_args(poisoned_run / "model.safetensors", poisoned_run / "c" / "forget-0.5.txt", out, "--data", f"imagefolder:{small_folder}")
    assert_refused(args, out, match="was trained on data")


def test_corruption_manifest_for_other_data(plain_resnet18, poisoned_run, work, small_folder):
    """Without checkpoint metadata the manifest's fingerprint still catches the mismatch."""
    _, out = work
    args = unlearn_args(
        plain_resnet18,
        poisoned_run / "c" / "forget-0.5.txt",
        out,
        "--arch",
        "resnet18",
        "--num-classes",
        "10",
        "--data",
        f"imagefolder:{small_folder}",
        "--corruption",
        str(poisoned_run / "c" / "corruption.json"),
    )
    assert_refused(args, out, match="was made for data")


def test_index_file_for_other_data(plain_resnet18, poisoned_run, work, small_folder):
    """No metadata, no manifest: the index file's fingerprint header catches it."""
    _, out = work
    args = unlearn_args(
        plain_resnet18,
        poisoned_run / "c" / "forget-0.5.txt",
        out,
        "--arch",
        "resnet18",
        "--num-classes",
        "10",
        "--data",
        f"imagefolder:{small_folder}",
    )
    assert_refused(args, out, match="was written for data")


def test_weights_that_do_not_fit_the_arch(plain_resnet18, poisoned_run, work, cifar_spec):
    _, out = work
    args = unlearn_args(
        plain_resnet18,
        poisoned_run / "c" / "forget-0.5.txt",
        out,
        "--arch",
        "resnet34",
        "--num-classes",
        "10",
        "--data",
        cifar_spec,
        "--corruption",
        str(poisoned_run / "c" / "corruption.json"),
    )
    assert_refused(args, out, match="does not fit arch resnet34")


# --- output paths --------------------------------------------------------------------------


@pytest.fixture
def private_copy(poisoned_run, tmp_path) -> tuple[Path, Path]:
    """A copy of the model and index file, so a failing guard cannot damage the shared run."""
    model = tmp_path / "model.safetensors"
    forget = tmp_path / "forget.txt"
    shutil.copy(poisoned_run / "model.safetensors", model)
    shutil.copy(poisoned_run / "c" / "forget-0.5.txt", forget)
    return model, forget


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("spelling", ["same", "dotdot"])
def test_output_equal_to_the_input_checkpoint(private_copy, force, spelling):
    model, forget = private_copy
    digest = sha256_file(model)
    out = model if spelling == "same" else model.parent / ".." / model.parent.name / model.name
    args = unlearn_args(model, forget, out, *(["--force"] if force else []))
    assert_refused(args, model, match="is also an input", out_existed=True)
    assert sha256_file(model) == digest


def test_output_equal_to_the_index_file(private_copy):
    model, forget = private_copy
    digest = sha256_file(forget)
    assert_refused(unlearn_args(model, forget, forget, "--force"), forget, match="is also an input", out_existed=True)
    assert sha256_file(forget) == digest


def test_a_directory_as_output_is_refused_before_any_work_even_with_force(private_copy):
    """It used to fail only when the result was renamed onto it, after the whole run (exit 1)."""
    model, forget = private_copy
    out = model.parent / "results"
    out.mkdir()
    assert_refused(unlearn_args(model, forget, out, "--force"), out, match="is a directory", out_existed=True)
    assert list(out.iterdir()) == []


def test_existing_output_without_force(private_copy):
    model, forget = private_copy
    out = model.parent / "taken.safetensors"
    out.write_bytes(b"keep me")
    assert_refused(unlearn_args(model, forget, out), out, match="already exists", out_existed=True)
    assert out.read_bytes() == b"keep me"
