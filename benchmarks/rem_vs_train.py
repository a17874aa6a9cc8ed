"""Wall time of REM relative to training, and of bf16 relative to fp32, measured in one run.

Same data, same model, same machine, same batch size: for each precision, train a poisoned
ResNet-9 for E epochs, then run REM for E outer iterations (E repair epochs + flushes) on half of
the poison, once per REM variant. Prints, per precision and variant, training images/s, REM
seconds per iteration and per repair step, the REM/train ratio per epoch and at the paper's
budgets (train ~41 epochs, REM 10 iterations), and the bf16/fp32 speed-ups.

    .venv/bin/python benchmarks/rem_vs_train.py --epochs 2 --batch-size 256
    .venv/bin/python benchmarks/rem_vs_train.py --precisions bf16 --variants default,units=bottleneck

Run it on a quiet machine: the ratios are only as good as the load is steady.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

from remcli.checkpoints import load_checkpoint, save_checkpoint
from remcli.data import corrupt, identified_at, load_dataset
from remcli.inputs import RunInputs
from remcli.settings import parse_settings
from remcli.train import TrainConfig, train
from remcli.unlearning import unlearn


def variant_settings(text: str) -> dict:
    """`default` -> {}; `units=bottleneck+capacity=0.5` -> those REM settings."""
    return {} if text == "default" else parse_settings(text.split("+"), "--variants")


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
    parser.add_argument("--variants", default="default", help="comma-separated REM variants: default, or name=value pairs joined by +")
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
        trained = train(dataset, cfg, manifest)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.safetensors"
            save_checkpoint(path, trained.model.state_dict(), trained.meta)
            ckpt = load_checkpoint(path)
        train_s = trained.summary["wall_time_s"]
        row = {"train_s": train_s, "train_images_per_s": trained.summary["images_per_s"], "rem": {}}
        for variant in args.variants.split(","):
            settings = {"epochs": args.epochs, "batch_size": args.batch_size, **variant_settings(variant)}
            outcome = unlearn(ckpt, inputs, identified, "rem", settings, device=args.device, precision=precision)
            log = outcome.summary["log"]
            rem_s = outcome.summary["wall_time_s"]
            repair_steps = outcome.summary["steps"] - sum(it.get("flush_steps", 0) for it in log["iterations"])
            per_epoch = rem_s / train_s
            row["rem"][variant] = {
                "rem_s": rem_s,
                "rem_s_per_iteration": round(rem_s / args.epochs, 3),
                "rem_s_per_repair_step": round(rem_s / max(repair_steps, 1), 4),
                "steps": outcome.summary["steps"],
                "new_parameters": log["new_parameters"],
                "model_parameters": log["model_parameters"],
                "ratio_rem_over_train_same_epochs": round(per_epoch, 3),
                "ratio_at_paper_budgets": round(per_epoch * 10 / 41, 3),
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
        report["bf16_speedup_rem_step"] = {
            v: round(fp32["rem"][v]["rem_s_per_repair_step"] / bf16["rem"][v]["rem_s_per_repair_step"], 3) for v in bf16["rem"]
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
