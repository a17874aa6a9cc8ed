"""`remcli evaluate`: corrective metrics of a checkpoint, as a table or JSON, with CI gates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from remcli.checkpoints import load_checkpoint
from remcli.cli.options import CheckpointArg, CorruptionOpt, DataOpt, DeviceOpt, DownloadOpt, JsonOpt
from remcli.cli.output import emit_json, errors_to_exit
from remcli.errors import ThresholdError
from remcli.evaluation import evaluate, missed_thresholds, parse_thresholds
from remcli.inputs import read_identified, resolve_inputs


def metrics_table(result: dict) -> Table:
    table = Table(title=f"{result['checkpoint']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, "-" if value is None else f"{value:.4f}")
    return table


@errors_to_exit
def evaluate_command(
    checkpoint: CheckpointArg,
    data: DataOpt = None,
    corruption: CorruptionOpt = None,
    forget: Annotated[Optional[Path], typer.Option("--forget", help="Index file of identified samples; splits healed into identified / undiscovered.")] = None,
    json_out: JsonOpt = None,
    fail_under: Annotated[Optional[str], typer.Option("--fail-under", help="Minimum metric values, e.g. utility=0.8,healed=0.7; exit code 3 if one is missed.")] = None,
    device: DeviceOpt = "auto",
    download: DownloadOpt = False,
) -> None:
    """Measure test accuracy, utility, healed, attack success and more (fractions in [0,1]).

    Exit codes: 0 ok, 3 a --fail-under threshold was missed, 2 usage or input error, 1 otherwise.
    """
    thresholds = parse_thresholds(fail_under) if fail_under else {}
    ckpt = load_checkpoint(checkpoint)
    inputs = resolve_inputs(ckpt, data, corruption, download)
    identified = read_identified(forget, inputs.dataset) if forget else None
    result = evaluate(ckpt, inputs.dataset, inputs.manifest, identified, device=device)
    missed = missed_thresholds(result, thresholds)
    result["thresholds"] = {"required": thresholds, "missed": missed}
    if json_out:
        emit_json(result, json_out)
    if json_out != "-":
        Console().print(metrics_table(result))
    if missed:
        raise ThresholdError("below --fail-under: " + ", ".join(missed))
