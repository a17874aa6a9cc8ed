"""Many workers on one sweep folder: each cell runs once, each model is trained once, a killed
worker's claim is taken over, and the report equals a single worker's. Real processes, real data."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from remcli.sweep.claims import Claims

pytestmark = pytest.mark.slow  # worker processes each running a sweep

REPO = Path(__file__).resolve().parents[1]
GRID = ["--width", "0.125", "--count", "40", "--train-epochs", "1", "--train-batch-size", "64", "--device", "cpu",
        "--kinds", "poison,label-noise", "--discovery", "1.0", "--methods", "ga,finetune",
        "--set=ga.max_epochs=2", "--set=ga.batch_size=64", "--set=finetune.epochs=1", "--set=finetune.batch_size=64"]  # fmt: skip
METRICS = ("cell", "status", "test_acc", "utility", "healed", "attack_success_rate", "corrupted_label_acc", "steps")


def remcli(*args, wait: bool = True, **kwargs):
    command = [sys.executable, "-c", "from remcli.cli.main import main; main()", *(str(a) for a in args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    if not wait:
        return subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600, **kwargs)


def rows(out: Path) -> list[dict]:
    with (out / "results.csv").open() as handle:
        return sorted(({k: r[k] for k in METRICS} for r in csv.DictReader(handle)), key=lambda r: r["cell"])


def claimed_finetune_cells(process: subprocess.Popen, out: Path, timeout: float = 300) -> list[str]:
    """Wait until the running sweep `process` has claimed a finetune cell (the slow one); their names."""
    deadline = time.time() + timeout
    while not list((out / "claims").glob("*finetune*.claim")) and time.time() < deadline:
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.2)
    return [p.stem for p in (out / "claims").glob("*finetune*.claim")]


@pytest.fixture(scope="module")
def single(cifar_spec, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "sweep"
    result = remcli("sweep", "--data", cifar_spec, *GRID, "--out", out)
    assert result.returncode == 0, result.stderr
    return out


def test_workers_share_a_folder_and_match_one_worker(single, cifar_spec, tmp_path):
    out = tmp_path / "sweep"
    result = remcli("sweep", "--data", cifar_spec, *GRID, "--workers", "3", "--out", out, "--json", "-")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["cells"] == {"in_grid": 6, "computed": 6, "reused": 0, "failed": 0}
    assert summary["models"] == {"trained": 2, "reused": 0}
    # each model trained once, each cell run once, across all three workers' lines
    lines = result.stderr.splitlines()
    for kind in ("poison", "label-noise"):
        assert sum(f"trained {kind} seed 0:" in line for line in lines) == 1, lines
    ran = [line.split("] ", 1)[1].rsplit(": utility", 1)[0] for line in lines if line.startswith("worker ") and ": utility" in line]
    assert len(ran) == len(set(ran)) == 6, ran
    assert {line.split(":", 1)[0] for line in lines if line.startswith("worker ")} <= {"worker 1", "worker 2", "worker 3"}
    assert not list((out / "claims").glob("*.claim"))
    assert rows(out) == rows(single)


def test_a_killed_workers_claim_is_taken_over(single, cifar_spec, tmp_path):
    out = tmp_path / "sweep"
    # a finetune cell that runs until killed: a fixed number of epochs, unlike npo, which stops as soon as
    # the identified samples' accuracy reaches its gamma (at once when they start there)
    slow = [*GRID, "--set=finetune.epochs=400"]
    first = remcli("sweep", "--data", cifar_spec, *slow, "--out", out, wait=False)
    try:
        held = claimed_finetune_cells(first, out)
        assert held, "the first worker never claimed a finetune cell"
    finally:
        first.send_signal(signal.SIGKILL)  # no cleanup: the claim stays behind
        first.wait()
    assert (out / "claims" / f"{held[0]}.claim").exists()
    second = remcli("sweep", "--data", cifar_spec, *GRID, "--claim-timeout", "1", "--out", out, "--json", "-")
    assert second.returncode == 0, second.stderr
    body = json.loads(second.stdout)
    assert body["cells"]["failed"] == 0 and body["cells"]["computed"] + body["cells"]["reused"] == 6
    assert held[0] in {r["cell"] for r in rows(out) if r["status"] == "ok"}
    assert not list((out / "claims").glob("*.claim"))
    assert rows(out) == rows(single)


def test_sigterm_stops_every_worker_without_a_traceback(cifar_spec, tmp_path):
    """SIGTERM to `remcli sweep --workers 2` (`timeout`, a scheduler): the workers stop, release their
    claims and print no traceback; the run exits 143 and says how to continue."""
    out = tmp_path / "sweep"
    slow = [*GRID, "--set=finetune.epochs=400", "--workers", "2"]
    main = remcli("sweep", "--data", cifar_spec, *slow, "--out", out, wait=False)
    try:
        assert claimed_finetune_cells(main, out), "no worker claimed a finetune cell"
        main.send_signal(signal.SIGTERM)
        stderr = main.communicate(timeout=120)[1]
    finally:
        if main.poll() is None:
            main.kill()
    assert main.returncode == 143, stderr
    assert "Traceback" not in stderr and "rerun the same command to continue" in stderr, stderr
    assert not list((out / "claims").glob("*.claim"))


def test_a_live_claim_is_respected_and_a_stale_one_taken_over(tmp_path):
    with Claims(tmp_path / "claims", ttl=0.5) as holder, Claims(tmp_path / "claims", ttl=0.5) as other:
        assert holder.try_claim("cell-a")
        time.sleep(1.0)  # the holder's heartbeat keeps it fresh
        assert not other.try_claim("cell-a")
        assert holder.holder("cell-a") == holder.token
    orphan = tmp_path / "claims" / "cell-b.claim"
    orphan.write_text("host pid 1 dead\n")
    os.utime(orphan, (time.time() - 10, time.time() - 10))
    with Claims(tmp_path / "claims", ttl=5) as taker:
        assert taker.try_claim("cell-b") and taker.holder("cell-b") == taker.token
        taker.release("cell-b")
    assert not orphan.exists()


def test_two_workers_report_wall_time_order_and_unchanged_cells(cifar_spec, tmp_path):
    """--workers 2: the summary's wall time is the run's; each cell's progress lines come before its
    result line; a cell whose unlearning changed no weight (ssd with an impossible threshold) is
    flagged on its line, in the terminal table and in summary.md."""
    out = tmp_path / "sweep"
    grid = [*GRID[:10], "--kinds", "poison", "--discovery", "1.0", "--methods", "ga,ssd", "--set=ga.max_epochs=2", "--set=ssd.alpha=1e12"]
    result = remcli("sweep", "--data", cifar_spec, *grid, "--workers", "2", "--out", out, "--json", "-")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["wall_time_s"] > 0
    lines = result.stderr.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("worker ") and " at discovery 1.0: " in line:  # a cell's result line
            worker, tag = line.split(": ", 1)[0], line.split(": ", 2)[1].split(" ", 1)[0]  # "worker 1", "[2/3]"
            later = [other for other in lines[index + 1 :] if other.startswith(f"{worker}: {tag} ")]
            assert not later, (line, later)
    ssd = [line for line in lines if ": ssd at discovery 1.0: " in line]
    assert len(ssd) == 1 and "UNCHANGED" in ssd[0]
    header = next(line for line in lines if "┃ method" in line)
    row = next(line for line in lines if line.startswith("│ ssd "))
    assert header.rstrip("┃ ").endswith("unchanged") and row.rstrip("│ ").endswith("1")
    assert "changed no weight" in (out / "summary.md").read_text() and "* `poison-s0-ssd-r1.0`" in (out / "summary.md").read_text()
