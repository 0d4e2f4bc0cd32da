"""Free-space checks before run-file writes.

HDF5 (2.0, through h5py 3.16) does not survive a write that meets a full disk: the failed flush
leaves objects that fail again each time h5py releases them, until the process crashes
(measured on a 1 MB tmpfs: a segmentation fault, taking every instrument's run with it).  So no
run-file write is ever allowed to meet a full disk: before each one the daemon checks that the
folder keeps ``reserve_bytes`` free after it, and otherwise fails the run with a clear "disk full"
error (the instrument goes to its safe state, the file keeps what was flushed).  Other programs
filling the same disk can still win the race; the reserve makes that unlikely.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

#: Free space a run-file write must leave on its disk, bytes (``disk_reserve_mb`` in the configuration).
DEFAULT_RESERVE_BYTES = 64 * 2**20


def ensure_free(folder: Path, needed_bytes: int, reserve_bytes: int) -> None:
    """Raise OSError(ENOSPC) unless ``folder``'s disk keeps ``reserve_bytes`` free after writing
    ``needed_bytes`` more."""
    free = shutil.disk_usage(folder).free
    if free - needed_bytes < reserve_bytes:
        raise OSError(
            errno.ENOSPC,
            f"disk full: {free / 1e6:.1f} MB free in {folder}; writing {needed_bytes / 1e6:.2f} MB more would leave less "
            f"than the {reserve_bytes / 1e6:.1f} MB reserve (disk_reserve_mb)",
        )
