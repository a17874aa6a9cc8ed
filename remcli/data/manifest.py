"""The corruption manifest: the versioned record of one corruption (DIR/corruption.json).

It holds everything needed to re-apply the corruption (indices, true and new labels, the
trigger) plus the dataset fingerprint, so it is a portable artifact; loading it validates it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from remcli import __version__
from remcli.data.identity import check_made_for
from remcli.data.triggers import Trigger
from remcli.errors import InputError

SCHEMA_VERSION = 1


@dataclass
class Manifest:
    """The versioned record of one corruption (written as DIR/corruption.json)."""

    dataset: str
    fingerprint: str
    num_train: int
    num_classes: int
    kind: str
    params: dict
    seed: int
    indices: list[int]
    true_labels: list[int]
    new_labels: list[int]
    trigger: dict | None = None
    schema_version: int = SCHEMA_VERSION
    remcli_version: str = __version__
    discovery: dict = field(default_factory=dict)
    content_sha256: str | None = None  # of the decoded training images; absent in older manifests

    # --- derived views -----------------------------------------------------------------------
    @property
    def index_tensor(self) -> torch.Tensor:
        return torch.tensor(self.indices, dtype=torch.int64)

    @property
    def trigger_spec(self) -> Trigger | None:
        if self.trigger is None:
            return None
        return Trigger(size=self.trigger["size"], position=self.trigger["position"], colour=tuple(self.trigger["colour"]))

    def corrupted_labels(self, true_labels: torch.Tensor) -> torch.Tensor:
        labels = true_labels.clone()
        labels[self.index_tensor.to(labels.device)] = torch.tensor(self.new_labels, dtype=torch.int64, device=labels.device)
        return labels

    def triggered_mask(self, num_train: int) -> torch.Tensor:
        mask = torch.zeros(num_train, dtype=torch.bool)
        if self.trigger is not None:
            mask[self.index_tensor] = True
        return mask

    def to_json(self) -> str:
        body = asdict(self)
        content = body.pop("content_sha256")
        ordered = {"schema_version": body.pop("schema_version"), "remcli_version": body.pop("remcli_version"), **body}
        if content:  # written (after the fingerprint) only when known, so manifests made without it keep their exact bytes
            with_content = {}
            for key, value in ordered.items():
                with_content[key] = value
                if key == "fingerprint":
                    with_content["content_sha256"] = content
            ordered = with_content
        return json.dumps(ordered, indent=1) + "\n"


def load_manifest(path: str | Path) -> Manifest:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"corruption manifest {p} not found; pass the corruption.json written by `remcli corrupt`")
    try:
        body = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{p} is not a valid corruption manifest ({err.__class__.__name__}); regenerate it with `remcli corrupt`") from None
    if not isinstance(body, dict) or body.get("schema_version") != SCHEMA_VERSION:
        raise InputError(
            f"{p} has schema_version {body.get('schema_version') if isinstance(body, dict) else None}, expected {SCHEMA_VERSION}; "
            "regenerate it with `remcli corrupt`"
        )
    try:
        manifest = Manifest(**body)
    except TypeError as err:
        raise InputError(f"{p} is missing manifest fields ({err}); regenerate it with `remcli corrupt`") from None
    if not (len(manifest.indices) == len(manifest.true_labels) == len(manifest.new_labels)):
        raise InputError(f"{p} lists different numbers of indices and labels; regenerate it with `remcli corrupt`")
    index = torch.tensor(manifest.indices, dtype=torch.int64)
    labels = torch.tensor(manifest.true_labels + manifest.new_labels, dtype=torch.int64)
    if len(index) and (index.min() < 0 or index.max() >= manifest.num_train or len(torch.unique(index)) != len(index)):
        raise InputError(f"{p} lists indices outside 0..{manifest.num_train - 1} or repeats one; regenerate it with `remcli corrupt`")
    if len(labels) and (labels.min() < 0 or labels.max() >= manifest.num_classes):
        raise InputError(f"{p} lists labels outside 0..{manifest.num_classes - 1}; regenerate it with `remcli corrupt`")
    return manifest


def check_manifest_matches(manifest: Manifest, fingerprint: str, spec: str, where: str, content_sha256: str | None = None) -> None:
    """Labels and shape always; the training images' content when both the manifest and the caller know it."""
    check_made_for(
        where,
        "was made for",
        (manifest.fingerprint, manifest.content_sha256),
        (fingerprint, content_sha256),
        spec,
        "restore the image files as they were or rerun `remcli corrupt` on this data",
    )


def ground_truth(manifest: Manifest, positions: torch.Tensor, candidates: torch.Tensor, detected: torch.Tensor) -> dict:
    """Precision and recall of `candidates` against the recorded corruption, as trained on (a
    corrupted sample held out for validation was never learnt, so it cannot be found)."""
    corrupted = manifest.index_tensor[torch.isin(manifest.index_tensor, positions)]
    hits = int(torch.isin(candidates, corrupted).sum())
    return {
        "corrupted": len(corrupted),
        "precision": round(hits / max(len(candidates), 1), 6),
        "recall": round(hits / max(len(corrupted), 1), 6),
        "found_beyond_identified": int(torch.isin(detected, corrupted).sum()),
    }
