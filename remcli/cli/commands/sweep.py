"""`remcli sweep`: corrupt -> train -> unlearn -> evaluate over a grid, resumable, with a Table-1 report."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from remcli.cli.commands.train import parse_arch_args
from remcli.cli.options import DATA_HELP, DeviceOpt, JsonOpt, PrecisionOpt, QuietOpt
from remcli.cli.output import OneBarReporter, RichReporter, emit_json, errors_to_exit, stderr
from remcli.errors import InputError, RemcliError
from remcli.models.recipes import describe_train_lr
from remcli.sweep import SweepConfig, aggregate, rebuild_report, run_sweep, summary_table
from remcli.sweep.claims import DEFAULT_TTL_S
from remcli.sweep.grid import KIND_ORDER, PAPER_RATES, parse_discovery, parse_kinds, parse_method_settings, parse_methods, parse_seeds
from remcli.sweep.workers import Terminated, parse_devices, stop_on_sigterm


@errors_to_exit
def sweep_command(
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Sweep folder: sweep.json, models/, cells/, results.csv/json, summary.md, heatmaps/. Rerun with the same folder to resume."
        ),
    ],
    data: Annotated[Optional[str], typer.Option("--data", help=DATA_HELP)] = None,
    arch: Annotated[str, typer.Option("--arch", help="resnet9, vit_cifar, or any torchvision classifier (see `remcli archs`).")] = "resnet9",
    width: Annotated[Optional[float], typer.Option("--width", help="Channel multiplier for resnet9 / vit_cifar (1.0 = paper size).")] = None,
    arch_arg: Annotated[list[str], typer.Option("--arch-arg", help="Extra constructor argument name=value (repeatable).")] = [],
    count: Annotated[int, typer.Option("--count", help="Corrupted training samples per kind.")] = 1000,
    kinds: Annotated[str, typer.Option("--kinds", help=f"Comma-separated corruption kinds: {', '.join(KIND_ORDER)}.")] = ",".join(KIND_ORDER),
    discovery: Annotated[str, typer.Option("--discovery", help="Comma-separated discovery rates in (0, 1].")] = PAPER_RATES,
    methods: Annotated[
        str,
        typer.Option(
            "--methods", help="Comma-separated unlearning methods (see `remcli methods`). The trained model is always evaluated too, as `original`."
        ),
    ] = "rem",
    seeds: Annotated[str, typer.Option("--seeds", help="Comma-separated seeds; each drives the corruption, the training and the unlearning.")] = "0",
    train_epochs: Annotated[int, typer.Option("--train-epochs", help="Training epochs per (kind, seed) model.")] = 40,
    train_batch_size: Annotated[int, typer.Option("--train-batch-size", help="Training batch size.")] = 512,
    train_lr: Annotated[Optional[float], typer.Option("--train-lr", help="Training peak learning rate. " + describe_train_lr() + ".")] = None,
    init: Annotated[
        Optional[Path],
        typer.Option(
            "--init",
            metavar="CKPT",
            help="Fine-tune every model from this checkpoint (`train --init`); its path and sha256 are recorded in sweep.json and every cell.",
        ),
    ] = None,
    settings: Annotated[
        list[str],
        typer.Option(
            "--set",
            metavar="METHOD.NAME=VALUE",
            help="Method setting METHOD.name=value, e.g. rem.epochs=3 (repeatable; see `remcli methods --json -`).",
        ),
    ] = [],
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    quiet: QuietOpt = False,
    json_out: JsonOpt = None,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="Only rebuild results, summary.md and heatmaps from the cells already in --out.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every option and count the cells and models that would run; write nothing.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Local worker processes sharing the folder (each claims cells; each model is trained once). More workers may also run "
            "as separate `remcli sweep` commands on the same --out, on this or other machines sharing the filesystem.",
        ),
    ] = 1,
    devices: Annotated[
        Optional[str],
        typer.Option("--devices", metavar="LIST", help="Comma-separated devices for the --workers, round robin: 0,1 (CUDA indices), cuda:0,cpu."),
    ] = None,
    claim_timeout: Annotated[
        float,
        typer.Option(
            "--claim-timeout",
            min=0.1,
            help=f"Seconds without a heartbeat after which a dead worker's claim is taken over. Default {DEFAULT_TTL_S:g}.",
        ),
    ] = DEFAULT_TTL_S,
) -> None:
    """Run corrupt -> train -> unlearn -> evaluate for every kind x discovery rate x method x seed.

    One model is trained per (kind, seed) and reused by every method and rate. Resumable: a
    finished cell is never recomputed, so rerunning the same command (after a kill, or with more
    methods, rates, kinds or seeds) runs only what is missing; failed cells are retried. Writes
    results.csv/json (one row per cell), summary.md (mean ± SE per method, as the paper's Table 1)
    and heatmaps/*.png (the paper's Fig. 1; needs the `plots` extra). Exit code 1 if a cell failed.
    """
    if report_only:
        config, rows, files, notes = rebuild_report(out)
        result = {"out": str(out), "report_only": True}
    else:
        if not data:
            raise InputError("--data is required to run a sweep (only --report-only works without it)")
        cfg = SweepConfig(
            data=data,
            kinds=parse_kinds(kinds),
            rates=parse_discovery(discovery),
            methods=parse_methods(methods),
            seeds=parse_seeds(seeds),
            arch=arch,
            arch_kwargs=parse_arch_args(arch_arg, width),
            count=count,
            train_epochs=train_epochs,
            train_batch_size=train_batch_size,
            train_lr=train_lr,
            init=str(init) if init else None,
            overrides=parse_method_settings(settings),
            device=device,
            precision=precision,
        )
        if dry_run:
            plan = run_sweep(cfg, out, dry_run=True)
            stderr.print(
                f"dry run: {plan.to_run} of {plan.cells} cells would run ({plan.reused} finished), {plan.models_to_train} models would be "
                "trained; nothing was written",
                soft_wrap=True,
            )
            if json_out:
                emit_json(
                    {
                        "out": str(out),
                        "dry_run": True,
                        "cells": {"in_grid": plan.cells, "to_run": plan.to_run, "reused": plan.reused},
                        "models_to_train": plan.models_to_train,
                        "config": plan.config.to_dict(),
                    },
                    json_out,
                )
            return
        try:
            # with several workers each process prints its own lines (worker_reporter); this one only waits
            with stop_on_sigterm(), OneBarReporter(quiet or workers > 1) as reporter:
                outcome = run_sweep(
                    cfg,
                    out,
                    reporter,
                    workers=workers,
                    devices=parse_devices(devices, workers),
                    worker_reporter=functools.partial(RichReporter, quiet, plain=True),
                    raise_errors=bool(os.environ.get("REMCLI_DEBUG")),
                    claim_ttl=claim_timeout,
                )
        except KeyboardInterrupt as stop:
            stderr.print(f"interrupted; finished cells are kept in {out}/cells: rerun the same command to continue", soft_wrap=True)
            raise typer.Exit(code=143 if isinstance(stop, Terminated) else 130) from None
        rows, files, notes = outcome.rows, outcome.files, outcome.notes
        result = {
            "out": str(out),
            "report_only": False,
            "cells": {"in_grid": outcome.cells, "computed": outcome.computed, "reused": outcome.reused, "failed": len(outcome.failed)},
            "failed_cells": outcome.failed,
            "models": {"trained": outcome.models_trained, "reused": outcome.models_reused},
            "wall_time_s": outcome.wall_time_s,
        }
    for note in notes:
        stderr.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    if rows:
        stderr.print(summary_table(rows))
    result.update(rows=len(rows), summary=aggregate(rows), files=[str(f) for f in files], notes=notes)
    if not report_only:
        cells = result["cells"]
        stderr.print(
            f"{cells['computed']} cells computed, {cells['reused']} reused, {cells['failed']} failed; "
            f"{result['models']['trained']} models trained, {result['models']['reused']} reused; wrote {out}/results.csv and {out}/summary.md",
            soft_wrap=True,
        )
    if json_out:
        emit_json(result, json_out)
    if not report_only and result["cells"]["failed"]:
        raise RemcliError(
            f"{result['cells']['failed']} of {result['cells']['in_grid']} cells failed (see the error column of {out}/results.csv); rerun "
            "the same command to retry them"
        )
