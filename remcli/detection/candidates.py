"""What every start of detection returns: the candidates (identified plus selected), ranked, with
the summary `detect --json` prints, kept by one rule (`--top` or `--threshold`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from remcli.errors import InputError


def check_selection(top: int | None, threshold: float | None, identified: bool = True) -> None:
    """Exactly one of `top` (>= 0) and `threshold`: how many to keep, or how good a score must be.
    A start without `identified` samples (queries, a pair) keeps only what it selects, so `top`
    must be >= 1 there."""
    if (top is None) == (threshold is None):
        raise InputError("give exactly one of --top N (how many more samples to keep) or --threshold T (a minimum score in [-1, 1])")
    if top is not None and top < 0:
        raise InputError(f"--top {top} must be >= 0")
    if top == 0 and not identified:
        raise InputError("--top 0 keeps nothing, and this start has no identified samples to keep; give --top N with N >= 1")


@dataclass
class Detection:
    """What `detect()` found: the samples to forget (the identified plus the detected), the detected
    ones ranked with their scores, and the summary `detect --json` prints."""

    candidates: torch.Tensor  # sorted training positions: identified ∪ selected others
    ranked: list[dict]  # the selected others, best first: position, score (and path for folders)
    summary: dict


def select_and_rank(scores, rows, positions, paths, top: int | None, threshold: float | None) -> tuple[torch.Tensor, list[dict], dict]:
    """Rows of `rows` kept by `--top` or `--threshold` (best first), their ranked entries for the
    index file and JSON, and the score summary: one selection for every start of `detect`."""
    order = rows[torch.argsort(scores[rows], descending=True, stable=True)]
    chosen = order[:top] if top is not None else order[scores[order] >= threshold]
    ranked = [
        {"position": int(positions[i]), "score": round(float(scores[i]), 6), **({"path": paths[int(positions[i])]} if paths else {})}
        for i in chosen.tolist()
    ]
    kept = scores[chosen]
    score_stats = {
        "selected_min": round(float(kept.min()), 6) if len(kept) else None,
        "selected_max": round(float(kept.max()), 6) if len(kept) else None,
        "others_median": round(float(scores[rows].median()), 6) if len(rows) else None,
    }
    return chosen, ranked, score_stats
