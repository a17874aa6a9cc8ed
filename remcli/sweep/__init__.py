"""Sweeps: corrupt -> train -> unlearn -> evaluate over kinds x discovery rates x methods x seeds.

`run_sweep(SweepConfig(...), DIR)` runs (and resumes) a grid with one or more workers and writes
its report: summary.md (the paper's Table 1) and heatmaps (its Fig. 1); `rebuild_report(DIR)`
rewrites the report from the files in DIR alone. `SweepFolder(DIR)` reads what a sweep folder holds.
"""

from pathlib import Path

from remcli.errors import InputError
from remcli.sweep.folder import SweepFolder
from remcli.sweep.grid import ORIGINAL, Cell, SweepConfig
from remcli.sweep.report import aggregate, summary_table, write_report
from remcli.sweep.workers import SweepOutcome, run_sweep


def rebuild_report(out: str | Path) -> tuple[SweepConfig, list[dict], list[Path], list[str]]:
    """Rebuild results, summary.md and heatmaps from DIR's sweep.json and cell files: (config, rows, files, notes)."""
    folder = SweepFolder(out)
    config = folder.config()
    records = folder.records()
    if not records:
        raise InputError(f"{folder.cells} holds no finished cells yet; run the sweep first")
    rows, files, notes = write_report(folder, config, records)
    return config, rows, files, notes


__all__ = [
    "ORIGINAL",
    "Cell",
    "SweepConfig",
    "SweepFolder",
    "SweepOutcome",
    "aggregate",
    "rebuild_report",
    "run_sweep",
    "summary_table",
    "write_report",
]
