"""One sweep worker: check a grid against its folder, then claim cells and run them until none is left.

Resume: a cell whose file exists, records the same cell config and succeeded is never
recomputed; a model whose checkpoint exists is reused. Every file is written atomically, so a
killed sweep leaves only whole files and the next run continues where it stopped.

Failures: an exception inside one cell's unlearning or evaluation is recorded in that cell's
file (`status: failed`, `error`) and the sweep goes on; failed cells are retried by the next run.
Bad input (names, numbers, a folder made with other settings) fails before anything is written.

Many workers per folder at a time: each claims a cell before running it (`remcli.sweep.claims`);
`remcli.sweep.workers` starts several and sums up what they did.

Seeds: corruption seed = training seed = unlearning seed = the sweep seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from filelock import FileLock

from remcli.checkpoints import load_checkpoint, load_init_weights
from remcli.data.corruption import corrupt_dataset, resolve_count
from remcli.data.datasets import Dataset, load_dataset
from remcli.data.manifest import Manifest
from remcli.engine import resolve_device, resolve_precision
from remcli.errors import InputError
from remcli.models import build_model, model_channels, resolve_arch_kwargs
from remcli.progress import PrefixedReporter
from remcli.seeding import seeded_global_rng
from remcli.sweep.cells import TrainedCheckpoint, brief, run_cell, trained_checkpoint
from remcli.sweep.claims import Claims
from remcli.sweep.folder import SweepFolder
from remcli.sweep.grid import ORIGINAL, Cell, SweepConfig, merge_configs
from remcli.sweep.report import MEMORISED, write_results

# --- preparation: everything that can fail on bad input, before anything is written -------------


@dataclass
class Prepared:
    """A grid checked against its folder, with what every cell needs loaded once."""

    config: SweepConfig  # merged with the folder's
    dataset: Dataset
    manifests: dict[tuple[str, int], Manifest]  # (kind, seed) -> its corruption, made by the `corrupt` step


def merged_config(cfg: SweepConfig, folder: SweepFolder) -> tuple[SweepConfig, dict | None]:
    """`cfg` merged with the folder's sweep.json (and that file's body, or None)."""
    stored = folder.read_sweep_json()
    if stored is None:
        if folder.holds_other_files():
            raise InputError(f"--out {folder.root} is a non-empty folder without sweep.json; give a new or empty folder")
        return cfg, None
    finished = {r["row"]["method"] for r in folder.records().values() if r["row"].get("status") == "ok"}
    return merge_configs(SweepConfig.from_dict(stored["config"]), cfg, str(folder.sweep_json), finished), stored


def prepare(cfg: SweepConfig, folder: SweepFolder) -> Prepared:
    """Check every option, the folder, the data and the architecture (and init); make the manifests."""
    cfg.validate()
    if folder.root.exists() and not folder.root.is_dir():
        raise InputError(f"--out {folder.root} is a file; give a directory")
    merged, stored = merged_config(cfg, folder)
    resolve_precision(cfg.precision, resolve_device(cfg.device))
    dataset = load_dataset(cfg.data)
    if stored is not None and stored.get("dataset_fingerprint") not in (None, dataset.fingerprint):
        raise InputError(
            f"{folder.sweep_json} was made for data {stored['dataset_fingerprint']}, but {cfg.data} is {dataset.fingerprint}; use another --out"
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


def unfinished(cfg: SweepConfig, folder: SweepFolder, cells: list[Cell]) -> list[Cell]:
    """The cells without a successful record made with their current config."""
    records = folder.records()
    return [cell for cell in cells if not folder.is_finished(cell, cfg.cell_config(cell), records)]


# --- one worker ---------------------------------------------------------------------------------


def run_worker(cfg: SweepConfig, folder: SweepFolder, prepared: Prepared, reporter, raise_errors: bool, claim_ttl: float, poll_s: float) -> None:
    """Merge `cfg`'s grid into the folder's sweep.json, then claim and run its unfinished cells.

    Returns when every cell of the grid is finished (by this or another worker) or failed here;
    results.csv/json are rebuilt after each cell."""
    folder.root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.lock), timeout=600):  # concurrent workers merge their grids one at a time
        prepared.config, _ = merged_config(cfg, folder)
        folder.cells.mkdir(exist_ok=True)
        folder.write_sweep_json(prepared.config, prepared.dataset.fingerprint)
    cells = cfg.cells()
    todo = unfinished(cfg, folder, cells)
    reporter.note(f"sweep {folder.root}: {len(cells)} cells, {len(cells) - len(todo)} already finished, {len(todo)} to run")
    with folder.claims(claim_ttl) as claims:
        _run_cells(cfg, folder, prepared, todo, reporter, raise_errors, claims, poll_s)


def _run_cells(
    cfg: SweepConfig, folder: SweepFolder, prepared: Prepared, todo: list[Cell], reporter, raise_errors: bool, claims: Claims, poll_s: float
) -> None:
    """Claim and run cells until every cell of `todo` is finished on disk or failed here.

    Cells are taken model by model (grid order). A model another worker is training, or a cell
    another worker holds, is skipped for now; when nothing is left to claim, the worker polls
    until the others finish (or their claims go stale and are taken over)."""
    failed_here: set[str] = set()
    done = 0
    while pending := [c for c in unfinished(cfg, folder, todo) if c.id not in failed_here]:
        progressed = False
        for kind, seed in dict.fromkeys((c.kind, c.seed) for c in pending):
            base = _claimed_checkpoint(cfg, folder, prepared, kind, seed, claims, reporter)
            if base is None:
                continue  # another worker is training it
            for cell in (c for c in pending if (c.kind, c.seed) == (kind, seed)):
                if not claims.try_claim(cell.id):
                    continue
                try:
                    if folder.is_finished(cell, cfg.cell_config(cell)):
                        continue  # finished by its previous holder just before we took the claim
                    done += 1
                    tag = f"[{done}/{len(todo)}]"
                    record = run_cell(cfg, folder, cell, base, PrefixedReporter(reporter, f"{tag} {cell.id}", notes=False), raise_errors)
                    reporter.end_phase()  # the cell's last progress line before its result line
                    folder.write_record(record)
                finally:
                    claims.release(cell.id)
                progressed = True
                write_results(folder, prepared.config, folder.records())
                if record["row"]["status"] != "ok":
                    failed_here.add(cell.id)
                reporter.note(f"{tag} {cell.label()}: {brief(record['row'])}")
                _warn_if_not_memorised(cell, record["row"], reporter)
            del base
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if not progressed:
            time.sleep(poll_s)  # everything left is held by other workers
    write_results(folder, prepared.config, folder.records())


def _warn_if_not_memorised(cell: Cell, row: dict, reporter) -> None:
    """An `original` cell whose model fits too little of its corruption is outside the paper's regime: say so now."""
    fit = row.get("corrupted_label_acc")
    if cell.method == ORIGINAL and fit is not None and fit < MEMORISED:
        reporter.note(
            f"warning: {cell.kind} seed {cell.seed} fits only {fit:.3f} of its corrupted samples (< {MEMORISED}): not the memorising "
            "regime; train longer or wider (--train-epochs, --width) for results comparable to the paper"
        )


def _claimed_checkpoint(
    cfg: SweepConfig, folder: SweepFolder, prepared: Prepared, kind: str, seed: int, claims: Claims, reporter
) -> TrainedCheckpoint | None:
    """The (kind, seed) checkpoint, trained here if nobody has; None while another worker trains it."""
    name = folder.model_claim(kind, seed)
    claimed = False
    if not folder.has_model(kind, seed):
        if not claims.try_claim(name):
            return None
        claimed = True
    try:
        prefixed = PrefixedReporter(reporter, f"{kind} s{seed}:", notes=False)
        base = trained_checkpoint(cfg, folder, prepared.dataset, prepared.manifests[(kind, seed)], kind, seed, prefixed)
    finally:
        if claimed:
            claims.release(name)
    if base.trained:
        reporter.note(f"trained {kind} seed {seed}: val acc {base.train_summary.get('val_acc')} in {base.train_summary.get('wall_time_s', 0):.1f}s")
    return base
