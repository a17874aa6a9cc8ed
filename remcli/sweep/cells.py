"""The pipeline steps as a sweep runs them: the (kind, seed) checkpoint every cell starts from,
and one cell (detect, unlearn, evaluate).

Each step is the library function its CLI command calls (`corrupt_dataset`/`write_corruption`,
`train_model`, `detect`, `unlearn`, `evaluate`); this module only decides where their outputs go
in the sweep folder and what a cell's record holds.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from remcli.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from remcli.data.corruption import write_corruption, write_forget_file
from remcli.data.datasets import Dataset
from remcli.data.manifest import Manifest
from remcli.detection import Detection, detect, detect_confused, detect_from_queries
from remcli.detection.features import INIT, feature_model
from remcli.detection.symptoms import misbehaving_test_images
from remcli.engine import resolve_device
from remcli.errors import InputError
from remcli.evaluation import evaluate
from remcli.fileio import atomic_write_text, sha256_file
from remcli.inputs import RunInputs, fit_dataset_to, load_corruption, read_identified
from remcli.sweep.entries import SWEEP_QUERIES, base_method, detect_prefix, detects, method_overrides, split_detect_settings
from remcli.sweep.folder import SweepFolder
from remcli.sweep.grid import ORIGINAL, SCHEMA_VERSION, Cell, SweepConfig
from remcli.train import TrainConfig, train_model
from remcli.unlearning import unlearn


@dataclass
class TrainedCheckpoint:
    """The checkpoint of one (kind, seed), with the data and corruption it was trained on: what
    every cell of that (kind, seed) unlearns and evaluates."""

    kind: str
    seed: int
    checkpoint: Checkpoint
    inputs: RunInputs
    train_summary: dict  # train.json's summary: steps, wall time, validation accuracy
    trained: bool  # by this call, rather than found in the folder


def trained_checkpoint(
    cfg: SweepConfig, folder: SweepFolder, dataset: Dataset, manifest: Manifest, kind: str, seed: int, reporter
) -> TrainedCheckpoint:
    """Reuse the folder's (kind, seed) checkpoint, or write its corruption and train it."""
    ckpt_path, manifest_path, summary_path = folder.checkpoint(kind, seed), folder.manifest(kind, seed), folder.train_summary(kind, seed)
    wanted = cfg.model_config(kind, seed)
    trained = not ckpt_path.is_file()
    if trained:
        write_corruption(manifest, manifest_path.parent, list(cfg.rates), force=True)  # deterministic: same bytes every time
        tcfg = TrainConfig(
            arch=cfg.arch,
            arch_kwargs=dict(cfg.arch_kwargs),
            epochs=cfg.train_epochs,
            batch_size=cfg.train_batch_size,
            lr=cfg.train_lr,
            seed=seed,
            device=cfg.device,
            precision=cfg.precision,
            init=cfg.init,
        )
        result = train_model(dataset, tcfg, manifest, sha256_file(manifest_path), str(manifest_path.resolve()), reporter)
        # the summary first: a checkpoint never exists without the record of how it was made
        atomic_write_text(summary_path, json.dumps({"config": wanted, "summary": result.summary}, indent=1) + "\n")
        save_checkpoint(ckpt_path, result.model.state_dict(), result.meta, force=True)
        del result
    try:
        recorded = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        recorded = {}
    if recorded.get("config") != wanted:
        raise InputError(
            f"{ckpt_path.parent} holds a model trained with other settings (or no train.json); delete that folder to retrain it, or use another --out"
        )
    checkpoint = load_checkpoint(ckpt_path)
    if not manifest_path.is_file() or sha256_file(manifest_path) != checkpoint.meta.get("corruption_sha256"):
        raise InputError(f"{manifest_path} is missing or is not the manifest {ckpt_path} was trained on; delete {ckpt_path.parent} to retrain it")
    dataset = fit_dataset_to(checkpoint, dataset, dataset.spec)
    on_disk, digest = load_corruption(manifest_path, dataset)
    return TrainedCheckpoint(kind, seed, checkpoint, RunInputs(dataset, on_disk, digest, manifest_path), recorded.get("summary", {}), trained)


