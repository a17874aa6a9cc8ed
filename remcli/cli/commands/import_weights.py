"""`remcli import`: convert a legacy .pt/.pth state dict to a safetensors checkpoint, safely."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from remcli.checkpoints import (
    Checkpoint,
    history_entry,
    import_state_dict,
    save_checkpoint,
)
from remcli.cli.commands.train import parse_arch_args
from remcli.cli.options import ForceOpt
from remcli.cli.output import errors_to_exit, stderr
from remcli.errors import InputError
from remcli.fileio import sha256_file
from remcli.models import resolve_arch_kwargs, timm_name
from remcli.models.registry import timm_pretrained_config


def _channel_values(text: str, option: str, channels: int, positive: bool) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    bad = not values or any(v != v or abs(v) == float("inf") for v in values) or (positive and any(v <= 0 for v in values))
    if bad or len(values) != channels:
        example = "0.485,0.456,0.406" if option == "--mean" else "0.229,0.224,0.225"
        raise InputError(
            f"{option} {text!r} must be {channels} comma-separated {'positive ' if positive else ''}numbers, one per input channel "
            f"(--input-shape has {channels}), e.g. {example if channels == 3 else ','.join(['0.5'] * channels)}"
        )
    return values


def parse_normalisation(mean: str | None, std: str | None, channels: int) -> dict:
    """{'mean': [...], 'std': [...]} from --mean/--std, or {} when neither is given."""
    if mean is None and std is None:
        return {}
    if mean is None or std is None:
        raise InputError("--mean and --std go together; give both (ImageNet: --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225)")
    return {"mean": _channel_values(mean, "--mean", channels, False), "std": _channel_values(std, "--std", channels, True)}


def parse_classes(text: str, num_classes: int) -> list[str]:
    """--classes cat,dog,...: one non-empty name per output, in label order, no repeats."""
    names = [name.strip() for name in text.split(",")]
    if len(names) != num_classes or not all(names) or len(set(names)) != len(names):
        raise InputError(
            f"--classes {text!r} must be {num_classes} distinct comma-separated class names (one per output, --num-classes {num_classes}), "
            "in label order, e.g. the class folder names sorted as the data lists them"
        )
    return names


def parse_input_shape(text: str) -> list[int]:
    try:
        shape = [int(v) for v in text.split(",")]
    except ValueError:
        shape = []
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"--input-shape {text!r} must be three positive integers C,H,W such as 3,32,32")
    return shape


@errors_to_exit
def import_command(
    source: Annotated[Path, typer.Argument(help="A .pt/.pth file holding a state_dict (loaded with weights_only=True).", show_default=False)],
    arch: Annotated[str, typer.Option("--arch", help="Architecture the weights belong to.")],
    num_classes: Annotated[int, typer.Option("--num-classes", help="Number of output classes.")],
    out: Annotated[Path, typer.Option("--out", help="Output .safetensors checkpoint.")],
    input_shape: Annotated[
        Optional[str],
        typer.Option(
            "--input-shape", metavar="C,H,W", help="C,H,W of the inputs. Default: timm's pretrained input size for timm:NAME, else 3,32,32."
        ),
    ] = None,
    arch_arg: Annotated[list[str], typer.Option("--arch-arg", help="Constructor argument name=value (repeatable).")] = [],
    mean: Annotated[
        Optional[str],
        typer.Option(
            "--mean",
            metavar="R,G,B",
            help="Per-channel mean the weights were trained with, comma-separated, on [0,1] pixels (ImageNet: 0.485,0.456,0.406). "
            "Recorded in the checkpoint and used by unlearn/evaluate instead of statistics computed from --data. Give --std with it.",
        ),
    ] = None,
    std: Annotated[
        Optional[str],
        typer.Option(
            "--std", metavar="R,G,B", help="Per-channel standard deviation, comma-separated (ImageNet: 0.229,0.224,0.225). Give --mean with it."
        ),
    ] = None,
    classes: Annotated[
        Optional[str],
        typer.Option(
            "--classes",
            metavar="NAME,NAME,...",
            help="The class names of the outputs, comma-separated in label order (one per --num-classes). Recorded in the checkpoint, "
            "so data with other class names is refused instead of silently mis-scored.",
        ),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Import weights from a pickle-based file without executing code (torch weights_only).

    Without --mean/--std, unlearn and evaluate normalise with the statistics of the data they are
    given; weights trained elsewhere (e.g. on ImageNet) need the normalisation they were trained with.
    For timm:NAME, timm's pretrained config supplies the input size and normalisation that
    --input-shape, --mean and --std leave unset.
    """
    pretrained = timm_pretrained_config(arch) if timm_name(arch) else {}
    shape = parse_input_shape(input_shape) if input_shape else list(pretrained.get("input_size", [3, 32, 32]))
    if mean is None and std is None and pretrained:
        normalisation = {"mean": pretrained["mean"], "std": pretrained["std"]}
        stderr.print(
            f"note: normalising with timm's pretrained mean {normalisation['mean']} and std {normalisation['std']} for {arch}; --mean/--std override"
        )
    else:
        normalisation = parse_normalisation(mean, std, shape[0])
    state = import_state_dict(source)
    kwargs = resolve_arch_kwargs(arch, shape[-1], parse_arch_args(arch_arg, None))
    names = {"classes": parse_classes(classes, num_classes)} if classes is not None else {}
    meta = {"arch": arch, "arch_kwargs": kwargs, "num_classes": num_classes, "input_shape": shape, **normalisation, **names}
    Checkpoint(state, meta, source).build()  # checks names and shapes against the arch
    params = {"source": str(source), "arch": arch, **normalisation, **names}
    meta["history"] = [history_entry("import", params, None, 0.0, "cpu", sha256_file(source))]
    save_checkpoint(out, state, meta, force=force, inputs=(source,))
    stderr.print(f"imported {len(state)} tensors from {source} into {out}")
