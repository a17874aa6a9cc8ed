"""`remcli detect --query` / `--confused` recall on trained sweep models, starting from what a user
sees rather than from identified training samples:

* poison: `--queries` triggered test images of non-target classes that the model sends to the
  target (`detection.symptoms.misbehaving_test_images`, seed 0), each query signal;
* interclass: `--confused` on the swapped pair, beside how well the model tells the pair apart on
  its test images (`pair_test_acc`: the argmax over the two classes' logits; with --features-from,
  the model read, where it has the same classes) and the recall at top-K
  that separation allows (`recall_ceiling`): a score that puts swapped samples d' = 2 Phi^-1(acc)
  standard deviations above clean ones (equal-variance normals, the model's test accuracy on the
  pair) finds that share of the swap at top-K, on average;
* label noise: no query exists (no shared trigger, no pair), reported as such.

Recall at top-K, K = the true corrupted count (as trained on); one JSON line per (model, start,
signal), then a table of mean ± standard error over the models of each kind.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/query_detect.py runs/sweep-finetuned/models/*
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from statistics import NormalDist

import torch

from remcli.checkpoints import load_checkpoint
from remcli.data.views import clean_view
from remcli.detection import CONFUSED_SIGNALS, QUERY_SIGNALS, detect_confused, detect_from_queries
from remcli.detection.features import feature_model
from remcli.detection.symptoms import misbehaving_test_images
from remcli.inputs import resolve_inputs
from remcli.models import input_spec


@torch.no_grad()
def pair_test_accuracy(checkpoint, inputs, pair: tuple[int, int]) -> float:
    """Accuracy on the pair's test images of the argmax over the pair's two logits (fp32, CPU)."""
    model, classes = checkpoint.build().eval(), torch.tensor(pair)
    spec = input_spec(inputs.dataset, checkpoint.arch or "")
    right = total = 0
    for batch in clean_view(inputs.dataset.test, None, torch.device("cpu")).batches(spec, 500):
        keep = torch.isin(batch.labels, classes)
        predicted = classes[model(batch.inputs[keep])[:, classes].argmax(1)]
        right, total = right + int((predicted == batch.labels[keep]).sum()), total + int(keep.sum())
    return right / total


def recall_ceiling(accuracy: float, corrupted: int, rows: int, draws: int = 4000) -> float:
    """Mean recall at top-K (K = `corrupted` of `rows`) of a score whose corrupted rows sit
    d' = 2 Phi^-1(accuracy) above the rest, unit normals both (seeded Monte Carlo)."""
    shift = 2 * NormalDist().inv_cdf(min(max(accuracy, 1e-6), 1 - 1e-6))
    scores = torch.randn(draws, rows, generator=torch.Generator().manual_seed(0))
    scores[:, :corrupted] += shift
    return float((scores.topk(corrupted, dim=1).indices < corrupted).float().mean())


def runs(folder: Path, queries: int, device: str, features_from: str | None = None):
    """(start, signal, Detection or None) for every start that applies to the model's corruption."""
    checkpoint = load_checkpoint(folder / "model.safetensors")
    inputs = resolve_inputs(checkpoint, None, folder / "corruption.json")
    manifest = inputs.manifest
    reader = feature_model(checkpoint, features_from, inputs.dataset.input_shape)
    top = int((~torch.isin(manifest.index_tensor, checkpoint.validation_indices)).sum())
    if manifest.kind == "poison":
        images = misbehaving_test_images(checkpoint, inputs, queries, device=device)
        for signal in QUERY_SIGNALS.names():
            yield f"{queries} triggered test images", signal, detect_from_queries(checkpoint, inputs, images, top=top, device=device, signal=signal)
    elif manifest.kind == "interclass":
        pair = tuple(int(c) for c in manifest.params.get("classes") or sorted(set(manifest.true_labels)))  # older manifests: from the labels
        scorer = reader if reader is not None and reader.num_classes == checkpoint.num_classes else checkpoint
        accuracy = pair_test_accuracy(scorer, inputs, pair)  # the signals' shared ceiling, measured once
        for signal in CONFUSED_SIGNALS.names():
            found = detect_confused(checkpoint, inputs, pair, top=top, device=device, signal=signal, features_from=reader)
            found.summary["pair_test_acc"] = round(accuracy, 3)
            found.summary["recall_ceiling"] = round(recall_ceiling(accuracy, top, sum(found.summary["confused"]["samples"])), 3)
            yield "confused " + ",".join(inputs.dataset.classes[c] for c in pair), signal, found
    else:
        yield "none (no query exists)", "-", None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="sweep model folders (model.safetensors + corruption.json)")
    parser.add_argument("--queries", type=int, default=8, help="triggered test images per poison model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--features-from", default=None, metavar="CKPT", help="--confused on this checkpoint's features (init: each model's recorded init)"
    )
    args = parser.parse_args()
    table: dict[tuple, list] = defaultdict(list)
    for folder in args.models:
        kind = json.loads((folder / "corruption.json").read_text())["kind"]
        for start, signal, found in runs(folder, args.queries, args.device, args.features_from):
            truth = found.summary["ground_truth"] if found else {}
            row = {"model": folder.name, "kind": kind, "start": start, "signal": signal, **truth}
            row["wall_time_s"] = found.summary["wall_time_s"] if found else None
            row["queries_used"] = found.summary.get("query", {}).get("misbehaving") if found else None
            for key in ("pair_test_acc", "recall_ceiling"):
                if found and key in found.summary:
                    row[key] = found.summary[key]
            print(json.dumps(row), flush=True)
            table[(kind, start, signal)].append(row)
    print("\n| kind | start | signal | models | recall at top-K, mean ± SE | per model | recall ceiling (pair test acc) |")
    print("|---|---|---|---:|---:|---|---|")
    for (kind, start, signal), rows in table.items():
        recalls = [row.get("recall") for row in rows]
        if None in recalls:
            print(f"| {kind} | {start} | - | {len(recalls)} | - | - | |")
            continue
        se = statistics.stdev(recalls) / len(recalls) ** 0.5 if len(recalls) > 1 else float("nan")
        shown = " / ".join(f"{r:.2f}" for r in recalls)
        ceiling = " / ".join(f"{row['recall_ceiling']:.2f} ({row['pair_test_acc']:.2f})" for row in rows if "recall_ceiling" in row)
        print(f"| {kind} | {start} | {signal} | {len(recalls)} | {statistics.mean(recalls):.2f} ± {se:.2f} | {shown} | {ceiling} |")


if __name__ == "__main__":
    main()
