"""`remcli detect` on a real poisoned model: from 10 % of the poison to most of it."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from remcli.checkpoints import load_checkpoint
from remcli.cli.main import app
from remcli.data import identified_at
from remcli.data.index_files import read_index_file
from remcli.data.manifest import load_manifest
from remcli.detection.identified import choose_signal
from remcli.detection.signals import held_out_rank, label_quality_scores, similarity_scores, spectral_scores
from remcli.inputs import resolve_inputs

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def found(poisoned_run, tmp_path_factory):
    """10 % of the poison, as a user would list it (positions, one per line)."""
    manifest = load_manifest(poisoned_run / "c" / "corruption.json")
    path = tmp_path_factory.mktemp("found") / "found.txt"
    path.write_text("\n".join(str(i) for i in identified_at(manifest, 0.1).tolist()) + "\n")
    return path


def test_similarity_ranks_a_shared_direction_first():
    features = torch.tensor([[0.0, 0.0], [1.0, 0.1], [0.9, -0.1], [-1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    labels = torch.tensor([0, 0, 0, 0, 0, 1])
    identified = torch.tensor([False, True, False, False, False, False])
    scores = similarity_scores(features, labels, identified)
    assert scores[5] == -1  # no identified sample carries label 1
    assert scores[2] > scores[4] > scores[3]  # same direction as the identified sample first


def test_spectral_ranks_a_label_s_strongest_direction_first_without_the_identified_direction():
    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(60, 4, generator=gen) * 0.3
    shifted = torch.randn(6, 4, generator=gen) * 0.3 + torch.tensor([0.0, 0.0, 3.0, 0.0])  # a trigger: 10 % of the label
    features = torch.cat([clean, shifted, torch.randn(10, 4, generator=gen)])
    labels = torch.tensor([0] * 66 + [1] * 10)
    identified = torch.zeros(76, dtype=torch.bool)
    identified[0] = True  # a clean sample of label 0: the direction comes from the label, not from it
    scores = spectral_scores(features, labels, identified)
    assert set(torch.argsort(scores, descending=True)[:6].tolist()) == set(range(60, 66))
    assert (scores[66:] == -1).all() and scores[:66].max() == 1 and (scores[:66] >= 0).all()


def test_auto_chooses_the_best_checked_signal_and_similarity_on_ties_or_one_sample():
    assert choose_signal({"similarity": 0.9, "spectral": 0.8, "label-quality": 0.5}) == "similarity"
    assert choose_signal({"similarity": 0.7, "spectral": 0.95, "label-quality": 0.5}) == "spectral"
    assert choose_signal({"similarity": 0.6, "spectral": 0.6, "label-quality": 0.6}) == "similarity"
    assert choose_signal({"similarity": None, "spectral": 0.99, "label-quality": 0.9}) == "similarity"


def test_label_quality_flags_a_label_its_neighbourhood_contradicts():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])
    labels = torch.arange(3).repeat_interleave(40)
    features = centres[labels] + torch.randn(120, 3, generator=gen)
    noisy = labels.clone()
    noisy[[0, 41, 82]] = torch.tensor([1, 2, 0])  # three samples carry another cluster's label
    scores = label_quality_scores(features, noisy, 3)
    assert set(torch.argsort(scores, descending=True)[:3].tolist()) == {0, 41, 82}
    assert ((scores >= 0) & (scores <= 1)).all()


def test_held_out_rank_is_the_mean_percentile_among_the_candidates():
    scores = torch.tensor([0.9, 0.1, 0.2, 0.3, 0.4, 0.5])
    held = torch.tensor([True, False, False, False, False, False])
    assert held_out_rank(scores, held, ~held) == 1.0  # above all five others
    assert held_out_rank(torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4, 0.5]), held, ~held) == 0.0
    assert held_out_rank(torch.tensor([-1.0, -1.0, -1.0, -1.0, 0.4, 0.5]), held, ~held) == pytest.approx(0.3)  # tied with 3 of 5: half credit


@pytest.mark.parametrize("signal", ["label-quality", "spectral"])
@pytest.mark.slow
def test_signal_on_request(poisoned_run, found, tmp_path, signal):
    result = invoke(
        "detect",
        poisoned_run / "model.safetensors",
        "--forget",
        found,
        "--signal",
        signal,
        "--top",
        "10",
        "--out",
        tmp_path / "c.txt",
        "--json",
        "-",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["signal"] == signal and len(summary["ranked"]) == 10
    assert all(0 <= r["score"] <= 1 for r in summary["ranked"])
    assert set(summary["signal_checks"]) == {"similarity", "spectral", "label-quality"}
    assert len(summary["labels_searched"]) == (10 if signal == "label-quality" else 1)  # every label, or the target's
    bad = invoke("detect", poisoned_run / "model.safetensors", "--forget", found, "--signal", "loss", "--top", "1", "--out", tmp_path / "d.txt")
    assert bad.exit_code == 2 and "unknown signal 'loss'" in bad.output and not (tmp_path / "d.txt").exists()


@pytest.mark.slow
def test_detect_finds_most_of_the_poison_from_ten_percent(poisoned_run, found, tmp_path):
    manifest = load_manifest(poisoned_run / "c" / "corruption.json")
    ckpt = load_checkpoint(poisoned_run / "model.safetensors")
    corrupted = manifest.index_tensor[~torch.isin(manifest.index_tensor, ckpt.validation_indices)]
    identified = identified_at(manifest, 0.1)
    top = len(corrupted) - len(identified)  # K = the true corrupted count, identified included
    out = tmp_path / "candidates.txt"
    result = invoke("detect", poisoned_run / "model.safetensors", "--forget", found, "--top", top, "--out", out, "--device", "cpu", "--json", "-")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # the identified samples chose the signal: held-out ones rank near the top by similarity
    assert summary["signal"] == "similarity" and summary["identified"] == len(identified)
    assert len(summary["labels_searched"]) == 1  # the poison's target label, the only one the identified samples carry
    assert summary["signal_checks"]["similarity"] > summary["signal_checks"]["label-quality"]
    # a clear lead: the margin over the runner-up is beyond its noise, and nothing is warned about
    assert summary["signal_margin"] > summary["signal_margin_noise"] > 0 and not summary["signal_near_tie"]
    assert summary["signal_runner_up"] in ("spectral", "label-quality") and "warning" not in result.stderr
    # a valid index file that unlearn reads, identified samples included, no validation samples
    inputs = resolve_inputs(ckpt, None, None)
    candidates = read_index_file(out, len(inputs.dataset.train), inputs.dataset.fingerprint)
    assert len(candidates) == len(corrupted) and torch.isin(identified, candidates).all()
    notes = dict(line.split("  # ") for line in out.read_text().splitlines() if not line.startswith("#"))
    assert all(notes[str(i)] == "identified" for i in identified.tolist())
    assert {notes[str(r["position"])] for r in summary["ranked"]} == {f"similarity {r['score']:.4f}" for r in summary["ranked"]}
    assert not torch.isin(candidates, ckpt.validation_indices).any()
    recall = float(torch.isin(corrupted, candidates).float().mean())
    assert recall >= 0.8, summary
    assert summary["ground_truth"]["recall"] == pytest.approx(recall, abs=1e-6)
    ranked = summary["ranked"]
    assert len(ranked) == top and all(a["score"] >= b["score"] for a, b in zip(ranked, ranked[1:]))
    assert "precision" in result.stderr and str(out) in result.stderr
    assert 0 < summary["wall_time_vs_training"] < 1  # forward passes only: a fraction of the training run
    # evaluate reports the same quality of the candidate list
    evaluated = invoke("evaluate", poisoned_run / "model.safetensors", "--forget", out, "--json", "-")
    metrics = json.loads(evaluated.stdout)["metrics"]
    assert metrics["forget_precision"] == pytest.approx(summary["ground_truth"]["precision"], abs=1e-6)
    assert metrics["forget_recall"] == pytest.approx(recall, abs=1e-6)


@pytest.mark.slow
def test_auto_warns_when_its_choice_is_within_noise_of_another_signal(poisoned_run, tmp_path):
    """Clean samples listed as 'found' share nothing: no signal ranks them well, auto's choice is a
    coin toss, and it says so on stderr and in the JSON, naming the signal to compare with."""
    manifest = load_manifest(poisoned_run / "c" / "corruption.json")
    clean = [i for i in range(0, 1000, 7) if i not in set(manifest.indices)][:40]
    found_clean = tmp_path / "clean.txt"
    found_clean.write_text("\n".join(map(str, clean)) + "\n")
    result = invoke("detect", poisoned_run / "model.safetensors", "--forget", found_clean, "--top", "5", "--out", tmp_path / "c.txt", "--json", "-")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["signal_near_tie"] and abs(summary["signal_margin"]) <= summary["signal_margin_noise"]
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and f"--signal {summary['signal_runner_up']}" in warning[0] and "within noise" in warning[0]
    forced = invoke(
        "detect", poisoned_run / "model.safetensors", "--forget", found_clean, "--signal", summary["signal_runner_up"], "--top", "5",
        "--out", tmp_path / "d.txt", "--json", "-",
    )  # fmt: skip
    assert forced.exit_code == 0 and "warning" not in forced.stderr  # a forced signal is the user's choice: no warning
    assert json.loads(forced.stdout)["signal"] == summary["signal_runner_up"]


@pytest.mark.slow
def test_threshold_keeps_every_sample_above_it(poisoned_run, found, tmp_path):
    result = invoke("detect", poisoned_run / "model.safetensors", "--forget", found, "--threshold", "0.5", "--out", tmp_path / "c.txt", "--json", "-")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert all(r["score"] >= 0.5 for r in summary["ranked"]) and summary["selection"] == {"threshold": 0.5}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "give exactly one of --top N"),
        (["--top", "5", "--threshold", "0.1"], "give exactly one of --top N"),
        (["--top", "-1"], "--top -1 must be >= 0"),
    ],
)
def test_bad_selection_is_a_one_line_error(poisoned_run, found, tmp_path, args, needle):
    out = tmp_path / "c.txt"
    result = invoke("detect", poisoned_run / "model.safetensors", "--forget", found, *args, "--out", out)
    assert result.exit_code == 2 and needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_detect_never_overwrites_its_input(poisoned_run, found):
    result = invoke("detect", poisoned_run / "model.safetensors", "--forget", found, "--top", "3", "--out", found, "--force")
    assert result.exit_code == 2 and "input" in result.stderr
