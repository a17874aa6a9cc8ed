"""`remcli unlearn`: remove the identified samples' influence from a checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from remcli.checkpoints import load_checkpoint, save_checkpoint
from remcli.cli.commands.train import parse_arch_args
from remcli.cli.options import (
    FORGET_HELP,
    CheckpointArg,
    CorruptionOpt,
    DataOpt,
    DeviceOpt,
    DownloadOpt,
    ForceOpt,
    JsonOpt,
    PrecisionOpt,
    QuietOpt,
    SeedOpt,
)
from remcli.cli.output import RichReporter, emit_json, errors_to_exit, stderr
from remcli.distributed import data_parallel_from_environment, is_main_process
from remcli.errors import UnchangedError
from remcli.fileio import check_writable_output
from remcli.inputs import forget_outside_corruption, read_identified, resolve_inputs
from remcli.models.recipes import unlearn_lr
from remcli.settings import parse_settings
from remcli.unlearning import get_method, list_methods, unlearn
from remcli.unlearning.base import build_config
from remcli.unlearning.methods.rem import REMConfig
from remcli.unlearning.run import refuse_held_out

REM = REMConfig()  # the defaults the help text quotes


def methods_with(setting: str) -> list:
    """The registered methods that have `setting`, by name: the options' help names them from the
    registry, so a new method is listed without editing this file."""
    return [m for m in list_methods() if setting in {f.name for f in dataclasses.fields(m.config_cls)}]


def names_with(setting: str, exclude: type = type(None)) -> str:
    """`methods_with(setting)` as `a / b / c`, leaving out those whose config is an `exclude`."""
    return " / ".join(m.name for m in methods_with(setting) if not issubclass(m.config_cls, exclude))


def collect_overrides(settings: list[str], **named) -> dict:
    """Explicit options (non-None) plus `--set name=value` pairs (parsed as `remcli.settings` does)."""
    overrides = {k: v for k, v in named.items() if v is not None}
    if isinstance(overrides.get("targets"), str):
        overrides["targets"] = tuple(t.strip() for t in overrides["targets"].split(",") if t.strip())
    overrides.update(parse_settings(settings, "--set"))
    return overrides


@errors_to_exit
def unlearn_command(
    checkpoint: CheckpointArg,
    forget: Annotated[Path, typer.Option("--forget", metavar="FILE", help=FORGET_HELP)],
    out: Annotated[Path, typer.Option("--out", help="Output checkpoint (.safetensors); same tensor names and shapes as the input.")],
    method: Annotated[
        str, typer.Option("--method", help=f"Unlearning method: {', '.join(m.name for m in list_methods())} (see `remcli methods`).")
    ] = "rem",
    data: DataOpt = None,
    corruption: CorruptionOpt = None,
    arch: Annotated[Optional[str], typer.Option("--arch", help="Architecture, for checkpoints without remcli metadata.")] = None,
    num_classes: Annotated[Optional[int], typer.Option("--num-classes", help="Number of classes, for checkpoints without remcli metadata.")] = None,
    arch_arg: Annotated[
        list[str], typer.Option("--arch-arg", help="Constructor argument name=value, for checkpoints without remcli metadata (repeatable).")
    ] = [],
    epochs: Annotated[
        Optional[int],
        typer.Option(
            "--epochs",
            help=f"Budget in passes: REM outer iterations (default {REM.epochs}), retain epochs for "
            f"{names_with('epochs', exclude=REMConfig)} (defaults in `remcli methods`).",
        ),
    ] = None,
    lr: Annotated[
        Optional[float],
        typer.Option(
            "--lr",
            help=f"Learning rate (each method's default is in `remcli methods --json -`; REM: {unlearn_lr('sgd'):g} SGD for CNNs, "
            f"{unlearn_lr('adam'):g} Adam for transformers).",
        ),
    ] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help=f"Samples per step (method default; REM {REM.batch_size}).")] = None,
    optimizer: Annotated[Optional[str], typer.Option("--optimizer", help="sgd or adam (method default).")] = None,
    variant: Annotated[
        Optional[str],
        typer.Option(
            "--variant",
            help="Method variant: " + ", ".join(f"{m.name} {'|'.join(m.config_cls.CHOICES['variant'])}" for m in methods_with("variant")) + ".",
        ),
    ] = None,
    k: Annotated[
        Optional[int],
        typer.Option(
            "--k",
            help=f"{names_with('k')}: how many trailing blocks train (see `remcli inspect --blocks`; -1 = all). "
            f"Default {methods_with('k')[0].config_cls().k}.",
        ),
    ] = None,
    capacity: Annotated[
        Optional[float], typer.Option("--capacity", help=f"REM: new units per target layer, as a multiple of its width. Default {REM.capacity:g}.")
    ] = None,
    mask_density: Annotated[
        Optional[float],
        typer.Option("--mask-density", help=f"REM: Bernoulli rate of each sample's mask over the new units. Default {REM.mask_density:g}."),
    ] = None,
    gamma: Annotated[
        Optional[float],
        typer.Option("--gamma", help=f"{names_with('gamma')}: remove until identified accuracy (corrupted labels) <= gamma. Default {REM.gamma:g}."),
    ] = None,
    beta: Annotated[Optional[float], typer.Option("--beta", help=f"{names_with('beta')}: NPO inverse temperature. Default {REM.beta:g}.")] = None,
    flush_max_epochs: Annotated[
        Optional[int], typer.Option("--flush-max-epochs", help=f"REM: cap on flush epochs per outer iteration. Default {REM.flush_max_epochs}.")
    ] = None,
    rem_targets: Annotated[
        Optional[str], typer.Option("--rem-targets", help="REM: comma-separated module names to add units beside (see `remcli inspect --blocks`).")
    ] = None,
    no_redirect: Annotated[bool, typer.Option("--no-redirect", help="REM ablation: repair without the new units (no redirection).")] = False,
    no_continued_removal: Annotated[bool, typer.Option("--no-continued-removal", help="REM ablation: no NPO removal term during repair.")] = False,
    select_on: Annotated[
        Optional[str],
        typer.Option(
            "--select-on",
            help=f"{names_with('select_on')}: model selection data: auto (validation if recorded, else retain), validation or retain. Never test.",
        ),
    ] = None,
    budget: Annotated[
        Optional[float],
        typer.Option(
            "--budget",
            metavar="F",
            help="REM: spend at most F of the checkpoint's recorded training compute (sample-passes, e.g. 0.2); "
            "picks the repair fraction to fit. The JSON summary's log.compute reports what was spent.",
        ),
    ] = None,
    settings: Annotated[list[str], typer.Option("--set", help="Any other method setting name=value (repeatable; see `remcli methods`).")] = [],
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    force: ForceOpt = False,
    download: DownloadOpt = False,
    fail_if_unchanged: Annotated[
        bool,
        typer.Option(
            "--fail-if-unchanged",
            help='Exit 4 and write nothing when unlearning left every tensor unchanged (default: write it with a warning and "changed": false).',
        ),
    ] = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = None,
) -> None:
    """Unlearn the samples in --forget from CHECKPOINT and write a new checkpoint.

    Data and corruption default to what the checkpoint's metadata records. The output has
    exactly the input's tensor names and shapes; its history records the method, every
    setting, the seed, the per-iteration trace, wall time and gradient steps.

    Data parallel: `torchrun --nproc-per-node N -m remcli unlearn ...` for the methods that support
    it (the torchrun column of `remcli methods`); with others rank 0 prints a one-line
    error and exits 2, and torchrun reports the failed ranks and exits 1, as it does for any failure.
    Rank 0 alone writes and prints.
    """
    check_writable_output(out, force, (checkpoint, forget))
    overrides = collect_overrides(
        settings,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        optimizer=optimizer,
        variant=variant,
        k=k,
        capacity=capacity,
        mask_density=mask_density,
        gamma=gamma,
        beta=beta,
        flush_max_epochs=flush_max_epochs,
        targets=rem_targets,
        select_on=select_on,
        redirect=False if no_redirect else None,
        continued_removal=False if no_continued_removal else None,
        budget=budget,
    )
    build_config(get_method(method), overrides)  # refuse bad settings before loading anything
    ckpt = load_checkpoint(checkpoint)
    if arch:
        ckpt.meta["arch"] = arch
    if num_classes:
        ckpt.meta["num_classes"] = num_classes
    if arch_arg:
        ckpt.meta["arch_kwargs"] = parse_arch_args(arch_arg, None)
    inputs = resolve_inputs(ckpt, data, corruption, download, forget)
    identified = read_identified(forget, inputs.dataset)
    refuse_held_out(identified, ckpt)  # an error first, then warnings about the samples that remain
    outside = forget_outside_corruption(identified, inputs.manifest, forget)
    if outside and is_main_process():
        stderr.print(f"[bold yellow]warning:[/] {escape(outside)}", soft_wrap=True)
    with data_parallel_from_environment(device) as group, RichReporter(quiet or (group is not None and not group.is_main)) as reporter:
        outcome = unlearn(ckpt, inputs, identified, method, overrides, seed=seed, device=device, precision=precision, reporter=reporter, group=group)
    if group is not None and not group.is_main:
        return  # rank 0 writes
    for warning in outcome.summary["log"].get("warnings", []):
        stderr.print(f"[bold yellow]warning:[/] {method}: {escape(warning)}", soft_wrap=True)
    if not outcome.summary["changed"]:
        log = outcome.summary["log"]
        kept = log.get("kept_iteration", log.get("best_iteration", log.get("best_epoch")))
        why = f" (it kept iteration {kept}: no iterate scored better than the input model on the selection proxy)" if kept == 0 else ""
        if fail_if_unchanged:
            raise UnchangedError(
                f"{method} left the model unchanged{why}, so {out} was not written (--fail-if-unchanged); "
                "give it more budget (--epochs) or other settings"
            )
        stderr.print(
            f"[bold yellow]warning:[/] {method} left the model unchanged{why}; the output is the input model "
            '("changed": false in the JSON summary and the history; --fail-if-unchanged makes this exit 4)',
            soft_wrap=True,
        )
    sha = save_checkpoint(out, outcome.state_dict, outcome.meta, force=force, inputs=(checkpoint,))
    summary = {**outcome.summary, "input": str(checkpoint), "checkpoint": str(out), "checkpoint_sha256": sha}
    spent = summary["log"].get("compute", {}).get("fraction_of_training")
    of_training = f" ({spent:.2f} of training's sample-passes)" if spent is not None else ""
    stderr.print(f"{method}: {summary['steps']} gradient steps in {summary['wall_time_s']:.1f}s{of_training} on {summary['device']}; wrote {out}")
    if json_out:
        emit_json(summary, json_out)
