"""A run as the daemon tracks it: what was asked, where it stands, where its data is."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from echemd.config.models import RunLimits
from echemd.daemon.runfile import RunFile, utc_now
from echemd.daemon.errors import EchemdError
from echemd.daemon.vocabulary import RunStatus, can_move
from echemd.protocols.base import ProtocolDefinition



class IllegalTransition(EchemdError):
    """A move of a run's status the state machine forbids (a bug, not bad input)."""


@dataclass
class Run:
    run_id: str
    protocol: ProtocolDefinition
    instrument: str
    parameters: BaseModel
    file: Path
    status: RunStatus = RunStatus.QUEUED
    submitted: str = field(default_factory=utc_now)
    started: str = ""
    finished: str = ""
    result: dict[str, Any] | None = None
    error: str = ""
    abort_requested: threading.Event = field(default_factory=threading.Event)
    abort_reason: str = "aborted on request"  # the error an abort ends the run with
    abort_status: RunStatus = RunStatus.ABORTED  # and its status (interrupted when its daemon was lost)
    pause_requested: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    runfile: RunFile | None = None
    limits: RunLimits | None = None  # the run's own safety limits, on top of the instrument's
    metadata: dict[str, Any] = field(default_factory=dict)  # RunMetadata values given (JSON-ready)
    status_seq: int = 0  # next sequence number of the run's status topic
    steps_started: int = 0
    step_label: str = ""
    samples_reported: int = 0  # samples its instrument host last reported (the run file is in the host)

    @property
    def n_samples(self) -> int:
        return self.runfile.n_samples if self.runfile is not None else self.samples_reported

    @property
    def progress(self) -> float | None:
        """Fraction of the planned steps started (1 once completed); None when the protocol cannot say."""
        if self.status == RunStatus.COMPLETED:
            return 1.0
        planned = self.protocol.planned_steps(self.parameters) if self.protocol.planned_steps else None
        return min(1.0, self.steps_started / planned) if planned else None

    def move_to(self, status: RunStatus) -> None:
        """Change the run's status; raises IllegalTransition for a move the state machine forbids
        (vocabulary.TRANSITIONS: nothing leaves an end)."""
        status = RunStatus(status)
        if not can_move(self.status, status):
            raise IllegalTransition(f"run {self.run_id} cannot go from {self.status} to {status}")
        self.status = status

    def finish(self, status: RunStatus, result: dict[str, Any] | None = None, error: str = "") -> None:
        """The run ended (``status`` final)."""
        if not RunStatus(status).final:
            raise IllegalTransition(f"run {self.run_id} cannot end {status}: not an end")
        self.move_to(status)
        self.result, self.error, self.finished = result, error, utc_now()
        self.done.set()

    def record(self) -> dict[str, Any]:
        """The run as the control API reports it (JSON-ready)."""
        return {
            "run_id": self.run_id,
            "protocol": self.protocol.name,
            "instrument": self.instrument,
            "parameters": self.parameters.model_dump(mode="json"),
            "metadata": self.metadata,
            "limits": self.limits.model_dump(exclude_none=True) if self.limits else {},
            "status": self.status.value,
            "submitted": self.submitted,
            "started": self.started,
            "finished": self.finished,
            "file": str(self.file),
            "n_samples": self.n_samples,
            "step": self.step_label,
            "progress": self.progress,
            "result": self.result,
            "summary": self.protocol.presentation.summary_line(self.result),
            "error": self.error,
        }
