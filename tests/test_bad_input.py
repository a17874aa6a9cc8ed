"""Bad input: exit code 2, one line on stderr naming the problem, and no output written."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch
from typer.testing import CliRunner

from remcli.checkpoints import read_metadata, save_checkpoint
from remcli.cli.main import app
from remcli.models import build_model

runner = CliRunner()
TINY_TRAIN = ["--width", "0.25", "--epochs", "1", "--batch-size", "256", "--val-fraction", "0", "--device", "cpu", "--quiet"]


def invoke(args: list[str]):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "100"})


def assert_input_error(result, *needles: str, pattern: str | None = None) -> str:
    """Exit 2, exactly one non-empty stderr line starting with 'error:' that names the problem."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error, got {lines!r}"
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    if pattern:
        assert re.search(pattern, line), (pattern, line)
    assert "Traceback" not in result.output
    return line


@pytest.fixture(scope="module")
def model(poisoned_run) -> Path:
    return poisoned_run / "model.safetensors"


@pytest.fixture(scope="module")
def forget_half(poisoned_run) -> Path:
    return poisoned_run / "c" / "forget-0.5.txt"


# --- index files -------------------------------------------------------------------------------

INDEX_CASES = {
    "out-of-range": ("0\n5\n1000\n", ["index 1000 is outside the training split (0..999)", ":3:"]),
    "far-out-of-range": ("123456789\n", ["index 123456789 is outside the training split"]),
    "duplicate": ("# a comment\n4\n7\n4\n", ["repeats indices [4]"]),
    "negative": ("3\n-2\n", ["index -2 is negative", ":2:"]),
    "non-integer": ("3\n4.5\n", ["'4.5' is not an integer", ":2:"]),
    "word": ("3\nseven\n", ["'seven' is not an integer"]),
    "empty": ("", ["lists no samples"]),
    "comments-only": ("# nothing here\n\n", ["lists no samples"]),
}


@pytest.mark.parametrize("case", sorted(INDEX_CASES))
def test_bad_index_file(case, model, tmp_path):
    text, needles = INDEX_CASES[case]
    bad = tmp_path / f"{case}.txt"
    bad.write_text(text)
    out = tmp_path / "result.json"
    result = invoke(["evaluate", model, "--forget", bad, "--device", "cpu", "--json", out])
    assert_input_error(result, str(bad), *needles)
    assert not out.exists()
    assert result.stdout == ""


def test_missing_index_file(model, tmp_path):
    out = tmp_path / "result.json"
    result = invoke(["evaluate", model, "--forget", tmp_path / "nope.txt", "--device", "cpu", "--json", out])
    assert_input_error(result, "nope.txt", "not found")
    assert not out.exists()


def test_index_file_with_mismatched_fingerprint_header(model, forget_half, tmp_path):
    text = forget_half.read_text()
    real = re.search(r"^# fingerprint: (\S+)$", text, re.M).group(1)
    bad = tmp_path / "forget.txt"
    bad.write_text(text.replace(real, "sha256:" + "0" * 32))
    out = tmp_path / "result.json"
    result = invoke(["evaluate", model, "--forget", bad, "--device", "cpu", "--json", out])
    assert_input_error(result, "was written for data sha256:" + "0" * 32, real)
    assert not out.exists()


# --- manifests ---------------------------------------------------------------------------------


def test_manifest_with_mismatched_fingerprint(poisoned_run, cifar_spec, tmp_path):
    body = json.loads((poisoned_run / "c" / "corruption.json").read_text())
    real = body["fingerprint"]
    body["fingerprint"] = "sha256:" + "f" * 32
    bad = tmp_path / "corruption.json"
    bad.write_text(json.dumps(body))
    out = tmp_path / "m.safetensors"
    result = invoke(["train", "--data", cifar_spec, "--corruption", bad, "--out", out, *TINY_TRAIN])
    assert_input_error(result, str(bad), "sha256:" + "f" * 32, real)
    assert not out.exists()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_manifest_that_is_not_json(cifar_spec, tmp_path):
    bad = tmp_path / "corruption.json"
    bad.write_text("{ not json")
    out = tmp_path / "m.safetensors"
    result = invoke(["train", "--data", cifar_spec, "--corruption", bad, "--out", out, *TINY_TRAIN])
    assert_input_error(result, "not a valid corruption manifest")
    assert not out.exists()


# --- checkpoints -------------------------------------------------------------------------------


