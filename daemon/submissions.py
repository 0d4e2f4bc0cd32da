"""The record of every submitted run until its run file holds how it ended.

``<data_dir>/submitted/<run_id>.json`` is written (atomically, on disk) before ``submit``
answers, so a run the daemon accepted is never silently gone:

- while it waits, the record is what brings it back into its instrument's queue, in its place,
  after a crash or a clean stop (see :meth:`Daemon` start-up);
- once the run's file is complete (final status and result written), the file is the record and
  this one is removed;
- a run that ends without a complete file (aborted while queued, its instrument unreachable, its
  file impossible to create or to complete) keeps this record, with how it ended, for good:
  ``runs`` and ``status`` report it after any restart.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from echemd.daemon.vocabulary import RunStatus

log = logging.getLogger(__name__)

FOLDER = "submitted"


class SubmissionRecord(BaseModel):
    """A submitted run as written down: enough to queue it again, and how it ended if it has."""

    run_id: str
    protocol: str
    instrument: str
    parameters: dict[str, Any]
    limits: dict[str, Any] | None = None
    metadata: dict[str, Any] = {}
    submitted: str
    order: int  # position among every submission (queue order; moves renumber)
    status: RunStatus = RunStatus.QUEUED
    finished: str = ""
    error: str = ""


class Submissions:
    """The ``submitted/`` folder of a data folder.  Thread-safe."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = Path(data_dir) / FOLDER
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._records: dict[str, SubmissionRecord] = {}
        for path in sorted(self.folder.glob("*.json")):
            try:
                record = SubmissionRecord.model_validate_json(path.read_bytes())
            except (OSError, ValidationError) as exc:  # a partial write never has this name (see _write)
                log.error("cannot read the submission record %s: %s", path, exc)
                continue
            self._records[record.run_id] = record
        for partial in self.folder.glob("*.json.tmp"):
            partial.unlink(missing_ok=True)
        self._next_order = max((r.order for r in self._records.values()), default=-1) + 1

    def records(self) -> list[SubmissionRecord]:
        """Every record, in submission (queue) order."""
        with self._lock:
            return sorted(self._records.values(), key=lambda record: record.order)

    def get(self, run_id: str) -> SubmissionRecord | None:
        with self._lock:
            return self._records.get(run_id)

    def add(self, **fields: Any) -> SubmissionRecord:
        """Write down a new submission (raises OSError when the folder cannot take it)."""
        with self._lock:
            record = SubmissionRecord(order=self._next_order, **fields)
            self._write(record)
            self._next_order += 1
            self._records[record.run_id] = record
            return record

    def reorder(self, run_ids: list[str]) -> None:
        """Give these runs (one instrument's queue, in its new order) the queue positions they held."""
        with self._lock:
            records = [self._records[run_id] for run_id in run_ids if run_id in self._records]
            for record, order in zip(records, sorted(record.order for record in records)):
                if record.order != order:
                    record = record.model_copy(update={"order": order})
                    self._write(record)
                    self._records[record.run_id] = record

    def ended(self, run_id: str, status: RunStatus, error: str, finished: str, in_file: bool) -> None:
        """A run ended: forget it when its file says how (``in_file``), else write down how."""
        with self._lock:
            record = self._records.get(run_id)
            if record is None:
                return
            if in_file:
                self._remove(run_id)
                return
            record = record.model_copy(update={"status": status, "error": error, "finished": finished})
            try:
                self._write(record)
            except OSError as exc:  # the daemon reports it until it stops; the record still says queued
                log.error("cannot write down how run %s ended (%s): %s", run_id, status, exc)
            self._records[run_id] = record

    def remove(self, run_id: str) -> None:
        """Forget a run (its run file is its record, or it was never accepted)."""
        with self._lock:
            self._remove(run_id)

    def _remove(self, run_id: str) -> None:
        (self.folder / f"{run_id}.json").unlink(missing_ok=True)
        self._records.pop(run_id, None)

    def _write(self, record: SubmissionRecord) -> None:
        """Atomically: a temporary file, on disk, renamed over the record.  Lock held."""
        path = self.folder / f"{record.run_id}.json"
        partial = path.with_name(path.name + ".tmp")
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            with open(partial, "w", encoding="utf-8") as f:
                f.write(json.dumps(record.model_dump(mode="json")))
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
