"""Broken inputs that used to pass, or die with a traceback, now stop with one line (issue 23):
non-finite checkpoints, unreadable images, imported models without class names, forget lists of
clean samples, forget-dependent gates without --forget; and what a checkpoint records (the
precision that ran, the dataset a candidates file names).

Real tiny data (a 100-image copy of the CIFAR-10 fixture), real files, the real CLI; no mocks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

from remcli.checkpoints import encode_metadata, read_metadata
from remcli.models import build_model
from tests.conftest import TINY_TRAIN, copy_imagefolder_subset, error_line, invoke

RESNET9 = ["--arch", "resnet9", "--arch-arg", "width=0.25", "--num-classes", "10"]


# --- non-finite checkpoints -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def nan_checkpoint(weights, small_root, tmp_path_factory) -> Path:
    """An imported model whose weights were then overwritten with NaN in two tensors (written with
    safetensors directly: remcli itself never writes one)."""
    folder = tmp_path_factory.mktemp("nan")
    good = folder / "good.safetensors"
    assert invoke(["import", weights, *RESNET9, "--out", good]).exit_code == 0
    state = safetensors.torch.load_file(str(good))
    names = [k for k, v in state.items() if v.is_floating_point()][:2]
    for name in names:
        state[name] = torch.full_like(state[name], float("nan"))
    path = folder / "nan.safetensors"
    meta = read_metadata(good) | {"dataset": f"imagefolder:{small_root}"}
    safetensors.torch.save_file(state, str(path), metadata=encode_metadata(meta))
    (folder / "forget.txt").write_text("0\n1\n2\n")
    return path


def test_a_nan_checkpoint_fails_evaluate_gate_unlearn_and_detect_naming_the_tensors(nan_checkpoint, tmp_path):
    forget = nan_checkpoint.parent / "forget.txt"
    names = [k for k, v in safetensors.torch.load_file(str(nan_checkpoint)).items() if not bool(torch.isfinite(v).all())]
    commands = {
        "evaluate": ["evaluate", nan_checkpoint, "--forget", forget, "--gate", "test_acc>=0.0", "--json", tmp_path / "e.json"],
        "unlearn": ["unlearn", nan_checkpoint, "--forget", forget, "--out", tmp_path / "u.safetensors"],
        "detect": ["detect", nan_checkpoint, "--forget", forget, "--top", "5", "--out", tmp_path / "d.txt"],
    }
    for command, args in commands.items():
        line = error_line(invoke([*args, "--device", "cpu"]), code=1)
        assert str(nan_checkpoint) in line and "NaN or inf" in line and "2 tensors" in line, (command, line)
        assert all(name in line for name in names), (command, line)
        assert "--lr" not in line, (command, line)
    assert not list(tmp_path.iterdir())  # nothing written, not even the JSON


def test_import_refuses_non_finite_weights_without_blaming_the_learning_rate(tmp_path):
    torch.manual_seed(0)
    state = build_model("resnet9", 10, 3, 32, width=0.25).state_dict()
    floats = [k for k, v in state.items() if v.is_floating_point()]
    for name in floats[:5]:
        state[name] = torch.full_like(state[name], float("inf"))
    torch.save(state, tmp_path / "broken.pth")
    line = error_line(invoke(["import", tmp_path / "broken.pth", *RESNET9, "--out", tmp_path / "m.safetensors"]), code=1)
    assert "NaN or inf" in line and "5 tensors" in line and "and 2 more" in line and floats[0] in line
    assert "nothing was trained" in line and "--lr" not in line
    assert not (tmp_path / "m.safetensors").exists()


def test_inspect_still_shows_a_non_finite_checkpoint(nan_checkpoint):
    result = invoke(["inspect", nan_checkpoint, "--blocks", "--json", "-"])
    assert result.exit_code == 0, result.output


# --- unreadable images ----------------------------------------------------------------------------


def add_unreadable_images(root: Path) -> list[str]:
    """A zero-byte file, a JPEG cut short in its pixel data (its header still reads), text saved as
    .jpg, and one more empty file: the paths, relative to root."""
    real = sorted((root / "train" / "cat").iterdir())[0].read_bytes()
    bad = {
        "train/cat/empty.jpg": b"",
        "train/dog/truncated.jpg": real[: len(real) - 150],
        "train/frog/notes.jpg": b"this is a text file, not an image\n",
        "train/ship/empty2.jpg": b"",
    }
    for rel, data in bad.items():
        (root / rel).write_bytes(data)
    return list(bad)


def test_unreadable_images_are_refused_by_index_and_train_naming_the_files(small_root, tmp_path):
    root = copy_imagefolder_subset(small_root, tmp_path / "ds", {"train": 10, "test": 4})
    add_unreadable_images(root)
    spec = f"imagefolder:{root}"
    for args in (["index", spec, "--out", tmp_path / "index.tsv"], ["train", "--data", spec, *TINY_TRAIN, "--out", tmp_path / "m.safetensors"]):
        line = error_line(invoke(args))
        assert "4 unreadable image files" in line and "and 1 more" in line and "remove or repair them" in line, line
        assert "train/cat/empty.jpg (empty file), train/dog/truncated.jpg (truncated or damaged" in line, line
        assert "train/frog/notes.jpg (not an image)" in line and "would shift the position" in line, line
    assert not (tmp_path / "index.tsv").exists() and not (tmp_path / "m.safetensors").exists()


def test_unreadable_images_in_a_streamed_folder_are_refused_before_or_when_decoded(small_root, tmp_path, monkeypatch):
    """Streamed, headers are read up front (empty and non-image files); a JPEG cut short in its
    pixels is found when its batch is decoded, in a DataLoader worker, and still ends in one line."""
    monkeypatch.setenv("REMCLI_DECODE_WORKERS", "1")
    root = copy_imagefolder_subset(small_root, tmp_path / "ds", {"train": 10, "test": 4})
    bad = add_unreadable_images(root)
    spec = f"imagefolder:{root}?stream"
    line = error_line(invoke(["index", spec]))
    assert "3 unreadable image files" in line and "train/cat/empty.jpg (empty file)" in line and "notes.jpg (not an image)" in line, line
    for rel in bad:
        if "truncated" not in rel:
            (root / rel).unlink()
    line = error_line(invoke(["train", "--data", spec, *TINY_TRAIN, "--out", tmp_path / "m.safetensors"]))
    assert "1 unreadable image file in a streamed batch" in line and "dog/truncated.jpg (truncated or damaged" in line, line
    assert "remove or repair it" in line and not (tmp_path / "m.safetensors").exists()


# --- what a checkpoint records ----------------------------------------------------------------------


def test_train_and_unlearn_history_record_the_precision_that_ran(small_run, tmp_path):
    train_step = read_metadata(small_run / "model.safetensors")["history"][-1]
    assert train_step["params"]["precision"] in ("bf16", "fp32")  # resolved on this machine, never "auto"
    out = tmp_path / "u.safetensors"
    result = invoke(
        ["unlearn", small_run / "model.safetensors", "--forget", small_run / "c" / "forget-0.5.txt", "--method", "finetune", "--epochs", "1"]
        + ["--device", "cpu", "--quiet", "--json", tmp_path / "u.json", "--out", out]
    )
    assert result.exit_code == 0, result.output
    unlearn_step = read_metadata(out)["history"][-1]
    summary = json.loads((tmp_path / "u.json").read_text())
    assert unlearn_step["precision"] == summary["precision"] and unlearn_step["precision"] in ("bf16", "fp32")
    fp32 = tmp_path / "fp32.safetensors"
    result = invoke(["train", "--data", read_metadata(out)["dataset"], *TINY_TRAIN, "--precision", "fp32", "--out", fp32])
    assert result.exit_code == 0, result.output
    assert read_metadata(fp32)["history"][-1]["params"]["precision"] == "fp32"


# --- import --classes ------------------------------------------------------------------------------

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_import_records_classes_and_a_folder_with_other_classes_is_refused(weights, small_root, tmp_path):
    out = tmp_path / "m.safetensors"
    result = invoke(["import", weights, *RESNET9, "--classes", ",".join(CIFAR_CLASSES), "--out", out])
    assert result.exit_code == 0, result.output
    assert read_metadata(out)["classes"] == CIFAR_CLASSES
    result = invoke(["evaluate", out, "--data", f"imagefolder:{small_root}", "--device", "cpu", "--json", "-"])
    assert result.exit_code == 0, result.output

    other = copy_imagefolder_subset(small_root, tmp_path / "other", {"train": 2, "test": 1})
    for split in ("train", "test"):
        (other / split / "cat").rename(other / split / "cheetah")  # same count, one other class name
    line = error_line(invoke(["evaluate", out, "--data", f"imagefolder:{other}", "--device", "cpu", "--gate", "test_acc>=0.0"]))
    assert "was imported with other class names" in line and "'cat' in the checkpoint but 'cheetah' in the data" in line and "--classes" in line, line


@pytest.mark.parametrize("classes", ["cat,dog", ",".join(CIFAR_CLASSES[:9] + ["cat"]), ",".join(CIFAR_CLASSES[:9] + [""])])
def test_import_classes_must_name_each_output_once(weights, tmp_path, classes):
    line = error_line(invoke(["import", weights, *RESNET9, "--classes", classes, "--out", tmp_path / "m.safetensors"]))
    assert "--classes" in line and "10 distinct comma-separated class names" in line, line
    assert not (tmp_path / "m.safetensors").exists()


# --- gates that need --forget ----------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["identified_corrupted_acc", "forget_recall"])
def test_a_forget_dependent_gate_without_forget_names_forget(small_run, metric):
    line = error_line(invoke(["evaluate", small_run / "model.safetensors", "--device", "cpu", "--gate", f"test_acc>=0.0,{metric}<=0.5"]))
    assert f" on {metric} needs --forget FILE" in line and "unknown metric" not in line, line


def test_a_corruption_dependent_gate_on_an_uncorrupted_model_names_the_manifest(weights, small_root, tmp_path):
    model = tmp_path / "m.safetensors"
    assert invoke(["import", weights, *RESNET9, "--out", model]).exit_code == 0
    line = error_line(invoke(["evaluate", model, "--data", f"imagefolder:{small_root}", "--device", "cpu", "--gate", "healed>=0.5"]))
    assert " on healed needs a corruption manifest (--corruption" in line, line


# --- forget lists: clean samples warned about, the recorded dataset used ----------------------------


def test_a_forget_list_of_clean_samples_is_warned_about_by_evaluate_and_unlearn(small_run, tmp_path):
    corrupted = [int(i) for i in json.loads((small_run / "c" / "corruption.json").read_text())["indices"]]
    clean = [i for i in range(100) if i not in corrupted][:5]
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("".join(f"{i}\n" for i in corrupted[:3] + clean))
    model = small_run / "model.safetensors"
    expected = "warning: 5 of 8 listed samples are not in the recorded corruption, so they are clean as far as it knows; "
    expected += f"check the --forget file {mixed}"
    for args in (["evaluate", model, "--json", tmp_path / "e.json"], ["unlearn", model, "--method", "finetune", "--epochs", "1", "--quiet"]):
        args += ["--forget", mixed, "--device", "cpu"] + (["--out", tmp_path / "u.safetensors"] if args[0] == "unlearn" else [])
        result = invoke(args)
        assert result.exit_code == 0, result.output
        assert [line for line in result.stderr.splitlines() if line.startswith("warning:")] == [expected], result.stderr
    result = invoke(["evaluate", model, "--forget", small_run / "c" / "forget-0.5.txt", "--device", "cpu", "--json", "-"])
    assert result.exit_code == 0 and "warning" not in result.stderr, result.output


def test_unlearn_of_an_imported_model_takes_the_dataset_a_candidates_file_records(weights, small_root, tmp_path):
    model, spec = tmp_path / "m.safetensors", f"imagefolder:{small_root}"
    assert invoke(["import", weights, *RESNET9, "--out", model]).exit_code == 0
    (tmp_path / "found.txt").write_text("train/cat/" + sorted(p.name for p in (small_root / "train" / "cat").iterdir())[0] + "\n")
    found = tmp_path / "found.txt"
    result = invoke(["detect", model, "--data", spec, "--forget", found, "--top", "3", "--device", "cpu", "--out", tmp_path / "c.txt"])
    assert result.exit_code == 0, result.output
    assert f"# dataset: {spec}" in (tmp_path / "c.txt").read_text()
    out = tmp_path / "h.safetensors"
    finetune = ["--method", "finetune", "--epochs", "1", "--device", "cpu", "--quiet"]
    result = invoke(["unlearn", model, "--forget", tmp_path / "c.txt", *finetune, "--out", out])
    assert result.exit_code == 0, result.output
    assert read_metadata(out)["dataset"] == spec
    result = invoke(["evaluate", model, "--forget", tmp_path / "c.txt", "--device", "cpu", "--json", "-"])
    assert result.exit_code == 0 and json.loads(result.stdout)["dataset"] == spec, result.output
    # without a recorded dataset anywhere, --data is still asked for
    line = error_line(invoke(["unlearn", model, "--forget", tmp_path / "found.txt", "--out", tmp_path / "x.safetensors"]))
    assert "records no dataset; pass --data" in line
