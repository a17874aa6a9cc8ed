"""`run_sweep()`: corrupt -> train -> unlearn -> evaluate over a grid, resumably.

Folder layout (`DIR`):

    sweep.json                      the configuration (union of every run's grid)
    models/<kind>-s<seed>/          corruption.json, forget-<rate>.txt, model.safetensors, train.json
    cells/<cell-id>.json            one finished (or failed) cell: its config, flat row, unlearn log, evaluation
    results.csv, results.json       one row per cell file, rebuilt after every cell
    summary.md, heatmaps/*.png      the report (`remcli.sweep.report`), rebuilt at the end

Resume: a cell whose file exists, records the same cell config and succeeded is never
recomputed; a model whose checkpoint exists is reused. Every file is written atomically, so a
killed sweep leaves only whole files and the next run continues where it stopped.

Failures: an exception inside one cell's unlearning or evaluation is recorded in that cell's
file (`status: failed`, `error`) and the sweep goes on; failed cells are retried by the next run.
Bad input (names, numbers, a folder made with other settings) fails before anything is written.

Many workers per folder at a time: each claims a cell before running it (`remcli.sweep.claims`).

Seeds: corruption seed = training seed = unlearning seed = the sweep seed.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from filelock import FileLock

from remcli.checkpoints import Checkpoint, load_checkpoint, load_init_weights, save_checkpoint
from remcli.data.corruption import (
    corrupt_dataset,
    rate_label,
    resolve_count,
    write_corruption,
    write_forget_file,
)
from remcli.data.datasets import Dataset, load_dataset
from remcli.data.manifest import Manifest, check_manifest_matches, load_manifest
from remcli.detection import detect
from remcli.engine import resolve_device, resolve_precision
from remcli.errors import InputError
from remcli.evaluation import evaluate
from remcli.fileio import atomic_write_text, sha256_file
from remcli.inputs import RunInputs, read_identified
from remcli.models import build_model, model_channels, resolve_arch_kwargs
from remcli.progress import NullReporter, PrefixedReporter
from remcli.seeding import seeded_global_rng
from remcli.sweep.claims import DEFAULT_TTL_S, Claims
from remcli.sweep.folder import is_finished, load_record, load_records, read_sweep_json, sweep_json_path, write_sweep_json
from remcli.sweep.grid import (
    ORIGINAL,
    SCHEMA_VERSION,
    Cell,
    SweepConfig,
    base_method,
    detects,
    merge_configs,
    method_overrides,
    model_id,
    normalised,
    split_detect_settings,
)
from remcli.sweep.report import MEMORISED, write_results
from remcli.train import TrainConfig, train
from remcli.unlearning import unlearn


@dataclass
class SweepOutcome:
    out: Path
    config: SweepConfig  # the folder's config after this run (union of grids)
    cells: int = 0  # cells in this run's grid
    computed: int = 0  # finished by this run
    reused: int = 0  # found finished
    failed: list[str] = field(default_factory=list)  # ids of cells that failed in this run
    to_run: int = 0  # cells of the grid not finished when the run began
    models_to_train: int = 0
    models_trained: int = 0
    models_reused: int = 0
    wall_time_s: float = 0.0
    records: dict[str, dict] = field(default_factory=dict)  # every cell file in DIR, by id


# --- preparation: everything that can fail on bad input, before anything is written -------------


@dataclass
class Prepared:
    config: SweepConfig  # merged with the folder's
    dataset: Dataset
    manifests: dict[tuple[str, int], Manifest]


def merged_config(cfg: SweepConfig, out: Path) -> tuple[SweepConfig, dict | None]:
    """`cfg` merged with the folder's sweep.json (and that file's body, or None)."""
    stored = read_sweep_json(out)
    finished = {r["row"]["method"] for r in load_records(out).values() if r["row"].get("status") == "ok"}
    merged = cfg if stored is None else merge_configs(SweepConfig.from_dict(stored["config"]), cfg, str(sweep_json_path(out)), finished)
    if stored is None and out.is_dir() and any(not p.name.startswith(".") and p.name != "claims" for p in out.iterdir()):
        raise InputError(f"--out {out} is a non-empty folder without sweep.json; give a new or empty folder")
    return merged, stored


def prepare(cfg: SweepConfig, out: Path) -> Prepared:
    cfg.validate()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a directory")
    merged, stored = merged_config(cfg, out)
    resolve_precision(cfg.precision, resolve_device(cfg.device))
    dataset = load_dataset(cfg.data)
    if stored is not None and stored.get("dataset_fingerprint") not in (None, dataset.fingerprint):
        raise InputError(
            f"{sweep_json_path(out)} was made for data {stored['dataset_fingerprint']}, but {cfg.data} is {dataset.fingerprint}; use another --out"
        )
    resolve_count(len(dataset.train), cfg.count, None)
    arch_kwargs = resolve_arch_kwargs(cfg.arch, dataset.input_shape[-1], cfg.arch_kwargs)
    with seeded_global_rng(0, "sweep/check-arch"):
        model = build_model(cfg.arch, dataset.num_classes, model_channels(cfg.arch, dataset.input_shape[0]), dataset.input_shape[-1], **arch_kwargs)
    if cfg.init is not None:
        init = load_checkpoint(cfg.init)
        if init.sha256 != cfg.init_sha256:
            raise InputError(f"--init {cfg.init} has sha256 {init.sha256[:12]}, not the {cfg.init_sha256[:12]} this sweep records; restore that init")
        load_init_weights(model, init, cfg.arch)  # an init of another arch or width fails here, before anything is written
    # the same step as `remcli corrupt DATA --kind KIND --count N --seed SEED`: the same manifest bytes
    manifests = {(kind, seed): corrupt_dataset(dataset, kind, cfg.count, seed) for kind, seed in cfg.models()}
    return Prepared(merged, dataset, manifests)


# --- models -------------------------------------------------------------------------------------


@dataclass
class Model:
    checkpoint: Checkpoint
    inputs: RunInputs
    folder: Path
    train_summary: dict
    trained: bool  # by this run


def ensure_model(cfg: SweepConfig, out: Path, dataset: Dataset, manifest: Manifest, kind: str, seed: int, reporter) -> Model:
    """Reuse DIR/models/<kind>-s<seed>/model.safetensors, or corrupt and train it."""
    folder = out / "models" / model_id(kind, seed)
    ckpt_path, manifest_path, summary_path = folder / "model.safetensors", folder / "corruption.json", folder / "train.json"
    wanted = cfg.model_config(kind, seed)
    trained = False
    if not ckpt_path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        write_corruption(manifest, folder, list(cfg.rates), force=True)  # deterministic: same bytes every time
        digest = sha256_file(manifest_path)
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
        result = train(dataset, tcfg, manifest, digest, str(manifest_path.resolve()), reporter)
        # the summary first: a checkpoint never exists without the record of how it was made
        atomic_write_text(summary_path, json.dumps({"config": wanted, "summary": result.summary}, indent=1) + "\n")
        save_checkpoint(ckpt_path, result.model.state_dict(), result.meta, force=True)
        del result
        trained = True
    try:
        recorded = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        recorded = {}
    if recorded.get("config") != wanted:
        raise InputError(
            f"{folder} holds a model trained with other settings (or no train.json); delete that folder to retrain it, or use another --out"
        )
    checkpoint = load_checkpoint(ckpt_path)
    if not manifest_path.is_file() or sha256_file(manifest_path) != checkpoint.meta.get("corruption_sha256"):
        raise InputError(f"{manifest_path} is missing or is not the manifest {ckpt_path} was trained on; delete {folder} to retrain it")
    on_disk = load_manifest(manifest_path)
    check_manifest_matches(on_disk, dataset.fingerprint, dataset.spec, f"corruption manifest {manifest_path}")
    inputs = RunInputs(dataset, on_disk, checkpoint.meta["corruption_sha256"], manifest_path)
    return Model(checkpoint, inputs, folder, recorded.get("summary", {}), trained)


def forget_file(model: Model, rate: float) -> Path:
    """DIR/models/<m>/forget-<rate>.txt; rates added after training get their file now (same format)."""
    path = model.folder / f"forget-{rate_label(rate)}.txt"
    if not path.is_file():
        write_forget_file(path, model.inputs.manifest, rate, model.inputs.manifest_sha256)
    return path


# --- cells --------------------------------------------------------------------------------------


def run_cell(cfg: SweepConfig, cell: Cell, model: Model, reporter, raise_errors: bool) -> dict:
    """Unlearn (unless `original`) and evaluate one cell; returns its record (not yet written)."""
    dataset, manifest = model.inputs.dataset, model.inputs.manifest
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
        "train_steps": model.train_summary.get("steps"),
        "train_wall_time_s": model.train_summary.get("wall_time_s"),
    }
    record: dict = {"schema_version": SCHEMA_VERSION, "cell": cell.id, "config": cfg.cell_config(cell), "row": row}
    try:
        if cell.method == ORIGINAL:
            evaluation = evaluate(model.checkpoint, dataset, manifest, None, device=cfg.device)
        else:
            identified = read_identified(forget_file(model, cell.rate), dataset)
            detection, own = split_detect_settings(cell.method, cfg.overrides.get(cell.method, {}))
            overrides = method_overrides(own)
            forget = identified
            if detects(cell.method):
                found = detect(
                    model.checkpoint,
                    model.inputs,
                    identified,
                    top=detection["detect_top"],
                    threshold=detection["detect_threshold"],
                    device=cfg.device,
                    signal=detection["detect_signal"],
                )
                forget = found.candidates
                record["detect"] = found.summary
                row.update(detected=found.summary["selected"], detect_recall=found.summary.get("ground_truth", {}).get("recall"))
            outcome = unlearn(
                model.checkpoint,
                model.inputs,
                forget,
                base_method(cell.method),
                overrides,
                seed=cell.seed,
                device=cfg.device,
                precision=cfg.precision,
                reporter=reporter,
            )
            healed = Checkpoint(state_dict=outcome.state_dict, meta=outcome.meta)
            evaluation = evaluate(healed, dataset, manifest, identified, device=cfg.device)
            row.update(
                identified=len(identified),
                changed=outcome.summary["changed"],
                steps=outcome.summary["steps"],
                wall_time_s=round(outcome.summary["wall_time_s"] + record.get("detect", {}).get("wall_time_s", 0.0), 3),  # detection included
            )
            record["unlearn"] = {k: v for k, v in outcome.summary.items()}
            del outcome, healed
        row.update(evaluation["metrics"])
        row["eval_wall_time_s"] = evaluation["wall_time_s"]
        row["device"] = str(resolve_device(cfg.device))
        record["evaluation"] = evaluation
    except Exception as err:  # noqa: BLE001 - one failing cell must not end a long sweep; it is recorded and retried
        if raise_errors:
            raise
        row.update(status="failed", error=f"{err.__class__.__name__}: {err}".splitlines()[0][:500])
    row["finished_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return record


def _brief(row: dict) -> str:
    if row["status"] != "ok":
        return f"FAILED ({row['error']})"
    parts = [
        f"{name} {row[key] * 100:.1f}%"
        for name, key in (("utility", "utility"), ("healed", "healed"), ("utility x healed", "utility_x_healed"))
        if row.get(key) is not None
    ]
    unchanged = "; UNCHANGED: unlearning changed no weight" if row.get("changed") is False else ""
    return ", ".join(parts) + f" ({row['wall_time_s']:.1f}s, {row['steps']} steps{unchanged})"


# --- the sweep ----------------------------------------------------------------------------------


def run_sweep(
    cfg: SweepConfig,
    out: str | Path,
    reporter: NullReporter | None = None,
    raise_errors: bool = False,
    dry_run: bool = False,
    claim_ttl: float = DEFAULT_TTL_S,
    poll_s: float = 2.0,
) -> SweepOutcome:
    """Run every missing cell of `cfg` in DIR=`out`; results.csv/json are rebuilt after each cell.

    Any number of workers may run on the same folder at once (`remcli.sweep.claims`): each claims
    a cell before running it, each model is trained once by whichever worker claims it, and a
    worker returns when every cell of its grid is finished (by anyone) or failed in its hands.
    `claim_ttl`: seconds without a heartbeat after which a dead worker's claim is taken over;
    `poll_s`: how often a worker with nothing to claim looks again.

    `dry_run`: check everything and count what would run (`to_run`, `models_to_train`); write nothing.
    The report (summary.md, heatmaps) is written by `remcli.sweep.report.write_report`.
    """
    start = time.perf_counter()
    reporter = reporter or NullReporter()
    out = Path(out)
    prepared = prepare(cfg, out)
    merged, dataset = prepared.config, prepared.dataset
    records = load_records(out)
    cells = cfg.cells()
    outcome = SweepOutcome(out=out, config=merged, cells=len(cells), records=records)
    todo = [c for c in cells if not is_finished(records.get(c.id), cfg.cell_config(c))]
    outcome.reused = len(cells) - len(todo)
    outcome.to_run = len(todo)
    pending_models = list(dict.fromkeys((c.kind, c.seed) for c in todo))
    outcome.models_to_train = sum(not (out / "models" / model_id(k, s) / "model.safetensors").is_file() for k, s in pending_models)
    if dry_run:
        outcome.wall_time_s = round(time.perf_counter() - start, 3)
        return outcome
    out.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out / ".sweep.lock"), timeout=600):  # concurrent workers merge their grids one at a time
        merged, _ = merged_config(cfg, out)
        (out / "cells").mkdir(exist_ok=True)
        write_sweep_json(out, merged, dataset)
    prepared.config = outcome.config = merged
    reporter.note(f"sweep {out}: {len(cells)} cells, {outcome.reused} already finished, {len(todo)} to run")
    with Claims(out, claim_ttl) as claims:
        _run_cells(cfg, out, prepared, todo, outcome, reporter, raise_errors, claims, poll_s)
    outcome.records = load_records(out)
    outcome.wall_time_s = round(time.perf_counter() - start, 3)
    return outcome


def _run_cells(
    cfg: SweepConfig,
    out: Path,
    prepared: Prepared,
    todo: list[Cell],
    outcome: SweepOutcome,
    reporter,
    raise_errors: bool,
    claims: Claims,
    poll_s: float,
) -> None:
    """Claim and run cells until every cell of `todo` is finished on disk or failed here.

    Cells are taken model by model (grid order). A model another worker is training, or a cell
    another worker holds, is skipped for now; when nothing is left to claim, the worker polls
    until the others finish (or their claims go stale and are taken over)."""
    merged, dataset = prepared.config, prepared.dataset
    failed_here: set[str] = set()
    done = 0
    while True:
        on_disk = load_records(out)
        pending = [c for c in todo if c.id not in failed_here and not is_finished(on_disk.get(c.id), cfg.cell_config(c))]
        if not pending:
            break
        progressed = False
        for kind, seed in dict.fromkeys((c.kind, c.seed) for c in pending):
            model = _claimed_model(cfg, out, dataset, prepared.manifests[(kind, seed)], kind, seed, claims, reporter, outcome)
            if model is None:
                continue  # another worker is training it
            for cell in (c for c in pending if (c.kind, c.seed) == (kind, seed)):
                if not claims.try_claim(cell.id):
                    continue
                try:
                    if is_finished(load_record(out, cell.id), cfg.cell_config(cell)):
                        continue  # finished by its previous holder just before we took the claim
                    done += 1
                    tag = f"[{done}/{len(todo)}]"
                    record = run_cell(cfg, cell, model, PrefixedReporter(reporter, f"{tag} {cell.id}", notes=False), raise_errors)
                    reporter.end_phase()  # the cell's last progress line before its result line
                    atomic_write_text(out / "cells" / f"{cell.id}.json", json.dumps(normalised(record), indent=1) + "\n")
                finally:
                    claims.release(cell.id)
                progressed = True
                write_results(out, merged, load_records(out))
                if record["row"]["status"] == "ok":
                    outcome.computed += 1
                else:
                    outcome.failed.append(cell.id)
                    failed_here.add(cell.id)
                reporter.note(f"{tag} {cell.label()}: {_brief(record['row'])}")
                fit = record["row"].get("corrupted_label_acc")
                if cell.method == ORIGINAL and fit is not None and fit < MEMORISED:
                    reporter.note(
                        f"warning: {kind} seed {seed} fits only {fit:.3f} of its corrupted samples (< {MEMORISED}): not the memorising "
                        "regime; train longer or wider (--train-epochs, --width) for results comparable to the paper"
                    )
            del model
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if not progressed:
            time.sleep(poll_s)  # everything left is held by other workers
    write_results(out, merged, load_records(out))


def _claimed_model(cfg: SweepConfig, out: Path, dataset: Dataset, manifest: Manifest, kind: str, seed: int, claims: Claims, reporter, outcome):
    """The (kind, seed) model, trained here if nobody has; None while another worker trains it."""
    name = f"model-{model_id(kind, seed)}"
    claimed = False
    if not (out / "models" / model_id(kind, seed) / "model.safetensors").is_file():
        if not claims.try_claim(name):
            return None
        claimed = True
    try:
        model = ensure_model(cfg, out, dataset, manifest, kind, seed, PrefixedReporter(reporter, f"{kind} s{seed}:", notes=False))
    finally:
        if claimed:
            claims.release(name)
    if model.trained:
        outcome.models_trained += 1
        reporter.note(f"trained {kind} seed {seed}: val acc {model.train_summary.get('val_acc')} in {model.train_summary.get('wall_time_s', 0):.1f}s")
    else:
        outcome.models_reused += 1
    return model
