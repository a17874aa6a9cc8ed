"""`remcli detect`: turn the few corrupted samples a user found into a ranked list of likely ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from remcli.checkpoints import load_checkpoint
from remcli.cli.options import FORGET_HELP, CheckpointArg, CorruptionOpt, DataOpt, DeviceOpt, DownloadOpt, ForceOpt, JsonOpt
from remcli.cli.output import emit_json, errors_to_exit, stderr
from remcli.data.index_files import write_index_file
from remcli.detection import detect
from remcli.fileio import check_writable_output
from remcli.inputs import read_identified, resolve_inputs


@errors_to_exit
def detect_command(
    checkpoint: CheckpointArg,
    forget: Annotated[Path, typer.Option("--forget", metavar="FILE", help="The samples you found. " + FORGET_HELP)],
    out: Annotated[Path, typer.Option("--out", help="Candidates index file (the identified samples plus the detected ones), for unlearn --forget.")],
    top: Annotated[Optional[int], typer.Option("--top", metavar="N", help="Keep the N best-scored samples beyond the identified ones.")] = None,
    threshold: Annotated[
        Optional[float],
        typer.Option(
            "--threshold",
            metavar="T",
            help="Keep every sample scoring at least T, on the signal's scale: similarity -1..1, spectral and label-quality 0..1.",
        ),
    ] = None,
    signal: Annotated[
        str,
        typer.Option(
            "--signal",
            help="auto (the signal under which held-out identified samples rank highest; a near-tie is warned about), similarity (a "
            "shared trigger or concept), spectral (a label's strongest direction of variance: a backdoor trigger) "
            "or label-quality (labels a model not trained on the sample would not predict: random label noise). A name forces that signal.",
        ),
    ] = "auto",
    data: DataOpt = None,
    corruption: CorruptionOpt = None,
    json_out: JsonOpt = None,
    device: DeviceOpt = "auto",
    download: DownloadOpt = False,
    force: ForceOpt = False,
) -> None:
    """Rank every training sample by how much it looks like the identified ones, and write the
    identified plus the best-ranked as an index file that `remcli unlearn --forget` reads.

    Three signals on the classifier's input features (triggers on, labels as trained):
    similarity to the identified samples of the same label (a shared trigger or swapped concept
    clusters there), spectral signatures (a backdoor trigger as its label's strongest direction of
    variance), and label quality from an out-of-fold linear probe (a random wrong label is one a
    model not trained on the sample would not predict). By default the identified samples choose:
    the signal under which held-out identified samples rank highest on average is used, and the
    summary says which and why (signal_checks). When its lead over the next signal (signal_margin)
    is within noise (twice the standard error of their paired difference over the identified
    samples), a warning on stderr names the other signal: the choice is then close to a coin toss,
    and --signal NAME forces one. With a recorded corruption the summary reports precision and
    recall against it. Validation samples are never candidates.
    """
    check_writable_output(out, force, (checkpoint, forget))
    ckpt = load_checkpoint(checkpoint)
    inputs = resolve_inputs(ckpt, data, corruption, download)
    identified = read_identified(forget, inputs.dataset)
    result = detect(ckpt, inputs, identified, top=top, threshold=threshold, device=device, signal=signal)
    summary = result.summary
    comments = [f"remcli detect: {summary['identified']} identified + {summary['selected']} detected by {summary['signal']} from {forget}"]
    write_index_file(
        out,
        result.candidates,
        dataset=inputs.dataset.spec,
        fingerprint=inputs.dataset.fingerprint,
        content_sha256=inputs.dataset.content_sha256,
        comments=comments,
        notes={
            **{int(i): "identified" for i in identified.tolist()},
            **{r["position"]: f"{summary['signal']} {r['score']:.4f}" for r in result.ranked},
        },
    )
    if summary["signal_chosen_by"] == "auto" and summary["signal_near_tie"]:
        checks, other = summary["signal_checks"], summary["signal_runner_up"]
        stderr.print(
            f"[bold yellow]warning:[/] --signal auto chose {summary['signal']} ({checks[summary['signal']]:.4f}) within noise of {other} "
            f"({checks[other]:.4f}; margin {summary['signal_margin']:.4f}, noise ±{summary['signal_margin_noise']:.4f}): the identified "
            f"samples do not tell them apart; compare with --signal {other}",
            soft_wrap=True,
        )
    truth = summary.get("ground_truth")
    found = f"; against the recorded corruption: precision {truth['precision']:.3f}, recall {truth['recall']:.3f}" if truth else ""
    stderr.print(
        f"detect: {summary['identified']} identified + {summary['selected']} candidates ({summary['signal']}) "
        f"in {summary['wall_time_s']:.1f}s{found}; "
        f"wrote {out}",
        soft_wrap=True,
    )
    if json_out:
        emit_json({**summary, "out": str(out), "ranked": result.ranked}, json_out)
