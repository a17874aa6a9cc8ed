"""`remcli sweep` on real CIFAR-10 images: one row per cell, resume, one model per (kind, seed), report, bad input.

One sweep folder is grown over several runs (module fixture) the way a user would: a small grid,
then more rates and methods (with one method failing), the same command again, and again after
a cell file was lost. The tests read what each run wrote and said.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

import remcli.sweep.cells as sweep_cells
from remcli.cli.main import app
from remcli.data import load_dataset, load_manifest
from remcli.data.corruption import identified_at
from remcli.data.index_files import read_index_file
from remcli.errors import InputError
from remcli.sweep.grid import (
    SweepConfig,
    merge_configs,
    parse_method_settings,
    parse_methods,
)
from remcli.sweep.heatmaps import heatmap_values, write_heatmaps
from remcli.sweep.report import aggregate, mean_sem
from remcli.unlearning import list_methods
from tests.conftest import profile_script_env

pytestmark = pytest.mark.slow  # sweeps train models and unlearn per cell; the profile scripts run them

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = Path(os.environ.get("REMCLI_SHARED_DATA", REPO.parent / "shared" / "data")) / "cifar10"
PNG = b"\x89PNG\r\n\x1a\n"
KINDS = ("poison", "interclass", "label-noise")
TINY = ["--width", "0.125", "--count", "60", "--train-epochs", "1", "--train-batch-size", "64", "--device", "cpu"]
BUDGET = ["--set=rem.epochs=1", "--set=rem.batch_size=64", "--set=rem.flush_max_epochs=3", "--set=ga.max_epochs=2", "--set=ga.batch_size=64"]

runner = CliRunner()


def sweep(*args) -> object:
    return runner.invoke(app, ["sweep", *(str(a) for a in args)], env={"COLUMNS": "120"})


def grid_sweep(spec: str, out: Path, rates: str, methods: str, *extra) -> object:
    budget = [b for b in BUDGET if b.split("=", 1)[1].split(".")[0] in methods.split(",")]
    return sweep(
        "--data", spec, *TINY, "--kinds", ",".join(KINDS), "--discovery", rates, "--methods", methods, *budget, "--out", out, "--json", "-", *extra
    )


def snapshot(folder: Path) -> dict[str, int]:
    """Every file under `folder` with its mtime (ns): what a run left behind."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def cell_ids(rates: tuple[str, ...], methods: tuple[str, ...]) -> set[str]:
    ids = {f"{k}-s0-original" for k in KINDS}
    return ids | {f"{k}-s0-{m}-r{r}" for k in KINDS for r in rates for m in methods}


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on 2 shared cores: one thread is ~10x faster than two under contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def grown(tmp_path_factory, cifar_spec, one_thread):
    out = tmp_path_factory.mktemp("sweep") / "run"
    runs, snaps = [], []

    def record(result):
        runs.append(result)
        snaps.append(snapshot(out))

    # 1. a first, small grid
    record(grid_sweep(cifar_spec, out, "1.0", "rem"))
    # 2. more rates and methods; ga fails at rate 1.0 (as a crashing method would)
    real_unlearn = sweep_cells.unlearn

    def flaky_unlearn(checkpoint, inputs, identified, method, *args, **kwargs):
        if method == "ga" and len(identified) == 60:
            raise RuntimeError("boom")
        return real_unlearn(checkpoint, inputs, identified, method, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep_cells, "unlearn", flaky_unlearn)
        record(grid_sweep(cifar_spec, out, "0.5,1.0", "rem,ga"))
    failed_rows = list(csv.DictReader(open(out / "results.csv")))
    # 3. the same command: only the failed cells run
    record(grid_sweep(cifar_spec, out, "0.5,1.0", "rem,ga"))
    # 4. again: nothing to do
    record(grid_sweep(cifar_spec, out, "0.5,1.0", "rem,ga"))
    # 5. a cell file lost (as if the sweep had been killed before writing it): only that cell runs
    (out / "cells" / "interclass-s0-rem-r0.5.json").unlink()
    record(grid_sweep(cifar_spec, out, "0.5,1.0", "rem,ga"))
    return SimpleNamespace(out=out, runs=runs, snaps=snaps, failed_rows=failed_rows, spec=cifar_spec)


def summary_of(result) -> dict:
    return json.loads(result.stdout)


# --- what a sweep writes ------------------------------------------------------------------------


def test_runs_exit_codes_and_stdout_is_json(grown):
    codes = [r.exit_code for r in grown.runs]
    assert codes == [0, 1, 0, 0, 0], [(r.exit_code, r.stderr[-500:]) for r in grown.runs]
    for result in grown.runs:
        body = summary_of(result)  # stdout is exactly one JSON object; the table went to stderr
        assert body["out"] == str(grown.out)
    assert "U×H" in grown.runs[-1].stderr and "│ ga " in grown.runs[-1].stderr


