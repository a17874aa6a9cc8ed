"""Refresh the generated tables of a results document (docs/results-cpu.md) from a sweep folder.

The document is written by hand; each table that comes from the sweep sits between two markers,
and this script replaces what is between them, so text and numbers cannot drift apart:

    <!-- generated: summary Table 1 -->        the section of FOLDER/summary.md whose title starts so
    <!-- generated: walls -->                  mean wall time per method, and relative to retrain
    <!-- generated: ablation --base rem --variants a,b [--rates 0.1,0.3] -->
                                               benchmarks/rem_ablation.py's tables (paired by cell)
    <!-- generated: pretrained FILE.json -->     the backbone record of benchmarks/sweep_finetuned.sh
    <!-- generated: coverage --methods a,b --rates 0.1,0.5 --kinds k1,k2 --seeds 0,1,2 -->
                                               finished cells per method out of that grid, and which are missing
    <!-- generated: commands -->               FOLDER/commands.sh: every sweep command that ran, its seconds and exit code
    <!-- generated: compare OTHER_FOLDER -->   utility x healed (and utility) per method here and in another sweep
                                               folder, on the (kind, rate, seed) cells both hold, with each folder's
                                               rank (the untouched models, `original`, ranked with the rest)
    ...
    <!-- /generated -->

    .venv/bin/python benchmarks/results_doc.py benchmarks/results/sweep-cpu docs/results-cpu.md
    .venv/bin/python benchmarks/results_doc.py --partial benchmarks/results/sweep-finetuned docs/results-finetuned.md

Run `remcli sweep --out FOLDER --report-only` first, so that summary.md is current. `--partial` is for
a sweep that is still running: a block that cannot be generated yet (no retrain cells for the wall
times, no rem cells to pair with) says so in the document instead of stopping the refresh.
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

from remcli.models.recipes import default_optimizer, train_lr
from remcli.sweep.report import mean_sem

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


def load_cells(folder: Path) -> dict[tuple, dict]:
    """(method, kind, rate, seed) -> row, finished cells only."""
    rows = (json.loads(path.read_text(encoding="utf-8"))["row"] for path in (folder / "cells").glob("*.json"))
    return {(r["method"], r["kind"], float(r["rate"]), int(r["seed"])): r for r in rows if r.get("status") == "ok"}


def pretrained(folder: Path, args: list[str]) -> str:
    """The backbone record: one row per pretraining stage, the clean test accuracy on the last (the backbone)."""
    record = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    images = record["training_images"]
    first, last = images["first_image_per_class"], images["first_image_per_class"] + images["per_class"] - 1
    header = "| stage | training images | epochs | peak lr | steps | train s | images/s | precision | val acc | clean test acc | sha256 |"
    rows, stages = [], record["stages"]
    for n, stage in enumerate(stages, 1):
        train, final = stage["train"], n == len(stages)
        lr = re.search(r"--lr (\S+)", stage["command"])
        arch = re.search(r"--arch (\S+)", stage["command"])
        peak_lr = lr.group(1) if lr else f"{train_lr(default_optimizer(arch.group(1) if arch else 'resnet9')):g} (default)"
        scored = f"**{record['test_acc']:.3f}** ({record['test_samples']:,} test images)" if final else "–"
        rows.append(
            f"| {n} | {train['train_samples']:,} (+{train['validation_samples']:,} held out; images {first}..{last} of every class) "
            f"| {train['epochs']} | {peak_lr} | {train['steps']} | {train['wall_time_s']:.0f} | {train['images_per_s']:.0f} "
            f"| {train['precision']} | {train['val_acc']:.3f} | {scored} | {'`' + record['sha256'][:12] + '`' if final else '–'} |"
        )
    commands = "\n".join(f"{n}. `{stage['command']}`" for n, stage in enumerate(stages, 1))
    table = "\n".join([header, "|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---|", *rows])
    return f"{table}\n\n{commands}\n\nthen `{record['evaluate_command']}`"


def coverage(folder: Path, args: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="coverage")
    for name in ("methods", "rates", "kinds", "seeds"):
        parser.add_argument(f"--{name}", required=True)
    opts = parser.parse_args(args)
    rates, kinds, seeds = [float(r) for r in opts.rates.split(",")], opts.kinds.split(","), [int(s) for s in opts.seeds.split(",")]
    done = load_cells(folder)
    lines = ["| method | finished | of | missing |", "|---|---:|---:|---|"]
    for method in ["original", *opts.methods.split(",")]:
        grid = [(method, k, 0.0 if method == "original" else r, s) for k in kinds for r in ([0.0] if method == "original" else rates) for s in seeds]
        missing = [key for key in grid if key not in done]
        by_rate = {r: sum(1 for key in missing if key[2] == r) for r in sorted({key[2] for key in missing})}
        note = "none" if not missing else ", ".join(f"{n} at {r}" if method != "original" else f"{n} models" for r, n in by_rate.items())
        lines.append(f"| {method} | {len(grid) - len(missing)} | {len(grid)} | {note} |")
    return "\n".join(lines)


def commands(folder: Path) -> str:
    path = folder / "commands.sh"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist yet")
    return "```\n" + path.read_text(encoding="utf-8").strip() + "\n```"


def compare(folder: Path, args: list[str]) -> str:
    other = Path(args[0])
    here, there = load_cells(folder), load_cells(other)
    common = sorted(set(here) & set(there))
    methods = sorted({key[0] for key in common})
    if not any(m != "original" for m in methods):
        raise SystemExit(f"{folder} and {other} share no finished unlearning cells")
    stats = {}
    for m in methods:
        keys = [key for key in common if key[0] == m]
        a, b = mean_sem([here[k]["utility_x_healed"] for k in keys]), mean_sem([there[k]["utility_x_healed"] for k in keys])
        utility = (mean(here[k]["utility"] for k in keys), mean(there[k]["utility"] for k in keys))
        stats[m] = (len(keys), a, b, utility)
    rank_here = {m: i + 1 for i, m in enumerate(sorted(methods, key=lambda m: -stats[m][1][0]))}
    rank_there = {m: i + 1 for i, m in enumerate(sorted(methods, key=lambda m: -stats[m][2][0]))}

    def pct(value: tuple) -> str:
        return f"{value[0] * 100:.1f}" + (f" ± {value[1] * 100:.1f}" if value[1] is not None else "")

    head = f"| method | shared cells | utility × healed here (%) | rank | in {other} (%) | rank | utility here / there (%) |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for m in sorted(methods, key=lambda m: rank_here[m]):
        n, a, b, (u_here, u_there) = stats[m]
        lines.append(f"| {m} | {n} | {pct(a)} | {rank_here[m]} | {pct(b)} | {rank_there[m]} | {u_here * 100:.1f} / {u_there * 100:.1f} |")
    return "\n".join(lines)


def generate(folder: Path, spec: str) -> str:
    kind, *args = shlex.split(spec)
    if kind == "pretrained":
        return pretrained(folder, args)
    if kind == "coverage":
        return coverage(folder, args)
    if kind == "commands":
        return commands(folder)
    if kind == "compare":
        return compare(folder, args)
    if kind == "summary":
        return summary_section(folder, " ".join(args))
    if kind == "walls":
        return wall_times(folder)
    if kind == "ablation":
        return ablation(folder, args)
    raise SystemExit(f"unknown generated block {kind!r}: use summary, walls, ablation, pretrained, coverage, commands or compare")


def generate_or_note(folder: Path, spec: str, partial: bool) -> str:
    """With --partial, a block the folder cannot fill yet says why instead of stopping the refresh."""
    if not partial:
        return generate(folder, spec)
    try:
        return generate(folder, spec)
    except (SystemExit, subprocess.CalledProcessError, KeyError, ZeroDivisionError) as exc:
        reason = exc.stderr.strip().splitlines()[-1] if isinstance(exc, subprocess.CalledProcessError) and exc.stderr else exc
        return f"_Not generated yet: {reason}._"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="sweep folder (cells/, summary.md)")
    parser.add_argument("doc", type=Path, help="Markdown document with generated blocks, rewritten in place")
    parser.add_argument("--partial", action="store_true", help="a sweep still running: blocks it cannot fill yet say so instead of failing")
    args = parser.parse_args()
    text = args.doc.read_text(encoding="utf-8")
    blocks = BLOCK.findall(text)
    if not blocks:
        raise SystemExit(f"{args.doc} has no <!-- generated: ... --> blocks")
    refreshed = BLOCK.sub(lambda m: f"{m.group(1)}{generate_or_note(args.folder, m.group(2), args.partial)}\n{m.group(4)}", text)
    tmp = args.doc.with_name(args.doc.name + ".tmp")
    tmp.write_text(refreshed, encoding="utf-8")
    tmp.replace(args.doc)
    print(f"{args.doc}: {len(blocks)} generated blocks refreshed from {args.folder}", file=sys.stderr)


if __name__ == "__main__":
    main()
