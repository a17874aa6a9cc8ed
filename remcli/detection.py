"""`detect()`: from the few corrupted samples a user found to the many they did not.

Three signals, all computed from the classifier's input features (penultimate layer, eval mode,
images as trained: triggers on, labels as trained):

* `similarity` (representation similarity within a training label). Samples of one corruption
  share what made them corrupt: a trigger patch (poison) or a swapped concept (interclass), and
  the model was trained to give them all the same wrong label, so in feature space they sit
  together, apart from the clean samples of that label. Score: cosine similarity of a sample's
  features, centred on its label's mean, to the centroid of the identified samples with that
  label (-1 for labels no identified sample carries). Range [-1, 1].
* `spectral` (spectral signatures, Tran et al. 2018, for backdoors): within each label an
  identified sample carries, the squared projection of a sample's centred features on the label's
  top singular vector, divided by the label's largest. A trigger that makes up a few percent of
  its label is that label's strongest direction of variance, whether or not the identified samples
  point at it; it needs no identified direction, so it does not degrade when only one or two
  samples were found. Range [0, 1] (-1 for labels not searched).
* `label-quality` (how badly a sample's label fits the data around it). A mislabelled sample that
  shares no concept with other corrupted ones (random label noise) is still a sample whose label
  a model *not* trained on it would not predict. Out-of-sample probabilities come from a linear
  probe (multinomial logistic regression, L2-normalised features) fitted on 4 of 5 folds and
  applied to the fifth; the score is 1 - p(given label), the complement of cleanlab's default
  label-quality score (self-confidence). Range [0, 1]. Implemented here rather than through
  cleanlab: that score is one line once the out-of-fold probabilities exist, and cleanlab would
  bring scikit-learn and SciPy for it.

`auto` (the default) lets the identified samples choose: the signal under which held-out
identified samples rank highest among the other samples of their labels wins (`choose_signal`,
`signal_margin`); measured recall per kind and signal: docs/detection.md.

Candidates: the identified samples, always, plus the best-scored others (`top`) or every other with
a score >= `threshold` (in the chosen signal's range). Held-out validation samples (never trained
on) are never candidates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from remcli import __version__
from remcli.checkpoints import Checkpoint
from remcli.data.manifest import ground_truth
from remcli.data.pipeline import InputSpec
from remcli.data.views import as_trained_view
from remcli.engine import autocast, resolve_device, resolve_precision
from remcli.errors import InputError
from remcli.inputs import RunInputs
from remcli.models import input_spec
from remcli.seeding import generator

SIGNALS = ("auto", "similarity", "spectral", "label-quality")
PROBE_FOLDS = 5


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The last nn.Linear in module order: the classifier of every supported family."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError("detect needs a model whose last layer is a linear classifier; this one has no nn.Linear")
    return linears[-1]


@torch.no_grad()
def penultimate_features(model: nn.Module, batches, precision: str) -> torch.Tensor:
    """(N, D) float32 inputs of the classifier for every batch, in order (eval mode is the caller's)."""
    device = next(model.parameters()).device
    captured: list[torch.Tensor] = []
    handle = classifier_layer(model).register_forward_hook(lambda module, args, out: captured.append(args[0].detach().float().flatten(1)))
    try:
        for batch in batches:
            with autocast(device, precision):
                model(batch.inputs)
    finally:
        handle.remove()
    return torch.cat(captured).cpu() if captured else torch.empty(0, 0)


def similarity_scores(features: torch.Tensor, labels: torch.Tensor, identified: torch.Tensor) -> torch.Tensor:
    """Per training label that an identified row carries: centre the label's rows on their mean,
    then score each by the cosine similarity to the centroid of the label's identified rows; -1
    where no identified row has the label. `identified`: bool (N,)."""
    scores = torch.full((len(labels),), -1.0)
    for label in torch.unique(labels[identified]):
        rows = labels == label
        centred = F.normalize(features[rows] - features[rows].mean(dim=0, keepdim=True), dim=1)
        centroid = F.normalize(centred[identified[rows]].mean(dim=0), dim=0)
        scores[rows] = centred @ centroid
    return scores


def spectral_scores(features: torch.Tensor, labels: torch.Tensor, identified: torch.Tensor) -> torch.Tensor:
    """Spectral signatures (Tran et al., 2018) within each training label an identified row carries:
    centre the label's rows on their mean, take the top singular vector of the centred matrix,
    and score each row by its squared projection on it, divided by the label's largest (so in
    [0, 1]); -1 where no identified row has the label. Unlike `similarity_scores` it does not use
    the identified rows' direction: a poison that makes up a few percent of its label is the
    label's strongest direction of variance whether or not the user found any of it."""
    scores = torch.full((len(labels),), -1.0)
    for label in torch.unique(labels[identified]):
        rows = labels == label
        centred = features[rows] - features[rows].mean(dim=0, keepdim=True)
        if len(centred) < 2:
            scores[rows] = 1.0
            continue
        top = torch.linalg.svd(centred.double(), full_matrices=False).Vh[0]
        projection = (centred.double() @ top).square()
        scores[rows] = (projection / projection.max().clamp_min(1e-12)).float()
    return scores


def fit_linear_probe(x: torch.Tensor, labels: torch.Tensor, num_classes: int, weight_decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression (L2 penalty) fitted with L-BFGS: (weight (D, K), bias (K,))."""
    weight = torch.zeros(x.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=100, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = F.cross_entropy(x @ weight + bias, labels) + weight_decay * weight.square().sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(loss)
    return weight.detach(), bias.detach()


def label_quality_scores(features: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int = 0, weight_decay: float = 1e-3) -> torch.Tensor:
    """1 - out-of-fold p(given label) from a linear probe on L2-normalised features: each row's
    probability comes from a probe fitted on the other folds (fold of a row: seeded permutation)."""
    x = F.normalize(features.float(), dim=1)
    perm = torch.randperm(len(labels), generator=generator(seed, "detect/probe-folds"))
    fold = torch.empty_like(perm)
    fold[perm] = torch.arange(len(labels)) % PROBE_FOLDS
    probs = torch.zeros(len(labels))
    for k in range(PROBE_FOLDS):
        fit, held = fold != k, fold == k
        if not held.any() or not fit.any():
            continue
        weight, bias = fit_linear_probe(x[fit], labels[fit], num_classes, weight_decay)
        with torch.no_grad():
            probs[held] = F.softmax(x[held] @ weight + bias, dim=1).gather(1, labels[held, None]).squeeze(1)
    return 1.0 - probs


def held_out_percentiles(scores: torch.Tensor, held: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Percentile (1 = the top) of each `held` row's score among the `candidates` rows', in row
    order, ties counted half: a held-out sample tied with every unsearched label's -1 must not look
    well ranked."""
    pool = torch.sort(scores[candidates]).values
    if not held.any() or len(pool) == 0:
        return torch.zeros(int(held.sum()))
    below = (torch.searchsorted(pool, scores[held]) + torch.searchsorted(pool, scores[held], right=True)).float() / 2
    return below / len(pool)


def held_out_rank(scores: torch.Tensor, held: torch.Tensor, candidates: torch.Tensor) -> float:
    """Mean percentile of the `held` rows among the `candidates` (the AUC of held against candidates)."""
    percentiles = held_out_percentiles(scores, held, candidates)
    return float(percentiles.mean()) if len(percentiles) else 0.0


def held_out_evidence(features: torch.Tensor, labels: torch.Tensor, identified: torch.Tensor, scores: dict[str, torch.Tensor], seed: int = 0) -> dict:
    """Each identified sample's percentile under each signal (None for similarity with one sample),
    in the order of the identified rows: what `signal_checks` averages and `signal_margin` pairs.
    For `similarity` the identified set is split in two halves, each scored by the other half's
    centroids, so a sample never scores itself; `scores` holds the signals that do not use the
    identified rows' features (spectral, label-quality), ranked as they are."""
    rows = torch.nonzero(identified).flatten()
    others = ~identified & torch.isin(labels, labels[identified])
    halves = rows[torch.randperm(len(rows), generator=generator(seed, "detect/identified-halves"))].chunk(2)
    similarity = None
    if len(halves) == 2:
        similarity = torch.zeros(len(rows))
        for held, source in ((halves[0], halves[-1]), (halves[-1], halves[0])):
            from_source = torch.zeros_like(identified)
            from_source[source] = True
            held_mask = torch.zeros_like(identified)
            held_mask[held] = True
            similarity[torch.isin(rows, held)] = held_out_percentiles(similarity_scores(features, labels, from_source), held_mask, others)
    return {"similarity": similarity, **{name: held_out_percentiles(values, identified, others) for name, values in scores.items()}}


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
    """`auto`'s choice: the signal whose check is highest, the earlier of similarity, spectral,
    label-quality on a tie; similarity when it could not be checked (one identified sample is too
    little evidence to prefer another)."""
    if checks.get("similarity") is None:
        return "similarity"
    return max(SIGNALS[1:], key=lambda name: checks[name])  # max keeps the first of equals


def check_selection(top: int | None, threshold: float | None) -> None:
    """Exactly one of `top` (>= 0) and `threshold`: how many to keep, or how good a score must be."""
    if (top is None) == (threshold is None):
        raise InputError("give exactly one of --top N (how many more samples to keep) or --threshold T (a minimum score in [-1, 1])")
    if top is not None and top < 0:
        raise InputError(f"--top {top} must be >= 0")


@dataclass
class TrainedFeatures:
    """The model in eval mode and the classifier-input features of every trained-on sample
    (validation samples excluded: never trained on, never candidates), as trained."""

    model: nn.Module
    spec: InputSpec
    precision: str
    positions: torch.Tensor  # training positions of the rows
    features: torch.Tensor  # (N, D) float32, on the CPU
    labels: torch.Tensor  # the labels trained on, on the CPU


def trained_features(checkpoint: Checkpoint, inputs: RunInputs, device: str, batch_size: int) -> TrainedFeatures:
    dev = resolve_device(device)
    precision = resolve_precision("auto", dev, cpu_bf16=False)  # scores in fp32 on CPUs: exact and comparable
    model = checkpoint.build().to(dev).to(memory_format=torch.channels_last).eval()
    trained = torch.ones(len(inputs.dataset.train), dtype=torch.bool)
    trained[checkpoint.validation_indices] = False
    positions = torch.nonzero(trained).flatten()
    view = as_trained_view(inputs.dataset, inputs.manifest, positions, dev)
    spec = input_spec(inputs.dataset, checkpoint.arch or "")
    features = penultimate_features(model, view.batches(spec, batch_size), precision)
    return TrainedFeatures(model, spec, precision, positions, features, view.labels.cpu())


@dataclass
class Detection:
    """What `detect()` found: the samples to forget (the identified plus the detected), the detected
    ones ranked with their scores, and the summary `detect --json` prints."""

    candidates: torch.Tensor  # sorted training positions: identified ∪ selected others
    ranked: list[dict]  # the selected others, best first: position, score (and path for folders)
    summary: dict


def detect(
    checkpoint: Checkpoint,
    inputs: RunInputs,
    identified: torch.Tensor,
    top: int | None = None,
    threshold: float | None = None,
    device: str = "auto",
    batch_size: int = 1024,
    signal: str = "auto",
) -> Detection:
    """Rank every trained-on sample by `signal` (or the one `auto` chooses) and keep the identified
    plus `top` others (or every other scoring >= `threshold`); with a recorded corruption, report
    precision and recall."""
    if signal not in SIGNALS:
        raise InputError(f"unknown signal {signal!r}; use one of: {', '.join(SIGNALS)}")
    check_selection(top, threshold)
    if len(identified) == 0:
        raise InputError("the index file lists no samples; detect starts from at least one identified sample")
    start = time.perf_counter()
    dataset, manifest = inputs.dataset, inputs.manifest
    trained = trained_features(checkpoint, inputs, device, batch_size)
    positions, features, labels = trained.positions, trained.features, trained.labels
    is_identified = torch.isin(positions, identified)
    unguided = {
        "spectral": spectral_scores(features, labels, is_identified),
        "label-quality": label_quality_scores(features, labels, dataset.num_classes),
    }
    evidence = held_out_evidence(features, labels, is_identified, unguided)
    checks = checks_of(evidence)
    chosen_by = "auto" if signal == "auto" else "--signal"
    if signal == "auto":
        signal = choose_signal(checks)
    scores = similarity_scores(features, labels, is_identified) if signal == "similarity" else unguided[signal]
    searchable = scores > -1 if signal != "label-quality" else torch.ones_like(is_identified)

    others = torch.nonzero(~is_identified & searchable).flatten()
    chosen, ranked, score_stats = select_and_rank(scores, others, positions, dataset.train.paths, top, threshold)
    candidates = torch.sort(torch.cat([positions[is_identified], positions[chosen]])).values
    summary = {
        "remcli_version": __version__,
        "signal": signal,
        "signal_chosen_by": chosen_by,
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


def select_and_rank(scores, rows, positions, paths, top: int | None, threshold: float | None) -> tuple[torch.Tensor, list[dict], dict]:
    """Rows of `rows` kept by `--top` or `--threshold` (best first), their ranked entries for the
    index file and JSON, and the score summary: one selection for every start of `detect`."""
    order = rows[torch.argsort(scores[rows], descending=True, stable=True)]
    chosen = order[:top] if top is not None else order[scores[order] >= threshold]
    ranked = [
        {"position": int(positions[i]), "score": round(float(scores[i]), 6), **({"path": paths[int(positions[i])]} if paths else {})}
        for i in chosen.tolist()
    ]
    kept = scores[chosen]
    score_stats = {
        "selected_min": round(float(kept.min()), 6) if len(kept) else None,
        "selected_max": round(float(kept.max()), 6) if len(kept) else None,
        "others_median": round(float(scores[rows].median()), 6) if len(rows) else None,
    }
    return chosen, ranked, score_stats
