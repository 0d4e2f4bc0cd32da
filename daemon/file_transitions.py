"""Crash-safe transitions of a run file: a kill at any moment leaves every ``<run_id>.h5`` readable.

HDF5 marks a file "open for write" in its superblock while a writer has it open.  A file opened
for SWMR writing is marked so that readers may still open it (in SWMR mode); a file opened any
other way for writing is unreadable by every HDF5 reader until ``h5clear`` repairs it, which is
what a kill inside such an opening leaves behind.  So a run file is never opened for writing
other than in SWMR mode under its own name:

- **creation**: the structure is built in ``<run_id>.h5.creating``, closed, renamed to
  ``<run_id>.h5`` and reopened for SWMR writing (the open marks the file in one write).  A kill
  before the rename leaves a partial ``.creating`` file, removed at the next start;
- **every later change** (the final status and result, compression, recovery) is made on a copy:
  ``<run_id>.h5.rewriting`` (removed at the next start when a kill interrupts it), renamed to
  ``<run_id>.h5.ready`` once complete and closed, which then replaces ``<run_id>.h5`` (atomic).

Windows refuses to replace a file that a reader holds open (a sharing violation, PermissionError).
The original then stays as it is, the ``.ready`` copy is kept, and :func:`complete_replacement`
puts it in place later: the daemon retries every few seconds and at its next start.  Until then
:func:`current_path` names the copy, which holds the newest content.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import h5py

log = logging.getLogger(__name__)

CREATING, REWRITING, READY = ".creating", ".rewriting", ".ready"


def _beside(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def create(path: Path, build: Callable[[h5py.File], None]) -> h5py.File:
    """Create ``path`` with the structure ``build`` makes, and return it open for SWMR writing.

    Raises FileExistsError when ``path`` exists (a run file is never overwritten), OSError when
    the folder cannot take the file (nothing is left behind then)."""
    if path.exists() or _beside(path, READY).exists():
        raise FileExistsError(f"run file {path} exists")
    partial = _beside(path, CREATING)
    try:
        with h5py.File(partial, "w", libver="latest") as f:
            build(f)
        if path.exists():  # checked again: two writers of one run id must never both win
            raise FileExistsError(f"run file {path} exists")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return open_for_swmr_writing(path)


def open_for_swmr_writing(path: Path) -> h5py.File:
    """Open an existing file for SWMR writing in one step (h5py's ``File(..., "r+")`` followed by
    ``swmr_mode = True`` would leave it unreadable if killed in between)."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    return h5py.File(h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDWR | h5py.h5f.ACC_SWMR_WRITE, fapl))


def rewrite(path: Path, write_copy: Callable[[h5py.File], None]) -> bool:
    """Replace ``path`` by the file ``write_copy`` writes (given the new, empty file).

    Returns True when the copy took the original's place, False when the replacement is pending
    (a reader holds the original open on Windows: see :func:`complete_replacement`).  Raises what
    writing the copy raised (a full disk); the original is untouched then."""
    partial, ready = _beside(path, REWRITING), _beside(path, READY)
    try:
        with h5py.File(partial, "w", libver="latest") as target:
            write_copy(target)
        with open(partial, "r+b") as copy:  # on disk before it takes the original's place: survives a power cut
            os.fsync(copy.fileno())
        os.replace(partial, ready)
    finally:
        partial.unlink(missing_ok=True)
    return complete_replacement(path)


def complete_replacement(path: Path) -> bool:
    """Put a pending ``.ready`` copy in place of ``path``; False while that is refused (Windows:
    a reader holds ``path`` open).  True when nothing is pending."""
    ready = _beside(path, READY)
    try:
        os.replace(ready, path)
    except FileNotFoundError:
        return True
    except PermissionError as exc:
        log.warning("%s is in use (%s); its new content waits in %s and replaces it later", path, exc, ready.name)
        return False
    return True


def current_path(path: Path) -> Path:
    """Where the newest content of run file ``path`` is: its pending replacement, if it has one."""
    ready = _beside(path, READY)
    return ready if ready.exists() else path


def pending_replacements(data_dir: Path) -> list[Path]:
    """The run files of ``data_dir`` with a replacement waiting."""
    return sorted(ready.with_name(ready.name.removesuffix(READY)) for ready in data_dir.glob(f"*.h5{READY}"))


def clean_folder(data_dir: Path) -> None:
    """At start, before any run file is written: remove the partial files a killed writer left
    (their originals, if any, are intact) and complete the pending replacements."""
    for suffix in (CREATING, REWRITING):
        for partial in sorted(data_dir.glob(f"*.h5{suffix}")):
            log.warning("removing %s, a file the previous daemon did not finish writing", partial.name)
            partial.unlink(missing_ok=True)
    for path in pending_replacements(data_dir):
        complete_replacement(path)
