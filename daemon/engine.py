"""Drives a protocol's plan on an instrument, in the spirit of bluesky's RunEngine.

The engine sends each step to the instrument, rebases the instrument's clock to the run's start,
hands every block to ``record`` as it arrives, checks it against the instrument's limits
(independently of the protocol), feeds the step's stop conditions, and checks for an abort between
blocks.  What ``record`` and ``note`` do with the data (run file, stream) is the caller's business;
leaving the instrument safe is too (the engine closes each acquisition, which ends that output).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from echemd.config.models import RunLimits
from echemd.daemon.safety import SafetyMonitor
from echemd.drivers.base import Instrument
from echemd.protocols.base import Event, Plan, Step, StepOutcome


class RunAborted(Exception):
    """Raised inside a run when an abort was requested."""


class RunFailed(Exception):
    """Raised inside a run when the engine ends it (e.g. a safety limit)."""


class Engine:
    def __init__(
        self,
        instrument: Instrument,
        record: Callable[[dict[str, np.ndarray]], None],
        note: Callable[[float, str, str], None],
        limits: RunLimits | None = None,
        aborted: Callable[[], bool] = lambda: False,
    ) -> None:
        self.instrument = instrument
        self.record = record
        self.note = note
        self.safety = SafetyMonitor(limits) if limits is not None else None
        self.aborted = aborted
        self.clock_zero_s = instrument.time_s
        self.last_time_s = 0.0  # run time of the latest sample, s

    def run(self, plan: Plan) -> dict[str, Any]:
        """Execute ``plan`` to its end; returns its result.  Raises RunAborted, RunFailed or the step's error."""
        try:
            message = next(plan)
            while True:
                if self.aborted():
                    raise RunAborted()
                if isinstance(message, Event):
                    self.event(message.kind, message.message)
                    message = plan.send(None)
                else:
                    message = plan.send(self.step(message))
        except StopIteration as finished:
            return finished.value
        finally:
            plan.close()

    def step(self, step: Step) -> StepOutcome:
        self.event("step", step.label)
        blocks: list[dict[str, np.ndarray]] = []
        stop = None
        acquisition = step.acquire(self.instrument)
        try:
            for block in acquisition:
                columns = dict(block.columns)
                columns["time_s"] = columns["time_s"] - self.clock_zero_s
                self.record(columns)
                self.last_time_s = float(columns["time_s"][-1])
                blocks.append(columns)
                violation = self.safety.check(columns) if self.safety else None
                if violation:
                    self.event("limit", violation)
                    raise RunFailed(f"safety limit: {violation}")
                stop = _first_stop(step.stops, columns)
                if stop is not None:
                    self.event("stop", f"{step.label}: {stop.reason} at {stop.time_s:.6g} s")
                    break
                if self.aborted():
                    raise RunAborted()
        finally:
            acquisition.close()
        names = blocks[0].keys() if blocks else ()
        return StepOutcome({name: np.concatenate([b[name] for b in blocks]) for name in names}, stop)

    def event(self, kind: str, message: str) -> None:
        self.note(self.last_time_s, kind, message)


def _first_stop(conditions, columns: Mapping[str, np.ndarray]):
    for condition in conditions:
        stop = condition.update(columns)
        if stop is not None:
            return stop
    return None
