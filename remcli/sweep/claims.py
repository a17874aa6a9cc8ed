"""How several sweep workers share one folder: on one machine, on several GPUs, or on several
machines that see the same filesystem (a SLURM array, or a few shells).

A worker claims a piece of work (a cell, or the training of a model) by creating `<name>.claim` in
the sweep folder's claims/ (`SweepFolder.claims`) exclusively (`O_CREAT | O_EXCL`: atomic on local
and network filesystems). While it works, a heartbeat thread refreshes the file's modification time.
A claim not refreshed for `ttl` seconds belongs to a worker that died (kill -9, a lost node) and may
be taken over; takeovers are serialised by a `filelock` lock so two survivors cannot both take the
same claim. Claims name the host, pid and a random token, never just a pid: pids mean nothing across
hosts.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path

from filelock import FileLock

DEFAULT_TTL_S = 300.0  # a claim whose heartbeat stopped this long ago is taken over


class Claims:
    """The claims one worker holds in one folder of claims; use it as a context manager."""

    def __init__(self, folder: Path, ttl: float = DEFAULT_TTL_S):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ttl = ttl
        self.token = f"{socket.gethostname()} pid {os.getpid()} {uuid.uuid4().hex[:12]}"
        self._held: set[Path] = set()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="remcli-claims-heartbeat", daemon=True)

    def __enter__(self) -> Claims:
        self._heartbeat.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._heartbeat.join(timeout=5)
        for path in list(self._held):
            self._release(path)

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.claim"

    def try_claim(self, name: str) -> bool:
        """True when this worker now holds `name`: it was free, or its holder stopped beating."""
        path = self.path(name)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not self._stale(path):
                return False
            with FileLock(str(self.folder / ".takeover.lock"), timeout=120):
                if not self._stale(path):  # another survivor took it over first
                    return False
                self._write_atomically(path)
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(self.token + "\n")
        with self._guard:
            self._held.add(path)
        return True

    def release(self, name: str) -> None:
        self._release(self.path(name))

    def holder(self, name: str) -> str | None:
        try:
            return self.path(name).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    # --- internals ---------------------------------------------------------------------------
    def _stale(self, path: Path) -> bool:
        try:
            return time.time() - path.stat().st_mtime > self.ttl
        except FileNotFoundError:
            return True  # released meanwhile: free to take

    def _write_atomically(self, path: Path) -> None:
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        temporary.write_text(self.token + "\n", encoding="utf-8")
        os.replace(temporary, path)

    def _ours(self, path: Path) -> bool:
        try:
            return path.read_text(encoding="utf-8").strip() == self.token
        except OSError:
            return False

    def _release(self, path: Path) -> None:
        with self._guard:
            self._held.discard(path)
        if self._ours(path):  # never delete a claim another worker took over
            path.unlink(missing_ok=True)

    def _beat(self) -> None:
        interval = max(self.ttl / 4, 0.05)
        while not self._stop.wait(interval):
            with self._guard:
                held = list(self._held)
            for path in held:
                if self._ours(path):
                    try:
                        os.utime(path)
                    except FileNotFoundError:
                        pass
