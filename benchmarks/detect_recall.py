"""`remcli detect`'s recall on trained sweep models: identify the first 10 % / 30 % of each model's
corruption (its discovery order), keep top-K candidates with K = the true corrupted count, and
print precision and recall against the recorded corruption, one JSON line per (model, rate, signal):
`auto` (the signal the identified samples choose), `similarity`, `spectral` and `label-quality`.

    .venv/bin/python benchmarks/detect_recall.py benchmarks/results/sweep-cpu/models/*-s0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from remcli.checkpoints import load_checkpoint
from remcli.data import identified_at
from remcli.data.manifest import load_manifest
from remcli.detection import detect
from remcli.detection.features import feature_model
from remcli.inputs import resolve_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="sweep model folders (model.safetensors + corruption.json)")
    parser.add_argument("--rates", default="0.1,0.3")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--signals", default="auto,similarity,spectral,label-quality", help="comma-separated detect signals, each measured")
    parser.add_argument(
        "--features-from", default=None, metavar="CKPT", help="score on this checkpoint's features (init: each model's recorded init)"
    )
    args = parser.parse_args()
    for folder in args.models:
        checkpoint = load_checkpoint(folder / "model.safetensors")
        inputs = resolve_inputs(checkpoint, None, folder / "corruption.json")
        reader = feature_model(checkpoint, args.features_from, inputs.dataset.input_shape)
        manifest = load_manifest(folder / "corruption.json")
        trained = ~torch.isin(manifest.index_tensor, checkpoint.validation_indices)
        corrupted = manifest.index_tensor[trained]
        for rate in (float(r) for r in args.rates.split(",")):
            identified = identified_at(manifest, rate)
            identified = identified[~torch.isin(identified, checkpoint.validation_indices)]
            for signal in args.signals.split(","):
                result = detect(
                    checkpoint,
                    inputs,
                    identified,
                    top=max(len(corrupted) - len(identified), 0),
                    device=args.device,
                    signal=signal,
                    features_from=reader,
                )
                truth = result.summary["ground_truth"]
                row = {"model": folder.name, "rate": rate, "asked": signal, "signal": result.summary["signal"], "identified": len(identified)}
                row |= {"features_from": args.features_from} if reader else {}
                row |= {"corrupted": len(corrupted), **truth, "checks": result.summary["signal_checks"], "wall_time_s": result.summary["wall_time_s"]}
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
