"""Wall time of `unlearn --method rem` relative to `train`, measured in one run.

Same data, same model, same machine, same batch size: train a poisoned ResNet-9 for E epochs,
then run REM for E outer iterations (E repair epochs + flushes) on half of the poison. Prints the
ratio per epoch and the ratio at the paper's budgets (train ~41 epochs, REM 10 iterations).

    .venv/bin/python benchmarks/rem_vs_train.py --data sample --width 0.25 --epochs 3
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
from remcli.train import TrainConfig, train
from remcli.unlearning import unlearn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="sample")
    parser.add_argument("--arch", default="resnet9")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    dataset = load_dataset(args.data)
    manifest = corrupt(dataset.train.labels, dataset=args.data, fingerprint=dataset.fingerprint, num_classes=dataset.num_classes, kind="poison", count=args.count, seed=0)
    cfg = TrainConfig(arch=args.arch, arch_kwargs={"width": args.width} if args.arch in ("resnet9", "vit_cifar") else {}, epochs=args.epochs, batch_size=args.batch_size, device=args.device)
    trained = train(dataset, cfg, manifest)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_checkpoint(path, trained.model.state_dict(), trained.meta)
        ckpt = load_checkpoint(path)
    identified = identified_at(manifest, 0.5)
    outcome = unlearn(ckpt, RunInputs(dataset, manifest, None, None), identified, "rem", {"epochs": args.epochs, "batch_size": args.batch_size}, device=args.device)

    train_s = trained.summary["wall_time_s"]
    rem_s = outcome.summary["wall_time_s"]
    flushes = sum(it.get("flush_epochs", 0) for it in outcome.summary["log"]["iterations"])
    per_epoch = rem_s / train_s
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {trained.summary['device']}",
        "torch": torch.__version__,
        "data": args.data, "arch": args.arch, "width": args.width, "batch_size": args.batch_size,
        "train_epochs": args.epochs, "train_s": train_s, "train_images_per_s": trained.summary["images_per_s"],
        "rem_iterations": args.epochs, "rem_s": rem_s, "rem_flush_epochs": flushes, "rem_steps": outcome.summary["steps"],
        "ratio_rem_over_train_same_epochs": round(per_epoch, 3),
        "ratio_at_paper_budgets(rem 10 it / train 41 ep)": round(per_epoch * 10 / 41, 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
