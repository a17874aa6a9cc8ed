"""`remcli detect --query` and `--confused` on real models: from what a user saw (triggered test
images, two mixed-up classes) to the corrupted training samples, then unlearned and gated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from remcli.checkpoints import load_checkpoint
from remcli.data.index_files import read_index_file
from remcli.data.queries import load_queries
from remcli.detection.symptoms import misbehaving_test_images
from remcli.errors import InputError
from remcli.inputs import resolve_inputs
from tests.conftest import copy_imagefolder_subset, error_line, invoke

pytestmark = pytest.mark.slow  # every test reads a model trained for it (the poisoned fixture, a swapped one); one unlearns with REM


def save_images(images: torch.Tensor, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"q{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def poisoned(poisoned_run, tmp_path_factory):
    """(model path, trained corrupted positions, folder of 8 triggered test images it sends to the target)."""
    model = poisoned_run / "model.safetensors"
    ckpt = load_checkpoint(model)
    inputs = resolve_inputs(ckpt, None, None)
    corrupted = inputs.manifest.index_tensor[~torch.isin(inputs.manifest.index_tensor, ckpt.validation_indices)]
    queries = misbehaving_test_images(ckpt, inputs, 8)
    assert len(queries) == 8
    return model, corrupted, save_images(queries.images, tmp_path_factory.mktemp("seen") / "queries")


def detect_json(*args) -> dict:
    result = invoke(["detect", *args, "--device", "cpu", "--json", "-"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_query_finds_most_of_the_poison_from_eight_triggered_images(poisoned, tmp_path):
    model, corrupted, queries = poisoned
    out = tmp_path / "candidates.txt"
    summary = detect_json(model, "--query", queries, "--top", len(corrupted), "--out", out)
    assert summary["query"] == {"count": 8, "label": 0, "label_name": "airplane", "label_chosen_by": "majority prediction", "misbehaving": 8}
    assert summary["signal"] == "block-similarity" and summary["signal_chosen_by"] == "auto" and summary["labels_searched"] == [0]
    ckpt = load_checkpoint(model)
    dataset = resolve_inputs(ckpt, None, None).dataset
    candidates = read_index_file(out, len(dataset.train), dataset.fingerprint)
    recall = float(torch.isin(corrupted, candidates).float().mean())
    assert recall >= 0.8 and summary["ground_truth"]["recall"] == pytest.approx(recall, abs=1e-6)
    assert (dataset.train.labels[candidates] != 0).sum() >= 0.8 * len(corrupted)  # poison: other classes relabelled airplane
    notes = dict(line.split("  # ") for line in out.read_text().splitlines() if not line.startswith("#"))
    assert {notes[str(r["position"])] for r in summary["ranked"]} == {f"block-similarity {r['score']:.4f}" for r in summary["ranked"]}
    # the same images as a list file, label named: the same ranking
    listed = tmp_path / "queries.txt"
    listed.write_text("".join(f"{p}  # seen in production\n" for p in sorted(queries.iterdir())))
    again = detect_json(model, "--query", listed, "--query-label", "airplane", "--top", len(corrupted), "--out", tmp_path / "again.txt")
    assert again["ranked"] == summary["ranked"] and again["query"]["label_chosen_by"] == "--query-label"
    # the classifier's input alone (`--signal similarity`) searches the same label
    plain = detect_json(model, "--query", queries, "--signal", "similarity", "--top", len(corrupted), "--out", tmp_path / "plain.txt")
    assert plain["signal"] == "similarity" and plain["signal_chosen_by"] == "--signal" and plain["labels_searched"] == [0]
    assert plain["ground_truth"]["recall"] >= 0.5


def test_unlearning_the_query_candidates_removes_the_backdoor(poisoned, tmp_path):
    model, corrupted, queries = poisoned
    candidates, healed = tmp_path / "candidates.txt", tmp_path / "healed.safetensors"
    detect_json(model, "--query", queries, "--top", len(corrupted), "--out", candidates)
    unlearn = ["unlearn", model, "--forget", candidates, "--method", "rem", "--epochs", "3", "--batch-size", "64", "--device", "cpu", "--quiet"]
    assert invoke([*unlearn, "--out", healed]).exit_code == 0
    seen = ["--eval-set", f"seen={queries}?wrong=airplane", "--device", "cpu"]
    gates = "seen_wrong<=0.25,delta_seen_wrong<=-0.75,delta_attack_success_rate<=-0.5"
    result = invoke(["evaluate", healed, "--against", model, *seen, "--gate", gates, "--json", "-"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    before, after = payload["against"]["metrics"], payload["metrics"]
    assert before["seen_wrong"] == 1.0 and before["attack_success_rate"] > 0.5, before
    assert after["attack_success_rate"] <= before["attack_success_rate"] / 5, (before, after)
    # utility on the fixture's 200 test images (one image = 0.005): three iterations of REM's default (35 % of the retain
    # rows each) on this 33 %-accurate model cost 9 images in bf16 on an AVX512-BF16 CPU (0.335 -> 0.29) and 13 in fp32
    # on an AVX2 one (0.355 -> 0.29); a broken repair loses far more
    assert after["seen_wrong"] <= 0.25 and after["utility"] >= before["utility"] - 0.1, (before, after)
    assert "seen_wrong=" in error_line(invoke(["evaluate", healed, *seen, "--gate", "seen_wrong<=-1"]), 3)


@pytest.fixture(scope="module")
def interclass_run(cifar_spec, tmp_path_factory) -> Path:
    """20 of the 200 automobiles and frogs swapped (10 each way), a tiny model trained 5 epochs on them."""
    out = tmp_path_factory.mktemp("interclass")
    result = invoke(["corrupt", cifar_spec, "--kind", "interclass", "--classes", "1,6", "--count", "20", "--out", out / "c"])
    assert result.exit_code == 0, result.output
    tiny = ["--width", "0.25", "--epochs", "5", "--batch-size", "64", "--val-fraction", "0", "--device", "cpu", "--quiet"]
    result = invoke(["train", "--data", cifar_spec, "--corruption", out / "c" / "corruption.json", *tiny, "--out", out / "model.safetensors"])
    assert result.exit_code == 0, result.output
    return out


def test_confused_finds_more_of_a_swap_than_chance(interclass_run, tmp_path):
    summary = detect_json(interclass_run / "model.safetensors", "--confused", "automobile,6", "--top", "20", "--out", tmp_path / "c.txt")
    assert summary["confused"] == {"labels": [1, 6], "names": ["automobile", "frog"], "samples": [100, 100]}
    assert summary["signal"] == "label-quality" and summary["labels_searched"] == [1, 6]
    chance = 20 / 200  # 20 candidates drawn at random among the 200 automobiles and frogs find 2 of the 20 swapped
    assert summary["ground_truth"]["recall"] >= 3 * chance, summary["ground_truth"]
    assert all(0 <= r["score"] <= 1 for r in summary["ranked"])


def test_bad_queries_and_classes_are_one_line_errors(poisoned, tmp_path):
    model, _, queries = poisoned
    small = save_images(torch.zeros(3, 3, 16, 16, dtype=torch.uint8), tmp_path / "small")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "c.txt"
    cases = [
        (["--query", small, "--top", "5"], "are 16x16 but the model takes 32x32; add ?size=32"),
        (["--query", tmp_path / "empty", "--top", "5"], "holds no images"),
        (["--query", tmp_path / "missing", "--top", "5"], "does not exist"),
        (["--query", "/dev/null", "--top", "5"], "/dev/null is neither a folder nor a regular file"),
        (["--confused", "cat,dog", "--top", "0"], "--top 0 keeps nothing, and this start has no identified samples"),
        (["--confused", "cat,dog", "--threshold", "2"], "samples searched (best score"),
        (["--query", queries, "--threshold", "2"], "--threshold 2.0 keeps none of the"),
        (["--confused", "cat,dragon", "--top", "5"], "'dragon' is not a class of the training data"),
        (["--confused", "cat", "--top", "5"], "must name two classes"),
        (["--query", queries, "--signal", "label-quality", "--top", "5"], "unknown --query signal 'label-quality'"),
        (["--query", queries, "--confused", "cat,dog", "--top", "5"], "give exactly one of --forget FILE"),
        (["--top", "5"], "give exactly one of --forget FILE"),
    ]
    for args, needle in cases:
        assert needle in error_line(invoke(["detect", model, *args, "--out", out])), args
        assert not out.exists()
    resized = detect_json(model, "--query", f"{small}?size=32", "--top", "5", "--out", out)  # ?size=N: resized, then accepted
    assert resized["query"]["count"] == 3 and len(resized["ranked"]) == 5
    with pytest.raises(InputError, match="decode to 3 channels"):
        load_queries(str(queries), (1, 32, 32))  # an RGB image for a 1-channel model
    line = error_line(invoke(["evaluate", model, "--eval-set", f"seen={queries}?wrong=dragon"]))
    assert "'dragon' is not a class" in line


@pytest.fixture(scope="module")
def finetuned_swap(cifar_root, tmp_path_factory) -> tuple[Path, Path]:
    """(init, model): a tiny model pretrained on clean images 50-99 of every class, then fine-tuned
    (`train --init`, a new 2-class head) on automobile and frog images 0-49 with 10 of them swapped (5
    each way, 10 % of each class), until it fits the swapped labels (60 epochs: 40 fitted 0.9 of them in
    bf16 on an AVX512-BF16 CPU but 0.7 in fp32 on an AVX2 one; 60 fitted all 10 in both precisions)."""
    root = tmp_path_factory.mktemp("finetuned-swap")
    copy_imagefolder_subset(cifar_root, root / "pretrain", {"train": slice(50, 100), "test": slice(None)})
    copy_imagefolder_subset(cifar_root, root / "own", {"train": slice(0, 50), "test": slice(None)}, classes=("automobile", "frog"))
    tiny = ["--width", "0.25", "--batch-size", "64", "--val-fraction", "0", "--device", "cpu", "--quiet"]
    init, model = root / "init.safetensors", root / "model.safetensors"
    assert invoke(["train", "--data", f"imagefolder:{root / 'pretrain'}", *tiny, "--epochs", "8", "--out", init]).exit_code == 0
    own = f"imagefolder:{root / 'own'}"
    result = invoke(["corrupt", own, "--kind", "interclass", "--classes", "automobile,frog", "--count", "10", "--out", root / "c"])
    assert result.exit_code == 0, result.output
    result = invoke(["train", "--data", own, "--corruption", root / "c" / "corruption.json", "--init", init, *tiny, "--epochs", "60", "--out", model])
    assert result.exit_code == 0, result.output
    fitted = invoke(["evaluate", model, "--device", "cpu", "--json", "-"])
    assert json.loads(fitted.stdout)["metrics"]["corrupted_label_acc"] >= 0.9  # the swap is memorised
    return init, model


def test_confused_on_the_init_features_finds_a_memorised_swap(finetuned_swap, tmp_path):
    """`--features-from init`: the probe reads the pretrained model, which never saw the swapped labels
    (a different ranking, at least as much of the swap as the fine-tuned model's own features on this
    easy pair; on cats and dogs it finds far more: docs/detection.md); the summary names the init."""
    init, model = finetuned_swap
    own = detect_json(model, "--confused", "automobile,frog", "--top", "10", "--out", tmp_path / "own.txt")
    clean = detect_json(model, "--confused", "automobile,frog", "--features-from", "init", "--top", "10", "--out", tmp_path / "init.txt")
    assert "features_from" not in own
    hinted = invoke(["detect", model, "--confused", "automobile,frog", "--top", "10", "--out", tmp_path / "hint.txt"])
    assert "hint: this model was fine-tuned from" in hinted.stderr and "--features-from init" in hinted.stderr
    assert clean["features_from"] == {"path": str(init.resolve()), "sha256": load_checkpoint(init).sha256}
    chance = 10 / 100  # 10 drawn at random from the 100 automobiles and frogs find 1 of the 10 swapped
    assert clean["ground_truth"]["recall"] >= 3 * chance, (own["ground_truth"], clean["ground_truth"])
    assert clean["ground_truth"]["recall"] >= own["ground_truth"]["recall"], (own["ground_truth"], clean["ground_truth"])
    assert [r["position"] for r in clean["ranked"]] != [r["position"] for r in own["ranked"]]
    assert any(line.startswith("# remcli detect:") and "on the features of" in line for line in (tmp_path / "init.txt").read_text().splitlines())
    # the same file given by path; --forget starts read it too
    by_path = detect_json(model, "--confused", "automobile,frog", "--features-from", init, "--top", "10", "--out", tmp_path / "path.txt")
    assert by_path["ranked"] == clean["ranked"]
    forget = tmp_path / "found.txt"
    forget.write_text(f"{clean['ranked'][0]['position']}\n")
    found = detect_json(model, "--forget", forget, "--features-from", "init", "--signal", "label-quality", "--top", "5", "--out", tmp_path / "f.txt")
    assert found["features_from"]["path"] == str(init.resolve()) and found["selected"] == 5


def test_a_sweep_cell_detects_on_the_init_features(finetuned_swap, cifar_spec, tmp_path):
    """`confused-detect+METHOD` with detect_features=init: the sweep's models are fine-tuned from the
    init, and each cell's detection reads it (recorded); at the default the cell's config is what it
    was before the setting existed."""
    init, _ = finetuned_swap  # the sweep swaps cats and dogs: its data is all ten classes (the plumbing, not a clean split)
    grid = ["--data", cifar_spec, "--init", init, "--width", "0.25", "--count", "10", "--train-epochs", "1", "--train-batch-size", "64"]
    grid += ["--kinds", "interclass", "--discovery", "1.0", "--device", "cpu", "--methods", "confused-detect+ga,confused-detect+ga@init"]
    grid += ["--set", "confused-detect+ga.max_epochs=1", "--set", "confused-detect+ga@init.max_epochs=1"]
    result = invoke(["sweep", *grid, "--set", "confused-detect+ga@init.detect_features=init", "--out", tmp_path / "sweep"])
    assert result.exit_code == 0, result.output
    cells = tmp_path / "sweep" / "cells"
    read = json.loads((cells / "interclass-s0-confused-detect+ga@init-r1.0.json").read_text())
    plain = json.loads((cells / "interclass-s0-confused-detect+ga-r1.0.json").read_text())
    assert read["row"]["status"] == plain["row"]["status"] == "ok"
    assert read["detect"]["features_from"] == {"path": str(init.resolve()), "sha256": load_checkpoint(init).sha256}
    assert read["config"]["settings"]["detect_features"] == "init"
    assert "features_from" not in plain["detect"] and "detect_features" not in plain["config"]["settings"]


def test_features_from_bad_input_is_one_line(finetuned_swap, poisoned, tmp_path):
    init, model = finetuned_swap
    scratch, _, queries = poisoned
    out = tmp_path / "c.txt"
    cases = [
        ([scratch, "--confused", "cat,dog", "--features-from", "init"], "was not fine-tuned from a recorded init"),
        ([model, "--query", queries, "--features-from", "init"], "--features-from goes with --forget or --confused"),
        ([model, "--confused", "automobile,frog", "--features-from", tmp_path / "none.safetensors"], "none.safetensors"),
    ]
    for args, needle in cases:
        assert needle in error_line(invoke(["detect", *args, "--top", "5", "--out", out])), args
        assert not out.exists()
    moved = tmp_path / "model.safetensors"
    shutil.copy(model, moved)
    shutil.copy(init, tmp_path / "init-backup.safetensors")
    shutil.copy(scratch, init)  # another checkpoint where the recorded init was: refused by its sha256, never read
    try:
        line = error_line(invoke(["detect", moved, "--confused", "automobile,frog", "--features-from", "init", "--top", "5", "--out", out]))
        assert "put the original init back" in line and "read features from it" in line, line
    finally:
        shutil.copy(tmp_path / "init-backup.safetensors", init)
    assert not out.exists()
