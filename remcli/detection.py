"""`detect()`: from the few corrupted samples a user found to the many they did not.

Signal: representation similarity within a training label. Samples of one corruption share what
made them corrupt: a trigger patch (poison) or a swapped concept (interclass), and the model was
trained to give all of them the same wrong label. In its penultimate features (the input of the
final linear classifier, eval mode, images as trained: triggers on) they therefore sit together,
apart from the clean samples of that label. A training sample's score is the cosine similarity of
its features to the centroid of the identified samples that carry the same training label;
a sample whose label no identified sample carries scores -1 (nothing points at it). Features are
centred on the mean of their label, so that cosine measures the direction away from the typical
(mostly clean) sample of that label.

Where it is weak: label noise (low regularity). Randomly relabelled samples share no concept, so
the identified ones say little about the rest; the measured recall is in the README.

Candidates: the identified samples, always, plus the best-scored others (`top`) or every other with
a score >= `threshold`. Held-out validation samples (never trained on) are never candidates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from remcli import __version__
from remcli.checkpoints import Checkpoint
from remcli.data.views import as_trained_view
from remcli.engine import autocast, resolve_device, resolve_precision
from remcli.errors import InputError
from remcli.inputs import RunInputs
from remcli.models import input_spec

SIGNAL = "representation-similarity"


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


@dataclass
class Detection:
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
) -> Detection:
    """Rank every trained-on sample by `SIGNAL` and keep the identified plus `top` others (or every
    other scoring >= `threshold`); with a recorded corruption, report precision and recall."""
    if (top is None) == (threshold is None):
        raise InputError("give exactly one of --top N (how many more samples to keep) or --threshold T (a minimum score in [-1, 1])")
    if top is not None and top < 0:
        raise InputError(f"--top {top} must be >= 0")
    if len(identified) == 0:
        raise InputError("the index file lists no samples; detect starts from at least one identified sample")
    start = time.perf_counter()
    dev = resolve_device(device)
    precision = resolve_precision("auto", dev, cpu_bf16=False)  # scores in fp32 on CPUs: exact and comparable
    dataset, manifest = inputs.dataset, inputs.manifest
    model = checkpoint.build().to(dev).to(memory_format=torch.channels_last).eval()
    trained = torch.ones(len(dataset.train), dtype=torch.bool)
    trained[checkpoint.validation_indices] = False
    positions = torch.nonzero(trained).flatten()
    view = as_trained_view(dataset, manifest, positions, dev)
    features = penultimate_features(model, view.batches(input_spec(dataset, checkpoint.arch or ""), batch_size), precision)
    is_identified = torch.isin(positions, identified)
    labels = view.labels.cpu()
    scores = similarity_scores(features, labels, is_identified)

    others = torch.nonzero(~is_identified & (scores > -1)).flatten()
    order = others[torch.argsort(scores[others], descending=True, stable=True)]
    chosen = order[:top] if top is not None else order[scores[order] >= threshold]
    candidates = torch.sort(torch.cat([positions[is_identified], positions[chosen]])).values
    paths = dataset.train.paths
    ranked = [
        {"position": int(positions[i]), "score": round(float(scores[i]), 6), **({"path": paths[int(positions[i])]} if paths else {})}
        for i in chosen.tolist()
    ]
    kept = scores[chosen]
    summary = {
        "remcli_version": __version__,
        "signal": SIGNAL,
        "identified": len(identified),
        "selected": len(chosen),
        "candidates": len(candidates),
        "selection": {"top": top} if top is not None else {"threshold": threshold},
        "scores": {
            "selected_min": round(float(kept.min()), 6) if len(kept) else None,
            "selected_max": round(float(kept.max()), 6) if len(kept) else None,
            "others_median": round(float(scores[others].median()), 6) if len(others) else None,
        },
        "labels_searched": sorted(int(v) for v in torch.unique(labels[is_identified])),
        "wall_time_s": round(time.perf_counter() - start, 3),
    }
    trained_for = [h.get("wall_time_s") for h in checkpoint.meta.get("history", []) if h.get("command") == "train" and h.get("wall_time_s")]
    if trained_for:  # what detection cost against the recorded training run (a retrain costs about that)
        summary["wall_time_vs_training"] = round(summary["wall_time_s"] / trained_for[-1], 4)
    if manifest is not None:  # ground truth: the recorded corruption, as trained on
        corrupted = manifest.index_tensor[torch.isin(manifest.index_tensor, positions)]
        hits = int(torch.isin(candidates, corrupted).sum())
        summary["ground_truth"] = {
            "corrupted": len(corrupted),
            "precision": round(hits / max(len(candidates), 1), 6),
            "recall": round(hits / max(len(corrupted), 1), 6),
            "found_beyond_identified": int(torch.isin(positions[chosen], corrupted).sum()),
        }
    return Detection(candidates, ranked, summary)
