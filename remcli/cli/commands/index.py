"""`remcli index DATA`: the training split as remcli numbers it (position, path, label)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from remcli.cli.options import DATA_HELP, DownloadOpt, ForceOpt
from remcli.cli.output import errors_to_exit
from remcli.data.datasets import load_dataset
from remcli.fileio import atomic_write_text, check_writable_output


def index_lines(dataset) -> list[str]:
    """`position<TAB>path<TAB>label` per training sample; path is `-` when the loader keeps none."""
    paths = dataset.train.paths or ("-",) * len(dataset.train)
    labels = dataset.train.labels.tolist()
    header = [
        f"# remcli index of {dataset.spec}: training-split position, path relative to the root, label (class name)",
        "# any of the first two columns can go in a --forget file",
    ]
    return header + [f"{i}\t{path}\t{label} ({dataset.classes[label]})" for i, (path, label) in enumerate(zip(paths, labels))]


@errors_to_exit
def index_command(
    data: Annotated[str, typer.Argument(help=DATA_HELP, show_default=False)],
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the index here instead of stdout.")] = None,
    download: DownloadOpt = False,
    force: ForceOpt = False,
) -> None:
    """List the training split as remcli numbers it: one line per sample with its position, its file
    path (imagefolder data) and its label. Pick lines from it to build a --forget file."""
    if out is not None:
        check_writable_output(out, force, ())
    text = "\n".join(index_lines(load_dataset(data, download=download))) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(out, text)
