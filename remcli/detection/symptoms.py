"""Detection that starts from what the user saw, not from training samples they identified.

Two starting points, each ranking the trained-on samples (validation samples are never
candidates) with a signal built on the features of `features.py`:

* `detect_from_queries`: test-time images that misbehave (a sticker that turns everything into
  "airplane"). The label they wrongly get (`--query-label`, else the model's majority prediction
  on them) is where the corruption put its samples, and what makes the queries misbehave is what
  those samples share: in the classifier's input features both sit along one direction away from
  the label's clean samples. Signals, searched only within that label:
  - `block-similarity` (the default): `similarity` on every block's output, not only the
    classifier's input: each block's pooled features (`features.model_features`), centred on the
    label's mean and scaled to unit length, side by side, so every block weighs the same. A trigger
    is a low-level pattern the early blocks see wherever the later ones have spread the samples
    apart; recall from 8 triggered images rose from 0.73 to 0.84 over nine poisoned models
    (docs/detection.md). Range [-1, 1].
  - `similarity`: cosine of each sample's classifier-input features, centred on the label's mean,
    to the direction the misbehaving queries point at (`query_similarity`): `signals.py`'s
    `similarity` with the queries nominating the identified samples. Range [-1, 1].
  - `spectral`: spectral signatures within the label (`signals.spectral_scores`); it ignores the
    queries' direction. Range [0, 1].
  Only queries the model does put in the label feed the centroid: a query the model gets right
  says nothing about what the corruption taught it. A last-layer TracIn product
  ((p - onehot) x features, query against sample) was measured and not kept: a memorised sample's
  gradient is near zero, so it ranks the corrupted samples low (recall 0.27-0.33 against 0.83
  for `similarity` on the fine-tuned poison models).
* `detect_confused`: two classes the model mixes up (`--confused cat,dog`). Signal
  `label-quality`: a binary linear probe on the two classes' samples, fitted out of fold
  (`signals.label_quality_scores`), scores each sample by p(the other class): a swapped dog
  labelled cat looks like the dogs to a probe that was not fitted on it. Range [0, 1].

`auto` has no identified samples to hold out, so it cannot check signals against them as
`identified.detect` does; it takes the signal measured best for each starting point
(docs/detection.md): `block-similarity` for queries, `label-quality` (the only one) for a pair.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from remcli import __version__
from remcli.checkpoints import Checkpoint
from remcli.data.datasets import Split
from remcli.data.manifest import ground_truth
from remcli.data.pipeline import stamp_trigger
from remcli.data.views import clean_view
from remcli.detection.candidates import Detection, check_selection, select_and_rank
from remcli.detection.features import TrainedFeatures, model_features, source_record, trained_features
from remcli.detection.signals import PROBE_FOLDS, label_quality_scores, spectral_scores
from remcli.engine import predict, resolve_device, resolve_precision
from remcli.errors import InputError
from remcli.inputs import RunInputs
from remcli.models import input_spec
from remcli.registry import Registry
from remcli.seeding import generator

QueryScore = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (features, label rows, query features) -> scores
QUERY_SIGNALS = Registry[QueryScore]("--query signal", hint="or auto")  # meta `blocks`: reads `side_by_side` block features
ConfusedScore = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]  # (features of the pair's rows, 1 = second class, seed) -> scores
CONFUSED_SIGNALS = Registry[ConfusedScore]("--confused signal", hint="or auto")
AUTO = {"query": "block-similarity", "confused": "label-quality"}


def side_by_side(blocks: list[torch.Tensor], rows: torch.Tensor, queries: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(samples, queries): each block's features centred on the mean of the `rows` and scaled to unit
    length, concatenated, so that every block counts the same in a cosine over all of them."""
    centres = [block[rows].mean(dim=0, keepdim=True) for block in blocks]
    return tuple(torch.cat([F.normalize(part - centre, dim=1) for part, centre in zip(parts, centres)], dim=1) for parts in (blocks, queries))


