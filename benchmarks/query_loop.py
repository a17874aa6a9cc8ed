"""The loop from what a user saw, end to end, against unlearning what they found: on each poison
(interclass) model, METHOD on the identified samples at `--rate` (`forget-RATE.txt` in the model
folder), and METHOD on those plus the candidates `detect --query` (`--confused` on the swapped
pair) keeps at `--threshold` with `auto`, as a `query-detect+METHOD` (`confused-detect+METHOD`)
sweep cell does; both evaluated against the same identified samples. Prints one JSON line per
model and the paired difference in utility × healed (mean ± SE).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/query_loop.py runs/sweep-finetuned/models/poison-* --method npo --set batch_size=128
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from remcli.checkpoints import load_checkpoint
from remcli.detection import detect_confused, detect_from_queries
from remcli.detection.symptoms import misbehaving_test_images
from remcli.evaluation import evaluate
from remcli.inputs import read_identified, resolve_inputs
from remcli.settings import parse_settings
from remcli.unlearning import unlearn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="sweep model folders (model.safetensors, corruption.json, forget-RATE.txt)")
    parser.add_argument("--method", default="rem")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a setting of the method (repeatable)")
    parser.add_argument("--rate", default="0.1")
    parser.add_argument("--threshold", type=float, default=0.3)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    overrides = parse_settings(args.set, "--set")
    gains = []
    for folder in args.models:
        checkpoint = load_checkpoint(folder / "model.safetensors")
        inputs = resolve_inputs(checkpoint, None, folder / "corruption.json")
        manifest = inputs.manifest
        identified = read_identified(folder / f"forget-{args.rate}.txt", inputs.dataset)
        if manifest.kind == "poison":
            images = misbehaving_test_images(checkpoint, inputs, args.queries, seed=manifest.seed, device=args.device)
            found = detect_from_queries(checkpoint, inputs, images, threshold=args.threshold, device=args.device)
        else:
            pair = tuple(int(c) for c in manifest.params["classes"])
            found = detect_confused(checkpoint, inputs, pair, threshold=args.threshold, device=args.device)
        row = {"model": folder.name, "identified": len(identified), **found.summary["ground_truth"]}
        for name, forget in (("found", identified), ("found+detected", torch.unique(torch.cat([identified, found.candidates])))):
            outcome = unlearn(checkpoint, inputs, forget, args.method, overrides, seed=manifest.seed, device=args.device)
            metrics = evaluate(outcome.checkpoint(), inputs.dataset, manifest, identified, device=args.device).metrics
            row[name] = {key: metrics.get(key) for key in ("utility", "healed", "utility_x_healed", "attack_success_rate")}
        gains.append(row["found+detected"]["utility_x_healed"] - row["found"]["utility_x_healed"])
        print(json.dumps(row), flush=True)
    se = statistics.stdev(gains) / len(gains) ** 0.5 if len(gains) > 1 else float("nan")
    print(f"utility x healed, found+detected - found: {statistics.mean(gains) * 100:+.1f} ± {se * 100:.1f} points over {len(gains)} models")


if __name__ == "__main__":
    main()
