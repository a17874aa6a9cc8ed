"""Index files: the identified (forget) samples as one training-split position per line.

The one place that knows the format: `write_index_file` writes the `#` header (dataset,
fingerprint, content hash, free comments) and the positions, each optionally followed by an
inline note (`759  # similarity 0.8341`); `read_index_file` parses and validates a file, checking
the fingerprint and content-hash headers against the data. An inline comment starts at whitespace
followed by `#`, so an image path containing `#` (without a space before it) still reads whole.
"""

from __future__ import annotations

import os
import posixpath
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import torch

from remcli.data.identity import check_made_for
from remcli.errors import InputError
from remcli.fileio import atomic_write_text

STDIN = "-"
TITLE = "remcli identified samples: one training-split position per line"

_DATASET_LINE = re.compile(r"^#\s*dataset:\s*(\S.*?)\s*$")
_FINGERPRINT_LINE = re.compile(r"^#\s*fingerprint:\s*(\S+)")
_CONTENT_LINE = re.compile(r"^#\s*content-sha256:\s*(\S+)")
_INLINE_COMMENT = re.compile(r"\s+#")


def index_file_text(
    ids: torch.Tensor | Iterable[int],
    *,
    dataset: str,
    fingerprint: str,
    content_sha256: str | None = None,
    comments: Sequence[str] = (),
    notes: Mapping[int, str] | None = None,
) -> str:
    """The file's text: title, `# dataset:`, `# fingerprint:`, `# content-sha256:` (when known),
    one `# <comment>` line per comment, then one position per line, followed by `  # <note>`
    where `notes` has one for it (readers ignore everything from whitespace + `#` on)."""
    positions = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    notes = notes or {}
    header = [
        f"# {TITLE}",
        f"# dataset: {dataset}",
        f"# fingerprint: {fingerprint}",
        *([f"# content-sha256: {content_sha256}"] if content_sha256 else []),
        *(f"# {comment}" for comment in comments),
    ]
    lines = [f"{int(i)}  # {notes[int(i)]}" if int(i) in notes else str(int(i)) for i in positions]
    return "\n".join(header + lines) + "\n"


def write_index_file(
    path: str | Path,
    ids: torch.Tensor | Iterable[int],
    *,
    dataset: str,
    fingerprint: str,
    content_sha256: str | None = None,
    comments: Sequence[str] = (),
    notes: Mapping[int, str] | None = None,
) -> Path:
    """Write `index_file_text(...)` to `path` atomically (a whole file or none); returns the path."""
    target = Path(path)
    text = index_file_text(ids, dataset=dataset, fingerprint=fingerprint, content_sha256=content_sha256, comments=comments, notes=notes)
    atomic_write_text(target, text)
    return target


def recorded_dataset(path: str | Path) -> str | None:
    """The dataset spec a file's `# dataset:` header names (written by `corrupt` and `detect`), or
    None: for stdin (reading it would consume the list), a missing file, or a file without one."""
    if str(path) == STDIN or not Path(path).is_file():
        return None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for raw in handle:
            line = raw.strip()
            if line and not line.startswith("#"):
                return None  # the header is over
            match = _DATASET_LINE.match(line)
            if match:
                return match.group(1)
    return None


def read_index_file(
    path: str | Path,
    num_train: int,
    fingerprint: str | None = None,
    paths: Sequence[str] | None = None,
    root: str | Path | None = None,
    content_sha256: str | None = None,
) -> torch.Tensor:
    """Parse and validate an index file; returns sorted int64 positions.

    Each line is a training-split position, or, when `paths` (the training split's file paths
    relative to the dataset root, in position order, as imagefolder data has them) is given, one
    of those paths (`train/cat/0001.jpg`; `./`, backslashes and absolute paths under `root` are
    accepted). `path` "-" reads the lines from stdin. A `# content-sha256:` header line (written
    by `remcli corrupt`) is checked against `content_sha256` when both are known.
    """
    if str(path) == STDIN:
        name, text = "stdin", sys.stdin.read()
    else:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"index file {p} not found; pass a file written by `remcli corrupt` or one index per line")
        name, text = str(p), p.read_text(encoding="utf-8", errors="replace")
    lookup = _path_lookup(paths, root)
    values: list[int] = []
    unknown: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        match = _FINGERPRINT_LINE.match(line)
        content = _CONTENT_LINE.match(line)
        if (match and fingerprint is not None) or content:
            check_made_for(
                f"index file {name}",
                "was written for",
                (match.group(1) if match and fingerprint is not None else None, content.group(1) if content else None),
                (fingerprint or "", content_sha256),
                "this data",
                "restore the image files or rerun `remcli corrupt`",
            )
        line = _INLINE_COMMENT.split(line, maxsplit=1)[0]
        if not line or line.startswith("#"):
            continue
        if not re.fullmatch(r"-?\d+", line):
            position = lookup(line) if lookup else None
            if position is None:
                if lookup is None:
                    raise InputError(f"{name}:{number}: {line!r} is not an integer; write one sample index per line")
                unknown.append((number, line))
            else:
                values.append(position)
            continue
        value = int(line)
        if value < 0:
            raise InputError(f"{name}:{number}: index {value} is negative; indices are positions 0..{num_train - 1} in the training split")
        if value >= num_train:
            raise InputError(f"{name}:{number}: index {value} is outside the training split (0..{num_train - 1}); check that the file matches --data")
        values.append(value)
    if unknown:
        number, line = unknown[0]
        more = ", ".join(f"line {n} {bad!r}" for n, bad in unknown[1:4])
        rest = f" (also {more}{f' and {len(unknown) - 4} more' if len(unknown) > 4 else ''})" if more else ""
        raise InputError(
            f"{name}:{number}: {line!r} is not an integer or a training image path{rest}; write a position 0..{num_train - 1} "
            f"or an image path relative to the dataset root, e.g. {paths[0]}"
        )
    if not values:
        raise InputError(f"index file {name} lists no samples; give at least one identified sample index")
    ids = torch.tensor(values, dtype=torch.int64)
    unique, counts = torch.unique(ids, return_counts=True)
    if len(unique) != len(ids):
        dup = unique[counts > 1][:3].tolist()
        raise InputError(f"index file {name} repeats indices {dup}; list each sample once")
    return unique


def _path_lookup(paths: Sequence[str] | None, root: str | Path | None) -> Callable[[str], int | None] | None:
    """line -> training position for a root-relative (or absolute, under `root`) image path; None if unknown."""
    if not paths:
        return None
    positions = {posixpath.normpath(p): i for i, p in enumerate(paths)}
    bases = [] if root is None else list(dict.fromkeys((Path(os.path.abspath(root)), Path(root).resolve())))

    def lookup(line: str) -> int | None:
        candidate = Path(line)
        if candidate.is_absolute():
            for base, target in ((b, t) for b in bases for t in (candidate, candidate.resolve())):
                if target.is_relative_to(base):
                    found = positions.get(target.relative_to(base).as_posix())
                    if found is not None:
                        return found
            return None
        return positions.get(posixpath.normpath(line.replace("\\", "/")))

    return lookup
