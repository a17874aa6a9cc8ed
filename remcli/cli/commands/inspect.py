"""`remcli inspect`: print a checkpoint's provenance (and its blocks)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from remcli.checkpoints import load_checkpoint, read_metadata
from remcli.cli.options import JsonOpt
from remcli.cli.output import emit_json, errors_to_exit, stdout_console
from remcli.models import build_model, list_archs, timm_name
from remcli.models.blocks import list_blocks


def arch_blocks(arch: str, json_out: str | None) -> None:
    """`remcli inspect ARCH --blocks`: the blocks of an architecture, without a checkpoint."""
    names = list_blocks(build_model(arch, num_classes=10))
    if json_out:
        emit_json({"arch": arch, "blocks": names}, json_out)
        if json_out == "-":
            return
    stdout_console().print(f"{arch} blocks (in forward order): " + ", ".join(names))


DIAGNOSTIC_COLUMNS = (
    ("flush_steps", "flush steps"),
    ("identified_drop_acc", "id acc drop"),
    ("identified_redirect_acc", "id acc redirect"),
    ("identified_drop_ce", "id CE drop"),
    ("identified_redirect_ce", "id CE redirect"),
    ("identified_drop_npo_weight", "id w drop"),
    ("identified_redirect_npo_weight", "id w redirect"),
    ("retain_drop_acc", "retain acc drop"),
    ("retain_redirect_acc", "retain acc redirect"),
    ("proxy", "proxy"),
    ("redirecting", "redirecting"),
    ("flush_s", "flush s"),
    ("repair_s", "repair s"),
)


def rem_diagnostics_table(log: dict) -> Table | None:
    """REM's per-iteration diagnostics (drop vs redirect view), or None for other steps."""
    iterations = log.get("iterations") or []
    if not iterations or "identified_redirect_acc" not in iterations[0]:
        return None
    table = Table(title="REM per outer iteration (id = identified set, w = mean NPO weight; acc on training labels)", title_justify="left")
    table.add_column("it", justify="right")
    for _, name in DIAGNOSTIC_COLUMNS:
        table.add_column(name, justify="right")
    kept = log.get("kept_iteration", log.get("best_iteration"))
    for it in iterations:
        cells = [
            "" if it.get(key) is None else ("yes" if it[key] is True else "no" if it[key] is False else str(it[key])) for key, _ in DIAGNOSTIC_COLUMNS
        ]
        table.add_row(f"{it['iteration']}{'*' if it['iteration'] == kept else ''}", *cells)
    table.caption = "* kept iterate; redirecting = redirect view fits >= 0.8 of the identified set while the drop view is at or below gamma"
    return table


@errors_to_exit
def inspect_command(
    checkpoint: Annotated[Path, typer.Argument(help="A safetensors checkpoint, or an architecture name with --blocks.", show_default=False)],
    blocks: Annotated[bool, typer.Option("--blocks", help="List the model's blocks (as used by REM targets and cf-k/eu-k).")] = False,
    json_out: JsonOpt = None,
) -> None:
    """Show how a checkpoint was made: arch, data, corruption, validation split and history.

    `remcli inspect ARCH --blocks` (e.g. resnet18, timm:resnet18) lists an architecture's blocks without a checkpoint.
    """
    if blocks and not checkpoint.exists() and (str(checkpoint) in list_archs() or timm_name(str(checkpoint))):
        arch_blocks(str(checkpoint), json_out)
        return
    meta = read_metadata(checkpoint)
    validation = meta.get("validation") or {}
    summary = {k: v for k, v in meta.items() if k != "validation"}
    summary["validation"] = {k: v for k, v in validation.items() if k != "indices"} | {"count": len(validation.get("indices", []))}
    if blocks:
        model = load_checkpoint(checkpoint, check_finite=False).build()  # block names do not depend on the values
        summary["blocks"] = list_blocks(model)
    if json_out:
        emit_json(summary, json_out)
        if json_out == "-":
            return
    console = stdout_console()
    table = Table(title=str(checkpoint), show_header=False)
    for key in (
        "arch",
        "arch_kwargs",
        "num_classes",
        "input_shape",
        "mean",
        "std",
        "classes",
        "dataset",
        "dataset_fingerprint",
        "dataset_content_sha256",
        "corruption_sha256",
        "remcli_version",
    ):
        if key == "classes" and isinstance(meta.get(key), list):
            names = meta[key]
            table.add_row(key, f"{len(names)}: " + ", ".join(map(str, names[:10])) + (", ..." if len(names) > 10 else ""))
        elif key in meta or key not in ("mean", "std", "classes", "dataset_content_sha256"):
            table.add_row(key, str(meta.get(key, "")))
    table.add_row("validation", str(summary["validation"]))
    console.print(table)
    for number, step in enumerate(meta.get("history", []), start=1):
        console.print(
            f"[bold]{number}. {step.get('command')}[/] {step.get('created_at', '')}  seed={step.get('seed')}  "
            f"wall={step.get('wall_time_s')}s  device={step.get('device')}"
        )
        console.print(f"   params: {step.get('params')}", soft_wrap=True)
        if step.get("init"):
            init = step["init"]
            fresh = f"; re-initialised {', '.join(init['reinitialised'])}" if init.get("reinitialised") else ""
            console.print(f"   fine-tuned from {init['path']} (sha256 {init['sha256'][:12]}){fresh}", soft_wrap=True)
        table = rem_diagnostics_table(step.get("log") or {})
        if table is not None:
            console.print(table)
    if blocks:
        console.print("blocks (in forward order): " + ", ".join(summary["blocks"]))
