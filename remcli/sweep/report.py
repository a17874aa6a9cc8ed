"""What a sweep folder reports: results.csv/json, summary.md (the paper's Table 1), a rich table.

Table 1 of the REM paper gives, per method, mean ± standard error of Healed, Utility and
Utility x Healed pooled over every cell (kinds x discovery rates) and seed, in %. `summary.md`
does the same over the folder's finished cells, sorted by utility x healed, descending; the
trained model appears as `original (no unlearning)`, pooled over its (kind, seed) cells. A
per-kind breakdown and the heatmap values as text follow, so the report is complete without
matplotlib.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from rich.table import Table

from remcli import __version__
from remcli.data.corruption import kinds_by_regularity
from remcli.fileio import atomic_write_text
from remcli.sweep.folder import SweepFolder
from remcli.sweep.grid import ORIGINAL, SCHEMA_VERSION, SweepConfig, kind_rank
from remcli.sweep.heatmaps import heatmap_values, regularity_label, write_heatmaps

ID_COLUMNS = ("cell", "kind", "rate", "method", "seed", "status")
METRIC_COLUMNS = (
    "test_acc",
    "utility",
    "healed",
    "healed_identified",
    "healed_undiscovered",
    "attack_success_rate",
    "triggered_test_acc",
    "utility_x_healed",
    "identified_corrupted_acc",
    "corrupted_label_acc",
)
COST_COLUMNS = ("identified", "steps", "wall_time_s", "eval_wall_time_s", "train_steps", "train_wall_time_s", "device", "finished_at", "error")
TABLE_METRICS = (("healed", "Healed"), ("utility", "Utility"), ("utility_x_healed", "Utility × Healed"))
ORIGINAL_LABEL = "original (no unlearning)"
UNCHANGED_NOTE = "Cells whose unlearning changed no weight (the output is the input model; see `changed` in results.csv)"
MEMORISED = 0.9  # a trained model is in the paper's regime when it fits >= this much of its corrupted samples


def memorisation(rows: list[dict]) -> list[dict]:
    """Per trained model (its `original` cell): clean accuracy, fit of its corrupted labels, and
    whether it is in the memorising regime (corrupted_label_acc >= MEMORISED); unknown = None."""
    out = []
    for row in rows:
        if row["method"] != ORIGINAL or row["status"] != "ok":
            continue
        fit = row.get("corrupted_label_acc")
        out.append(
            {
                "kind": row["kind"],
                "seed": row["seed"],
                "test_acc": row.get("test_acc"),
                "corrupted_label_acc": fit,
                "memorised": None if fit is None else fit >= MEMORISED,
                "train_wall_time_s": row.get("train_wall_time_s"),
            }
        )
    return sorted(out, key=lambda m: (kind_rank(m["kind"]), m["kind"], m["seed"]))


# --- rows ---------------------------------------------------------------------------------------


def sorted_rows(records: dict[str, dict], cfg: SweepConfig) -> list[dict]:
    methods = {m: i for i, m in enumerate(cfg.methods)}

    def key(row: dict):
        method_rank = -1 if row["method"] == ORIGINAL else methods.get(row["method"], len(methods))
        return (row["seed"], kind_rank(row["kind"]), row["kind"], row["rate"], method_rank, row["method"])

    return sorted((r["row"] for r in records.values()), key=key)


def columns_of(rows: list[dict]) -> list[str]:
    seen = dict.fromkeys(k for row in rows for k in row)
    fixed = set(ID_COLUMNS) | set(METRIC_COLUMNS) | set(COST_COLUMNS)
    metrics = [c for c in METRIC_COLUMNS if c in seen] + sorted(k for k in seen if k not in fixed)
    return [*ID_COLUMNS, *metrics, *(c for c in COST_COLUMNS if c in seen)]


def write_results(folder: SweepFolder, cfg: SweepConfig, records: dict[str, dict]) -> list[dict]:
    """results.csv and results.json: one row per cell file."""
    rows = sorted_rows(records, cfg)
    columns = columns_of(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    atomic_write_text(folder.results_csv, buffer.getvalue())
    body = {"schema_version": SCHEMA_VERSION, "remcli_version": __version__, "config": cfg.to_dict(), "columns": columns, "rows": rows}
    atomic_write_text(folder.results_json, json.dumps(body, indent=1) + "\n")
    return rows


# --- aggregation --------------------------------------------------------------------------------


def mean_sem(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and standard error of the mean (sample std / sqrt(n)); SEM is None for n < 2."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var / len(values))


def aggregate(rows: list[dict], kind: str | None = None) -> list[dict]:
    """Per method (original included): n, failed, mean/SEM of the table metrics, mean cost; best first."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if kind is None or row["kind"] == kind:
            groups.setdefault(row["method"], []).append(row)
    out = []
    for method, members in groups.items():
        ok = [r for r in members if r["status"] == "ok"]
        entry = {"method": method, "cells": len(ok), "failed": len(members) - len(ok), "unchanged": sum(r.get("changed") is False for r in ok)}
        for key, _ in TABLE_METRICS:
            entry[key], entry[f"{key}_sem"] = (_round(v) for v in mean_sem([r[key] for r in ok if r.get(key) is not None]))
        for key in ("wall_time_s", "steps"):
            entry[f"mean_{key}"] = _round(mean_sem([r[key] for r in ok if r.get(key) is not None])[0], 3)
        out.append(entry)
    return sorted(out, key=lambda e: (e["utility_x_healed"] is None, -(e["utility_x_healed"] or 0.0), e["method"]))


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def pct(mean: float | None, sem: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean * 100:.1f} ± {sem * 100:.1f}" if sem is not None else f"{mean * 100:.1f} ± –"


