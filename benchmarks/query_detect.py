"""`remcli detect --query` / `--confused` recall on trained sweep models, starting from what a user
sees rather than from identified training samples:

* poison: `--queries` triggered test images of non-target classes that the model sends to the
  target (`detection.symptoms.misbehaving_test_images`, seed 0), each query signal;
* interclass: `--confused` on the swapped pair;
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

import torch

from remcli.checkpoints import load_checkpoint
from remcli.detection import CONFUSED_SIGNALS, QUERY_SIGNALS, detect_confused, detect_from_queries
from remcli.detection.symptoms import misbehaving_test_images
from remcli.inputs import resolve_inputs


def runs(folder: Path, queries: int, device: str):
    """(start, signal, Detection or None) for every start that applies to the model's corruption."""
    checkpoint = load_checkpoint(folder / "model.safetensors")
    inputs = resolve_inputs(checkpoint, None, folder / "corruption.json")
    manifest = inputs.manifest
    top = int((~torch.isin(manifest.index_tensor, checkpoint.validation_indices)).sum())
    if manifest.kind == "poison":
        images = misbehaving_test_images(checkpoint, inputs, queries, device=device)
        for signal in QUERY_SIGNALS.names():
            yield f"{queries} triggered test images", signal, detect_from_queries(checkpoint, inputs, images, top=top, device=device, signal=signal)
    elif manifest.kind == "interclass":
        pair = tuple(int(c) for c in manifest.params.get("classes") or sorted(set(manifest.true_labels)))  # older manifests: from the labels
        for signal in CONFUSED_SIGNALS.names():
            yield (
                "confused " + ",".join(inputs.dataset.classes[c] for c in pair),
                signal,
                detect_confused(checkpoint, inputs, pair, top=top, device=device, signal=signal),
            )
    else:
        yield "none (no query exists)", "-", None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="sweep model folders (model.safetensors + corruption.json)")
    parser.add_argument("--queries", type=int, default=8, help="triggered test images per poison model")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    table: dict[tuple, list] = defaultdict(list)
    for folder in args.models:
        kind = json.loads((folder / "corruption.json").read_text())["kind"]
        for start, signal, found in runs(folder, args.queries, args.device):
            truth = found.summary["ground_truth"] if found else {}
            row = {"model": folder.name, "kind": kind, "start": start, "signal": signal, **truth}
            row["wall_time_s"] = found.summary["wall_time_s"] if found else None
            row["queries_used"] = found.summary.get("query", {}).get("misbehaving") if found else None
            print(json.dumps(row), flush=True)
            table[(kind, start, signal)].append(truth.get("recall"))
    print("\n| kind | start | signal | models | recall at top-K, mean ± SE | per model |\n|---|---|---|---:|---:|---|")
    for (kind, start, signal), recalls in table.items():
        if None in recalls:
            print(f"| {kind} | {start} | - | {len(recalls)} | - | - |")
            continue
        se = statistics.stdev(recalls) / len(recalls) ** 0.5 if len(recalls) > 1 else float("nan")
        shown = " / ".join(f"{r:.2f}" for r in recalls)
        print(f"| {kind} | {start} | {signal} | {len(recalls)} | {statistics.mean(recalls):.2f} ± {se:.2f} | {shown} |")


if __name__ == "__main__":
    main()
