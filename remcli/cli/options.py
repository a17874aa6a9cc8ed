"""Option aliases shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from remcli.data.datasets import data_spec_help

SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random choice of this step (recorded in the output).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N (one GPU) or mps.")]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        help="auto (bf16 autocast on CUDA and on CPUs with native bf16, AVX512-BF16 or AMX; fp32 elsewhere), fp32, bf16 or fp16 (CUDA).",
    ),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display on stderr.")]
JsonOpt = Annotated[Optional[str], typer.Option("--json", metavar="PATH", help="Write the result as one JSON object to PATH, or to stdout with '-'.")]
DATA_HELP = data_spec_help()
DataOpt = Annotated[Optional[str], typer.Option("--data", help=DATA_HELP + " Defaults to the checkpoint's.")]
DownloadOpt = Annotated[bool, typer.Option("--download", help="Let torchvision download the dataset into ROOT (needs internet).")]
CorruptionOpt = Annotated[
    Optional[Path],
    typer.Option("--corruption", help="corruption.json written by `remcli corrupt`. Defaults to the one the checkpoint was trained on."),
]
CheckpointArg = Annotated[Path, typer.Argument(help="A safetensors checkpoint.", show_default=False)]
FORGET_HELP = (
    "Identified samples: a file with one training-split position per line (`#` comments allowed) or, for imagefolder data, "
    "an image path relative to the dataset root such as train/cat/0001.jpg; '-' reads the lines from stdin."
)
SyncBNOpt = Annotated[
    bool,
    typer.Option(
        "--sync-bn",
        help="Under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm, CUDA only); "
        "without it each rank normalises its own share and rank 0's running statistics are kept.",
    ),
]
