"""`remcli unlearn`: remove the identified samples' influence from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

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
from remcli.errors import UnchangedError
from remcli.fileio import check_writable_output
from remcli.inputs import read_identified, resolve_inputs
from remcli.settings import parse_settings
from remcli.unlearning import unlearn


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
    method: Annotated[str, typer.Option("--method", help="Unlearning method (see `remcli methods`).")] = "rem",
    data: DataOpt = None,
    corruption: CorruptionOpt = None,
    arch: Annotated[Optional[str], typer.Option("--arch", help="Architecture, for checkpoints without remcli metadata.")] = None,
    num_classes: Annotated[Optional[int], typer.Option("--num-classes", help="Number of classes, for checkpoints without remcli metadata.")] = None,
    arch_arg: Annotated[list[str], typer.Option("--arch-arg", help="Constructor argument name=value, for checkpoints without remcli metadata (repeatable).")] = [],
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Budget in passes: REM outer iterations (default 10), retain epochs for retrain/finetune/cf-k/eu-k/scrub/salun/neggrad+/badteacher (defaults in `remcli methods`).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate (each method's default is in `remcli methods --json -`; REM: 0.005 SGD for CNNs, 2e-5 Adam for ViTs).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Samples per step (method default; REM 512).")] = None,
    optimizer: Annotated[Optional[str], typer.Option("--optimizer", help="sgd or adam (method default).")] = None,
    variant: Annotated[Optional[str], typer.Option("--variant", help="Method variant: scrub original|bench, salun original|rem-code.")] = None,
    k: Annotated[Optional[int], typer.Option("--k", help="cf-k / eu-k: how many trailing blocks train (see `remcli inspect --blocks`; -1 = all). Default 2.")] = None,
    capacity: Annotated[Optional[float], typer.Option("--capacity", help="REM: new units per target layer, as a multiple of its width. Default 1.0.")] = None,
    mask_density: Annotated[Optional[float], typer.Option("--mask-density", help="REM: Bernoulli rate of each sample's mask over the new units. Default 0.2.")] = None,
    gamma: Annotated[Optional[float], typer.Option("--gamma", help="REM / ga / npo: remove until identified accuracy (corrupted labels) <= gamma. Default 0.2.")] = None,
    beta: Annotated[Optional[float], typer.Option("--beta", help="REM / npo: NPO inverse temperature. Default 1.")] = None,
    flush_max_epochs: Annotated[Optional[int], typer.Option("--flush-max-epochs", help="REM: cap on flush epochs per outer iteration. Default 100.")] = None,
    rem_targets: Annotated[Optional[str], typer.Option("--rem-targets", help="REM: comma-separated module names to add units beside (see `remcli inspect --blocks`).")] = None,
    no_redirect: Annotated[bool, typer.Option("--no-redirect", help="REM ablation: repair without the new units (no redirection).")] = False,
    no_continued_removal: Annotated[bool, typer.Option("--no-continued-removal", help="REM ablation: no NPO removal term during repair.")] = False,
    select_on: Annotated[Optional[str], typer.Option("--select-on", help="REM / ga / npo model selection data: auto (validation if recorded, else retain), validation or retain. Never test.")] = None,
    settings: Annotated[list[str], typer.Option("--set", help="Any other method setting name=value (repeatable; see `remcli methods`).")] = [],
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    force: ForceOpt = False,
    download: DownloadOpt = False,
    fail_if_unchanged: Annotated[bool, typer.Option("--fail-if-unchanged", help="Exit 4 and write nothing when unlearning left every tensor unchanged (default: write it with a warning and \"changed\": false).")] = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = None,
) -> None:
    """Unlearn the samples in --forget from CHECKPOINT and write a new checkpoint.

    Data and corruption default to what the checkpoint's metadata records. The output has
    exactly the input's tensor names and shapes; its history records the method, every
    setting, the seed, the per-iteration trace, wall time and gradient steps.
    """
    check_writable_output(out, force, (checkpoint, forget))
    ckpt = load_checkpoint(checkpoint)
    if arch:
        ckpt.meta["arch"] = arch
    if num_classes:
        ckpt.meta["num_classes"] = num_classes
    if arch_arg:
        ckpt.meta["arch_kwargs"] = parse_arch_args(arch_arg, None)
    inputs = resolve_inputs(ckpt, data, corruption, download)
    identified = read_identified(forget, inputs.dataset)
    overrides = collect_overrides(
        settings, epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, variant=variant, k=k, capacity=capacity, mask_density=mask_density,
        gamma=gamma, beta=beta, flush_max_epochs=flush_max_epochs, targets=rem_targets, select_on=select_on,
        redirect=False if no_redirect else None, continued_removal=False if no_continued_removal else None,
    )
    with RichReporter(quiet) as reporter:
        outcome = unlearn(ckpt, inputs, identified, method, overrides, seed=seed, device=device, precision=precision, reporter=reporter)
    if not outcome.summary["changed"]:
        kept = outcome.summary["log"].get("best_iteration", outcome.summary["log"].get("best_epoch"))
        why = f" (it kept iteration {kept}: no iterate scored better than the input model on the selection proxy)" if kept == 0 else ""
        if fail_if_unchanged:
            raise UnchangedError(f"{method} left the model unchanged{why}, so {out} was not written (--fail-if-unchanged); "
                                 "give it more budget (--epochs) or other settings")
        stderr.print(f"[bold yellow]warning:[/] {method} left the model unchanged{why}; the output is the input model "
                     "(\"changed\": false in the JSON summary and the history; --fail-if-unchanged makes this exit 4)", soft_wrap=True)
    sha = save_checkpoint(out, outcome.state_dict, outcome.meta, force=force, inputs=(checkpoint,))
    summary = {**outcome.summary, "input": str(checkpoint), "checkpoint": str(out), "checkpoint_sha256": sha}
    stderr.print(f"{method}: {summary['steps']} gradient steps in {summary['wall_time_s']:.1f}s on {summary['device']}; wrote {out}")
    if json_out:
        emit_json(summary, json_out)
