"""echemd's vocabulary, in one place: run statuses, what an instrument does while a run is paused,
and the kinds of a run's events.  Each is a ``str`` enum: its members compare equal to, and
serialize (JSON, HDF5 attributes, f-strings) as, the plain strings of the control API and the run
files (``RunStatus.COMPLETED == "completed"``).  This module imports nothing of echemd: clients,
protocols and the daemon all speak it.
"""

from __future__ import annotations

from enum import Enum


class _Word(str, Enum):
    """A str enum whose str() and format() are its value, as in every supported Python."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


class RunStatus(_Word):
    """Where a run stands.  A run file's ``status`` attribute holds one of FILE_STATUSES."""

    QUEUED = "queued"  # accepted, waiting for its instrument
    RUNNING = "running"
    PAUSED = "paused"  # held as its protocol declares (HoldMode) until resumed
    COMPLETED = "completed"  # its plan ran to the end (a short found is a completed run)
    ABORTED = "aborted"  # on request, before it started, or by a daemon shutdown
    FAILED = "failed"  # an error, a safety limit, a driver fault
    INTERRUPTED = "interrupted"  # the daemon died under it; its file was recovered
    RECOVERING = "recovering"  # (of a file only) being recovered at daemon start
    UNREADABLE = "unreadable"  # (of a file only) no HDF5 reader opens it

    @property
    def final(self) -> bool:
        return self in FINAL_STATUSES


#: A run in one of these has ended: it never changes again.
FINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.ABORTED, RunStatus.FAILED, RunStatus.INTERRUPTED})
#: What a run file's ``status`` attribute may hold.
FILE_STATUSES = frozenset({RunStatus.RUNNING, *FINAL_STATUSES})
#: A run in one of these holds its instrument (or waits for it).
ACTIVE_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED})
#: A run's status moves (a small state machine): queued -> running <-> paused, any of these -> an
#: end or ``recovering`` (its instrument host died), recovering -> interrupted.  A record that
#: follows its host's reports may skip a step (queued -> paused, paused -> completed).  Nothing
#: leaves an end.
TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.RECOVERING, *FINAL_STATUSES}),
    RunStatus.RUNNING: frozenset({RunStatus.PAUSED, RunStatus.RECOVERING, *FINAL_STATUSES}),
    RunStatus.PAUSED: frozenset({RunStatus.RUNNING, RunStatus.RECOVERING, *FINAL_STATUSES}),
    RunStatus.RECOVERING: frozenset({RunStatus.INTERRUPTED}),
}


def can_move(old: RunStatus, new: RunStatus) -> bool:
    """Whether a run's status may go from ``old`` to ``new`` (staying put is always allowed)."""
    return old == new or new in TRANSITIONS.get(old, frozenset())


class HoldMode(_Word):
    """What the instrument does while a run is paused."""

    OUTPUT_OFF = "output_off"  # safe state: cell off / output off
    OPEN_CIRCUIT = "open_circuit"  # cell off, voltage still recorded
    HOLD_CURRENT = "hold_current"  # the step's current stays on, recorded


class EventKind(_Word):
    """The kinds of a run's events (run file ``events/kind``, stream ``event`` notices)."""

    STEP = "step"  # a step began: its label
    STOP = "stop"  # a step's stop condition ended it early
    SHORT = "short"  # a short found (plating protocols)
    SUSPECT_SHORT = "suspect_short"  # evidence of a short no rule caught
    VOIDING = "voiding"  # a stripping step's polarization rose past the threshold (csc)
    LIMIT = "limit"  # a safety or protocol voltage/current limit reached
    OVERLOAD = "overload"  # the instrument's overload flags changed
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    ERROR = "error"