@QUERY_SIGNALS.register("block-similarity", blocks=True)
def query_block_similarity(features: torch.Tensor, rows: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """`similarity` on the blocks' features side by side (`side_by_side`)."""
    return query_similarity(features, rows, queries)


@QUERY_SIGNALS.register("similarity", blocks=False)
def query_similarity(features: torch.Tensor, rows: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Centred cosine of the `rows` to a direction the queries point at; -1 elsewhere. Two steps:
    the queries' mean centred, normalised direction nominates as many training rows as there are
    queries (the rows most like them), and those rows' direction ranks every row. Test-time images
    are not what the model trained on; the nominated rows are, so their direction fits the
    corrupted training rows better (recall 0.77 -> 0.87 on the fine-tuned poison models,
    docs/detection.md)."""
    centre = features[rows].mean(dim=0, keepdim=True)
    centred = F.normalize(features[rows] - centre, dim=1)
    nominated = torch.topk(centred @ F.normalize(F.normalize(queries - centre, dim=1).mean(dim=0), dim=0), min(len(queries), len(centred))).indices
    scores = torch.full((len(features),), -1.0)
    scores[rows] = centred @ F.normalize(centred[nominated].mean(dim=0), dim=0)
    return scores


@QUERY_SIGNALS.register("spectral", blocks=False)
def query_spectral(features: torch.Tensor, rows: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Spectral signatures within the `rows` (one label); the queries are not used."""
    return spectral_scores(features, rows.long(), rows)


@CONFUSED_SIGNALS.register("label-quality")
def confused_label_quality(features: torch.Tensor, other: torch.Tensor, seed: int) -> torch.Tensor:
    """p(other class) from an out-of-fold binary probe; `other` is 1 for rows of the second class."""
    return label_quality_scores(features, other, 2, seed)


def resolve_signal(signal: str, start: str) -> tuple[str, str]:
    """(the signal to use, who chose it): `auto` -> the measured best for this starting point."""
    if signal == "auto":
        return AUTO[start], "auto"
    registry = QUERY_SIGNALS if start == "query" else CONFUSED_SIGNALS
    registry.entry(signal)  # an unknown name: one line listing the valid ones
    return signal, "--signal"


def detect_from_queries(
    checkpoint: Checkpoint,
    inputs: RunInputs,
    queries: Split,
    query_label: int | None = None,
    top: int | None = None,
    threshold: float | None = None,
    device: str = "auto",
    batch_size: int = 1024,
    signal: str = "auto",
) -> Detection:
    """Rank the samples trained with the queries' wrong label by how much they share what the
    misbehaving queries share; keep `top` (or every one scoring >= `threshold`)."""
    signal, chosen_by = resolve_signal(signal, "query")
    check_selection(top, threshold, identified=False)
    start = time.perf_counter()
    blocks = QUERY_SIGNALS.meta(signal)["blocks"]
    trained = trained_features(checkpoint, inputs, device, batch_size, blocks)
    view = clean_view(queries, None, next(trained.model.parameters()).device)
    query_features = model_features(trained.model, view.batches(trained.spec, batch_size), trained.precision, blocks)
    predicted = predict(trained.model, view.batches(trained.spec, batch_size), trained.precision).cpu()
    classes = inputs.dataset.classes
    label = int(torch.bincount(predicted, minlength=len(classes)).argmax()) if query_label is None else query_label
    misbehaving = predicted == label
    if not misbehaving.any():
        raise InputError(
            f"none of the {len(predicted)} query images is predicted as {classes[label]!r}, so they show nothing to search for; "
            f"drop --query-label (the model's majority prediction on them is {classes[int(torch.bincount(predicted).argmax())]!r})"
        )
    rows = trained.labels == label
    if not rows.any():
        raise InputError(f"no trained-on sample is labelled {classes[label]!r}; give the --query-label the queries wrongly get")
    if blocks:
        features, query_rows = side_by_side(trained.blocks, rows, [part[misbehaving] for part in query_features])
    else:
        features, query_rows = trained.features, query_features[-1][misbehaving]
    scores = QUERY_SIGNALS.get(signal)(features, rows, query_rows)
    about = {
        "query": {
            "count": len(predicted),
            "label": label,
            "label_name": classes[label],
            "label_chosen_by": "--query-label" if query_label is not None else "majority prediction",
            "misbehaving": int(misbehaving.sum()),
        }
    }
    return finish(inputs, trained, scores, rows, top, threshold, signal, chosen_by, start, about)


def detect_confused(
    checkpoint: Checkpoint,
    inputs: RunInputs,
    pair: tuple[int, int],
    top: int | None = None,
    threshold: float | None = None,
    device: str = "auto",
    batch_size: int = 1024,
    signal: str = "auto",
    seed: int = 0,
    features_from: Checkpoint | None = None,
) -> Detection:
    """Rank the samples trained with label A or B by how strongly an out-of-fold probe places them
    in the other one; keep `top` (or every one scoring >= `threshold`). `features_from`: probe that
    model's features (`features.feature_model`), e.g. the pretrained init of a fine-tuned model."""
    signal, chosen_by = resolve_signal(signal, "confused")
    check_selection(top, threshold, identified=False)
    if pair[0] == pair[1]:
        raise InputError(f"--confused names {inputs.dataset.classes[pair[0]]!r} twice; give two different classes, e.g. --confused cat,dog")
    start = time.perf_counter()
    trained = trained_features(checkpoint, inputs, device, batch_size, features_from=features_from)
    rows = torch.isin(trained.labels, torch.tensor(pair))
    counts = [int((trained.labels == c).sum()) for c in pair]
    if min(counts) < PROBE_FOLDS:
        small = inputs.dataset.classes[pair[counts.index(min(counts))]]
        raise InputError(f"--confused: only {min(counts)} trained-on samples are labelled {small!r}; the probe needs {PROBE_FOLDS} per class")
    scores = torch.full((len(rows),), -1.0)
    scores[rows] = CONFUSED_SIGNALS.get(signal)(trained.features[rows], (trained.labels[rows] == pair[1]).long(), seed)
    about = {
        "confused": {"labels": list(pair), "names": [inputs.dataset.classes[c] for c in pair], "samples": counts},
        **source_record(features_from),
    }
    return finish(inputs, trained, scores, rows, top, threshold, signal, chosen_by, start, about)


def misbehaving_test_images(checkpoint: Checkpoint, inputs: RunInputs, count: int, seed: int = 0, device: str = "auto") -> Split:
    """What a user of a poisoned model sees: `count` test images of classes other than the
    target, trigger stamped (uint8, as a user's files hold them), that the model does send to the
    target, in a seeded order. The sweep's query-detect cells and benchmarks/query_detect.py start
    from them; a manifest without a trigger (no backdoor) has none to give."""
    manifest, test = inputs.manifest, inputs.dataset.test
    if manifest is None or manifest.trigger_spec is None:
        raise InputError("query detection from triggered test images needs a poison corruption (a trigger); this checkpoint records none")
    target = int(manifest.params.get("target", manifest.new_labels[0]))
    rows = torch.nonzero(test.labels != target).flatten()
    rows = rows[torch.randperm(len(rows), generator=generator(seed, "detect/queries"))]
    pixels = stamp_trigger(test.images[rows].float().div(255.0), torch.ones(len(rows), dtype=torch.bool), manifest.trigger_spec)
    triggered = Split(pixels.mul(255.0).round().to(torch.uint8), torch.zeros(len(rows), dtype=torch.int64))
    dev = resolve_device(device)
    model = checkpoint.build().to(dev).to(memory_format=torch.channels_last).eval()
    batches = clean_view(triggered, None, dev).batches(input_spec(inputs.dataset, checkpoint.arch or ""), 1024)
    keep = torch.nonzero(predict(model, batches, resolve_precision("auto", dev, cpu_bf16=False)).cpu() == target).flatten()[:count]
    if len(keep) == 0:
        raise InputError(f"no triggered test image is predicted as the target {target}: the model shows no backdoor to start from")
    return Split(triggered.images[keep], triggered.labels[keep])


def finish(
    inputs: RunInputs,
    trained: TrainedFeatures,
    scores: torch.Tensor,
    pool: torch.Tensor,
    top: int | None,
    threshold: float | None,
    signal: str,
    chosen_by: str,
    start: float,
    about: dict,
) -> Detection:
    """The selection, ranked list and summary shared by both starting points (the same contract as
    `identified.detect`, with no identified samples: the candidates are the selected samples)."""
    positions = trained.positions
    rows = torch.nonzero(pool).flatten()
    chosen, ranked, score_stats = select_and_rank(scores, rows, positions, inputs.dataset.train.paths, top, threshold)
    if len(chosen) == 0:  # no identified samples to keep either (--top 0 is refused up front): an empty index file would only fail at `unlearn`
        best = float(scores[rows].max()) if len(rows) else float("nan")
        raise InputError(
            f"--threshold {threshold} keeps none of the {len(rows)} samples searched (best score {best:.4f}); lower it, or keep N with --top N"
        )
    candidates = torch.sort(positions[chosen]).values
    summary = {
        "remcli_version": __version__,
        **about,
        "signal": signal,
        "signal_chosen_by": chosen_by,
        "identified": 0,
        "selected": len(chosen),
        "candidates": len(candidates),
        "selection": {"top": top} if top is not None else {"threshold": threshold},
        "scores": score_stats,
        "labels_searched": sorted(int(v) for v in torch.unique(trained.labels[pool])),
        "wall_time_s": round(time.perf_counter() - start, 3),
    }
    if inputs.manifest is not None:
        summary["ground_truth"] = ground_truth(inputs.manifest, positions, candidates, candidates)
    return Detection(candidates, ranked, summary)
