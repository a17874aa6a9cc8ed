"""A sweep folder on disk: the one place its layout is spelled out.

    sweep.json                      the configuration (union of every run's grid)
    models/<kind>-s<seed>/          corruption.json, forget-<rate>.txt, model.safetensors, train.json
    cells/<cell-id>.json            one finished (or failed) cell: its config, flat row, unlearn log, evaluation
    claims/<name>.claim             which worker holds a cell or a model's training (`remcli.sweep.claims`)
    results.csv, results.json       one row per cell file, rebuilt after every cell
    summary.md, heatmaps/*.png      the report (`remcli.sweep.report`)

Everything is written atomically (`remcli.fileio`), so a reader sees whole files only, and several
workers share a folder through its claims.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from remcli.data.corruption import forget_file_name
from remcli.errors import InputError
from remcli.fileio import atomic_write_text
from remcli.sweep.claims import DEFAULT_TTL_S, Claims
from remcli.sweep.grid import SCHEMA_VERSION, Cell, SweepConfig, model_id, normalised

CHECKPOINT = "model.safetensors"
MANIFEST = "corruption.json"


class SweepFolder:
    """The files of one sweep folder, and the cell records read from it.

    `records()` keeps what it has read: it re-reads only cell files that are new or replaced since
    its last call, so a worker that looks at the folder after each of N cells parses each file
    about once instead of N times."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.sweep_json = self.root / "sweep.json"
        self.cells = self.root / "cells"
        self.models = self.root / "models"
        self.claims_folder = self.root / "claims"
        self.lock = self.root / ".sweep.lock"  # serialises workers' merges of their grids into sweep.json
        self.results_csv = self.root / "results.csv"
        self.results_json = self.root / "results.json"
        self.summary_md = self.root / "summary.md"
        self.heatmaps = self.root / "heatmaps"
        self._stamps: dict[str, tuple[int, int, int]] = {}  # file name -> (inode, size, mtime) when last read
        self._read: dict[str, dict | None] = {}  # file name -> its record (None: not a cell record)

    # --- models -------------------------------------------------------------------------------
    def model_folder(self, kind: str, seed: int) -> Path:
        return self.models / model_id(kind, seed)

    def checkpoint(self, kind: str, seed: int) -> Path:
        return self.model_folder(kind, seed) / CHECKPOINT

    def manifest(self, kind: str, seed: int) -> Path:
        return self.model_folder(kind, seed) / MANIFEST

    def train_summary(self, kind: str, seed: int) -> Path:
        return self.model_folder(kind, seed) / "train.json"

    def forget_file(self, kind: str, seed: int, rate: float) -> Path:
        """The identified samples at discovery `rate`, named as `write_corruption` names them."""
        return self.model_folder(kind, seed) / forget_file_name(rate)

    def has_model(self, kind: str, seed: int) -> bool:
        return self.checkpoint(kind, seed).is_file()

    @staticmethod
    def model_claim(kind: str, seed: int) -> str:
        """The claim a worker holds while it trains the (kind, seed) model."""
        return f"model-{model_id(kind, seed)}"

    def claims(self, ttl: float = DEFAULT_TTL_S) -> Claims:
        return Claims(self.claims_folder, ttl)

    # --- configuration ------------------------------------------------------------------------
    def read_sweep_json(self) -> dict | None:
        """sweep.json's body, None when there is none; a file of another kind or schema is an InputError."""
        if not self.sweep_json.is_file():
            return None
        try:
            body = json.loads(self.sweep_json.read_text(encoding="utf-8"))
            SweepConfig.from_dict(body["config"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise InputError(f"{self.sweep_json} is not a remcli sweep file; use another --out") from None
        if body.get("schema_version") != SCHEMA_VERSION:
            raise InputError(f"{self.sweep_json} has schema_version {body.get('schema_version')}, expected {SCHEMA_VERSION}; use another --out")
        return body

    def config(self) -> SweepConfig:
        body = self.read_sweep_json()
        if body is None:
            raise InputError(f"{self.root} holds no sweep.json; run `remcli sweep` with --out {self.root} first")
        return SweepConfig.from_dict(body["config"])

    def write_sweep_json(self, cfg: SweepConfig, dataset_fingerprint: str) -> None:
        from remcli import __version__

        body = {"schema_version": SCHEMA_VERSION, "remcli_version": __version__, "dataset_fingerprint": dataset_fingerprint, "config": cfg.to_dict()}
        atomic_write_text(self.sweep_json, json.dumps(body, indent=1) + "\n")

    def holds_other_files(self) -> bool:
        """True for an existing folder with files but no sweep.json: not a sweep folder to write into."""
        if self.sweep_json.is_file() or not self.root.is_dir():
            return False
        return any(not p.name.startswith(".") and p.name != self.claims_folder.name for p in self.root.iterdir())

    # --- cell records -------------------------------------------------------------------------
    def cell_file(self, cell_id: str) -> Path:
        return self.cells / f"{cell_id}.json"

    def records(self) -> dict[str, dict]:
        """Every readable cell record in cells/, by cell id, in file-name order."""
        stamps = {}
        if self.cells.is_dir():
            with os.scandir(self.cells) as entries:
                for entry in entries:
                    if entry.name.endswith(".json") and entry.is_file():
                        status = entry.stat()
                        stamps[entry.name] = (status.st_ino, status.st_size, status.st_mtime_ns)
        for name in set(self._read) - set(stamps):
            del self._read[name], self._stamps[name]
        for name, stamp in stamps.items():
            if self._stamps.get(name) != stamp:  # new, or replaced (an atomic write is a new inode)
                self._read[name], self._stamps[name] = _read_record(self.cells / name), stamp
        return {name[: -len(".json")]: self._read[name] for name in sorted(stamps) if self._read[name] is not None}

    def record(self, cell_id: str) -> dict | None:
        """The cell's record as it is on disk now (another worker may just have written it)."""
        return _read_record(self.cell_file(cell_id))

    def write_record(self, record: dict) -> None:
        atomic_write_text(self.cell_file(record["cell"]), json.dumps(normalised(record), indent=1) + "\n")

    def is_finished(self, cell: Cell, cell_config: dict, records: dict[str, dict] | None = None) -> bool:
        """Whether `cell` has a successful record made with `cell_config` (in `records`, else on disk now)."""
        record = records.get(cell.id) if records is not None else self.record(cell.id)
        return bool(record) and record["row"].get("status") == "ok" and record.get("config") == cell_config


def _read_record(path: Path) -> dict | None:
    """One cell file, or None when it is missing or not a cell record."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None  # cannot be partial (atomic writes); a hand-edited file is recomputed
    if isinstance(body, dict) and body.get("cell") == path.stem and isinstance(body.get("row"), dict):
        return body
    return None