def test_unlearn_with_wrong_arch_for_bare_checkpoint(cifar_spec, tmp_path):
    """A resnet9 checkpoint without metadata, unlearned as --arch resnet18: names the mismatch."""
    bare = tmp_path / "bare.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in build_model("resnet9", 10, width=0.25).state_dict().items()}, str(bare))
    forget = tmp_path / "forget.txt"
    forget.write_text("1\n2\n3\n")
    out = tmp_path / "u.safetensors"
    result = invoke(
        [
            "unlearn",
            bare,
            "--arch",
            "resnet18",
            "--num-classes",
            "10",
            "--data",
            cifar_spec,
            "--forget",
            forget,
            "--out",
            out,
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert_input_error(result, "does not fit arch resnet18", "missing")
    assert not out.exists()


def test_checkpoint_shapes_do_not_match_recorded_arch(cifar_spec, tmp_path):
    """Metadata says resnet9 width 0.25, but the tensors are a width-0.5 resnet9."""
    path = tmp_path / "wrong.safetensors"
    save_checkpoint(
        path,
        build_model("resnet9", 10, width=0.5).state_dict(),
        {"arch": "resnet9", "arch_kwargs": {"width": 0.25}, "num_classes": 10, "input_shape": [3, 32, 32], "dataset": cifar_spec},
    )
    out = tmp_path / "result.json"
    result = invoke(["evaluate", path, "--device", "cpu", "--json", out])
    assert_input_error(result, "does not fit arch resnet9", "conv1.0.weight has shape [32, 3, 3, 3], expected [16, 3, 3, 3]")
    assert not out.exists()


def test_truncated_checkpoint(model, tmp_path):
    data = model.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "result.json"
    result = invoke(["evaluate", cut, "--device", "cpu", "--json", out])
    assert_input_error(result, str(cut), "not a readable safetensors file", "truncated")
    assert not out.exists()


def test_text_file_as_checkpoint(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("these are not weights\n" * 10)
    out = tmp_path / "result.json"
    result = invoke(["evaluate", text, "--device", "cpu", "--json", out])
    assert_input_error(result, str(text), "not a readable safetensors file")
    assert not out.exists()


def test_pth_given_to_evaluate_points_at_import(tmp_path):
    pth = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(2)}, pth)
    result = invoke(["evaluate", pth, "--device", "cpu"])
    assert_input_error(result, "remcli import")


def test_missing_checkpoint(tmp_path):
    result = invoke(["evaluate", tmp_path / "nope.safetensors", "--device", "cpu"])
    assert_input_error(result, "nope.safetensors", "not found")


def test_a_directory_or_device_as_checkpoint_says_what_it_is(tmp_path):
    assert_input_error(invoke(["inspect", tmp_path]), str(tmp_path), "is a directory, not a checkpoint file")
    assert_input_error(invoke(["inspect", "/dev/null"]), "/dev/null is not a regular file")


# --- datasets, archs ---------------------------------------------------------------------------


def test_missing_dataset_root_names_expected_files(tmp_path):
    out = tmp_path / "c"
    result = invoke(["corrupt", "cifar10:/nonexistent", "--kind", "label-noise", "--count", "5", "--out", out])
    assert_input_error(result, "/nonexistent", "does not exist", "cifar-10-batches-py", "data_batch_1")
    assert not out.exists()


def test_empty_dataset_root_names_expected_files(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    out = tmp_path / "c"
    result = invoke(["corrupt", f"mnist:{root}", "--kind", "label-noise", "--count", "5", "--out", out])
    assert_input_error(result, str(root), "MNIST/raw", "--download")
    assert not out.exists()


def test_unknown_dataset_spec_lists_valid_ones(tmp_path):
    out = tmp_path / "c"
    result = invoke(["corrupt", "imagenet:/data", "--kind", "label-noise", "--count", "5", "--out", out])
    line = assert_input_error(result, "'imagenet:/data'")
    for name in ("sample", "cifar10:ROOT", "cifar100:ROOT", "svhn:ROOT", "mnist:ROOT", "fashion-mnist:ROOT", "imagefolder:ROOT"):
        assert name in line, name
    assert not out.exists()


def test_unknown_arch_lists_valid_ones(cifar_spec, tmp_path):
    out = tmp_path / "m.safetensors"
    result = invoke(["train", "--data", cifar_spec, "--arch", "resnet1000", "--out", out, *TINY_TRAIN])
    assert_input_error(result, "'resnet1000'", "resnet9", "resnet18", "remcli archs")
    assert not out.exists()


# --- outputs -----------------------------------------------------------------------------------


def test_existing_output_needs_force(cifar_spec, tmp_path):
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"precious")
    result = invoke(["train", "--data", cifar_spec, "--out", out, *TINY_TRAIN])
    assert_input_error(result, str(out), "already exists", "--force")
    assert out.read_bytes() == b"precious"

    result = invoke(["train", "--data", cifar_spec, "--out", out, "--force", *TINY_TRAIN])
    assert result.exit_code == 0, result.output
    meta = read_metadata(out)
    assert meta["arch"] == "resnet9" and meta["arch_kwargs"] == {"width": 0.25}
    assert meta["history"][0]["command"] == "train" and meta["history"][0]["params"]["epochs"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_existing_corrupt_output_needs_force(cifar_spec, tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "corruption.json").write_text("old")
    result = invoke(["corrupt", cifar_spec, "--kind", "label-noise", "--count", "5", "--out", out])
    assert_input_error(result, "corruption.json", "already exists")
    assert (out / "corruption.json").read_text() == "old"
    assert sorted(p.name for p in out.iterdir()) == ["corruption.json"], "no index file may be written either"


def test_output_directory_missing(cifar_spec, tmp_path):
    out = tmp_path / "no" / "such" / "dir" / "m.safetensors"
    result = invoke(["train", "--data", cifar_spec, "--out", out, *TINY_TRAIN])
    assert_input_error(result, "does not exist")
    assert not out.parent.exists()


def test_unlearn_refuses_to_overwrite_its_input(model, forget_half, tmp_path):
    copy = tmp_path / "model.safetensors"
    shutil.copy(model, copy)
    before = copy.read_bytes()
    result = invoke(["unlearn", copy, "--forget", forget_half, "--out", copy, "--force", "--device", "cpu", "--quiet"])
    assert_input_error(result, "also an input")
    assert copy.read_bytes() == before


# --- evaluate gates and JSON -------------------------------------------------------------------


def test_fail_under_missed_exits_3(model):
    result = invoke(["evaluate", model, "--device", "cpu", "--fail-under", "utility=0.99"])
    assert result.exit_code == 3, result.output
    assert "missed 1 of 1 --gate/--fail-under gates: utility=" in result.stderr and "< 0.99" in result.stderr


def test_gate_ceiling_missed_exits_3_with_every_missed_gate_on_one_line(model):
    result = invoke(["evaluate", model, "--device", "cpu", "--json", "-", "--gate", "utility>=2,attack_success_rate<=-1", "--gate", "test_acc>=0"])
    assert result.exit_code == 3, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: missed 2 of 3 --gate/--fail-under gates: "), lines
    assert re.search(r"utility=[0-9.]+ < 2\.0, attack_success_rate=[0-9.]+ > -1\.0$", lines[0]), lines[0]
    payload = json.loads(result.stdout)  # the JSON is still written, with the gates
    assert payload["thresholds"]["required"] == {"utility": 2.0, "test_acc": 0.0}
    assert payload["thresholds"]["at_most"] == {"attack_success_rate": -1.0}
    assert len(payload["thresholds"]["missed"]) == 2


def test_gate_ceiling_met_exits_0(model):
    result = invoke(["evaluate", model, "--device", "cpu", "--json", "-", "--gate", "attack_success_rate<=1,utility>=0"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["thresholds"] == {"required": {"utility": 0.0}, "at_most": {"attack_success_rate": 1.0}, "missed": []}


def test_fail_under_met_exits_0_and_json_is_one_object(model):
    result = invoke(["evaluate", model, "--device", "cpu", "--fail-under", "utility=0.0", "--json", "-"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)  # raises if stdout holds anything besides one JSON document
    assert isinstance(payload, dict)
    assert result.stdout.strip().startswith("{") and result.stdout.strip().endswith("}")
    assert payload["schema_version"] == 1
    assert payload["thresholds"] == {"required": {"utility": 0.0}, "at_most": {}, "missed": []}
    metrics = payload["metrics"]
    for name in ("test_acc", "utility", "healed", "attack_success_rate", "triggered_test_acc", "utility_x_healed"):
        assert name in metrics and 0.0 <= metrics[name] <= 1.0, name
    assert metrics["utility_x_healed"] == pytest.approx(metrics["utility"] * metrics["healed"], abs=1e-5)
    assert payload["counts"]["test"] == 200 and payload["counts"]["corrupted"] == 150


def test_evaluate_json_stdout_without_gate(model, forget_half):
    result = invoke(["evaluate", model, "--device", "cpu", "--forget", forget_half, "--json", "-"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["schema_version"] == 1
    assert payload["counts"]["identified"] == 75 and payload["counts"]["identified_corrupted"] == 75
    assert payload["discovery_rate"] == 0.5


@pytest.mark.parametrize("gate", ["utility", "utility=high", "nosuchmetric=0.5", "utility>0.5", "attack_success_rate<=x"])
def test_fail_under_malformed_is_input_error(model, gate, tmp_path):
    out = tmp_path / "r.json"
    result = invoke(["evaluate", model, "--device", "cpu", "--fail-under", gate, "--json", out])
    assert_input_error(result, "--fail-under")
    assert not out.exists()


def test_archs_listing_names_what_the_unknown_arch_error_refers_to():
    result = invoke(["archs", "--json", "-"])
    assert result.exit_code == 0
    archs = json.loads(result.stdout)["archs"]
    for name in ("resnet9", "vit_cifar", "resnet18", "mobilenet_v3_small", "vit_b_16"):
        assert name in archs


# --- malformed option values (exit code contract: input errors are 2, never a traceback) ---------


def test_import_malformed_input_shape_is_input_error(tmp_path):
    source = tmp_path / "w.pth"
    torch.save(build_model("resnet9", 10, width=0.25).state_dict(), source)
    out = tmp_path / "w.safetensors"
    result = invoke(
        ["import", source, "--arch", "resnet9", "--num-classes", "10", "--arch-arg", "width=0.25", "--input-shape", "three,32,32", "--out", out]
    )
    assert_input_error(result, "--input-shape")
    assert not out.exists()


@pytest.mark.parametrize("count", ["0", "-3"])
def test_import_with_no_output_classes_is_input_error(count, tmp_path):
    """--num-classes below 1 reached the model constructor (a traceback for -3, a warning for 0)."""
    source = tmp_path / "w.pth"
    torch.save(build_model("resnet9", 10, width=0.25).state_dict(), source)
    out = tmp_path / "w.safetensors"
    result = invoke(["import", source, "--arch", "resnet9", "--num-classes", count, "--arch-arg", "width=0.25", "--out", out])
    assert_input_error(result, f"at least one output class, not {count}")
    assert not out.exists()


def test_non_numeric_width_arch_arg_is_input_error(cifar_spec, tmp_path):
    out = tmp_path / "m.safetensors"
    result = invoke(["train", "--data", cifar_spec, "--out", out, "--arch-arg", "width=wide", "--epochs", "1", "--device", "cpu", "--quiet"])
    assert_input_error(result, "width")
    assert not out.exists()


@pytest.mark.parametrize("edit", ["index-out-of-range", "label-out-of-range"])
def test_manifest_with_out_of_range_entries_is_input_error(edit, poisoned_run, cifar_spec, tmp_path):
    """The fingerprint matches, but the manifest body was edited: refused with exit 2, not a crash."""
    body = json.loads((poisoned_run / "c" / "corruption.json").read_text())
    if edit == "index-out-of-range":
        body["indices"][-1] = body["num_train"] + 4000
    else:
        body["new_labels"][0] = body["num_classes"] + 2
    bad = tmp_path / "corruption.json"
    bad.write_text(json.dumps(body))
    out = tmp_path / "m.safetensors"
    result = invoke(["train", "--data", cifar_spec, "--corruption", bad, "--out", out, *TINY_TRAIN])
    assert_input_error(result, str(bad))
    assert not out.exists()


def test_evaluate_against_a_missing_or_foreign_baseline_is_one_line(model, tmp_path):
    result = invoke(["evaluate", model, "--against", tmp_path / "nope.safetensors", "--device", "cpu"])
    assert_input_error(result, "nope.safetensors", "not found")
    weights = tmp_path / "other.safetensors"  # another architecture's tensors under the model's metadata: refused by name
    from safetensors.torch import save_file

    save_file({"fc.weight": torch.zeros(10, 4)}, str(weights))
    result = invoke(["evaluate", model, "--against", weights, "--device", "cpu", "--json", tmp_path / "r.json"])
    assert result.exit_code == 2 and not (tmp_path / "r.json").exists(), result.output
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