def run_cell(cfg: SweepConfig, folder: SweepFolder, cell: Cell, base: TrainedCheckpoint, reporter, raise_errors: bool) -> dict:
    """Unlearn (unless `original`) and evaluate one cell; returns its record (not yet written).

    An exception is recorded in the row (`status: failed`, `error`) unless `raise_errors`: one
    failing cell must not end a long sweep, and the next run retries it."""
    dataset, manifest = base.inputs.dataset, base.inputs.manifest
    row = {
        "cell": cell.id,
        "kind": cell.kind,
        "rate": cell.rate,
        "method": cell.method,
        "seed": cell.seed,
        "status": "ok",
        "error": "",
        "identified": 0,
        "steps": 0,
        "wall_time_s": 0.0,
        "train_steps": base.train_summary.get("steps"),
        "train_wall_time_s": base.train_summary.get("wall_time_s"),
    }
    record: dict = {"schema_version": SCHEMA_VERSION, "cell": cell.id, "config": cfg.cell_config(cell), "row": row}
    try:
        if cell.method == ORIGINAL:
            evaluation = evaluate(base.checkpoint, dataset, manifest, None, device=cfg.device)
        else:
            identified = read_identified(forget_file(folder, base, cell.rate), dataset)
            detection, own = split_detect_settings(cell.method, cfg.overrides.get(cell.method, {}))
            forget = identified
            if detects(cell.method):
                found = detect_step(cell, base, identified, detection, cfg.device)
                forget = torch.unique(torch.cat([identified, found.candidates]))  # the found samples stay, as with detect+
                record["detect"] = found.summary
                row.update(detected=found.summary["selected"], detect_recall=found.summary.get("ground_truth", {}).get("recall"))
            outcome = unlearn(
                base.checkpoint,
                base.inputs,
                forget,
                base_method(cell.method),
                method_overrides(own),
                seed=cell.seed,
                device=cfg.device,
                precision=cfg.precision,
                reporter=reporter,
            )
            evaluation = evaluate(outcome.checkpoint(), dataset, manifest, identified, device=cfg.device)
            row.update(
                identified=len(identified),
                changed=outcome.summary["changed"],
                steps=outcome.summary["steps"],
                wall_time_s=round(outcome.summary["wall_time_s"] + record.get("detect", {}).get("wall_time_s", 0.0), 3),  # detection included
            )
            record["unlearn"] = dict(outcome.summary)
            del outcome
        row.update(evaluation.metrics)
        row["eval_wall_time_s"] = evaluation.wall_time_s
        row["device"] = str(resolve_device(cfg.device))
        record["evaluation"] = evaluation.as_dict()
    except Exception as err:  # noqa: BLE001 - one failing cell must not end a long sweep; it is recorded and retried
        if raise_errors:
            raise
        row.update(status="failed", error=f"{err.__class__.__name__}: {err}".splitlines()[0][:500])
    row["finished_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return record


def detect_step(cell: Cell, base: TrainedCheckpoint, identified: torch.Tensor, settings: dict, device: str) -> Detection:
    """A detecting entry's detection: from the identified samples (`detect+`), from the model's own
    misbehaving triggered test images (`query-detect+`, seeded by the cell) or from the swapped pair
    (`confused-detect+`)."""
    selection = {"top": settings["detect_top"], "threshold": settings["detect_threshold"], "device": device, "signal": settings["detect_signal"]}
    prefix = detect_prefix(cell.method)
    if prefix == "query-detect+":
        queries = misbehaving_test_images(base.checkpoint, base.inputs, SWEEP_QUERIES, seed=cell.seed, device=device)
        return detect_from_queries(base.checkpoint, base.inputs, queries, **selection)
    source = INIT if settings["detect_features"] == "init" else None
    selection["features_from"] = feature_model(base.checkpoint, source, base.inputs.dataset.input_shape)
    if prefix == "confused-detect+":
        pair = tuple(int(c) for c in base.inputs.manifest.params["classes"])
        return detect_confused(base.checkpoint, base.inputs, pair, seed=cell.seed, **selection)
    return detect(base.checkpoint, base.inputs, identified, **selection)


def forget_file(folder: SweepFolder, base: TrainedCheckpoint, rate: float) -> Path:
    """The checkpoint's forget file at `rate`; rates added after training get their file now (same format)."""
    path = folder.forget_file(base.kind, base.seed, rate)
    if not path.is_file():
        write_forget_file(path, base.inputs.manifest, rate, base.inputs.manifest_sha256)
    return path


def brief(row: dict) -> str:
    """A finished cell's result line: its headline metrics and cost, or why it failed."""
    if row["status"] != "ok":
        return f"FAILED ({row['error']})"
    parts = [
        f"{name} {row[key] * 100:.1f}%"
        for name, key in (("utility", "utility"), ("healed", "healed"), ("utility x healed", "utility_x_healed"))
        if row.get(key) is not None
    ]
    unchanged = "; UNCHANGED: unlearning changed no weight" if row.get("changed") is False else ""
    return ", ".join(parts) + f" ({row['wall_time_s']:.1f}s, {row['steps']} steps{unchanged})"
