"""Sweeps: corrupt -> train -> unlearn -> evaluate over kinds x discovery rates x methods x seeds.

`run_sweep(SweepConfig(...), DIR)` runs (and resumes) a grid; `write_report(DIR, config, records)`
writes summary.md (the paper's Table 1) and heatmaps (its Fig. 1); `rebuild_report(DIR)` does the
latter from the files in DIR alone.
"""

from remcli.sweep.folder import load_config, load_records
from remcli.sweep.grid import ORIGINAL, Cell, SweepConfig
from remcli.sweep.report import aggregate, summary_table, write_report
from remcli.sweep.runner import SweepOutcome, run_sweep


def rebuild_report(out):
    """Rebuild results, summary.md and heatmaps from DIR's sweep.json and cell files: (config, rows, files, notes)."""
    from pathlib import Path

    from remcli.errors import InputError

    out = Path(out)
    config = load_config(out)
    records = load_records(out)
    if not records:
        raise InputError(f"{out}/cells holds no finished cells yet; run the sweep first")
    rows, files, notes = write_report(out, config, records)
    return config, rows, files, notes


__all__ = [
    "ORIGINAL",
    "Cell",
    "SweepConfig",
    "SweepOutcome",
    "aggregate",
    "load_config",
    "load_records",
    "rebuild_report",
    "run_sweep",
    "summary_table",
    "write_report",
]
