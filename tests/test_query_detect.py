"""`remcli detect --query` and `--confused` on real models: from what a user saw (triggered test
images, two mixed-up classes) to the corrupted training samples, then unlearned and gated."""

from __future__ import annotations

import json
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
from tests.conftest import error_line, invoke

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
    assert summary["signal"] == "similarity" and summary["signal_chosen_by"] == "auto" and summary["labels_searched"] == [0]
    ckpt = load_checkpoint(model)
    dataset = resolve_inputs(ckpt, None, None).dataset
    candidates = read_index_file(out, len(dataset.train), dataset.fingerprint)
    recall = float(torch.isin(corrupted, candidates).float().mean())
    assert recall >= 0.8 and summary["ground_truth"]["recall"] == pytest.approx(recall, abs=1e-6)
    assert (dataset.train.labels[candidates] != 0).sum() >= 0.8 * len(corrupted)  # poison: other classes relabelled airplane
    notes = dict(line.split("  # ") for line in out.read_text().splitlines() if not line.startswith("#"))
    assert {notes[str(r["position"])] for r in summary["ranked"]} == {f"similarity {r['score']:.4f}" for r in summary["ranked"]}
    # the same images as a list file, label named: the same ranking
    listed = tmp_path / "queries.txt"
    listed.write_text("".join(f"{p}  # seen in production\n" for p in sorted(queries.iterdir())))
    again = detect_json(model, "--query", listed, "--query-label", "airplane", "--top", len(corrupted), "--out", tmp_path / "again.txt")
    assert again["ranked"] == summary["ranked"] and again["query"]["label_chosen_by"] == "--query-label"


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
    assert after["seen_wrong"] <= 0.25 and after["utility"] >= before["utility"] - 0.04, (before, after)
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