def test_results_have_one_row_per_cell(grown):
    rows = list(csv.DictReader(open(grown.out / "results.csv")))
    expected = cell_ids(("0.5", "1.0"), ("rem", "ga"))
    assert len(rows) == len(expected) == 15
    assert {r["cell"] for r in rows} == expected
    for column in (
        "kind",
        "rate",
        "method",
        "seed",
        "status",
        "test_acc",
        "utility",
        "healed",
        "utility_x_healed",
        "steps",
        "wall_time_s",
        "train_wall_time_s",
    ):
        assert column in rows[0], column
    for row in rows:
        assert row["status"] == "ok" and row["error"] == "", row
        for metric in ("test_acc", "utility", "healed", "utility_x_healed"):
            assert 0.0 <= float(row[metric]) <= 1.0
        assert math.isclose(float(row["utility_x_healed"]), float(row["utility"]) * float(row["healed"]), abs_tol=1e-5)
        assert (row["attack_success_rate"] != "") == (row["kind"] == "poison")
        if row["method"] == "original":
            assert row["rate"] == "0.0" and row["steps"] == "0" and row["identified"] == "0"
        else:
            assert float(row["wall_time_s"]) > 0 and (int(row["steps"]) > 0 or row["method"] == "ga")  # ga stops at once if already below gamma
            assert int(row["identified"]) == round(60 * float(row["rate"]))
            assert row["healed_identified"] != "" and row["identified_corrupted_acc"] != ""
    body = json.loads((grown.out / "results.json").read_text())
    assert [r["cell"] for r in body["rows"]] == [r["cell"] for r in rows]
    assert body["config"]["methods"] == ["rem", "ga"] and body["config"]["rates"] == [0.5, 1.0]


def test_cell_files_record_config_and_evaluation(grown):
    record = json.loads((grown.out / "cells" / "poison-s0-rem-r0.5.json").read_text())
    assert record["row"]["status"] == "ok"
    assert record["config"]["method"] == "rem" and record["config"]["rate"] == 0.5
    assert record["config"]["overrides"] == {"batch_size": 64, "epochs": 1, "flush_max_epochs": 3}
    assert record["config"]["model"]["kind"] == "poison" and record["config"]["model"]["seed"] == 0
    assert record["unlearn"]["config"]["epochs"] == 1 and record["unlearn"]["steps"] == record["row"]["steps"]
    assert record["evaluation"]["metrics"]["utility"] == record["row"]["utility"]


def test_one_model_per_kind_and_seed(grown):
    models = sorted(p.name for p in (grown.out / "models").iterdir())
    assert models == ["interclass-s0", "label-noise-s0", "poison-s0"]
    assert [summary_of(r)["models"] for r in grown.runs] == [
        {"trained": 3, "reused": 0},
        {"trained": 0, "reused": 3},
        {"trained": 0, "reused": 3},
        {"trained": 0, "reused": 0},
        {"trained": 0, "reused": 1},
    ]
    for name in models:  # never rewritten after the first run
        for snap in grown.snaps[1:]:
            assert snap[f"models/{name}/model.safetensors"] == grown.snaps[0][f"models/{name}/model.safetensors"]
            assert snap[f"models/{name}/corruption.json"] == grown.snaps[0][f"models/{name}/corruption.json"]
    assert len(list((grown.out / "models").rglob("*.safetensors"))) == 3


def test_forget_files_match_the_manifest(grown):
    dataset = load_dataset(grown.spec)
    folder = grown.out / "models" / "label-noise-s0"
    manifest = load_manifest(folder / "corruption.json")
    assert manifest.kind == "label-noise" and manifest.seed == 0 and len(manifest.indices) == 60
    for rate in (0.5, 1.0):  # 0.5 was added after training: its file is written on demand, same format
        ids = read_index_file(folder / f"forget-{rate}.txt", len(dataset.train), dataset.fingerprint)
        assert torch.equal(ids, identified_at(manifest, rate))


@pytest.mark.parametrize("kind", KINDS)
def test_sweep_writes_the_manifest_and_forget_file_remcli_corrupt_writes(grown, kind, tmp_path):
    folder = grown.out / "models" / f"{kind}-s0"
    result = runner.invoke(app, ["corrupt", grown.spec, "--kind", kind, "--count", "60", "--seed", "0", "--discovery", "1.0", "--out", tmp_path])
    assert result.exit_code == 0, result.output
    for name in ("corruption.json", "forget-1.0.txt"):
        assert (folder / name).read_bytes() == (tmp_path / name).read_bytes(), name
    assert load_manifest(folder / "corruption.json").content_sha256 == load_dataset(grown.spec).content_sha256
    assert "# content-sha256:" in (folder / "forget-0.5.txt").read_text()  # a rate added after training too


def test_resume_computes_only_missing_cells(grown):
    cells = [summary_of(r)["cells"] for r in grown.runs]
    assert cells[0] == {"in_grid": 6, "computed": 6, "reused": 0, "failed": 0}
    assert cells[1] == {"in_grid": 15, "computed": 6, "reused": 6, "failed": 3}
    assert cells[2] == {"in_grid": 15, "computed": 3, "reused": 12, "failed": 0}
    assert cells[3] == {"in_grid": 15, "computed": 0, "reused": 15, "failed": 0}
    assert cells[4] == {"in_grid": 15, "computed": 1, "reused": 14, "failed": 0}

    def cell_files(snap):
        return {k: v for k, v in snap.items() if k.startswith("cells/")}

    first = cell_files(grown.snaps[0])
    assert all(grown.snaps[1][k] == v for k, v in first.items()), "finished cells were recomputed"
    assert cell_files(grown.snaps[3]) == cell_files(grown.snaps[2]), "a complete sweep rewrote cells"
    changed = {k for k, v in cell_files(grown.snaps[4]).items() if grown.snaps[3].get(k) != v}
    assert changed == {"cells/interclass-s0-rem-r0.5.json"}
    assert "0 cells computed, 15 reused" in grown.runs[3].stderr


