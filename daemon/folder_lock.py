"""One daemon per data folder: an operating-system file lock, held for the daemon's whole life.

A second daemon on the same folder would otherwise take the first one's running files for the
leftovers of a crash and rewrite them under it.  The lock is ``filelock``'s (``fcntl.flock`` on
POSIX, ``msvcrt.locking`` on Windows, where Gamry labs run); the operating system releases it when
the process ends however it ends, so a crashed daemon never leaves a stale lock.  Who holds it (pid,
host, start time) is written beside the lock, in a file of its own (filelock truncates the lock
file itself when another process tries it).
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

import filelock

LOCK_NAME = ".echemd.lock"
HOLDER_NAME = ".echemd.lock.holder"


class FolderInUse(Exception):
    """Another daemon holds the data folder."""


class FolderLock:
    """The data folder's lock: :meth:`acquire` (raises FolderInUse, naming the holder), :meth:`release`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = filelock.FileLock(str(self.folder / LOCK_NAME), timeout=0)

    def acquire(self) -> None:
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise FolderInUse(
                f"{self.folder} is in use by another echemd daemon ({self.holder()}): stop it, or give this one another --data-dir"
            ) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        (self.folder / HOLDER_NAME).write_text(json.dumps(holder))

    def release(self) -> None:
        if self._lock.is_locked:
            (self.folder / HOLDER_NAME).unlink(missing_ok=True)
            self._lock.release()

    def holder(self) -> str:
        """Who holds the lock, in words (as the holder wrote it)."""
        try:
            info = json.loads((self.folder / HOLDER_NAME).read_text())
            return f"pid {info['pid']} on {info['host']} since {info['since']}"
        except (OSError, ValueError, KeyError):
            return "holder unknown"
