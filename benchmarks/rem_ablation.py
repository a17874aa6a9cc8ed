"""REM's ablation table from a sweep folder: each variant against a baseline variant, paired by cell.

Reads DIR/cells/*.json (written by `remcli sweep`, e.g. benchmarks/sweep_cpu.sh) and prints
Markdown: per variant, utility x healed pooled over kinds x rates x seeds (mean ± SE), the paired
difference to the baseline (same kind, rate and seed; mean ± SE of the differences, and whether it
exceeds 2 SE), utility x healed per kind at each rate, interclass healed against the untouched
model, and REM's own diagnostics averaged over cells (the kept iterate and the last one). With
--headroom, also how far the best of every method in the folder, picked per cell after the fact,
is above the baseline: an upper bound on what any one of them gains (the per-cell pick favours
lucky noise), so a change that must beat the baseline by 2 SE needs that much room first.

    python benchmarks/rem_ablation.py runs/sweep-cpu --base rem --variants rem-redirect,rem-redirect@bn-batch,...
    python benchmarks/rem_ablation.py runs/sweep-cpu --base rem --variants detect+rem --rates 0.1,0.3
    python benchmarks/rem_ablation.py runs/sweep-cpu --base rem-full --variants rem --non-inferior -1.0,-2.5,-5

`--non-inferior MEAN,LOWER,CELL` (points of utility x healed, stated before the run) checks each
variant against the base: the paired mean difference >= MEAN, its lower bound (mean - 2 SE) >= LOWER,
and no kind x rate cell's mean difference below CELL.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from remcli.sweep.report import mean_sem

MIN_PAIRS = 6  # fewer paired cells rank nothing, whatever their standard error says
DIAGNOSTICS = (
    "identified_drop_acc",
    "identified_redirect_acc",
    "identified_drop_npo_weight",
    "identified_redirect_npo_weight",
    "retain_drop_acc",
    "retain_redirect_acc",
)


def fmt(mean: float | None, se: float | None, scale: float = 100.0, digits: int = 1) -> str:
    if mean is None:
        return "–"
    return f"{mean * scale:.{digits}f} ± {se * scale:.{digits}f}" if se is not None else f"{mean * scale:.{digits}f}"


def load(folder: Path) -> dict[tuple, dict]:
    """(method, kind, rate, seed) -> cell record, finished cells only."""
    cells = {}
    for path in sorted((folder / "cells").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        row = record["row"]
        if row["status"] == "ok":
            cells[(row["method"], row["kind"], row["rate"], row["seed"])] = record
    return cells


def diagnostics(record: dict) -> dict[str, float]:
    """The kept iterate's and the last iterate's diagnostics, plus the share of redirecting iterations."""
    log = (record.get("unlearn") or {}).get("log") or {}
    iterations = log.get("iterations") or []
    if not iterations or "identified_redirect_acc" not in iterations[-1]:
        return {}
    kept_at = log.get("kept_iteration", len(iterations) - 1 if log.get("kept") == "last" else log.get("best_iteration", -1))
    last, kept = iterations[-1], iterations[kept_at]
    out = {f"last_{k}": last[k] for k in DIAGNOSTICS}
    out.update({f"kept_{k}": kept[k] for k in DIAGNOSTICS})
    if len(iterations) > 1 and "identified_drop_ce" in iterations[1]:
        out["first_identified_drop_ce"] = iterations[1]["identified_drop_ce"]  # how far the first flush (and repair) pushed: overshoot
    out["min_retain_drop_acc"] = min(it["retain_drop_acc"] for it in iterations[1:]) if len(iterations) > 1 else last["retain_drop_acc"]
    out["redirecting_share"] = sum(1 for it in iterations[1:] if it.get("redirecting")) / max(len(iterations) - 1, 1)
    out["kept_iteration"] = kept["iteration"]
    return out


def destinations(rows: list[dict]) -> str:
    """'true / swapped / other' in %: for a two-class swap a swapped image is predicted as its true
    class (healed), as its swapped label (corrupted_label_acc) or as one of the other classes."""
    rows = [r for r in rows if r.get("healed") is not None and r.get("corrupted_label_acc") is not None]
    if not rows:
        return "–"
    healed, _ = mean_sem([r["healed"] for r in rows])
    swapped, _ = mean_sem([r["corrupted_label_acc"] for r in rows])
    return f"{100 * healed:.0f} / {100 * swapped:.0f} / {100 * (1 - healed - swapped):.0f}"


def headroom(cells: dict[tuple, dict], base: str, kinds: list[str], rates: list[float]) -> str:
    """Per base cell, the best utility x healed of any method on the same model and rate, minus the
    base's; pooled (mean ± SE over cells) and per kind and rate, with the methods that were best."""
    margins: dict[tuple, float] = {}
    winners: dict[tuple, list[str]] = {}
    for key in (k for k in cells if k[0] == base):
        rivals = {k[0]: rec["row"]["utility_x_healed"] for k, rec in cells.items() if k[1:] == key[1:]}
        best = max(rivals, key=rivals.get)
        margins[key] = rivals[best] - rivals[base]
        winners.setdefault(key[1:3], []).append(best)
    if not margins:
        return ""
    methods = len({k[0] for k in cells if k[0] != "original"})
    lines = [
        f"\n## Headroom: the best of {methods} methods, picked per cell, minus {base} (utility × healed, %)\n",
        f"Pooled: {fmt(*mean_sem(list(margins.values())))} over {len(margins)} cells\n",
        "| kind | " + " | ".join(str(r) for r in rates) + " |\n|---|" + "---:|" * len(rates),
    ]
    for kind in kinds:
        vals = []
        for rate in rates:
            here = [m for k, m in margins.items() if k[1] == kind and k[2] == rate]
            best = ", ".join(sorted(set(winners.get((kind, rate), []))))
            vals.append(f"{fmt(*mean_sem(here))} ({best})" if here else "–")
        lines.append(f"| {kind} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def compute_fraction(record: dict) -> float | None:
    """Sample-passes spent as a fraction of the recorded training run, where the method logged it."""
    compute = (((record.get("unlearn") or {}).get("log") or {}).get("compute")) or {}
    return compute.get("fraction_of_training")


def non_inferiority(uxh: dict, cells: dict, base: str, variants: list[str], kinds: list[str], rates: list[float], margins: str) -> str:
    """Each variant against the base on the three margins (points), paired by kind, rate and seed."""
    mean_margin, lower_margin, cell_margin = (float(m) / 100 for m in margins.split(","))
    lines = [
        f"\n## Non-inferiority against {base} (margins: mean >= {100 * mean_margin:g}, mean - 2 SE >= {100 * lower_margin:g}, "
        f"every kind × rate mean >= {100 * cell_margin:g} points)\n",
        "| variant | pairs | mean Δ | mean − 2 SE | worst kind × rate (mean Δ) | non-inferior |",
        "|---|---:|---:|---:|---|---|",
    ]
    for variant in variants:
        pairs = {k[1:]: uxh[k] - uxh[(base, *k[1:])] for k in cells if k[0] == variant and (base, *k[1:]) in uxh}
        if len(pairs) < MIN_PAIRS:
            lines.append(f"| {variant} | {len(pairs)} | – | – | – | n < {MIN_PAIRS} |")
            continue
        dm, dse = mean_sem(list(pairs.values()))
        by_cell = {(k, r): mean_sem([d for key, d in pairs.items() if key[0] == k and key[1] == r])[0] for k in kinds for r in rates}
        by_cell = {key: v for key, v in by_cell.items() if v is not None}
        worst = min(by_cell, key=by_cell.get)
        ok = dm >= mean_margin and dm - 2 * dse >= lower_margin and by_cell[worst] >= cell_margin
        lines.append(
            f"| {variant} | {len(pairs)} | {100 * dm:+.1f} ± {100 * dse:.1f} | {100 * (dm - 2 * dse):+.1f} "
            f"| {worst[0]} {worst[1]} ({100 * by_cell[worst]:+.1f}) | {'yes' if ok else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--base", default="rem")
    parser.add_argument("--variants", default="rem-redirect,rem@conv10,rem@fresh")
    parser.add_argument("--rates", help="comma-separated discovery rates to include (default: all)")
    parser.add_argument("--kinds", help="comma-separated corruption kinds to include (default: all)")
    parser.add_argument("--also", type=Path, action="append", default=[], help="another sweep folder whose cells join the first's (more seeds)")
    parser.add_argument("--headroom", action="store_true", help="also print the best-of-all-methods-per-cell margin over --base")
    parser.add_argument("--non-inferior", metavar="MEAN,LOWER,CELL", help="margins in points: paired mean, mean - 2 SE, worst kind x rate mean")
    args = parser.parse_args()
    cells = load(args.folder)
    for other in args.also:
        more = load(other)
        if set(more) & set(cells):
            raise SystemExit(f"error: {other} repeats cells of {args.folder}; --also adds seeds, it does not replace cells")
        cells.update(more)
    if args.kinds:
        cells = {k: v for k, v in cells.items() if k[1] in args.kinds.split(",")}
    if args.rates:
        wanted = {float(r) for r in args.rates.split(",")}
        cells = {k: v for k, v in cells.items() if k[0] == "original" or k[2] in wanted}
    variants = [v for v in [args.base, *args.variants.split(",")] if any(k[0] == v for k in cells)]
    kinds = [k for k in ("poison", "interclass", "label-noise") if any(c[1] == k for c in cells)]
    rates = sorted({c[2] for c in cells if c[0] in variants})
    uxh = {key: rec["row"]["utility_x_healed"] for key, rec in cells.items()}

    lines = [
        "| variant | cells | utility × healed | Δ vs " + args.base + " (paired) | > 2 SE | healed | utility | wall s | sample-passes ÷ training |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for variant in variants:
        keys = [k for k in cells if k[0] == variant]
        m, se = mean_sem([uxh[k] for k in keys])
        paired = [uxh[k] - uxh[(args.base, *k[1:])] for k in keys if (args.base, *k[1:]) in uxh]
        dm, dse = mean_sem(paired)
        if variant == args.base or dse is None:
            sig = "–"
        elif len(paired) < MIN_PAIRS:  # two or three differences give no usable standard error
            sig = f"n < {MIN_PAIRS}"
        else:
            sig = "yes" if abs(dm) > 2 * dse else "no"
        hm, hse = mean_sem([cells[k]["row"]["healed"] for k in keys])
        um, use = mean_sem([cells[k]["row"]["utility"] for k in keys])
        wall, _ = mean_sem([cells[k]["row"]["wall_time_s"] for k in keys])
        delta = "–" if variant == args.base else f"{fmt(dm, dse)} (n={len(paired)})"
        spent = [f for f in (compute_fraction(cells[k]) for k in keys) if f is not None]
        passes = f"{mean_sem(spent)[0]:.3f}" if spent else "–"
        lines.append(f"| {variant} | {len(keys)} | {fmt(m, se)} | {delta} | {sig} | {fmt(hm, hse)} | {fmt(um, use)} | {wall:.0f} | {passes} |")
    print("## Pooled over kinds × rates × seeds (%)\n")
    print("\n".join(lines))

    print("\n## Utility × healed per kind and discovery rate (%, mean ± SE over seeds)\n")
    header = "| variant | " + " | ".join(f"{k} {r}" for k in kinds for r in rates) + " |"
    print(header + "\n|---|" + "---:|" * (len(kinds) * len(rates)))
    for variant in variants:
        vals = [fmt(*mean_sem([uxh[c] for c in cells if c[0] == variant and c[1] == k and c[2] == r])) for k in kinds for r in rates]
        print(f"| {variant} | " + " | ".join(vals) + " |")

    if args.non_inferior:
        print(non_inferiority(uxh, cells, args.base, [v for v in variants if v != args.base], kinds, rates, args.non_inferior))

    print("\n## Undiscovered corrupted samples healed (%, mean ± SE over seeds)\n")
    print(header.replace("| variant |", "| variant |") + "\n|---|" + "---:|" * (len(kinds) * len(rates)))
    for variant in variants:
        vals = [
            fmt(*mean_sem([cells[c]["row"]["healed_undiscovered"] for c in cells if c[0] == variant and c[1] == k and c[2] == r]))
            if any(c[0] == variant and c[1] == k and c[2] == r and cells[c]["row"].get("healed_undiscovered") is not None for c in cells)
            else "–"
            for k in kinds
            for r in rates
        ]
        print(f"| {variant} | " + " | ".join(vals) + " |")

    if "interclass" in kinds:
        print("\n## Interclass healed (%, mean ± SE over seeds) against the untouched model\n")
        original = mean_sem([rec["row"]["healed"] for k, rec in cells.items() if k[0] == "original" and k[1] == "interclass"])
        print(f"Untouched model: {fmt(*original)}\n")
        print("| variant | " + " | ".join(str(r) for r in rates) + " |\n|---|" + "---:|" * len(rates))
        for variant in variants:
            vals = [
                fmt(*mean_sem([cells[c]["row"]["healed"] for c in cells if c[0] == variant and c[1] == "interclass" and c[2] == r])) for r in rates
            ]
            print(f"| {variant} | " + " | ".join(vals) + " |")
        print("\nWhere the swapped images go (mean over seeds, %): their true class / the swapped label / any other class\n")
        print("| variant | " + " | ".join(str(r) for r in rates) + " |\n|---|" + "---:|" * len(rates))
        untouched = destinations([rec["row"] for k, rec in cells.items() if k[0] == "original" and k[1] == "interclass"])
        print("| untouched | " + " | ".join([untouched] * len(rates)) + " |")  # one cell per seed, whatever the rate
        for variant in variants:
            vals = [destinations([cells[c]["row"] for c in cells if c[0] == variant and c[1] == "interclass" and c[2] == r]) for r in rates]
            print(f"| {variant} | " + " | ".join(vals) + " |")

    detecting = [v for v in variants if any("detect" in cells[c] for c in cells if c[0] == v)]
    if detecting:
        print("\n## Detection in the cells (mean over seeds; detected: beyond the identified; precision, recall: identified + detected)\n")
        print("| variant | kind | rate | cells | detected | precision | recall | signal |\n|---|---|---:|---:|---:|---:|---:|---|")
        for variant in detecting:
            for kind in kinds:
                for rate in rates:
                    found = [cells[c]["detect"] for c in cells if c[0] == variant and c[1] == kind and c[2] == rate]
                    if found:
                        detected = mean_sem([d["selected"] for d in found])[0]
                        precision, recall = (mean_sem([d["ground_truth"][name] for d in found])[0] for name in ("precision", "recall"))
                        signals = ", ".join(sorted({d["signal"] for d in found}))
                        print(f"| {variant} | {kind} | {rate} | {len(found)} | {detected:.1f} | {precision:.2f} | {recall:.2f} | {signals} |")

    if args.headroom:
        print(headroom(cells, args.base, kinds, rates))

    print("\n## Diagnostics (mean over cells; accuracies on the identified set's corrupted labels and on retain training labels)\n")
    names = [
        "last_identified_drop_acc",
        "last_identified_redirect_acc",
        "last_identified_drop_npo_weight",
        "last_identified_redirect_npo_weight",
        "kept_identified_drop_acc",
        "kept_identified_redirect_acc",
        "last_retain_drop_acc",
        "last_retain_redirect_acc",
        "kept_retain_drop_acc",
        "min_retain_drop_acc",
        "first_identified_drop_ce",
        "redirecting_share",
        "kept_iteration",
    ]
    print("| variant | " + " | ".join(n.replace("identified_", "id ").replace("_", " ") for n in names) + " |\n|---|" + "---:|" * len(names))
    for variant in variants:
        diags = [d for d in (diagnostics(cells[c]) for c in cells if c[0] == variant) if d]
        vals = [f"{mean_sem([d[n] for d in diags if n in d])[0]:.3f}" if any(n in d for d in diags) else "–" for n in names]
        print(f"| {variant} | " + " | ".join(vals) + " |")


if __name__ == "__main__":
    main()
