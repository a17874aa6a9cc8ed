"""`remcli import`: convert a legacy .pt/.pth state dict to a safetensors checkpoint, safely."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from remcli.checkpoints import Checkpoint, history_entry, import_state_dict, save_checkpoint
from remcli.cli.commands.train import parse_arch_args
from remcli.cli.options import ForceOpt
from remcli.cli.output import errors_to_exit, stderr
from remcli.errors import InputError
from remcli.fileio import sha256_file
from remcli.models import resolve_arch_kwargs


@errors_to_exit
def import_command(
    source: Annotated[Path, typer.Argument(help="A .pt/.pth file holding a state_dict (loaded with weights_only=True).", show_default=False)],
    arch: Annotated[str, typer.Option("--arch", help="Architecture the weights belong to.")],
    num_classes: Annotated[int, typer.Option("--num-classes", help="Number of output classes.")],
    out: Annotated[Path, typer.Option("--out", help="Output .safetensors checkpoint.")],
    input_shape: Annotated[str, typer.Option("--input-shape", help="C,H,W of the inputs.")] = "3,32,32",
    arch_arg: Annotated[list[str], typer.Option("--arch-arg", help="Constructor argument name=value (repeatable).")] = [],
    force: ForceOpt = False,
) -> None:
    """Import weights from a pickle-based file without executing code (torch weights_only)."""
    try:
        shape = [int(v) for v in input_shape.split(",")]
    except ValueError:
        shape = []
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"--input-shape {input_shape!r} must be three positive integers C,H,W such as 3,32,32")
    state = import_state_dict(source)
    kwargs = resolve_arch_kwargs(arch, shape[-1], parse_arch_args(arch_arg, None))
    meta = {"arch": arch, "arch_kwargs": kwargs, "num_classes": num_classes, "input_shape": shape}
    Checkpoint(state, meta, source).build()  # checks names and shapes against the arch
    meta["history"] = [history_entry("import", {"source": str(source), "arch": arch}, None, 0.0, "cpu", sha256_file(source))]
    save_checkpoint(out, state, meta, force=force, inputs=(source,))
    stderr.print(f"imported {len(state)} tensors from {source} into {out}")