def method_label(method: str) -> str:
    return ORIGINAL_LABEL if method == ORIGINAL else method


# --- summary.md ---------------------------------------------------------------------------------


def _md_table(header: list[str], body: list[list[str]], align: list[str]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return lines


def kinds_present(rows: list[dict]) -> list[str]:
    return sorted({r["kind"] for r in rows}, key=lambda k: (kind_rank(k), k))


def summary_markdown(rows: list[dict], cfg: SweepConfig) -> str:
    agg = aggregate(rows)
    kinds = kinds_present(rows)
    rates = sorted({r["rate"] for r in rows if r["method"] != ORIGINAL})
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        "# Sweep summary",
        "",
        f"Data `{cfg.data}`, arch `{cfg.arch}` {json.dumps(cfg.arch_kwargs) if cfg.arch_kwargs else ''}, {cfg.count} corrupted samples per kind, "
        f"trained {cfg.train_epochs} epochs (batch {cfg.train_batch_size}); kinds {', '.join(kinds)}; "
        f"discovery rates {', '.join(str(r) for r in rates)}; seeds {', '.join(str(s) for s in seeds)}. remcli {__version__}.",
    ]
    if cfg.init:
        lines.append(f"Every model fine-tuned from `{cfg.init}` (sha256 {cfg.init_sha256[:12]}).")
    if cfg.overrides:
        lines.append(
            "Method settings: "
            + "; ".join(f"{m}: " + ", ".join(f"{k}={v}" for k, v in sorted(s.items())) for m, s in sorted(cfg.overrides.items()))
            + "."
        )
    lines += [
        "",
        "## Table 1: mean ± standard error over all cells (kinds × discovery rates) and seeds, in %",
        "",
        "Sorted by utility × healed, descending. `original` is the trained model before unlearning (one cell per kind and seed).",
        "",
    ]
    body = [
        [
            method_label(e["method"]),
            str(e["cells"]),
            *(pct(e[k], e[f"{k}_sem"]) for k, _ in TABLE_METRICS),
            _num(e["mean_wall_time_s"], "{:.1f}"),
            _num(e["mean_steps"], "{:.0f}"),
            str(e["failed"]),
        ]
        for e in agg
    ]
    lines += _md_table(
        ["method", "cells", *(name for _, name in TABLE_METRICS), "mean wall s", "mean steps", "failed"],
        body,
        ["l", "r", "r", "r", "r", "r", "r", "r"],
    )

    models = memorisation(rows)
    if models:
        lines += ["", f"## Trained models: do they memorise their corrupted samples? (regime: corrupted-label accuracy ≥ {MEMORISED})", ""]
        body = [
            [
                m["kind"],
                str(m["seed"]),
                _num(m["test_acc"], "{:.3f}"),
                _num(m["corrupted_label_acc"], "{:.3f}"),
                {True: "yes", False: "**NO: below the regime, results on it are not comparable to the paper**", None: "unknown (older evaluation)"}[
                    m["memorised"]
                ],
                _num(m["train_wall_time_s"], "{:.0f}"),
            ]
            for m in models
        ]
        lines += _md_table(["kind", "seed", "clean test acc", "corrupted-label acc", "memorised", "train s"], body, ["l", "r", "r", "r", "l", "r"])
    retrain = next((e for e in agg if e["method"] == "retrain"), None)
    if retrain and retrain["mean_wall_time_s"]:
        lines += ["", "## Wall time relative to retrain (mean unlearning seconds per cell ÷ retrain's)", ""]
        body = [
            [e["method"], f"{e['mean_wall_time_s'] / retrain['mean_wall_time_s']:.3f}"]
            for e in agg
            if e["method"] != ORIGINAL and e["mean_wall_time_s"] is not None
        ]
        lines += _md_table(["method", "× retrain"], body, ["l", "r"])

    lines += ["", "## By corruption kind: utility × healed, % (mean ± standard error over discovery rates and seeds)", ""]
    per_kind = {k: {e["method"]: e for e in aggregate(rows, k)} for k in kinds}
    body = [
        [
            method_label(e["method"]),
            *(
                pct(per_kind[k].get(e["method"], {}).get("utility_x_healed"), per_kind[k].get(e["method"], {}).get("utility_x_healed_sem"))
                for k in kinds
            ),
        ]
        for e in agg
    ]
    lines += _md_table(["method", *(f"{k} ({regularity_label(k)} regularity)" for k in kinds)], body, ["l", *("r" for _ in kinds)])

    lines += ["", "## Utility × healed by regularity and discovery rate, % (mean over seeds; the heatmap values)", ""]
    lines += ["Rows: regularity high → low. Column 0.0 is the trained model before unlearning.", ""]
    for e in agg:
        if e["method"] == ORIGINAL:
            continue
        row_kinds, columns, values = heatmap_values(rows, e["method"], kinds, rates)
        lines += [f"**{e['method']}**", ""]
        body = [[k, *(_num(v, "{:.1f}") for v in vals)] for k, vals in zip(row_kinds, values)]
        lines += _md_table(["kind", *(str(c) for c in columns)], body, ["l", *("r" for _ in columns)]) + [""]

    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        lines += ["## Failed cells (rerun the same `remcli sweep` command to retry them)", ""]
        lines += [f"* `{r['cell']}`: {r['error']}" for r in failed] + [""]
    unchanged = [r for r in rows if r["status"] == "ok" and r.get("changed") is False]
    if unchanged:
        lines += [f"## {UNCHANGED_NOTE}", ""]
        lines += [f"* `{r['cell']}`" for r in unchanged] + [""]
    return "\n".join(lines).rstrip() + "\n"


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