def test_failed_cells_are_recorded_and_retried(grown):
    second = grown.runs[1]
    lines = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert lines == [f"error: 3 of 15 cells failed (see the error column of {grown.out}/results.csv); rerun the same command to retry them"]
    failed = {r["cell"]: r for r in grown.failed_rows if r["status"] != "ok"}
    assert set(failed) == {f"{k}-s0-ga-r1.0" for k in KINDS}
    assert all(r["error"] == "RuntimeError: boom" and r["utility"] == "" for r in failed.values())
    assert summary_of(second)["failed_cells"] == sorted(failed, key=lambda c: KINDS.index(c.rsplit("-s0", 1)[0]))


# --- the report ---------------------------------------------------------------------------------


def test_summary_lists_every_method_sorted_by_utility_x_healed(grown):
    text = (grown.out / "summary.md").read_text()
    table = text.split("## Table 1")[1].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    names = [r.split("|")[1].strip() for r in rows]
    assert sorted(names) == ["ga", "original (no unlearning)", "rem"]
    means = [float(r.split("|")[5].split("±")[0]) for r in rows]
    assert means == sorted(means, reverse=True)
    # the numbers are mean ± SEM over the cells, recomputed here from results.csv
    csv_rows = list(csv.DictReader(open(grown.out / "results.csv")))
    values = [float(r["utility_x_healed"]) for r in csv_rows if r["method"] == "rem"]
    mean, sem = mean_sem(values)
    assert len(values) == 6 and mean is not None and sem is not None
    rem_row = rows[names.index("rem")]
    assert rem_row.split("|")[2].strip() == "6"
    shown_mean, shown_sem = (float(x) for x in rem_row.split("|")[5].split("±"))
    assert abs(shown_mean - mean * 100) <= 0.051 and abs(shown_sem - sem * 100) <= 0.051  # one decimal; the CSV holds rounded values
    for kind in KINDS:
        assert kind in text.split("## By corruption kind")[1]
    assert "**ga**" in text and "**rem**" in text and "| poison | " in text


def test_results_doc_refreshes_only_its_generated_blocks(grown, tmp_path):
    """benchmarks/results_doc.py: the hand-written text stays, the tables come from the folder, and a
    second run changes nothing."""
    doc = tmp_path / "results.md"
    doc.write_text(
        "Hand-written intro.\n\n<!-- generated: summary Table 1 -->\nstale\n<!-- /generated -->\n\nMiddle text.\n\n"
        "<!-- generated: ablation --base rem --variants ga --rates 1.0 -->\n<!-- /generated -->\nEnd.\n"
    )
    script = [sys.executable, str(REPO / "benchmarks" / "results_doc.py"), str(grown.out), str(doc)]
    subprocess.run(script, check=True, capture_output=True)
    text = doc.read_text()
    assert text.startswith("Hand-written intro.\n") and "Middle text." in text and text.endswith("<!-- /generated -->\nEnd.\n")
    assert "stale" not in text and "| rem |" in text and "### Pooled over kinds × rates × seeds" in text
    table1 = (grown.out / "summary.md").read_text().split("## Table 1")[1].split("\n", 1)[1].split("\n## ")[0].strip()
    assert table1 in text
    assert f"`python benchmarks/rem_ablation.py {grown.out} --base rem --variants ga --rates 1.0`" in text
    # REM's diagnostics, from its per-iteration log: measured for rem, absent ("–") for ga, which has none
    header, _, rem_row, ga_row = text.split("### Diagnostics")[1].split("\n\n")[1].splitlines()[:4]
    columns = [c.strip() for c in header.split("|")[1:-1]]
    assert {"kept retain drop acc", "min retain drop acc", "first id drop ce"} <= set(columns)
    rem_cells = dict(zip(columns, (c.strip() for c in rem_row.split("|")[1:-1])))
    assert all(0 <= float(rem_cells[c]) <= 1 for c in ("min retain drop acc", "kept retain drop acc"))
    assert float(rem_cells["first id drop ce"]) >= 0 and ga_row.split("|")[2].strip() == "–"
    # where the swapped interclass images go: true class = the healed column, the three shares add up to 100 %
    healed_table, destinations = text.split("## Interclass healed")[1].split("Where the swapped images go")
    healed_rem = healed_table.split("| rem |")[1].split("|")[0].split("±")[0].strip()
    shares = [int(x) for x in destinations.split("| rem |")[1].split("|")[0].split("/")]
    assert abs(shares[0] - float(healed_rem)) <= 0.51 and abs(sum(shares) - 100) <= 1
    subprocess.run(script, check=True, capture_output=True)
    assert doc.read_text() == text


