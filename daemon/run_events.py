"""The typed events an engine emits while it runs a plan (see engine.py and recorder.py), in the
order they happen.  Plain data: they hold run times (s) and SI columns, nothing of files or sockets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Union

import numpy as np

from echemd.daemon.vocabulary import EventKind


@dataclass(frozen=True)
class StepStarted:
    """A step began (run time ``time_s``, s): the run's progress moves on, its label is logged."""

    time_s: float
    label: str


@dataclass(frozen=True)
class Samples:
    """A block of samples in run time (equal-length SI columns, ``time_s`` among them)."""

    columns: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Note:
    """An entry of the run's event log at run time ``time_s`` (s)."""

    time_s: float
    kind: EventKind
    message: str


@dataclass(frozen=True)
class HoldChanged:
    """The instrument began (True) or stopped (False) holding for a pause."""

    holding: bool


RunEvent = Union[StepStarted, Samples, Note, HoldChanged]
