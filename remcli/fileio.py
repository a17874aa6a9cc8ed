"""Small file helpers shared by every artifact writer: atomic writes, hashing, output guards.

Every artifact is written to a temporary file in the destination directory and renamed into
place, so an interrupted or failed command never leaves a partial output behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from remcli.errors import InputError


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_writable_output(path: str | Path, force: bool, inputs: tuple[str | Path, ...] = ()) -> Path:
    """Refuse to clobber an existing output (unless `force`) and never overwrite an input."""
    out = Path(path)
    for source in inputs:
        if source and Path(source).exists() and out.exists() and out.resolve() == Path(source).resolve():
            raise InputError(f"output {out} is also an input; choose a different output path")
    if out.exists() and not force:
        raise InputError(f"output {out} already exists; pass --force to overwrite it or choose another path")
    if not out.parent.exists():
        raise InputError(f"output directory {out.parent} does not exist; create it first")
    return out


def _umask() -> int:
    """The process umask (reading it means setting it; it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The result gets the permissions a plain `open(path, "w")` would give (0666 minus the umask),
    not the owner-only mode of the temporary file.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
