"""The record beside a pretrained backbone (benchmarks/sweep_finetuned.sh): what made it, its sha256 and clean test accuracy.

The backbone is committed so that a fresh machine need not pretrain again; the record is what lets
the script trust it. `check` refuses a backbone whose sha256 is not the recorded one (a changed or
swapped file would silently change every fine-tuned model), `write` measures and records a new one:

    python3 benchmarks/pretrained_record.py check BACKBONE.safetensors BACKBONE.json
    python3 benchmarks/pretrained_record.py write BACKBONE.safetensors BACKBONE.json --remcli remcli --device cpu \\
        --stage STAGE1.json 'remcli train ...' --stage STAGE2.json 'remcli train --init ...' --offset 150 --per-class 4850

`write` takes each pretraining stage's command and its training summary (`remcli train --json`), in
the order they ran, scores the backbone (the last stage's output) on its data's test split with
`remcli evaluate`, and writes the record atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TRAIN_KEYS = ("epochs", "steps", "train_samples", "validation_samples", "val_acc", "final_loss", "images_per_s", "wall_time_s", "device", "precision")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check(backbone: Path, record: Path) -> None:
    if not record.is_file():
        raise SystemExit(f"error: {backbone} has no record {record}; delete the backbone to pretrain again, or restore the record")
    recorded = json.loads(record.read_text(encoding="utf-8"))
    actual = sha256(backbone)
    if actual != recorded["sha256"]:
        raise SystemExit(
            f"error: {backbone} has sha256 {actual[:12]}, its record {record} says {recorded['sha256'][:12]}; "
            "restore the recorded file or delete both to pretrain again"
        )
    print(f"pretrained: reusing {backbone} (sha256 {actual[:12]}, clean test acc {recorded['test_acc']:.4f})", file=sys.stderr)


def stage_record(train_json: Path, command: str) -> dict:
    """One pretraining stage: the command as run, its training summary and per-epoch log."""
    summary = json.loads(train_json.read_text(encoding="utf-8"))
    epoch_log = [{k: e.get(k) for k in ("epoch", "loss", "val_acc", "seconds") if k in e} for e in summary.get("epoch_log", [])]
    return {"command": command.strip(), "train": {k: summary.get(k) for k in TRAIN_KEYS}, "epoch_log": epoch_log}


def write(backbone: Path, record: Path, remcli: str, device: str, stages: list[tuple[str, str]], offset: int, per_class: int) -> None:
    if not stages:
        raise SystemExit("error: write needs at least one --stage TRAIN_JSON COMMAND")
    evaluate = [remcli, "evaluate", str(backbone), "--device", device, "--json", "-"]
    evaluated = json.loads(subprocess.run(evaluate, capture_output=True, text=True, check=True).stdout)
    metrics = evaluated["metrics"]
    out = {
        "sha256": sha256(backbone),
        "test_acc": metrics["test_acc"],
        "dataset": evaluated["dataset"],
        "test_split": evaluated["test_split"],
        "test_samples": (evaluated.get("counts") or {}).get("test"),
        "training_images": {"per_class": per_class, "first_image_per_class": offset, "note": "every class's images offset..offset+per_class-1"},
        "stages": [stage_record(Path(train_json), command) for train_json, command in stages],
        "evaluate_command": " ".join(evaluate),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    tmp.replace(record)
    wall = sum(stage["train"]["wall_time_s"] or 0 for stage in out["stages"])
    print(f"pretrained: {backbone} clean test acc {out['test_acc']:.4f}, trained in {wall:.0f} s; record {record}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("check", "write"))
    parser.add_argument("backbone", type=Path)
    parser.add_argument("record", type=Path)
    parser.add_argument("--remcli", default="remcli")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stage", nargs=2, action="append", default=[], metavar=("TRAIN_JSON", "COMMAND"), help="one pretraining stage, in order")
    parser.add_argument("--offset", type=int, default=0, help="first training image of every class in the pretraining set")
    parser.add_argument("--per-class", type=int, default=0, help="pretraining images per class")
    args = parser.parse_args()
    if args.action == "check":
        check(args.backbone, args.record)
    else:
        write(args.backbone, args.record, args.remcli, args.device, args.stage, args.offset, args.per_class)


if __name__ == "__main__":
    main()
