"""A sweep folder on disk: sweep.json (the configuration) and the cell files. Everything is written
atomically (`remcli.fileio`); several workers share a folder through `remcli.sweep.claims`."""

from __future__ import annotations

import json
from pathlib import Path

from remcli.data.datasets import Dataset
from remcli.errors import InputError
from remcli.fileio import atomic_write_text
from remcli.sweep.grid import SCHEMA_VERSION, SweepConfig


def sweep_json_path(out: Path) -> Path:
    return out / "sweep.json"


def read_sweep_json(out: Path) -> dict | None:
    path = sweep_json_path(out)
    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        SweepConfig.from_dict(body["config"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise InputError(f"{path} is not a remcli sweep file; use another --out") from None
    if body.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{path} has schema_version {body.get('schema_version')}, expected {SCHEMA_VERSION}; use another --out")
    return body


def load_config(out: Path) -> SweepConfig:
    body = read_sweep_json(out)
    if body is None:
        raise InputError(f"{out} holds no sweep.json; run `remcli sweep` with --out {out} first")
    return SweepConfig.from_dict(body["config"])


def _read_record(path: Path) -> dict | None:
    """One cell file, or None when it is missing or not a cell record."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None  # cannot be partial (atomic writes); a hand-edited file is recomputed
    if isinstance(body, dict) and body.get("cell") == path.stem and isinstance(body.get("row"), dict):
        return body
    return None


def load_record(out: Path, cell_id: str) -> dict | None:
    """DIR/cells/<cell_id>.json, if it holds a readable record."""
    return _read_record(out / "cells" / f"{cell_id}.json")


def load_records(out: Path) -> dict[str, dict]:
    """Every readable cell file in DIR/cells, by cell id."""
    folder = out / "cells"
    paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return {path.stem: record for path in paths if (record := _read_record(path)) is not None}


def is_finished(record: dict | None, cell_config: dict) -> bool:
    return bool(record) and record["row"].get("status") == "ok" and record.get("config") == cell_config


def write_sweep_json(out: Path, cfg: SweepConfig, dataset: Dataset) -> None:
    from remcli import __version__

    body = {"schema_version": SCHEMA_VERSION, "remcli_version": __version__, "dataset_fingerprint": dataset.fingerprint, "config": cfg.to_dict()}
    atomic_write_text(sweep_json_path(out), json.dumps(body, indent=1) + "\n")
