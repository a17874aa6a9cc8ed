"""`remcli train`: train a classifier from scratch (or fine-tune one from --init) and save a safetensors checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from remcli.checkpoints import save_checkpoint
from remcli.cli.options import (
    DATA_HELP,
    DeviceOpt,
    DownloadOpt,
    ForceOpt,
    JsonOpt,
    PrecisionOpt,
    QuietOpt,
    SeedOpt,
    SyncBNOpt,
)
from remcli.cli.output import RichReporter, emit_json, errors_to_exit, stderr
from remcli.data.datasets import load_dataset
from remcli.distributed import data_parallel_from_environment
from remcli.fileio import check_writable_output
from remcli.inputs import load_corruption
from remcli.models.recipes import describe_train_lr
from remcli.settings import parse_settings
from remcli.train import TrainConfig, train_model


def parse_arch_args(pairs: list[str], width: float | None) -> dict:
    """`--arch-arg k=v` pairs (values parsed as `remcli.settings` does) plus the --width shortcut."""
    out = parse_settings(pairs, "--arch-arg")
    if width is not None:
        out["width"] = width
    return out


@errors_to_exit
def train_command(
    data: Annotated[str, typer.Option("--data", help=DATA_HELP)],
    out: Annotated[Path, typer.Option("--out", help="Output checkpoint (.safetensors).")],
    corruption: Annotated[
        Optional[Path],
        typer.Option("--corruption", help="corruption.json written by `remcli corrupt`, applied to the training labels (and pixels, for poison)."),
    ] = None,
    arch: Annotated[str, typer.Option("--arch", help="resnet9, vit_cifar, or any torchvision classifier (see `remcli archs`).")] = "resnet9",
    width: Annotated[Optional[float], typer.Option("--width", help="Channel multiplier for resnet9 / vit_cifar (1.0 = paper size).")] = None,
    arch_arg: Annotated[list[str], typer.Option("--arch-arg", help="Extra constructor argument name=value (repeatable).")] = [],
    init: Annotated[
        Optional[Path],
        typer.Option(
            "--init",
            metavar="CKPT",
            help="Fine-tune from this checkpoint's weights instead of a fresh initialisation (same --arch and --width). A different "
            "class count re-initialises only the classifier. Recorded (path, sha256) for `unlearn --method retrain`.",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training split (paper: ~41 = 4000 steps at batch 512).")] = 40,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate. " + describe_train_lr() + ".")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Samples per step.")] = 512,
    optimizer: Annotated[Optional[str], typer.Option("--optimizer", help="sgd or adam. Default: sgd for CNNs, adam for ViTs.")] = None,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="L2 weight decay.")] = 5e-4,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Fraction of the training split held out for validation (never corrupted samples).")
    ] = 0.05,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    force: ForceOpt = False,
    download: DownloadOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = None,
    sync_bn: SyncBNOpt = False,
) -> None:
    """Train ARCH on DATA (with the corruption applied, if given) and save a checkpoint.

    Recipe (paper defaults): SGD momentum 0.9, weight decay 5e-4, batch 512, 1% warm-up then
    linear decay; random crop + flip; bf16 autocast where --precision auto picks it (CUDA, and CPUs
    with native bf16). The summary reports images/s and the precision that ran.

    Data parallel: `torchrun --nproc-per-node N -m remcli train ...` splits every batch across N
    processes (gloo on CPUs, NCCL on GPUs, one GPU per process); rank 0 alone writes and prints.
    """
    check_writable_output(out, force, tuple(p for p in (corruption, init) if p))
    cfg = TrainConfig(
        arch=arch,
        arch_kwargs=parse_arch_args(arch_arg, width),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
        val_fraction=val_fraction,
        seed=seed,
        device=device,
        precision=precision,
        init=str(init) if init else None,
    )
    dataset = load_dataset(data, download=download)
    manifest, digest = load_corruption(corruption, dataset)
    with data_parallel_from_environment(device) as group, RichReporter(quiet or (group is not None and not group.is_main)) as reporter:
        result = train_model(dataset, cfg, manifest, digest, str(corruption.resolve()) if corruption else None, reporter, group, sync_bn)
    if group is not None and not group.is_main:
        return
    sha = save_checkpoint(out, result.model.state_dict(), result.meta, force=force)
    summary = {**result.summary, "checkpoint": str(out), "checkpoint_sha256": sha}
    stderr.print(
        f"trained {arch} for {summary['epochs']} epochs ({summary['steps']} steps) in {summary['wall_time_s']:.1f}s, "
        f"{summary['images_per_s']} images/s on {summary['device']}; val acc {summary['val_acc']}; wrote {out}"
    )
    if json_out:
        emit_json(summary, json_out)
