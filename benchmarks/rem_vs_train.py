"""Wall time of REM relative to training, and of bf16 relative to fp32, measured in one run.

Same data, same model, same machine, same batch size: for each precision, train a poisoned
ResNet-9 for E epochs, then run REM for E outer iterations (E repair epochs + flushes) on half of
the poison, once per REM variant. Prints, per precision and variant, training images/s, REM
seconds per iteration and per repair step, the REM/train ratio per epoch and at the paper's
budgets (train ~41 epochs, REM 10 iterations), and the bf16/fp32 speed-ups.

    .venv/bin/python benchmarks/rem_vs_train.py --epochs 2 --batch-size 256
    .venv/bin/python benchmarks/rem_vs_train.py --precisions bf16 --variants default,units=bottleneck

REM's time is split per outer iteration (flush, repair epoch, measurements: REM's own log) and its
one-off cost (the reference copy, the new units, iteration 0's measurements) is counted once, so
the ratio at the paper's budgets is (one-off + 10 x the mean iteration) / (41 x one training epoch).
The floor beside it is what the loss itself needs, from passes timed in the same run: per repair
step one reference forward (eval mode, no gradient), the redirect view's forward and backward and,
with batch-statistics BatchNorm, the drop view's over the whole batch (with frozen BatchNorm only
the identified rows: counted as free), against a training step's forward and backward, per step
and so per epoch. It leaves out the new units, flushes and measurements, so no REM run can beat it.

Run it on a quiet machine: the ratios are only as good as the load is steady.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from remcli.checkpoints import load_checkpoint, save_checkpoint
from remcli.data import corrupt, identified_at, load_dataset
from remcli.engine import autocast, synchronize
from remcli.inputs import RunInputs
from remcli.settings import parse_settings
from remcli.train import TrainConfig, train
from remcli.unlearning import unlearn


def variant_settings(text: str) -> dict:
    """`default` -> {}; `units=bottleneck+capacity=0.5` -> those REM settings."""
    return {} if text == "default" else parse_settings(text.split("+"), "--variants")


def pass_seconds(model: torch.nn.Module, batch_size: int, image_shape: tuple, device: torch.device, precision: str, repeats: int = 5) -> dict:
    """Median seconds of one training-mode forward (with gradient), its backward, and one eval-mode
    forward without gradient, on a random batch (autocast as in training; BatchNorm statistics are
    restored afterwards)."""
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(batch_size, *image_shape, device=device)
    if precision != "fp32":
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.zeros(batch_size, dtype=torch.long, device=device)

    def timed(fn):
        synchronize(device)
        start = time.perf_counter()
        out = fn()
        synchronize(device)
        return time.perf_counter() - start, out

    def train_forward() -> torch.Tensor:
        with autocast(device, precision):
            return F.cross_entropy(model(images).float(), labels)

    def eval_forward() -> None:
        with torch.no_grad(), autocast(device, precision):
            model(images)

    forward, backward, reference = [], [], []
    for _ in range(repeats + 1):  # the first round warms up
        model.train()
        seconds, loss = timed(train_forward)
        forward.append(seconds)
        backward.append(timed(loss.backward)[0])
        model.zero_grad(set_to_none=True)
        model.eval()
        reference.append(timed(eval_forward)[0])
    model.load_state_dict(saved)
    return {name: statistics.median(seconds[1:]) for name, seconds in (("forward", forward), ("backward", backward), ("eval_forward", reference))}


def repair_step_floor(passes: dict, bn: str) -> float:
    """Seconds of the passes a repair step cannot avoid (see the module docstring)."""
    train_pass = passes["forward"] + passes["backward"]
    return passes["eval_forward"] + train_pass + (train_pass if bn == "batch" else 0.0)


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
        epoch_s = trained.summary["train_samples"] / trained.summary["images_per_s"]  # stepping time of one epoch
        device = torch.device(trained.summary["device"])
        passes = pass_seconds(trained.model, args.batch_size, tuple(dataset.train.images.shape[1:]), device, precision)
        row = {
            "train_s": train_s,
            "train_epoch_s": round(epoch_s, 3),
            "train_images_per_s": trained.summary["images_per_s"],
            "pass_s": {k: round(v, 4) for k, v in passes.items()},
            "rem": {},
        }
        for variant in args.variants.split(","):
            settings = {"epochs": args.epochs, "batch_size": args.batch_size, **variant_settings(variant)}
            outcome = unlearn(ckpt, inputs, identified, "rem", settings, device=args.device, precision=precision)
            log = outcome.summary["log"]
            rem_s = outcome.summary["wall_time_s"]
            iterations = log["iterations"][1:]
            split = {k: sum(it[k] for it in iterations) / len(iterations) for k in ("flush_s", "repair_s", "measure_s")}
            per_iteration = sum(split.values())
            one_off = rem_s - per_iteration * len(iterations)
            repair_steps = outcome.summary["steps"] - sum(it["flush_steps"] for it in iterations)
            floor_step = repair_step_floor(passes, outcome.summary["config"]["bn"])
            row["rem"][variant] = {
                "rem_s": rem_s,
                "one_off_s": round(one_off, 3),
                "rem_s_per_iteration": round(per_iteration, 3),
                "split_s_per_iteration": {k: round(v, 3) for k, v in split.items()},
                "rem_s_per_repair_step": round(split["repair_s"] * len(iterations) / max(repair_steps, 1), 4),
                "floor_s_per_repair_step": round(floor_step, 4),
                "steps": outcome.summary["steps"],
                "new_parameters": log["new_parameters"],
                "model_parameters": log["model_parameters"],
                "ratio_iteration_over_epoch": round(per_iteration / epoch_s, 3),
                "ratio_at_paper_budgets": round((one_off + 10 * per_iteration) / (41 * epoch_s), 3),
                "floor_at_paper_budgets": round(10 * floor_step / (41 * (passes["forward"] + passes["backward"])), 3),
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
