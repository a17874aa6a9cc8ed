"""Refresh the generated tables of a results document (docs/results-cpu.md) from a sweep folder.

The document is written by hand; each table that comes from the sweep sits between two markers,
and this script replaces what is between them, so text and numbers cannot drift apart:

    <!-- generated: summary Table 1 -->        the section of FOLDER/summary.md whose title starts so
    <!-- generated: walls -->                  mean wall time per method, and relative to retrain
    <!-- generated: ablation --base rem --variants a,b [--rates 0.1,0.3] -->
                                               benchmarks/rem_ablation.py's tables (paired by cell)
    ...
    <!-- /generated -->

    .venv/bin/python benchmarks/results_doc.py benchmarks/results/sweep-cpu docs/results-cpu.md

Run `remcli sweep --out FOLDER --report-only` first, so that summary.md is current.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from statistics import mean

BLOCK = re.compile(r"(<!-- generated: (.*?) -->\n)(.*?)(<!-- /generated -->)", re.DOTALL)
HERE = Path(__file__).resolve().parent


def summary_section(folder: Path, title: str) -> str:
    for part in re.split(r"(?m)^## ", (folder / "summary.md").read_text(encoding="utf-8")):
        if part.startswith(title):
            return part.split("\n", 1)[1].strip()
    raise SystemExit(f"{folder}/summary.md has no section starting {title!r}")


def wall_times(folder: Path) -> str:
    walls: dict[str, list[float]] = {}
    for path in (folder / "cells").glob("*.json"):
        row = json.loads(path.read_text(encoding="utf-8"))["row"]
        if row.get("status") == "ok" and row["method"] != "original":
            walls.setdefault(row["method"], []).append(float(row["wall_time_s"]))
    if "retrain" not in walls:
        raise SystemExit(f"{folder} has no retrain cells to compare wall times with")
    retrain = mean(walls["retrain"])
    rows = [f"| {m} | {len(v)} | {mean(v):.1f} | {mean(v) / retrain:.3f} |" for m, v in sorted(walls.items(), key=lambda kv: -mean(kv[1]))]
    return "| method | cells | mean wall s | × retrain |\n|---|---:|---:|---:|\n" + "\n".join(rows)


def ablation(folder: Path, args: list[str]) -> str:
    command = [sys.executable, str(HERE / "rem_ablation.py"), str(folder), *args]
    tables = subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    shown = shlex.join(["python", "benchmarks/rem_ablation.py", str(folder), *args])
    return f"`{shown}`\n\n" + tables.replace("## ", "### ").strip()


def generate(folder: Path, spec: str) -> str:
    kind, *args = shlex.split(spec)
    if kind == "summary":
        return summary_section(folder, " ".join(args))
    if kind == "walls":
        return wall_times(folder)
    if kind == "ablation":
        return ablation(folder, args)
    raise SystemExit(f"unknown generated block {kind!r}: use summary, walls or ablation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="sweep folder (cells/, summary.md)")
    parser.add_argument("doc", type=Path, help="Markdown document with generated blocks, rewritten in place")
    args = parser.parse_args()
    text = args.doc.read_text(encoding="utf-8")
    blocks = BLOCK.findall(text)
    if not blocks:
        raise SystemExit(f"{args.doc} has no <!-- generated: ... --> blocks")
    refreshed = BLOCK.sub(lambda m: f"{m.group(1)}{generate(args.folder, m.group(2))}\n{m.group(4)}", text)
    tmp = args.doc.with_name(args.doc.name + ".tmp")
    tmp.write_text(refreshed, encoding="utf-8")
    tmp.replace(args.doc)
    print(f"{args.doc}: {len(blocks)} generated blocks refreshed from {args.folder}", file=sys.stderr)


if __name__ == "__main__":
    main()
