"""`remcli evaluate`: corrective metrics of a checkpoint, as a table or JSON, with CI gates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from remcli.checkpoints import Checkpoint, load_checkpoint
from remcli.cli.options import (
    FORGET_HELP,
    CheckpointArg,
    CorruptionOpt,
    DataOpt,
    DeviceOpt,
    DownloadOpt,
    JsonOpt,
)
from remcli.cli.output import emit_json, errors_to_exit, stderr, stdout_console
from remcli.data.datasets import Dataset
from remcli.data.image_folders import load_labelled_folder
from remcli.data.queries import class_index, load_queries
from remcli.errors import InputError, ThresholdError
from remcli.evaluation import compare, evaluate, gates_summary, missed_gates, parse_gates
from remcli.evaluation.evaluate import GATE_EXAMPLE
from remcli.inputs import fit_dataset_to, forget_outside_corruption, read_identified, resolve_inputs

GATE_OPTION = "--gate/--fail-under"


_EVAL_SET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_eval_sets(values: list[str]) -> dict[str, str]:
    """['mine=triggered/'] -> {'mine': 'triggered/'}: names are identifiers, so NAME_acc can be gated."""
    sets: dict[str, str] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        name = name.strip()
        if not sep or not folder.strip() or not _EVAL_SET_NAME.fullmatch(name):
            raise InputError(f"--eval-set {value!r} must be NAME=FOLDER with NAME a plain identifier, e.g. --eval-set triggered=my_triggered_images")
        if name in sets:
            raise InputError(f"--eval-set name {name!r} is given twice; give each set its own name")
        sets[name] = folder.strip()
    return sets


def metrics_table(result: dict) -> Table:
    """One row per metric; with --against, the baseline's value and the change beside it."""
    against = result.get("against")
    table = Table(title=f"{result['checkpoint']}" + (f" against {against['checkpoint']}" if against else ""))
    table.add_column("metric")
    table.add_column("value", justify="right")
    if against:
        table.add_column("against", justify="right")
        table.add_column("change", justify="right")

    def shown(value: float | None, sign: str = "") -> str:
        return "-" if value is None else f"{value:{sign}.4f}"

    for name, value in result["metrics"].items():
        if not against:
            table.add_row(name, shown(value))
        elif not name.startswith("delta_"):
            table.add_row(name, shown(value), shown(against["metrics"].get(name)), shown(result["metrics"].get(f"delta_{name}"), "+"))
    return table


def load_baseline(path: Path, checkpoint: Checkpoint, dataset: Dataset) -> tuple[Checkpoint, Dataset]:
    """The --against checkpoint and the dataset as it sees it. A file without remcli metadata is
    taken to be the same architecture as CHECKPOINT (a model and its unlearned copy); its tensors
    must then load into it."""
    baseline = load_checkpoint(path)
    for key in ("arch", "num_classes", "arch_kwargs", "input_shape"):
        if key in checkpoint.meta:
            baseline.meta.setdefault(key, checkpoint.meta[key])
    return baseline, fit_dataset_to(baseline, dataset, dataset.spec)


@errors_to_exit
def evaluate_command(
    checkpoint: CheckpointArg,
    data: DataOpt = None,
    corruption: CorruptionOpt = None,
    forget: Annotated[
        Optional[Path], typer.Option("--forget", metavar="FILE", help=FORGET_HELP + " Splits healed into identified / undiscovered.")
    ] = None,
    json_out: JsonOpt = None,
    gate: Annotated[
        list[str],
        typer.Option(
            "--gate",
            "--require",
            "--fail-under",
            metavar="METRIC>=VALUE",
            help=f"CI gates, comma-separated or repeated: METRIC>=VALUE (a floor) or METRIC<=VALUE (a ceiling); METRIC=VALUE means >=. "
            f"Quote them for the shell, e.g. --gate '{GATE_EXAMPLE}'. Exit code 3 if one is missed. --require and --fail-under are the same option.",
        ),
    ] = [],
    eval_set: Annotated[
        list[str],
        typer.Option(
            "--eval-set",
            metavar="NAME=FOLDER",
            help="An extra labelled set to measure, reported as NAME_acc (and gateable): FOLDER/<class>/<image> with the training data's "
            "class names, e.g. your own triggered images under their true classes. FOLDER?size=N resizes. Repeatable. "
            "NAME=PATH?wrong=LABEL measures unlabelled images that misbehaved (a folder or a list file, as detect --query reads them): "
            "NAME_wrong is the share still predicted as LABEL, e.g. --gate 'NAME_wrong<=0.1'.",
        ),
    ] = [],
    against: Annotated[
        Optional[Path],
        typer.Option(
            "--against",
            metavar="BASELINE",
            help="Also evaluate BASELINE (e.g. the model before unlearning) on the same data and report each metric's change as "
            "delta_METRIC = CHECKPOINT - BASELINE, gateable like any metric: --gate 'delta_test_acc>=-0.02'.",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    download: DownloadOpt = False,
) -> None:
    """Measure test accuracy, utility, healed, attack success and more (fractions in [0,1]).

    With --against BASELINE the table and JSON also hold BASELINE's metrics and the change
    (delta_METRIC), so a CI job can gate on what unlearning cost and removed, e.g. --gate
    'delta_utility>=-0.02,delta_attack_success_rate<=-0.5'. A missed --gate exits 3 (see `remcli
    --help` for every exit code).
    """
    gates = parse_gates(",".join(gate), GATE_OPTION)
    eval_folders = parse_eval_sets(eval_set)
    ckpt = load_checkpoint(checkpoint)
    inputs = resolve_inputs(ckpt, data, corruption, download, forget)
    identified = read_identified(forget, inputs.dataset) if forget else None
    outside = forget_outside_corruption(identified, inputs.manifest, forget) if forget else None
    if outside:
        stderr.print(f"[bold yellow]warning:[/] {escape(outside)}", soft_wrap=True)
    if inputs.dataset.test_split != "test":
        stderr.print(f"note: {inputs.dataset.spec} has no test/ folder; test metrics are measured on its {inputs.dataset.test_split}/ split")
    classes, shape = inputs.dataset.classes, inputs.dataset.input_shape
    queries = {name: load_queries(path, shape, f"--eval-set {name}") for name, path in eval_folders.items() if "wrong=" in path.partition("?")[2]}
    wrong = {name: (images, class_index(label, classes, f"--eval-set {name} ?wrong=")) for name, (images, label) in queries.items()}
    extra = {name: load_labelled_folder(folder, classes) for name, folder in eval_folders.items() if name not in queries}
    result = evaluate(ckpt, inputs.dataset, inputs.manifest, identified, device=device, eval_sets=extra, wrong_sets=wrong).as_dict()
    if against is not None:
        baseline, baseline_data = load_baseline(against, ckpt, inputs.dataset)
        parent = ckpt.history[-1].get("parent_sha256") if ckpt.history else None
        measured = evaluate(baseline, baseline_data, inputs.manifest, identified, device=device, eval_sets=extra, wrong_sets=wrong)
        result = compare(result, measured.as_dict(), None if parent is None else parent == baseline.sha256)
    missed = missed_gates(result, gates, GATE_OPTION)
    result["thresholds"] = gates_summary(gates, missed)
    if json_out:
        emit_json(result, json_out)
    if json_out != "-":
        stdout_console().print(metrics_table(result))
    if missed:
        raise ThresholdError(f"missed {len(missed)} of {len(gates)} {GATE_OPTION} gates: " + ", ".join(missed))
