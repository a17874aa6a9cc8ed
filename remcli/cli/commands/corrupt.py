"""`remcli corrupt`: write a corruption manifest and nested identified-sample index files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from remcli.cli.options import DATA_HELP, DownloadOpt, ForceOpt, JsonOpt, SeedOpt
from remcli.cli.output import emit_json, errors_to_exit, stderr
from remcli.data.corruption import KINDS, corrupt_dataset, kind_parameters, parse_rates, resolve_count, write_corruption
from remcli.data.datasets import load_dataset
from remcli.data.queries import class_index
from remcli.data.triggers import COLOURS, POSITIONS, Trigger
from remcli.errors import InputError

KIND_HELP = ", ".join(f"{entry.name} ({entry.meta['summary']})" for entry in KINDS.entries()) + "."


def parse_classes(text: str, names: tuple[str, ...]) -> tuple[int, int]:
    """Two classes, by name or number (`cat,dog` or `3,5`), as `detect --confused` takes them."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 2:
        raise InputError(f"--classes {text!r} must name two classes, e.g. cat,dog or 3,5")
    first, second = (class_index(part, names, "--classes") for part in parts)
    return first, second


@errors_to_exit
def corrupt_command(
    data: Annotated[str, typer.Argument(help=DATA_HELP, show_default=False)],
    kind: Annotated[str, typer.Option("--kind", help=KIND_HELP)],
    out: Annotated[Path, typer.Option("--out", help="Output directory for corruption.json and forget-<rate>.txt.")],
    count: Annotated[Optional[int], typer.Option("--count", help="Number of corrupted samples.")] = None,
    fraction: Annotated[Optional[float], typer.Option("--fraction", help="Corrupted fraction of the training split (instead of --count).")] = None,
    discovery: Annotated[str, typer.Option("--discovery", help="Comma-separated discovery rates; one nested index file per rate.")] = "0.1,0.5,1.0",
    seed: SeedOpt = 0,
    target: Annotated[int, typer.Option("--target", help="poison: label given to poisoned samples.")] = 0,
    patch_size: Annotated[int, typer.Option("--patch-size", help="poison: side of the square trigger, in pixels.")] = 3,
    position: Annotated[str, typer.Option("--position", help=f"poison: trigger position, one of {', '.join(POSITIONS)}.")] = "bottom-right",
    colour: Annotated[str, typer.Option("--colour", help=f"poison: trigger colour, a name ({', '.join(COLOURS)}) or R,G,B in [0,1].")] = "white",
    classes: Annotated[str, typer.Option("--classes", help="interclass: the two classes to swap, by name or number (cat,dog or 3,5).")] = "3,5",
    force: ForceOpt = False,
    download: DownloadOpt = False,
    json_out: JsonOpt = None,
) -> None:
    """Corrupt a dataset's training labels (and pixels, for poison) and write what was done.

    The same command always writes byte-identical files. Discovery sets are nested: the 0.1 set
    is inside the 0.5 set, which is inside the 1.0 set.
    """
    dataset = load_dataset(data, download=download)
    size = resolve_count(len(dataset.train), count, fraction)
    rates = parse_rates(discovery)
    options = {  # built only when the kind takes them, so options another kind ignores are never parsed
        "target": lambda: target,
        "trigger": lambda: Trigger(patch_size, position, colour),  # checks position, size and colour
        "classes": lambda: parse_classes(classes, dataset.classes),
    }
    params = {name: options[name]() for name in kind_parameters(kind)}
    manifest = corrupt_dataset(dataset, kind, size, seed, **params)
    written = write_corruption(manifest, out, rates, force=force)
    summary = {"kind": kind, "corrupted": len(manifest.indices), "files": {k: str(v) for k, v in written.items()}, "discovery": manifest.discovery}
    stderr.print(
        f"corrupted {len(manifest.indices)} of {len(dataset.train)} training samples ({kind}); wrote {out}/corruption.json and {len(rates)} "
        "index files"
    )
    if json_out:
        emit_json(summary, json_out)
