"""`remcli detect`: turn the few corrupted samples a user found into a ranked list of likely ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from remcli.checkpoints import load_checkpoint
from remcli.cli.options import FORGET_HELP, CheckpointArg, CorruptionOpt, DataOpt, DeviceOpt, DownloadOpt, ForceOpt, JsonOpt
from remcli.cli.output import emit_json, errors_to_exit, stderr
from remcli.data.index_files import write_index_file
from remcli.data.queries import class_index, load_queries
from remcli.detection import DETECT_SIGNALS, detect, detect_confused, detect_from_queries
from remcli.detection.features import INIT, feature_model
from remcli.errors import InputError
from remcli.fileio import check_writable_output
from remcli.inputs import read_identified, resolve_inputs


@errors_to_exit
def detect_command(
    checkpoint: CheckpointArg,
    out: Annotated[Path, typer.Option("--out", help="Candidates index file (the identified samples plus the detected ones), for unlearn --forget.")],
    forget: Annotated[Optional[Path], typer.Option("--forget", metavar="FILE", help="The samples you found. " + FORGET_HELP)] = None,
    query: Annotated[
        Optional[str],
        typer.Option(
            "--query",
            metavar="PATH",
            help="Start instead from test-time images that misbehave (not training samples): a folder of images, or a file listing "
            "image paths (one per line, relative to the file). They must have the model's input size; PATH?size=N resizes.",
        ),
    ] = None,
    query_label: Annotated[
        Optional[str],
        typer.Option(
            "--query-label",
            metavar="L",
            help="The label the --query images wrongly get (name or number); default: the model's majority prediction on them.",
        ),
    ] = None,
    confused: Annotated[
        Optional[str],
        typer.Option("--confused", metavar="A,B", help="Start instead from two classes the model mixes up (names or numbers, e.g. cat,dog)."),
    ] = None,
    features_from: Annotated[
        Optional[str],
        typer.Option(
            "--features-from",
            metavar="CKPT",
            help="Score on the features of this checkpoint instead of the model's: one never trained on the corrupted labels, such as "
            "the pretrained model it was fine-tuned from ('init': the init its history records, checked by sha256). It sees a swapped or "
            "noisy label as the image shows it, where the fine-tuned model has memorised it. With --forget or --confused.",
        ),
    ] = None,
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
            help="auto (with --forget: the signal under which held-out identified samples rank highest, a near-tie is warned about; "
            "with --query: block-similarity, similarity on every block's pooled output; with --confused: label-quality; the measured best, "
            "as queries and pairs give no identified samples to check signals on), "
            + ", ".join(f"{e.name} ({e.meta['help']})" for e in DETECT_SIGNALS.entries())
            + ". A name forces that signal.",
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

    Without identified samples, start from what you saw. --query PATH: images that misbehave at
    test time (e.g. with a sticker); the training samples of the label they wrongly get are ranked
    by similarity to them in every block's features (what the queries share is what the corruption
    shares). --confused A,B:
    the training samples labelled A or B are ranked by how strongly an out-of-fold probe places them
    in the other class. Then unlearn the candidates and check the queries with evaluate --eval-set
    'NAME=PATH?wrong=LABEL'.

    A model fine-tuned from a pretrained one has memorised its wrong labels; --features-from init
    scores on the pretrained model's features instead (with --forget or --confused).
    """
    starts = [name for name, given in (("--forget", forget), ("--query", query), ("--confused", confused)) if given is not None]
    if len(starts) != 1:
        raise InputError("give exactly one of --forget FILE (samples you found), --query PATH (images that misbehave) or --confused A,B")
    if query_label is not None and query is None:
        raise InputError("--query-label goes with --query PATH; drop it or add the misbehaving images")
    if features_from is not None and query is not None:
        raise InputError(
            "--features-from goes with --forget or --confused: --query looks for what the misbehaving images share in the model they "
            "misbehave on; drop --features-from"
        )
    check_writable_output(out, force, (checkpoint, forget, query and query.partition("?")[0], features_from if features_from != INIT else None))
    ckpt = load_checkpoint(checkpoint)
    inputs = resolve_inputs(ckpt, data, corruption, download)
    reader = feature_model(ckpt, features_from, inputs.dataset.input_shape)
    classes = inputs.dataset.classes
    identified = torch.empty(0, dtype=torch.int64)
    if forget is not None:
        identified = read_identified(forget, inputs.dataset)
        result = detect(ckpt, inputs, identified, top=top, threshold=threshold, device=device, signal=signal, features_from=reader)
        source = f"from {forget}"
    elif query is not None:
        images, _ = load_queries(query, inputs.dataset.input_shape)
        label = None if query_label is None else class_index(query_label, classes, "--query-label")
        result = detect_from_queries(ckpt, inputs, images, label, top=top, threshold=threshold, device=device, signal=signal)
        source = f"from {len(images)} query images {query} (wrongly {result.summary['query']['label_name']})"
    else:
        parts = [p.strip() for p in (confused or "").split(",")]
        if len(parts) != 2:
            raise InputError(f"--confused {confused!r} must name two classes, A,B, e.g. --confused cat,dog")
        pair = (class_index(parts[0], classes, "--confused"), class_index(parts[1], classes, "--confused"))
        result = detect_confused(ckpt, inputs, pair, top=top, threshold=threshold, device=device, signal=signal, features_from=reader)
        source = f"from the confused classes {classes[pair[0]]},{classes[pair[1]]}"
    summary = result.summary
    if reader is not None:
        source += f", on the features of {reader.path}"
    comments = [f"remcli detect: {summary['identified']} identified + {summary['selected']} detected by {summary['signal']} {source}"]
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
    if summary["signal_chosen_by"] == "auto" and summary.get("signal_near_tie"):
        checks, other = summary["signal_checks"], summary["signal_runner_up"]
        stderr.print(
            f"[bold yellow]warning:[/] --signal auto chose {summary['signal']} ({checks[summary['signal']]:.4f}) within noise of {other} "
            f"({checks[other]:.4f}; margin {summary['signal_margin']:.4f}, noise ±{summary['signal_margin_noise']:.4f}): the identified "
            f"samples do not tell them apart; compare with --signal {other}",
            soft_wrap=True,
        )
    if reader is None and query is None and ckpt.init is not None:
        stderr.print(
            f"hint: this model was fine-tuned from {ckpt.init['path']}; --features-from init scores on that model, which never saw the "
            "wrong labels, and often finds more (docs/detection.md)",
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
