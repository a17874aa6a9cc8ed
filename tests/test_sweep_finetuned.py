"""benchmarks/sweep_finetuned.sh, the fine-tuned CPU profile (issue 25), on real CIFAR-10 JPEGs.

TINY=1 runs every step at toy size: pretraining a backbone on images the fine-tuning set never
holds, recording it, fine-tuning every model of the sweep from it, and the four phases. The tests
read what the script wrote and said.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import profile_script_env

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "sweep_finetuned.sh"
COMMITTED = REPO / "benchmarks" / "results" / "finetuned" / "pretrained.safetensors"


def run(tmp_path: Path, **extra) -> subprocess.CompletedProcess:
    env = profile_script_env(tmp_path, **extra)
    return subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)


def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.slow
def test_tiny_profile_runs_end_to_end(tmp_path):
    """Pretrain in two stages on images 30..69 of every class, fine-tune on images 0..29, four phases resuming one folder;
    a second run reuses the recorded backbone, and one whose sha256 changed is refused (exit 2, one line)."""
    result = run(tmp_path, TINY="1")
    assert result.returncode == 0, result.stderr[-3000:]
    backbone, record_path = tmp_path / "out-pretrained.safetensors", tmp_path / "out-pretrained.json"
    record = json.loads(record_path.read_text())
    assert record["sha256"] == hashlib.sha256(backbone.read_bytes()).hexdigest()
    assert 0.0 <= record["test_acc"] <= 1.0 and record["test_samples"] == 100
    assert [stage["train"]["epochs"] for stage in record["stages"]] == [1, 1]  # from scratch, then on from those weights
    assert "--init" not in record["stages"][0]["command"] and "--lr 0.01 --seed 1 --init" in record["stages"][1]["command"]
    assert not list(tmp_path.glob("out-pretrained-stage1*")) and not list(tmp_path.glob("out-pretrained.json.stage*"))
    pretrain_files = {p.name for p in (tmp_path / "data-pretrain" / "train" / "cat").iterdir()}
    finetune_files = {p.name for p in (tmp_path / "data" / "train" / "cat").iterdir()}
    assert len(pretrain_files) == 40 and len(finetune_files) == 30 and not pretrain_files & finetune_files  # disjoint sets

    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert rows and all(r["status"] == "ok" for r in rows), [(r["cell"], r["error"]) for r in rows if r["status"] != "ok"]
    assert {"original", "npo", "ga", "rem", "rem-redirect", "retrain", "finetune"} <= {r["method"] for r in rows}
    assert {r["rate"] for r in rows if r["method"] == "rem"} == {"0.5", "1.0"}
    retrain = json.loads((tmp_path / "out" / "cells" / "poison-s0-retrain-r1.0.json").read_text())
    assert retrain["config"]["model"]["init_sha256"] == record["sha256"]
    assert retrain["unlearn"]["log"]["init"] == {"path": str(backbone), "sha256": record["sha256"]}  # retrain restarts from the backbone
    assert f"fine-tuned from `{backbone}`" in (tmp_path / "out" / "summary.md").read_text()
    recorded = (tmp_path / "out" / "commands.sh").read_text().splitlines()
    assert [line.split(",")[0] for line in recorded[::2]] == [f"# phase {n}" for n in range(1, 5)]
    cells = [json.loads(p.read_text()) for p in (tmp_path / "out" / "cells").glob("*.json")]
    assert len(cells) == len(rows) and all(c["config"]["model"]["init_sha256"] == record["sha256"] for c in cells)  # every phase fine-tuned

    doc = tmp_path / "doc.md"
    blocks = [f"pretrained {record_path}", "coverage --methods rem,scrub --rates 0.5,1.0 --kinds poison,label-noise --seeds 0", "commands"]
    blocks += ["summary Trained models", "walls", f"compare {tmp_path / 'out'}", "ablation --base rem --variants retrain"]
    doc.write_text("".join(f"<!-- generated: {b} -->\n<!-- /generated -->\n" for b in [*blocks, "compare /nonexistent"]))
    refresh = [sys.executable, str(REPO / "benchmarks" / "results_doc.py"), str(tmp_path / "out"), str(doc)]
    assert subprocess.run(refresh, capture_output=True, text=True).returncode != 0  # a block it cannot fill stops the refresh...
    subprocess.run([*refresh, "--partial"], check=True, capture_output=True, env=profile_script_env(tmp_path))  # ...unless the sweep is partial
    text = doc.read_text()
    assert f"**{record['test_acc']:.3f}** (100 test images)" in text and "# phase 4," in text and "| retrain | 2 | " in text
    assert "| rem | 4 | 4 | none |" in text and "| scrub | 0 | 4 | 2 at 0.5, 2 at 1.0 |" in text
    assert "and /nonexistent share no finished unlearning cells._" in text

    again = run(tmp_path, TINY="1", PHASES="1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "pretrained: reusing" in again.stderr and "pretrain command" not in again.stdout
    assert "0 to run" in again.stderr

    backbone.write_bytes(backbone.read_bytes() + b"\0")
    refused = run(tmp_path, TINY="1", DRY_RUN="1")
    assert refused.returncode == 2
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "its record" in lines[0], lines


@pytest.mark.skipif(not COMMITTED.is_file(), reason="the committed backbone is not in this checkout")
@pytest.mark.slow
def test_real_profile_dry_run(tmp_path):
    """The real profile reuses the committed backbone (its sha256 matches its record) and every phase's
    command passes every check: the memorising profile's data, 2 % corrupted, budgets x FT_EPOCHS/41."""
    result = run(tmp_path, DRY_RUN="1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pretrained: reusing" in result.stderr
    assert len(list((tmp_path / "data" / "train").rglob("*.jpg"))) == 1500
    commands = [line for line in result.stdout.splitlines() if line.startswith("phase ")]
    assert [c.split()[1] for c in commands] == ["1", "2", "3", "4"]
    size = f"--width 0.5 --count 30 --train-epochs 40 --train-batch-size 128 --train-lr 0.005 --init {COMMITTED.relative_to(REPO)}"
    assert all(size in c for c in commands)
    assert all("--seeds 0\\,1\\,2" in c for c in commands)
    assert "--set rem.epochs=10" in commands[1] and "--set rem-redirect.epochs=10" in commands[1]
    assert (
        "--methods retrain\\,finetune\\,scrub\\,potion " in commands[2]
        and "--set finetune.epochs=10" in commands[2]
        and "--set scrub.epochs=3" in commands[2]
    )
    assert "--discovery 0.3\\,0.7 " in commands[3]
    assert not (tmp_path / "out").exists()
