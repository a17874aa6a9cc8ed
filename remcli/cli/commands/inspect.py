"""`remcli inspect`: print a checkpoint's provenance (and its blocks)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from remcli.checkpoints import load_checkpoint, read_metadata
from pathlib import Path

from remcli.cli.options import JsonOpt
from remcli.cli.output import emit_json, errors_to_exit
from remcli.models import build_model, list_archs
from remcli.models.blocks import list_blocks


def arch_blocks(arch: str, json_out: str | None) -> None:
    """`remcli inspect ARCH --blocks`: the blocks of an architecture, without a checkpoint."""
    names = list_blocks(build_model(arch, num_classes=10))
    if json_out:
        emit_json({"arch": arch, "blocks": names}, json_out)
        if json_out == "-":
            return
    Console().print(f"{arch} blocks (in forward order): " + ", ".join(names))


@errors_to_exit
def inspect_command(
    checkpoint: Annotated[Path, typer.Argument(help="A safetensors checkpoint, or an architecture name with --blocks.", show_default=False)],
    blocks: Annotated[bool, typer.Option("--blocks", help="List the model's blocks (as used by REM targets and cf-k/eu-k).")] = False,
    json_out: JsonOpt = None,
) -> None:
    """Show how a checkpoint was made: arch, data, corruption, validation split and history.

    `remcli inspect ARCH --blocks` (e.g. resnet18) lists an architecture's blocks without a checkpoint.
    """
    if blocks and not checkpoint.exists() and str(checkpoint) in list_archs():
        arch_blocks(str(checkpoint), json_out)
        return
    meta = read_metadata(checkpoint)
    validation = meta.get("validation") or {}
    summary = {k: v for k, v in meta.items() if k != "validation"}
    summary["validation"] = {k: v for k, v in validation.items() if k != "indices"} | {"count": len(validation.get("indices", []))}
    if blocks:
        model = load_checkpoint(checkpoint).build()
        summary["blocks"] = list_blocks(model)
    if json_out:
        emit_json(summary, json_out)
        if json_out == "-":
            return
    console = Console()
    table = Table(title=str(checkpoint), show_header=False)
    for key in ("arch", "arch_kwargs", "num_classes", "input_shape", "dataset", "dataset_fingerprint", "corruption_sha256", "remcli_version"):
        table.add_row(key, str(meta.get(key, "")))
    table.add_row("validation", str(summary["validation"]))
    console.print(table)
    for number, step in enumerate(meta.get("history", []), start=1):
        console.print(f"[bold]{number}. {step.get('command')}[/] {step.get('created_at', '')}  seed={step.get('seed')}  wall={step.get('wall_time_s')}s  device={step.get('device')}")
        console.print(f"   params: {step.get('params')}", soft_wrap=True)
    if blocks:
        console.print("blocks (in forward order): " + ", ".join(summary["blocks"]))
