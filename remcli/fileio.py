"""Small file helpers shared by every artifact writer: atomic writes, hashing, output guards.

Every artifact is written to a temporary file in the destination directory and renamed into
place, so an interrupted or failed command never leaves a partial output behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from remcli.errors import InputError, WriteError


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
    if out.is_dir():  # even with --force: found only when the result is renamed onto it, after all the work
        raise InputError(f"output {out} is a directory; give the path of a file (in it, or elsewhere)")
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


_OS_ERROR = re.compile(r"os error (\d+)")


def write_failure(target: str | Path, err: BaseException, option: str = "--out") -> WriteError:
    """One line naming the file and the cause of a failed write, and what to do about it.

    `err` is an OSError, or an error from a library (safetensors) that quotes the OS error number.
    """
    code = getattr(err, "errno", None)
    if code is None:
        match = _OS_ERROR.search(str(err))
        code = int(match.group(1)) if match else None
    if code == errno.ENOSPC:
        return WriteError(f"no space left on device writing {target}; free space or choose another {option}")
    if code == errno.EDQUOT:
        return WriteError(f"disk quota exceeded writing {target}; free space or choose another {option}")
    if code == errno.EFBIG:
        return WriteError(
            f"file too large writing {target} (the file system or a file-size limit, ulimit -f, refused it); "
            f"raise the limit or choose another {option}"
        )
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return WriteError(f"cannot write {target}: {os.strerror(code)}; choose a writable {option}")
    cause = os.strerror(code) if code is not None else str(err).strip() or err.__class__.__name__
    return WriteError(f"cannot write {target}: {cause}; check the disk or choose another {option}")


@contextlib.contextmanager
def atomic_path(path: str | Path, option: str = "--out") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The result gets the permissions a plain `open(path, "w")` would give (0666 minus the umask),
    not the owner-only mode of the temporary file. An OSError while writing (disk full, file too
    large, no permission) becomes a one-line `WriteError` naming `path` and the cause (`option` is
    the flag that chose the path, for the hint); the temporary file is always removed.
    """
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise write_failure(target, err, option) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as err:
        raise write_failure(target, err, option) from None
    finally:
        with contextlib.suppress(OSError):
            if os.path.exists(tmp):
                os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str, option: str = "--out") -> None:
    with atomic_path(path, option) as tmp:
        tmp.write_text(text, encoding="utf-8")
