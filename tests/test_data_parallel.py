"""Data parallel under torchrun (CPU, gloo, 2 processes, real images): one data-parallel run equals
the single-process run on the same global batches, rank 0 alone writes, and what cannot run
data-parallel says so in one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from remcli.checkpoints import load_checkpoint
from remcli.data.pipeline import Batch
from remcli.distributed import DataParallel, is_main_process, launched_by_torchrun, shared_batch

pytestmark = pytest.mark.slow  # torchrun process groups, and the single-process runs they match

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "remcli"]
SINGLE = [sys.executable, "-m", "remcli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# no layer mixes rows: LayerNorm (vit_cifar), and REM with frozen BatchNorm and normalisation-free units;
# SGD, because Adam turns last-bit differences of near-zero gradients into lr-sized steps
TRAIN_ARGS = [
    "--arch",
    "vit_cifar",
    "--width",
    "0.25",
    "--arch-arg",
    "depth=1",
    "--epochs",
    "2",
    "--batch-size",
    "50",
    "--seed",
    "3",
    "--optimizer",
    "sgd",
    "--lr",
    "0.05",
]
TRAIN_ARGS += ["--device", "cpu", "--precision", "fp32", "--quiet"]


def run(prefix: list[str], args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *args], capture_output=True, text=True, env=ENV, timeout=300)


def test_every_row_of_a_global_batch_lands_on_exactly_one_rank():
    for rows in (0, 1, 5, 50, 51):
        bounds = [DataParallel(rank, 3, rank).share_bounds(rows) for rank in range(3)]
        assert bounds[0][0] == 0 and bounds[-1][1] == rows
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert max(stop - start for start, stop in bounds) - min(stop - start for start, stop in bounds) <= 1
    batch = Batch(torch.zeros(5, 3), torch.arange(5), torch.arange(5) + 100)
    shares = [shared_batch(DataParallel(rank, 2, rank), batch) for rank in range(2)]
    assert [s.indices.tolist() for s, _ in shares] == [[100, 101, 102], [103, 104]]
    assert sum(w for _, w in shares) == pytest.approx(1.0)  # the shares' weights make the global mean
    assert shared_batch(None, batch) == (batch, 1.0)


def test_torchrun_is_recognised_from_its_environment():
    assert launched_by_torchrun({"WORLD_SIZE": "2", "RANK": "1"}) and not launched_by_torchrun({})
    assert is_main_process({}) and not is_main_process({"RANK": "1"})


@pytest.fixture(scope="module")
def trained_both_ways(tmp_path_factory, cifar_spec):
    out = tmp_path_factory.mktemp("ddp-train")
    single = run(SINGLE, ["train", "--data", cifar_spec, *TRAIN_ARGS, "--out", str(out / "single.safetensors")])
    assert single.returncode == 0, single.stderr
    ddp = run(TORCHRUN, ["train", "--data", cifar_spec, *TRAIN_ARGS, "--out", str(out / "ddp.safetensors"), "--json", "-"])
    assert ddp.returncode == 0, ddp.stderr
    return out, ddp


def test_data_parallel_training_equals_the_single_process_run(trained_both_ways):
    out, _ = trained_both_ways
    single, ddp = load_file(out / "single.safetensors"), load_file(out / "ddp.safetensors")
    assert single.keys() == ddp.keys()
    for name in single:
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-4, atol=1e-5, msg=name)


def test_only_rank_zero_writes_and_prints(trained_both_ways):
    out, ddp = trained_both_ways
    assert sorted(p.name for p in out.iterdir()) == ["ddp.safetensors", "single.safetensors"]
    summary = json.loads(ddp.stdout)  # exactly one JSON object on stdout: rank 1 printed nothing
    assert summary["train_samples"] > 0 and summary["steps"] > 0
    assert ddp.stderr.count("trained vit_cifar") == 1


def test_a_data_parallel_rem_repair_step_equals_the_single_process_step(poisoned_run, tmp_path):
    # one outer iteration, no flush, one repair step over the whole training split (950 rows: 475 per
    # rank), kept whatever the proxy says: fit in the redirect view, removal on the identified rows
    args = ["unlearn", str(poisoned_run / "model.safetensors"), "--forget", str(poisoned_run / "c" / "forget-0.5.txt"), "--method", "rem-redirect"]
    args += ["--set", "units=bottleneck", "--set", "flush_max_epochs=0", "--set", "keep=last", "--epochs", "1", "--batch-size", "1024"]
    args += ["--device", "cpu", "--precision", "fp32", "--quiet"]
    single = run(SINGLE, [*args, "--out", str(tmp_path / "single.safetensors"), "--json", str(tmp_path / "single.json")])
    assert single.returncode == 0, single.stderr
    ddp = run(TORCHRUN, [*args, "--out", str(tmp_path / "ddp.safetensors"), "--json", str(tmp_path / "ddp.json")])
    assert ddp.returncode == 0, ddp.stderr
    a, b = load_file(tmp_path / "single.safetensors"), load_file(tmp_path / "ddp.safetensors")
    original = load_file(poisoned_run / "model.safetensors")
    assert a.keys() == b.keys() == original.keys()  # the new units dropped on rank 0 too
    assert any(not torch.equal(a[k], original[k]) for k in a)  # the step changed the model
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)
    single_log, ddp_log = json.loads((tmp_path / "single.json").read_text()), json.loads((tmp_path / "ddp.json").read_text())
    assert ddp_log["steps"] == single_log["steps"] == 1
    assert load_checkpoint(tmp_path / "ddp.safetensors").history[-1]["data_parallel"] == {"world_size": 2}
    assert ddp_log["log"]["iterations"][-1]["repair_loss"] == pytest.approx(single_log["log"]["iterations"][-1]["repair_loss"], abs=1e-5)


def test_what_cannot_run_data_parallel_says_so_in_one_line(poisoned_run, tmp_path):
    scrub = run(
        TORCHRUN,
        [
            "unlearn",
            str(poisoned_run / "model.safetensors"),
            "--forget",
            str(poisoned_run / "c" / "forget-0.5.txt"),
            "--method",
            "scrub",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "x.safetensors"),
        ],
    )
    errors = [line for line in scrub.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "scrub does not run data-parallel" in errors[0] and "rem-redirect" in errors[0]
    # the ranks exit 2 without a traceback of their own; what follows is torchrun's agent, which reports
    # any failed worker as a ChildFailedError and exits 1 whatever the worker's code (docs/scaling.md, "Data parallel")
    assert re.search(r"exitcode\s*:\s*2 ", scrub.stderr), scrub.stderr
    assert not [line for line in scrub.stderr.splitlines() if line.strip().startswith("File ") and "remcli" in line.split("site-packages")[-1]]
    assert scrub.returncode == 1, scrub.stderr
    assert not (tmp_path / "x.safetensors").exists()
    evaluate = run(TORCHRUN, ["evaluate", str(poisoned_run / "model.safetensors")])
    assert evaluate.returncode != 0
    assert [line for line in evaluate.stderr.splitlines() if line.startswith("error:")] == [
        "error: `remcli evaluate` does not run under torchrun; only train and unlearn do (sweeps scale out with --workers)"
    ]


def test_sync_bn_outside_torchrun_is_a_one_line_error(cifar_spec, tmp_path):
    from typer.testing import CliRunner

    from remcli.cli.main import app

    result = CliRunner().invoke(
        app, ["train", "--data", cifar_spec, "--sync-bn", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "m.safetensors")]
    )
    assert result.exit_code == 2 and "--sync-bn only applies under torchrun" in result.output
    assert not (tmp_path / "m.safetensors").exists()