def test_ablation_headroom_is_the_best_method_per_cell_minus_the_base(grown):
    """rem_ablation.py --headroom: per base cell, the best utility x healed of any method on the same
    model and rate minus the base's, pooled as mean ± SE (worked out here from the cell files)."""
    script = [sys.executable, str(REPO / "benchmarks" / "rem_ablation.py"), str(grown.out), "--base", "ga", "--variants", "rem", "--headroom"]
    text = subprocess.run(script, check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    rows = [json.loads(p.read_text())["row"] for p in (grown.out / "cells").glob("*.json")]
    score = {(r["method"], r["kind"], r["rate"]): r["utility_x_healed"] for r in rows if r["status"] == "ok" and r["method"] != "original"}
    margins = [max(v for k, v in score.items() if k[1:] == key[1:]) - score[key] for key in score if key[0] == "ga"]
    assert margins and all(m >= 0 for m in margins)
    mean, se = mean_sem(margins)
    section = text.split("## Headroom: the best of 2 methods, picked per cell, minus ga")[1]
    assert f"Pooled: {100 * mean:.1f} ± {100 * se:.1f} over {len(margins)} cells" in section
    assert "| poison | " in section


def test_ablation_non_inferiority_applies_the_three_stated_margins(grown):
    """rem_ablation.py --non-inferior MEAN,LOWER,CELL: the paired mean, mean - 2 SE and the worst
    kind x rate mean, worked out here from the cell files, and a verdict that follows all three."""
    rows = [json.loads(p.read_text())["row"] for p in (grown.out / "cells").glob("*.json")]
    score = {(r["method"], r["kind"], r["rate"], r["seed"]): r["utility_x_healed"] for r in rows if r["status"] == "ok"}
    diffs = {k[1:]: v - score[("ga", *k[1:])] for k, v in score.items() if k[0] == "rem" and ("ga", *k[1:]) in score}
    mean, se = mean_sem(list(diffs.values()))
    worst = min(diffs, key=diffs.get)  # one seed: each kind x rate mean is its one difference
    for margins, loose in (("-100,-100,-100", True), (f"{100 * mean + 0.5},-100,-100", False)):
        script = [sys.executable, str(REPO / "benchmarks" / "rem_ablation.py"), str(grown.out), "--base", "ga", "--variants", "rem"]
        text = subprocess.run([*script, f"--non-inferior={margins}"], check=True, capture_output=True, text=True).stdout
        row = text.split("## Non-inferiority against ga")[1].split("| rem |")[1].split("\n")[0]
        cells = [c.strip() for c in row.split("|")]
        assert cells[0] == str(len(diffs)) and cells[1] == f"{100 * mean:+.1f} ± {100 * se:.1f}" and cells[2] == f"{100 * (mean - 2 * se):+.1f}"
        assert cells[3] == f"{worst[0]} {worst[1]} ({100 * diffs[worst]:+.1f})"
        assert cells[4] == ("yes" if loose else "no")


def test_heatmaps_are_pngs(grown):
    pytest.importorskip("matplotlib")
    for name in ("all", "rem", "ga"):
        data = (grown.out / "heatmaps" / f"{name}.png").read_bytes()
        assert data[:8] == PNG and len(data) > 2000


def test_heatmaps_are_redrawn_only_where_what_they_show_changed(tmp_path):
    """A phased or resumed sweep rebuilds its report after every command: unchanged panels stay."""
    pytest.importorskip("matplotlib")

    def rows(rem_value):
        return [
            {"kind": "poison", "method": "original", "rate": 0.0, "status": "ok", "utility_x_healed": 0.2},
            {"kind": "poison", "method": "rem", "rate": 0.5, "status": "ok", "utility_x_healed": rem_value},
            {"kind": "poison", "method": "ga", "rate": 0.5, "status": "ok", "utility_x_healed": 0.3},
        ]

    def stamps():
        return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tmp_path / "h").glob("*.png")}

    write_heatmaps(tmp_path / "h", rows(0.6), ["poison"])
    first = stamps()
    assert sorted(first) == ["all.png", "ga.png", "rem.png"]
    write_heatmaps(tmp_path / "h", rows(0.6), ["poison"])
    assert stamps() == first  # nothing changed: nothing redrawn
    write_heatmaps(tmp_path / "h", rows(0.7), ["poison"])
    changed = {name for name, stamp in stamps().items() if stamp != first[name]}
    assert changed == {"all.png", "rem.png"}
    (tmp_path / "h" / "ga.png").unlink()
    write_heatmaps(tmp_path / "h", rows(0.7), ["poison"])
    assert (tmp_path / "h" / "ga.png").read_bytes()[:8] == PNG  # a missing figure is drawn again


def test_heatmap_values_rows_high_to_low_and_original_column():
    rows = [
        {"kind": "poison", "method": "original", "rate": 0.0, "status": "ok", "utility_x_healed": 0.2},
        {"kind": "poison", "method": "rem", "rate": 0.5, "status": "ok", "utility_x_healed": 0.6},
        {"kind": "poison", "method": "rem", "rate": 0.5, "status": "ok", "utility_x_healed": 0.8},  # another seed
        {"kind": "label-noise", "method": "rem", "rate": 1.0, "status": "failed", "utility_x_healed": None},
    ]
    kinds, columns, values = heatmap_values(rows, "rem", ["poison", "label-noise"], [0.5, 1.0])
    assert columns == [0.0, 0.5, 1.0]
    assert values[0][0] == pytest.approx(20.0) and values[0][1] == pytest.approx(70.0) and values[0][2] is None
    assert values[1] == [None, None, None]