# --- terminal table -----------------------------------------------------------------------------


def _style(value: float | None) -> str:
    if value is None:
        return "dim"
    return "green" if value >= 0.7 else "yellow" if value >= 0.4 else "red"


def summary_table(rows: list[dict], title: str = "sweep: mean ± SE over cells and seeds, %") -> Table:
    agg = aggregate(rows)
    any_failed = any(e["failed"] for e in agg)
    any_unchanged = any(e["unchanged"] for e in agg)
    caption = "original: before unlearning; U×H: utility × healed"
    if any_unchanged:
        caption += "; unchanged: cells whose unlearning changed no weight"
    table = Table(title=title, caption=caption)
    table.add_column("method", no_wrap=True)
    for name in ("n", "healed", "utility", "U×H", "wall s", *(("failed",) if any_failed else ()), *(("unchanged",) if any_unchanged else ())):
        table.add_column(name, justify="right", no_wrap=True)
    for rank, e in enumerate(agg):
        uxh = pct(e["utility_x_healed"], e["utility_x_healed_sem"])
        table.add_row(
            e["method"],
            str(e["cells"]),
            pct(e["healed"], e["healed_sem"]),
            pct(e["utility"], e["utility_sem"]),
            f"[{_style(e['utility_x_healed'])}]{uxh}[/]",
            _num(e["mean_wall_time_s"], "{:.1f}"),
            *((f"[red]{e['failed']}[/]" if e["failed"] else "0",) if any_failed else ()),
            *((f"[yellow]{e['unchanged']}[/]" if e["unchanged"] else "0",) if any_unchanged else ()),
            style="bold" if rank == 0 else None,
        )
    return table


# --- the whole report ---------------------------------------------------------------------------


def write_report(folder: SweepFolder, cfg: SweepConfig, records: dict[str, dict]) -> tuple[list[dict], list[Path], list[str]]:
    """results.csv/json, summary.md and (with matplotlib) heatmaps; returns (rows, files, notes)."""
    rows = write_results(folder, cfg, records)
    atomic_write_text(folder.summary_md, summary_markdown(rows, cfg))
    files = [folder.results_csv, folder.results_json, folder.summary_md]
    notes = []
    try:
        files += write_heatmaps(folder.heatmaps, rows, kinds_present(rows) or list(kinds_by_regularity()))
    except ImportError:
        notes.append(
            "heatmaps skipped: matplotlib is not installed; install the plots extra (pip install 'remcli[plots]') and rerun with --report-only"
        )
    return rows, files, notes
