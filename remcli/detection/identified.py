"""`detect()`: from the few corrupted samples a user found to the many they did not.

`auto` (the default) lets the identified samples choose: the signal under which held-out
identified samples rank highest among the other samples of their labels wins (`choose_signal`,
`signal_margin`); measured recall per kind and signal: docs/detection.md.

Candidates: the identified samples, always, plus the best-scored others (`top`) or every other with
a score >= `threshold` (in the chosen signal's range). Held-out validation samples (never trained
on) are never candidates.
"""

from __future__ import annotations

import time

import torch

from remcli import __version__
from remcli.checkpoints import Checkpoint
from remcli.data.manifest import ground_truth
from remcli.detection.candidates import Detection, check_selection, select_and_rank
from remcli.detection.features import source_record, trained_features
from remcli.detection.signals import DETECT_SIGNALS, held_out_percentiles
from remcli.errors import InputError
from remcli.inputs import RunInputs
from remcli.seeding import generator


def held_out_evidence(
    features: torch.Tensor, labels: torch.Tensor, identified: torch.Tensor, scores: dict[str, torch.Tensor], num_classes: int, seed: int = 0
) -> dict:
    """Each identified sample's percentile under each signal (None for a guided signal with one
    sample), in the order of the identified rows: what `signal_checks` averages and `signal_margin`
    pairs. For a guided signal (similarity) the identified set is split in two halves, each scored
    from the other half, so a sample never scores itself; `scores` holds the unguided signals
    (spectral, label-quality), ranked as they are."""
    rows = torch.nonzero(identified).flatten()
    others = ~identified & torch.isin(labels, labels[identified])
    halves = rows[torch.randperm(len(rows), generator=generator(seed, "detect/identified-halves"))].chunk(2)
    evidence: dict[str, torch.Tensor | None] = {}
    for entry in DETECT_SIGNALS.entries():
        if not entry.meta["guided"]:
            evidence[entry.name] = held_out_percentiles(scores[entry.name], identified, others)
            continue
        evidence[entry.name] = None
        if len(halves) == 2:
            percentiles = torch.zeros(len(rows))
            for held, source in ((halves[0], halves[-1]), (halves[-1], halves[0])):
                from_source = torch.zeros_like(identified)
                from_source[source] = True
                held_mask = torch.zeros_like(identified)
                held_mask[held] = True
                percentiles[torch.isin(rows, held)] = held_out_percentiles(entry.value(features, labels, from_source, num_classes), held_mask, others)
            evidence[entry.name] = percentiles
    return evidence


def checks_of(evidence: dict) -> dict:
    """Mean percentile per signal (1 = top, among the other samples of the identified samples'
    labels, for every signal alike; None where it could not be checked): what `auto` chooses by."""
    return {name: None if values is None else round(float(values.mean()), 4) for name, values in evidence.items()}


def signal_margin(evidence: dict, signal: str) -> dict:
    """How far `signal`'s check is ahead of the best other signal's, and whether that is within
    noise: the two are measured on the same identified samples, so the noise is twice the standard
    error of their paired per-sample difference (about a 95 % interval). A near-tie means the
    identified samples do not tell the two signals apart."""
    others = {name: values for name, values in evidence.items() if name != signal and values is not None}
    mine = evidence.get(signal)
    if mine is None or not others or len(mine) < 2:
        return {"signal_margin": None, "signal_runner_up": None, "signal_margin_noise": None, "signal_near_tie": False}
    runner_up = max(others, key=lambda name: float(others[name].mean()))
    diff = mine - others[runner_up]
    noise = 2 * float(diff.std()) / len(diff) ** 0.5
    margin = float(diff.mean())
    return {
        "signal_margin": round(margin, 4),
        "signal_runner_up": runner_up,
        "signal_margin_noise": round(noise, 4),
        "signal_near_tie": abs(margin) <= noise,
    }


def choose_signal(checks: dict) -> str:
    """`auto`'s choice: the signal whose check is highest, the earlier registered (similarity,
    spectral, label-quality) on a tie; similarity when it could not be checked (one identified
    sample is too little evidence to prefer another)."""
    if checks.get("similarity") is None:
        return "similarity"
    return max(DETECT_SIGNALS.names(), key=lambda name: checks[name])  # max keeps the first of equals


def detect(
    checkpoint: Checkpoint,
    inputs: RunInputs,
    identified: torch.Tensor,
    top: int | None = None,
    threshold: float | None = None,
    device: str = "auto",
    batch_size: int = 1024,
    signal: str = "auto",
    features_from: Checkpoint | None = None,
) -> Detection:
    """Rank every trained-on sample by `signal` (or the one `auto` chooses) and keep the identified
    plus `top` others (or every other scoring >= `threshold`); with a recorded corruption, report
    precision and recall. `features_from`: score on that model's features (`features.feature_model`)."""
    if signal != "auto":
        DETECT_SIGNALS.entry(signal)  # an unknown name: one line listing the valid ones
    check_selection(top, threshold)
    if len(identified) == 0:
        raise InputError("the index file lists no samples; detect starts from at least one identified sample")
    start = time.perf_counter()
    dataset, manifest = inputs.dataset, inputs.manifest
    trained = trained_features(checkpoint, inputs, device, batch_size, features_from=features_from)
    positions, features, labels = trained.positions, trained.features, trained.labels
    is_identified = torch.isin(positions, identified)
    classes = dataset.num_classes
    unguided = {e.name: e.value(features, labels, is_identified, classes) for e in DETECT_SIGNALS.entries() if not e.meta["guided"]}
    evidence = held_out_evidence(features, labels, is_identified, unguided, classes)
    checks = checks_of(evidence)
    chosen_by = "auto" if signal == "auto" else "--signal"
    if signal == "auto":
        signal = choose_signal(checks)
    scores = unguided[signal] if signal in unguided else DETECT_SIGNALS.get(signal)(features, labels, is_identified, classes)
    searchable = torch.ones_like(is_identified) if DETECT_SIGNALS.meta(signal)["all_labels"] else scores > -1

    others = torch.nonzero(~is_identified & searchable).flatten()
    chosen, ranked, score_stats = select_and_rank(scores, others, positions, dataset.train.paths, top, threshold)
    candidates = torch.sort(torch.cat([positions[is_identified], positions[chosen]])).values
    summary = {
        "remcli_version": __version__,
        "signal": signal,
        "signal_chosen_by": chosen_by,
        **source_record(features_from),
        "signal_checks": checks,
        **signal_margin(evidence, signal),
        "identified": len(identified),
        "selected": len(chosen),
        "candidates": len(candidates),
        "selection": {"top": top} if top is not None else {"threshold": threshold},
        "scores": score_stats,
        "labels_searched": sorted(int(v) for v in torch.unique(labels[searchable])),
        "wall_time_s": round(time.perf_counter() - start, 3),
    }
    trained_for = [h.get("wall_time_s") for h in checkpoint.meta.get("history", []) if h.get("command") == "train" and h.get("wall_time_s")]
    if trained_for:  # what detection cost against the recorded training run (a retrain costs about that)
        summary["wall_time_vs_training"] = round(summary["wall_time_s"] / trained_for[-1], 4)
    if manifest is not None:
        summary["ground_truth"] = ground_truth(manifest, positions, candidates, positions[chosen])
    return Detection(candidates, ranked, summary)
