"""Wall time of REM relative to training, and of bf16 relative to fp32, measured in one run.

Same data, same model, same machine, same batch size: for each precision, train a poisoned
ResNet-9 for E epochs, then run each REM variant for E outer iterations on half of the poison.
Prints, per precision and variant, training images/s, REM seconds per iteration (flush, repair
epoch, measurements: REM's own log), the REM/train ratio per epoch and at the paper's budgets
(train ~41 epochs, REM 10 iterations), the sample-passes REM spent per iteration, and the bf16/fp32
speed-ups.

    .venv/bin/python benchmarks/rem_vs_train.py --epochs 2 --batch-size 256 --precisions bf16
    .venv/bin/python benchmarks/rem_vs_train.py --variants rem,rem-full,rem:repair_fraction=0.6+retain_loss=npo

A variant is a registered REM method (`rem`, `rem-full`, `rem-redirect`), optionally followed by
`:` and settings joined by `+`. REM's one-off cost (the reference copy, the new units, iteration 0's
measurements) is counted once, so the ratio at the paper's budgets is
(one-off + 10 x the mean iteration) / (41 x one training epoch). Every iteration is counted: an
early stop (`patience`) or a `budget` only lowers the real cost below this figure.

Run it on a quiet machine: the ratios are only as good as the load is steady.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from collections import Counter
from pathlib import Path

import torch

from remcli.checkpoints import load_checkpoint, save_checkpoint
from remcli.data import corrupt, identified_at, load_dataset
from remcli.inputs import RunInputs
from remcli.settings import parse_settings
from remcli.train import TrainConfig, train_model
from remcli.unlearning import unlearn


def parse_variant(text: str) -> tuple[str, dict]:
    """`rem` -> ("rem", {}); `rem:repair_fraction=0.3+patience=2` -> ("rem", those settings)."""
    method, _, settings = text.partition(":")
    return method, (parse_settings(settings.split("+"), "--variants") if settings else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="sample")
    parser.add_argument("--arch", default="resnet9")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16 (fp16 on CUDA)")
    parser.add_argument("--variants", default="rem,rem-full", help="comma-separated: METHOD or METHOD:name=value+name=value (REM methods)")
    args = parser.parse_args()

    dataset = load_dataset(args.data)
    manifest = corrupt(
        dataset.train.labels,
        dataset=args.data,
        fingerprint=dataset.fingerprint,
        num_classes=dataset.num_classes,
        kind="poison",
        count=args.count,
        seed=0,
    )
    identified = identified_at(manifest, 0.5)
    inputs = RunInputs(dataset, manifest, None, None)
    results = {}
    for precision in args.precisions.split(","):
        cfg = TrainConfig(
            arch=args.arch,
            arch_kwargs={"width": args.width} if args.arch in ("resnet9", "vit_cifar") else {},
            epochs=args.epochs,
            batch_size=args.batch_size,
            device=args.device,
            precision=precision,
        )
        trained = train_model(dataset, cfg, manifest)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.safetensors"
            save_checkpoint(path, trained.model.state_dict(), trained.meta)
            ckpt = load_checkpoint(path)
        train_s = trained.summary["wall_time_s"]
        epoch_s = trained.summary["train_samples"] / trained.summary["images_per_s"]  # stepping time of one epoch
        row = {
            "train_s": train_s,
            "train_epoch_s": round(epoch_s, 3),
            "train_images_per_s": trained.summary["images_per_s"],
            "rem": {},
        }
        train_passes = trained.summary["train_samples"]
        runs: Counter[str] = Counter()
        for variant in args.variants.split(","):
            method, overrides = parse_variant(variant)
            settings = {"epochs": args.epochs, "batch_size": args.batch_size, **overrides}
            outcome = unlearn(ckpt, inputs, identified, method, settings, device=args.device, precision=precision)
            log = outcome.summary["log"]
            rem_s = outcome.summary["wall_time_s"]
            iterations = log["iterations"][1:]
            split = {k: sum(it[k] for it in iterations) / len(iterations) for k in ("flush_s", "repair_s", "measure_s")}
            per_iteration = sum(split.values())
            one_off = rem_s - per_iteration * len(iterations)
            passes = log["compute"]["sample_passes"]
            runs[variant] += 1  # a variant listed twice (to show run-to-run spread) keeps both results
            key = variant if runs[variant] == 1 else f"{variant} (run {runs[variant]})"
            row["rem"][key] = {
                "rem_s": rem_s,
                "one_off_s": round(one_off, 3),
                "rem_s_per_iteration": round(per_iteration, 3),
                "split_s_per_iteration": {k: round(v, 3) for k, v in split.items()},
                "repair_fraction": log["compute"]["repair_fraction"],
                "sample_passes_per_iteration_over_epoch": round(passes / len(iterations) / train_passes, 3),
                "steps": outcome.summary["steps"],
                "new_parameters": log["new_parameters"],
                "ratio_iteration_over_epoch": round(per_iteration / epoch_s, 3),
                "ratio_at_paper_budgets": round((one_off + 10 * per_iteration) / (41 * epoch_s), 3),
            }
        results[precision] = row
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {trained.summary['device']}",
        "torch": torch.__version__,
        "data": args.data,
        "arch": args.arch,
        "width": args.width,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "results": results,
    }
    if "fp32" in results and "bf16" in results:
        fp32, bf16 = results["fp32"], results["bf16"]
        report["bf16_speedup_train_images_per_s"] = round(bf16["train_images_per_s"] / fp32["train_images_per_s"], 3)
        report["bf16_speedup_rem_iteration"] = {
            v: round(fp32["rem"][v]["rem_s_per_iteration"] / bf16["rem"][v]["rem_s_per_iteration"], 3) for v in bf16["rem"]
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
