"""Heatmaps like Fig. 1 of the REM paper: utility x healed (%) by regularity and discovery rate.

One panel per method: rows are the corruption kinds from high to low regularity (poison,
interclass, label-noise), columns the discovery rates with 0.0 = the trained model before
unlearning, each cell the mean over seeds with its value printed. matplotlib is optional (the
`plots` extra) and imported only inside `write_heatmaps`; `heatmap_values` needs nothing.
A figure is drawn again only when what it shows changed (heatmaps/drawn.json keeps a digest of
each figure's inputs): every sweep command rebuilds the report, and a resumed or phased sweep would
otherwise redraw every method's unchanged panel each time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from pathlib import Path

from remcli.data.corruption import kind_names, kind_regularity
from remcli.fileio import atomic_path, atomic_write_text
from remcli.sweep.grid import ORIGINAL

Matrix = list[list[float | None]]


def regularity_label(kind: str) -> str:
    """A kind's regularity for tables and plots; "?" for a kind not registered (e.g. from older results)."""
    return kind_regularity(kind) if kind in kind_names() else "?"


def heatmap_values(rows: list[dict], method: str, kinds: list[str], rates: list[float]) -> tuple[list[str], list[float], Matrix]:
    """(row kinds, columns [0.0, *rates], values in % or None) for one method; means over seeds."""
    columns = [0.0, *rates]
    values: Matrix = []
    for kind in kinds:
        line: list[float | None] = []
        for column in columns:
            wanted = ORIGINAL if column == 0.0 else method
            found = [
                r["utility_x_healed"]
                for r in rows
                if r["kind"] == kind
                and r["method"] == wanted
                and r["status"] == "ok"
                and (column == 0.0 or r["rate"] == column)
                and r.get("utility_x_healed") is not None
            ]
            line.append(100.0 * sum(found) / len(found) if found else None)
        values.append(line)
    return kinds, columns, values


def _methods_by_score(rows: list[dict]) -> list[str]:
    scores: dict[str, list[float]] = {}
    for r in rows:
        if r["method"] != ORIGINAL and r["status"] == "ok" and r.get("utility_x_healed") is not None:
            scores.setdefault(r["method"], []).append(r["utility_x_healed"])
    return sorted(scores, key=lambda m: (-sum(scores[m]) / len(scores[m]), m))


def _draw(ax, title: str, kinds: list[str], columns: list[float], values: Matrix) -> object:
    grid = [[math.nan if v is None else v for v in line] for line in values]
    image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=100.0, aspect="auto")
    for i, line in enumerate(values):
        for j, value in enumerate(line):
            if value is not None:
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8, color="black" if value >= 60 else "white")
    ax.set_xticks(range(len(columns)), [f"{c:.1f}" if round(c, 1) == c else f"{c:g}" for c in columns], fontsize=8)
    ax.set_yticks(range(len(kinds)), [f"{k}\n({regularity_label(k)})" for k in kinds], fontsize=8)
    ax.set_xlabel("discovery rate", fontsize=8)
    ax.set_title(title, fontsize=10)
    return image


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def _digest(*shown) -> str:
    return hashlib.sha256(json.dumps(shown).encode()).hexdigest()[:16]


def write_heatmaps(folder: str | Path, rows: list[dict], kinds: list[str]) -> list[Path]:
    """heatmaps/all.png (one panel per method, best first) and heatmaps/<method>.png; figures whose
    inputs are unchanged since they were drawn are kept as they are.

    Raises ImportError when matplotlib is not installed. Uses no pyplot state (safe in any process).
    """
    import matplotlib
    from matplotlib.figure import Figure  # optional dependency: the `plots` extra

    folder = Path(folder)
    methods = _methods_by_score(rows)
    if not methods:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    rates = sorted({r["rate"] for r in rows if r["method"] != ORIGINAL})
    panels = [(m, *heatmap_values(rows, m, kinds, rates)) for m in methods]
    width = 1.1 + 0.55 * (len(rates) + 1)
    height = 0.9 + 0.45 * len(kinds)
    record = folder / "drawn.json"
    try:
        drawn = json.loads(record.read_text())
    except (OSError, ValueError):
        drawn = {}

    def refresh(name: str, digest: str, draw) -> Path:
        """Draw and save figure `name` unless the digest of what it shows matches the recorded one."""
        if drawn.get(name) != digest or not (folder / name).is_file():
            _save(draw(), folder / name)
            drawn[name] = digest
        return folder / name

    def overview():
        cols = min(3, len(panels))
        nrows = math.ceil(len(panels) / cols)
        fig = Figure(figsize=(width * cols + 1.0, height * nrows + 0.4), layout="constrained")
        axes = fig.subplots(nrows, cols, squeeze=False)
        image = None
        for ax, (method, row_kinds, columns, values) in zip(axes.flat, panels):
            image = _draw(ax, method, row_kinds, columns, values)
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        fig.colorbar(image, ax=axes, label="utility × healed (%)", shrink=0.8)
        fig.suptitle("utility × healed (%), mean over seeds")
        return fig

    def panel(method, row_kinds, columns, values):
        fig = Figure(figsize=(width + 1.0, height + 0.3), layout="constrained")
        ax = fig.subplots()
        image = _draw(ax, f"{method}: utility × healed (%)", row_kinds, columns, values)
        fig.colorbar(image, ax=ax, shrink=0.8)
        return fig

    written = [refresh("all.png", _digest(matplotlib.__version__, panels), overview)]
    for shown in panels:
        written.append(refresh(f"{shown[0]}.png", _digest(matplotlib.__version__, *shown), functools.partial(panel, *shown)))
    atomic_write_text(record, json.dumps(drawn, indent=1, sort_keys=True) + "\n")
    return written