def test_report_only_rebuilds_and_names_the_plots_extra(grown, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(grown.out / "sweep.json", copy / "sweep.json")
    shutil.copytree(grown.out / "cells", copy / "cells")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the plots extra were not installed
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = sweep("--out", copy, "--report-only", "--json", "-")
    assert result.exit_code == 0, result.output
    assert "pip install 'remcli[plots]'" in result.stderr
    assert (copy / "summary.md").read_text() == (grown.out / "summary.md").read_text()
    assert (copy / "results.csv").read_text() == (grown.out / "results.csv").read_text()
    assert not (copy / "heatmaps").exists()
    assert json.loads(result.stdout)["rows"] == 15


def test_aggregate_pools_cells_and_seeds():
    rows = [
        {"method": "a", "kind": k, "status": "ok", "healed": h, "utility": 1.0, "utility_x_healed": h, "wall_time_s": 1.0, "steps": 2}
        for k, h in (("poison", 0.5), ("interclass", 0.7), ("poison", 0.9))
    ]
    rows.append({"method": "b", "kind": "poison", "status": "failed", "healed": None, "utility": None, "utility_x_healed": None})
    agg = aggregate(rows)
    assert [e["method"] for e in agg] == ["a", "b"]
    assert agg[0]["cells"] == 3 and agg[0]["healed"] == pytest.approx(0.7) and agg[0]["healed_sem"] == pytest.approx(0.2 / math.sqrt(3))
    assert agg[1] == {**agg[1], "cells": 0, "failed": 1, "utility_x_healed": None}


def test_every_registered_method_is_a_sweep_method(cifar_spec, tmp_path):
    """The sweep takes whatever the registry holds, each with the settings it has: its dry run checks
    every cell's method and settings. (Running each method is the contract test's part: a sweep cell
    unlearns through the same `unlearn`.)"""
    budget = {"epochs": 1, "max_epochs": 2, "max_tries": 5, "batch_size": 64, "max_steps": 5, "flush_max_epochs": 2}
    names = [m.name for m in list_methods()]
    settings = {m.name: {k: v for k, v in budget.items() if k in {f.name for f in dataclasses.fields(m.config_cls)}} for m in list_methods()}
    args = [f"--set={name}.{k}={v}" for name, chosen in settings.items() for k, v in chosen.items()]
    out = tmp_path / "all"
    grid = ["--data", cifar_spec, *TINY, "--kinds", "poison", "--discovery", "0.5", "--out", out, "--dry-run"]
    result = sweep(*grid, "--methods", ",".join(names), *args, "--json", "-")
    assert result.exit_code == 0, result.stderr[-3000:]
    plan = json.loads(result.stdout)
    assert plan["cells"] == {"in_grid": len(names) + 1, "to_run": len(names) + 1, "reused": 0}  # and the original model's cell
    assert plan["config"]["methods"] == names and plan["config"]["overrides"] == {k: v for k, v in settings.items() if v}
    assert not out.exists()
    assert_input_error(sweep(*grid, "--methods", "ssd", "--set=ssd.epochs=1"), "method ssd has no setting", "epochs")


def test_detect_then_unlearn_cells(cifar_spec, tmp_path, one_thread):
    """`detect+ga` hands ga the identified samples plus the detected ones; the cell records both."""
    out = tmp_path / "detect"
    result = sweep(
        "--data", cifar_spec, *TINY, "--kinds", "poison", "--discovery", "0.5", "--methods", "ga,detect+ga", *BUDGET[3:],
        "--set=detect+ga.max_epochs=2", "--set=detect+ga.batch_size=64", "--set=detect+ga.detect_top=10", "--out", out, "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    plain = json.loads((out / "cells" / "poison-s0-ga-r0.5.json").read_text())
    detected = json.loads((out / "cells" / "poison-s0-detect+ga-r0.5.json").read_text())
    assert detected["row"]["detected"] == 10 and detected["detect"]["selection"] == {"top": 10}
    assert detected["row"]["identified"] == plain["row"]["identified"]  # evaluation keeps the user's found set
    assert detected["unlearn"]["identified"] == plain["unlearn"]["identified"] + 10
    assert 0.0 <= detected["row"]["detect_recall"] <= 1.0


def test_query_and_confused_detect_cells(cifar_spec, tmp_path, one_thread):
    """`query-detect+ga` starts from triggered test images the model sends to the target and has
    cells only for poison; `confused-detect+ga` starts from the swapped pair, only for interclass."""
    out = tmp_path / "symptoms"
    names = ("max_epochs=2", "batch_size=64", "detect_top=10")
    settings = [f"--set={entry}+ga.{name}" for entry in ("query-detect", "confused-detect") for name in names]
    result = sweep(
        "--data", cifar_spec, *TINY, "--train-epochs", "4", "--kinds", "poison,interclass", "--discovery", "0.5",
        "--methods", "query-detect+ga,confused-detect+ga", *settings, "--out", out, "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cells = sorted(p.name for p in (out / "cells").glob("*detect*"))
    assert cells == ["interclass-s0-confused-detect+ga-r0.5.json", "poison-s0-query-detect+ga-r0.5.json"]  # one kind each
    query = json.loads((out / "cells" / "poison-s0-query-detect+ga-r0.5.json").read_text())
    confused = json.loads((out / "cells" / "interclass-s0-confused-detect+ga-r0.5.json").read_text())
    for record in (query, confused):
        assert record["row"]["status"] == "ok" and record["row"]["detected"] == 10, record["row"]
        assert 0.0 <= record["row"]["detect_recall"] <= 1.0 and record["unlearn"]["identified"] >= record["row"]["identified"]
    assert query["detect"]["signal"] == "block-similarity" and 1 <= query["detect"]["query"]["misbehaving"] <= 8
    assert query["detect"]["query"]["label"] == 0 and query["detect"]["labels_searched"] == [0]  # the poison's target
    assert confused["detect"]["signal"] == "label-quality" and confused["detect"]["confused"]["labels"] == [3, 5]


# --- bad input: exit 2, one line, nothing written -----------------------------------------------


def assert_input_error(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--methods", "rem,nosuch"], ["unknown method 'nosuch'", "rem-ga"]),
        (["--kinds", "poison,backdoor"], ["unknown corruption kind 'backdoor'", "label-noise"]),
        (["--discovery", "0.5,1.5"], ["discovery rate 1.5 must be in (0, 1]"]),
        (["--discovery", "0,0.5"], ["discovery rate 0.0 must be in (0, 1]"]),
        (["--seeds", "0,x"], ["--seeds"]),
        (["--set", "rem.nosuch=1"], ["method rem has no setting ['nosuch']"]),
        (["--set", "rem-ga.epochs=1"], ["--set names method 'rem-ga', which is not in --methods"]),
        (["--set", "epochs=1"], ["METHOD.name=value"]),
        (["--arch", "nosuchnet"], ["unknown arch 'nosuchnet'"]),
        (["--count", "100000"], ["--count 100000"]),
        (["--count", "61", "--kinds", "interclass"], ["interclass needs an even --count"]),
        (["--set", "rem.detect_top=5"], ["--set rem.detect_top is a detection setting", "detect+rem"]),
        (["--methods", "detect+rem", "--set", "detect+rem.detect_top=5", "--set", "detect+rem.detect_threshold=0.2"], ["give one of detect_top"]),
        (["--methods", "detect+rem", "--set", "detect+rem.detect_top=-1"], ["detect_top=-1 must be an integer >= 0"]),
        (["--methods", "detect+nosuch"], ["unknown method 'nosuch'"]),
        (["--methods", "confused-detect+rem", "--set", "confused-detect+rem.detect_signal=similarity"], ["must be one of: auto, label-quality"]),
        (["--methods", "query-detect+nosuch"], ["unknown method 'nosuch'"]),
        (["--methods", "detect+rem", "--set", "detect+rem.detect_features=backbone"], ["detect_features='backbone' must be one of: model, init"]),
        (
            ["--methods", "query-detect+rem", "--set", "query-detect+rem.detect_features=init"],
            ["detect_features goes with detect+ and confused-detect+"],
        ),
    ],
)
def test_bad_input_writes_nothing(cifar_spec, tmp_path, args, needles):
    out = tmp_path / "new"
    result = sweep("--data", cifar_spec, *TINY, "--discovery", "0.5", "--methods", "rem", *args, "--out", out)
    assert_input_error(result, *needles)
    assert not out.exists()


def test_missing_data_is_an_input_error(tmp_path):
    assert_input_error(sweep("--out", tmp_path / "x"), "--data is required")
    assert_input_error(sweep("--out", tmp_path / "x", "--report-only"), "holds no sweep.json")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "change, needles",
    [
        (["--train-epochs", "2"], ["--train-epochs 1, not 2", "use another --out"]),
        (["--width", "0.25"], ["--arch-arg/--width width=0.125, not width=0.25"]),
        (["--count", "80"], ["--count 60, not 80"]),
        (["--set", "rem.epochs=2"], ["ran rem with settings", "epochs=1", "epochs=2"]),
    ],
)
def test_mismatching_sweep_json_is_refused_untouched(grown, change, needles):
    before = snapshot(grown.out)
    options = {
        "--data": grown.spec,
        "--width": "0.125",
        "--count": "60",
        "--train-epochs": "1",
        "--train-batch-size": "64",
        "--device": "cpu",
        "--kinds": "poison",
        "--discovery": "1.0",
        "--methods": "rem",
    }
    settings = [b for b in BUDGET if b.startswith("--set=rem.")]
    option, value = change
    if option == "--set":
        settings = [s for s in settings if not s.startswith("--set=rem.epochs")] + [f"--set={value}"]
    else:
        options[option] = value
    result = sweep(*(x for pair in options.items() for x in pair), *settings, "--out", grown.out)
    assert_input_error(result, *needles)
    assert snapshot(grown.out) == before


def test_sigterm_stops_between_cells_and_the_rerun_continues(cifar_spec, tmp_path, one_thread, monkeypatch):
    out = tmp_path / "killed"
    args = ["--data", cifar_spec, *TINY, "--kinds", "poison", "--discovery", "1.0", "--methods", "rem,ga", *BUDGET, "--out", out, "--quiet"]
    real_unlearn = sweep_cells.unlearn

    def terminated_during_ga(checkpoint, inputs, identified, method, *a, **kw):
        if method == "ga":
            os.kill(os.getpid(), signal.SIGTERM)  # e.g. `timeout` or a scheduler ending the job
        return real_unlearn(checkpoint, inputs, identified, method, *a, **kw)

    monkeypatch.setattr(sweep_cells, "unlearn", terminated_during_ga)
    handler = signal.getsignal(signal.SIGTERM)
    result = sweep(*args)
    assert result.exit_code == 143, result.output
    assert "rerun the same command to continue" in result.stderr
    assert sorted(p.name for p in (out / "cells").iterdir()) == ["poison-s0-original.json", "poison-s0-rem-r1.0.json"]
    assert not (out / ".lock").exists() and signal.getsignal(signal.SIGTERM) is handler
    monkeypatch.setattr(sweep_cells, "unlearn", real_unlearn)
    again = sweep(*args, "--json", "-")
    assert again.exit_code == 0, again.output
    assert summary_of(again)["cells"] == {"in_grid": 3, "computed": 1, "reused": 2, "failed": 0}


def test_non_sweep_folder_is_refused(cifar_spec, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    result = sweep("--data", cifar_spec, *TINY, "--discovery", "0.5", "--methods", "rem", "--out", tmp_path)
    assert_input_error(result, "non-empty folder without sweep.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


# --- configuration rules (pure) -----------------------------------------------------------------


def test_merge_allows_growing_the_grid_and_fixes_model_settings():
    stored = SweepConfig(data="d", kinds=("label-noise",), rates=(0.5,), methods=("rem",), seeds=(0,), overrides={"rem": {"epochs": 1}})
    grown = merge_configs(stored, SweepConfig(data="d", kinds=("poison",), rates=(0.1, 1.0), methods=("rem-ga",), seeds=(2,)), "sweep.json")
    assert grown.kinds == ("poison", "label-noise") and grown.rates == (0.1, 0.5, 1.0)
    assert grown.methods == ("rem", "rem-ga") and grown.seeds == (0, 2) and grown.overrides == {"rem": {"epochs": 1}}
    with pytest.raises(InputError, match="--train-epochs"):
        merge_configs(stored, SweepConfig(data="d", train_epochs=3), "sweep.json")
    with pytest.raises(InputError, match="ran rem with settings"):
        merge_configs(stored, SweepConfig(data="d", methods=("rem",), overrides={"rem": {"epochs": 2}}), "sweep.json")
    # a method without finished cells (e.g. all failed on a bad value) may get new settings
    fixed = merge_configs(stored, SweepConfig(data="d", methods=("rem",), overrides={"rem": {"epochs": 2}}), "sweep.json", finished_methods=set())
    assert fixed.overrides == {"rem": {"epochs": 2}}


def test_cell_ids_and_settings_parsing():
    cfg = SweepConfig(data="d", kinds=("poison",), rates=(0.1, 1.0), methods=("rem",), seeds=(3,))
    assert [c.id for c in cfg.cells()] == ["poison-s3-original", "poison-s3-rem-r0.1", "poison-s3-rem-r1.0"]
    # labelled variants of one method sit side by side, each with its own settings
    assert parse_methods("rem,rem@legacy") == ("rem", "rem@legacy")
    variants = SweepConfig(
        data="d", kinds=("poison",), rates=(1.0,), methods=("rem", "rem@legacy"), overrides={"rem@legacy": {"bn": "batch"}}
    ).validate()
    assert [c.id for c in variants.cells()] == ["poison-s0-original", "poison-s0-rem-r1.0", "poison-s0-rem@legacy-r1.0"]
    for bad, needle in (("rem@", "METHOD@LABEL"), ("nope@x", "unknown method"), ("rem@a@b", "METHOD@LABEL")):
        with pytest.raises(InputError, match=needle):
            parse_methods(bad)
    with pytest.raises(InputError, match="has no setting"):
        SweepConfig(data="d", methods=("rem@x",), overrides={"rem@x": {"nope": 1}}).validate()
    assert parse_method_settings(["rem.epochs=3", "rem.lr=0.01", "rem.redirect=false", "rem.targets=conv1,res1", "rem.flush=ga"]) == {
        "rem": {"epochs": 3, "lr": 0.01, "redirect": False, "targets": ["conv1", "res1"], "flush": "ga"}
    }


# --- benchmark scripts ----------------------------------------------------------------------------


def test_benchmark_scripts_parse():
    for script in ("sweep_cpu.sh", "sweep_gpu.sh"):
        subprocess.run(["bash", "-n", str(REPO / "benchmarks" / script)], check=True)


def test_sweep_args_keeps_registered_methods_and_settings():
    registry = {
        "methods": [{"name": "rem", "settings": {"epochs": 10}}, {"name": "ssd", "settings": {"alpha": 10}}],
        "sweep": {
            "detect_prefix": "detect+",
            "symptom_prefixes": {"query-detect+": "poison", "confused-detect+": "interclass"},
            "detect_settings": {"detect_top": None, "detect_signal": "similarity"},
        },
    }
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "sweep_args.py"),
            "--methods",
            "rem,retrain,ssd,detect+rem,query-detect+rem@b",
            "rem.epochs=3",
            "detect+rem.detect_signal=loss",
            "ssd.epochs=2",
            "retrain.epochs=9",
            "*.alpha=5",
            "query-detect+rem@b.epochs=4",
            "*.detect_top=7",
        ],
        input=json.dumps(registry),
        capture_output=True,
        text=True,
        check=True,
    )
    sets = ["--set", "rem.epochs=3", "--set", "detect+rem.detect_signal=loss", "--set", "ssd.alpha=5", "--set", "query-detect+rem@b.epochs=4"]
    sets += ["--set", "detect+rem.detect_top=7", "--set", "query-detect+rem@b.detect_top=7"]  # detection settings: every detecting entry
    assert result.stdout.split() == ["--methods", "rem,ssd,detect+rem,query-detect+rem@b", *sets]
    assert "retrain is not registered" in result.stderr and "ssd has no setting 'epochs'" in result.stderr


