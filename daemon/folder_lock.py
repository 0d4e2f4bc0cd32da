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
import time
from datetime import datetime, timezone
from pathlib import Path

import filelock

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

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


#: Every instrument host holds a shared lock on this file for its whole life; a starting daemon
#: waits for an exclusive one, so it never recovers a file a previous daemon's host still writes.
HOSTS_LOCK_NAME = ".echemd.hosts.lock"
#: How long a starting daemon waits for a previous daemon's hosts to end (they end within about
#: a second of losing their daemon, after leaving their instruments safe and closing their files), s.
PREVIOUS_HOSTS_WAIT_S = 30.0


def wait_for_previous_hosts(folder: Path, timeout_s: float = PREVIOUS_HOSTS_WAIT_S) -> None:
    """Wait until no instrument host of a previous daemon is alive on ``folder``; raises FolderInUse
    after ``timeout_s``.  (POSIX; on Windows hosts end when they lose their daemon, unchecked.)"""
    if fcntl is None:  # pragma: no cover - Windows
        return
    deadline = time.monotonic() + timeout_s
    with open(Path(folder) / HOSTS_LOCK_NAME, "a+b") as lock_file:
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise FolderInUse(f"instrument hosts of a previous echemd daemon still run on {folder} after {timeout_s:g} s: "
                                      "stop them (echemd.daemon.host processes)") from None
                time.sleep(0.05)
                continue
            fcntl.flock(lock_file, fcntl.LOCK_UN)
            return


def hold_as_host(folder: Path):
    """An instrument host's shared lock on ``folder`` (see wait_for_previous_hosts): keep the
    returned file open for the host's life (the operating system releases it however it ends)."""
    lock_file = open(Path(folder) / HOSTS_LOCK_NAME, "a+b")
    if fcntl is not None:
        fcntl.flock(lock_file, fcntl.LOCK_SH)
    return lock_file
