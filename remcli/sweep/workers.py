"""`run_sweep()`: a sweep run by local workers, and what they did.

One worker runs in this process; several are spawned processes sharing the folder, each claiming
cells (`remcli.sweep.runner`), each model trained once by whichever claims it. More workers may
join from other shells or machines that see the same folder. The outcome is counted from the
folder before and after the run, so it is the same however many workers did the work; the
report (results, summary.md, heatmaps) is rebuilt at the end.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from remcli.engine import resolve_device
from remcli.errors import InputError
from remcli.progress import NullReporter, PrefixedReporter
from remcli.sweep.claims import DEFAULT_TTL_S
from remcli.sweep.folder import SweepFolder
from remcli.sweep.grid import SweepConfig
from remcli.sweep.report import write_report
from remcli.sweep.runner import Prepared, prepare, run_worker, unfinished


@dataclass
class SweepOutcome:
    """What a sweep run found, did and reported (`dry_run`: what it would do)."""

    out: Path
    config: SweepConfig  # the folder's config after this run (union of grids)
    cells: int = 0  # cells in this run's grid
    computed: int = 0  # cells of the grid finished during this run
    reused: int = 0  # found finished
    failed: list[str] = field(default_factory=list)  # cells of the grid left unfinished (failed), grid order; then any crashed worker
    to_run: int = 0  # cells of the grid not finished when the run began
    models_to_train: int = 0  # models those cells need that had no checkpoint when the run began
    models_trained: int = 0
    models_reused: int = 0  # models those cells need that had one
    wall_time_s: float = 0.0
    rows: list[dict] = field(default_factory=list)  # the report: one row per cell file in the folder
    files: list[Path] = field(default_factory=list)  # the report's files
    notes: list[str] = field(default_factory=list)  # what the report could not do (heatmaps without matplotlib)


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. `timeout`, a batch scheduler): stop like Ctrl-C, between two atomic writes."""


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` while the block runs (main thread only: signals go there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def parse_devices(text: str | None, workers: int) -> list[str | None]:
    """'0,1' -> ['cuda:0', 'cuda:1'] round robin over `workers`; None -> [None] * workers (the --device)."""
    if not text:
        return [None] * workers
    devices = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        device = f"cuda:{item}" if item.isdigit() else item
        resolve_device(device)  # a one-line error for a device that does not exist here
        devices.append(device)
    if not devices:
        raise InputError(f"--devices {text!r} must list devices, e.g. 0,1 or cuda:0,cpu")
    return [devices[i % len(devices)] for i in range(workers)]


def run_sweep(
    cfg: SweepConfig,
    out: str | Path,
    reporter=None,
    *,
    workers: int = 1,
    devices: list[str | None] | None = None,
    worker_reporter: Callable | None = None,
    raise_errors: bool = False,
    dry_run: bool = False,
    claim_ttl: float = DEFAULT_TTL_S,
    poll_s: float = 2.0,
) -> SweepOutcome:
    """Run every missing cell of `cfg` in the sweep folder `out` and rebuild its report.

    `workers` > 1 spawns that many processes on the folder, one `devices` entry each (None: the
    config's device); each opens `worker_reporter()` (a picklable factory of a reporter context
    manager; default silent) and prefixes its lines with its number. One worker runs here and
    reports to `reporter`. `raise_errors` (one worker only) raises a cell's exception instead of
    recording it. `claim_ttl`: seconds without a heartbeat after which a dead worker's claim is
    taken over; `poll_s`: how often a worker with nothing to claim looks again. `dry_run`: check
    everything and count what would run (`to_run`, `models_to_train`); write nothing.
    """
    start = time.perf_counter()
    folder = SweepFolder(out)
    if workers == 1 and devices and devices[0]:
        cfg = replace(cfg, device=devices[0])
    prepared = prepare(cfg, folder)
    outcome = _plan(cfg, folder, prepared)
    if not dry_run:
        models_before = {model for model in cfg.models() if folder.has_model(*model)}
        if workers == 1:
            run_worker(cfg, folder, prepared, reporter or NullReporter(), raise_errors, claim_ttl, poll_s)
            crashed = []
        else:
            crashed = _run_processes(cfg, folder.root, devices or [None] * workers, claim_ttl, poll_s, worker_reporter or _silent)
        _tally(outcome, cfg, folder, models_before, crashed)
    outcome.wall_time_s = round(time.perf_counter() - start, 3)
    return outcome


def _plan(cfg: SweepConfig, folder: SweepFolder, prepared: Prepared) -> SweepOutcome:
    """What the run finds: the grid's cells, how many are finished, which models its other cells need."""
    cells = cfg.cells()
    todo = unfinished(cfg, folder, cells)
    needed = list(dict.fromkeys((c.kind, c.seed) for c in todo))
    to_train = sum(not folder.has_model(kind, seed) for kind, seed in needed)
    return SweepOutcome(
        out=folder.root,
        config=prepared.config,
        cells=len(cells),
        reused=len(cells) - len(todo),
        to_run=len(todo),
        models_to_train=to_train,
        models_reused=len(needed) - to_train,
    )


def _tally(outcome: SweepOutcome, cfg: SweepConfig, folder: SweepFolder, models_before: set, crashed: list[str]) -> None:
    """Count what the run did from the folder, and rebuild the report."""
    outcome.config = folder.config()
    records = folder.records()
    finished = {cell_id for cell_id, record in records.items() if record["row"].get("status") == "ok"}
    grid = [cell.id for cell in cfg.cells()]
    outcome.computed = sum(cell_id in finished for cell_id in grid) - outcome.reused
    outcome.failed = [cell_id for cell_id in grid if cell_id not in finished] + crashed  # in grid order
    outcome.models_trained = sum(folder.has_model(*model) for model in cfg.models() if model not in models_before)
    outcome.rows, outcome.files, outcome.notes = write_report(folder, outcome.config, records)


def _silent():
    return contextlib.nullcontext(NullReporter())


def _run_processes(cfg: SweepConfig, out: Path, devices: list[str | None], claim_ttl: float, poll_s: float, make_reporter: Callable) -> list[str]:
    """Start one process per device entry, wait for them all; returns a line per worker that crashed."""
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
    threads = max(1, (os.cpu_count() or 1) // len(devices))
    processes = [
        context.Process(target=_worker, args=(replace(cfg, device=device or cfg.device), out, i + 1, threads, claim_ttl, poll_s, make_reporter))
        for i, device in enumerate(devices)
    ]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=30)
    return [f"worker {i + 1} exited with {p.exitcode}" for i, p in enumerate(processes) if p.exitcode not in (0, 1)]


def _worker(cfg: SweepConfig, out: Path, index: int, threads: int, claim_ttl: float, poll_s: float, make_reporter: Callable) -> None:
    """One spawned worker: its share of the threads, SIGTERM as a stop between cells, its lines numbered.

    Stopped (SIGTERM from the main process or a scheduler, Ctrl-C in a terminal), it releases its
    claims and exits with the shell's code for that signal (143, 130) and no traceback: the main
    process says what to do."""
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(threads)
    try:
        with stop_on_sigterm(), make_reporter() as reporter:
            folder = SweepFolder(out)
            run_worker(cfg, folder, prepare(cfg, folder), PrefixedReporter(reporter, f"worker {index}:"), False, claim_ttl, poll_s)
    except KeyboardInterrupt as stop:
        sys.exit(143 if isinstance(stop, Terminated) else 130)