def test_prepare_cifar_subset(tmp_path):
    source = SHARED_CIFAR / "cifar10-jpeg-sample.tar.gz"
    if not source.is_file():
        pytest.skip(f"{source} not available")
    script = [sys.executable, str(REPO / "benchmarks" / "prepare_cifar_subset.py"), "--source", str(source), "--out", str(tmp_path / "c")]
    subprocess.run([*script, "--per-class", "5", "--test-per-class", "2"], check=True, capture_output=True)
    assert sorted(p.name for p in (tmp_path / "c" / "train").iterdir())[:2] == ["airplane", "automobile"]
    assert len(list((tmp_path / "c" / "train").rglob("*.jpg"))) == 50 and len(list((tmp_path / "c" / "test").rglob("*.jpg"))) == 20
    again = subprocess.run([*script, "--per-class", "5", "--test-per-class", "2"], check=True, capture_output=True, text=True)
    assert "already prepared" in again.stderr
    other = subprocess.run([*script, "--per-class", "6", "--test-per-class", "2"], capture_output=True, text=True)
    assert other.returncode != 0 and "holds another subset" in other.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temporary folder left behind


def test_gpu_script_tiny_mode(tmp_path):
    """benchmarks/sweep_gpu.sh with TINY=1: the paper-scale script's phases at toy size on CPU: rate 1.0
    first, then every rate in the same folder; commands.sh replays them."""
    env = profile_script_env(tmp_path, TINY="1", METHODS="rem")
    result = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "sweep_gpu.sh"), str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "9 cells, 6 already finished, 3 to run" in result.stderr  # the second phase (rates 0.5, 1.0) resumed the first (1.0)
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert len(rows) == 9 and all(r["status"] == "ok" for r in rows)
    assert sorted(r["rate"] for r in rows if r["method"] == "rem") == ["0.5"] * 3 + ["1.0"] * 3
    cell = json.loads((tmp_path / "out" / "cells" / "poison-s0-rem-r0.5.json").read_text())
    assert cell["unlearn"]["config"]["epochs"] == 1 and cell["unlearn"]["config"]["batch_size"] == 64  # TINY's budgets reached REM
    assert (tmp_path / "out" / "summary.md").is_file()
    recorded = [line for line in (tmp_path / "out" / "commands.sh").read_text().splitlines() if not line.startswith("#")]
    assert len(recorded) == 2
    replay = subprocess.run(["bash", "-c", recorded[-1]], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert replay.returncode == 0 and "9 cells, 9 already finished, 0 to run" in replay.stderr, replay.stderr[-3000:]


def test_cpu_script_dry_run(tmp_path):
    """benchmarks/sweep_cpu.sh (the memorising profile) prepares its 1,500-image subset and every
    phase's command passes every check: 2 % corrupted, width 0.5, 60 epochs, budgets x 60/41, 3 seeds."""
    env = profile_script_env(tmp_path, DRY_RUN="1")
    result = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "sweep_cpu.sh"), str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((tmp_path / "data" / "train").rglob("*.jpg"))) == 1500 and len(list((tmp_path / "data" / "test").rglob("*.jpg"))) == 2000
    commands = [line for line in result.stdout.splitlines() if line.startswith("phase ")]
    assert [c.split()[1] for c in commands] == ["1", "2", "3", "4", "5", "6", "7"]
    assert all("--width 0.5 --count 30 --train-epochs 60 --train-batch-size 128" in c and "--seeds 0\\,1\\,2" in c for c in commands)
    assert "--methods rem\\,rem-full\\,rem-redirect " in commands[1]
    assert all(f"--set {m}.epochs=15" in commands[1] for m in ("rem", "rem-full", "rem-redirect"))
    ablations = {"bn-batch": "bn=batch", "momentum": "fresh_optimizer=false", "epoch-flush": "flush_stop=epoch", "bottleneck": "units=bottleneck"}
    for label, setting in {**ablations, "units-lr1": "new_units_lr_scale=1"}.items():
        assert f"--set rem-redirect@{label}.{setting}" in commands[3], setting
    assert "--discovery 0.3\\,0.7 " in commands[4]
    assert "--methods detect+rem-full\\,detect+rem-redirect " in commands[6] and "--discovery 0.1\\,0.3 " in commands[6]
    assert "--set detect+rem-full.epochs=15" in commands[6]
    assert "dry run: 63 of 63 cells would run (0 finished), 9 models would be trained; nothing was written" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cpu_script_tiny_mode_runs_every_phase(tmp_path):
    """TINY=1: the profile's seven phases at toy size, each resuming the folder the previous one wrote."""
    env = profile_script_env(tmp_path, TINY="1")
    result = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "sweep_cpu.sh"), str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert all(r["status"] == "ok" for r in rows)
    methods = {r["method"] for r in rows}
    assert {"rem", "rem-redirect", "rem-redirect@bottleneck", "retrain", "npo", "ssd", "detect+ga", "original"} <= methods
    assert {r["rate"] for r in rows if r["method"] == "rem"} == {"0.5", "1.0"}
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "do they memorise their corrupted samples?" in summary and "Wall time relative to retrain" in summary
    recorded = (tmp_path / "out" / "commands.sh").read_text().splitlines()
    assert [line.split(",")[0] for line in recorded[::2]] == [f"# phase {n}" for n in range(1, 8)]
    replay = subprocess.run(["bash", "-c", recorded[-1]], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert replay.returncode == 0 and "already finished, 0 to run" in replay.stderr, replay.stderr[-3000:]  # phase 7, as recorded


def test_memorisation_check_passes_a_trained_model_and_flags_an_undertrained_one(poisoned_run, tmp_path):
    """The regime check is real: the session's poisoned model (20 epochs) fits its poisoned samples;
    the same recipe stopped after 1 epoch does not, and the report flags it."""
    from remcli.sweep.report import MEMORISED, memorisation, summary_markdown

    short = tmp_path / "one-epoch.safetensors"
    result = runner.invoke(
        app,
        [
            "train",
            "--corruption",
            str(poisoned_run / "c" / "corruption.json"),
            "--data",
            load_manifest(poisoned_run / "c" / "corruption.json").dataset,
            "--width",
            "0.25",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--lr",
            "0.05",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(short),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = []
    for seed, path in enumerate((poisoned_run / "model.safetensors", short)):
        evaluated = runner.invoke(app, ["evaluate", str(path), "--device", "cpu", "--json", "-"])
        assert evaluated.exit_code == 0, evaluated.output
        metrics = json.loads(evaluated.stdout)["metrics"]
        rows.append(
            {"cell": f"poison-s{seed}-original", "kind": "poison", "rate": 0.0, "method": "original", "seed": seed, "status": "ok", **metrics}
        )
    trained, undertrained = memorisation(rows)
    assert trained["corrupted_label_acc"] >= MEMORISED and trained["memorised"] is True
    assert undertrained["corrupted_label_acc"] < MEMORISED and undertrained["memorised"] is False
    summary = summary_markdown(rows, SweepConfig(data="d", kinds=("poison",), seeds=(0, 1)))
    assert "| poison | 0 |" in summary and "| yes |" in summary
    assert "**NO: below the regime" in summary
