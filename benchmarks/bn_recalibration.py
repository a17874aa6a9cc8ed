"""Test accuracy of a trained model with its own BatchNorm statistics against statistics
re-estimated from retain samples, non-augmented or augmented as in training: what REM's
recalibration (`bn_recalibration`, `bn_recalibration_augment`) does to a model before any update.

    .venv/bin/python benchmarks/bn_recalibration.py benchmarks/results/sweep-cpu --samples 512,1425

Reads the sweep folder's trained models (models/KIND-sSEED/), each with its own corruption
manifest, and prints a Markdown table: test accuracy with the model's statistics and with
statistics re-estimated (the plain average of batch statistics, batch 128) from that many seeded
retain samples, without and with the training augmentation.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from remcli.checkpoints import load_checkpoint
from remcli.data.views import clean_view
from remcli.engine import predict
from remcli.inputs import read_identified, resolve_inputs
from remcli.seeding import generator
from remcli.unlearning import build_task
from remcli.unlearning.methods.rem.batchnorm import recalibrate_batchnorm


def accuracy(model: torch.nn.Module, test, task) -> float:
    model.eval()
    return float((predict(model, test.batches(task.spec, 1000), task.precision) == test.labels).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="sweep folder with models/KIND-sSEED/")
    parser.add_argument("--samples", default="512", help="comma-separated retain sample counts")
    args = parser.parse_args()
    counts = [int(n) for n in args.samples.split(",")]
    columns = [f"{n} {'augmented' if aug else 'plain'}" for n in counts for aug in (False, True)]
    print("| model | own statistics | " + " | ".join(columns) + " |\n|---|---:|" + "---:|" * len(columns))
    for model_dir in sorted(p for p in (args.folder / "models").iterdir() if (p / "model.safetensors").is_file()):
        ckpt = load_checkpoint(model_dir / "model.safetensors")
        inputs = resolve_inputs(ckpt, None, model_dir / "corruption.json")
        identified = read_identified(next(model_dir.glob("forget-*.txt")), inputs.dataset)
        task = build_task(ckpt, inputs, identified, seed=0, device="cpu")
        test = clean_view(inputs.dataset.test, None, task.device)

        row = [f"{accuracy(task.model, test, task):.4f}"]
        for count in counts:
            order = torch.randperm(len(task.retain_view), generator=generator(0, "benchmarks/bn-recalibration"))[:count]
            view = task.retain_view.subset(torch.sort(order).values)
            for augment in (False, True):
                model = copy.deepcopy(task.model)
                batches = view.batches(task.spec, 128, generator(0, "benchmarks/bn-recalibration-augment") if augment else None, augment=augment)
                recalibrate_batchnorm(model, batches, task.precision, task.device)
                row.append(f"{accuracy(model, test, task):.4f}")
        print(f"| {model_dir.name} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
