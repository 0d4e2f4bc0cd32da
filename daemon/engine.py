"""Drives a protocol's plan on an instrument, in the spirit of bluesky's RunEngine.

The engine sends each step to the instrument, rebases the instrument's clock to the run's start,
emits every block as it arrives (and every step, note and hold) as a typed event (run_events.py),
checks each block against the instrument's limits (independently of the protocol), feeds the
step's stop conditions, and checks its run's controls for an abort or a pause between blocks.
What becomes of the events (run file, stream) is the recorder's business; leaving the instrument
safe is its owner's (the engine closes each acquisition, which ends that output).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from echemd.config.models import RunLimits
from echemd.daemon.acquisition_loop import AcquisitionLoop, Interrupted, Take, read_on_this_thread
from echemd.daemon.errors import EchemdError
from echemd.daemon.run_events import HoldChanged, Note, RunEvent, Samples, StepStarted
from echemd.daemon.safety import SafetyMonitor
from echemd.daemon.vocabulary import EventKind, HoldMode
from echemd.drivers.base import Block, Instrument, PolledAcquisition
from echemd.protocols.base import Event, Plan, Step, StepOutcome, Stop, check_kind

#: A hold lasts until resumed: its acquisition is asked for this long, s.
HOLD_FOREVER_S = 1e9
HOLD_POLL_S = 0.05


class RunAborted(EchemdError):
    """Raised inside a run when an abort was requested."""


class RunFailed(EchemdError):
    """Raised inside a run when the engine ends it (e.g. a safety limit)."""


class RunControl(Protocol):
    """What a run's owner asks of its engine, read between blocks (a daemon Run is one)."""

    abort_requested: threading.Event
    pause_requested: threading.Event


@dataclass
class Controls:
    """A RunControl of its own, for an engine driven outside the daemon."""

    abort_requested: threading.Event = field(default_factory=threading.Event)
    pause_requested: threading.Event = field(default_factory=threading.Event)


class Engine:
    def __init__(
        self,
        instrument: Instrument,
        emit: Callable[[RunEvent], None],
        control: RunControl | None = None,
        limits: RunLimits | None = None,
        hold: HoldMode | None = HoldMode.OUTPUT_OFF,
        clock_zero_s: float | None = None,
        loop: AcquisitionLoop | None = None,
    ) -> None:
        """``emit``: where the run's events go (a Recorder's emit).  ``control``: the run's abort and
        pause requests.  ``hold``: what the instrument does while paused (None: the run cannot
        pause).  ``clock_zero_s``: the instrument time (s) of the run's time zero, by default its
        time now.  ``loop``: the process's acquisition loop, which reads the polled acquisitions
        (without it this thread reads every acquisition itself); every block is processed holding
        its ``turn``, the lock the process's engines share, so that with dozens of channels they
        take turns in order instead of racing for the interpreter (which starves some of them, and
        the control thread, for seconds)."""
        self.loop = loop
        self.turn: AbstractContextManager = loop.turn if loop is not None else nullcontext()
        self.instrument = instrument
        self.emit = emit
        self.control = control if control is not None else Controls()
        self.safety = SafetyMonitor(limits) if limits is not None else None
        self.hold = HoldMode(hold) if hold is not None else None
        self.clock_zero_s = instrument.time_s if clock_zero_s is None else clock_zero_s
        self.last_time_s = 0.0  # run time of the latest sample, s
        self._overload = 0  # the instrument's overload bit field at the latest sample

    def run(self, plan: Plan) -> dict[str, Any]:
        """Execute ``plan`` to its end; returns its result.  Raises RunAborted, RunFailed or the step's error."""
        try:
            message = next(plan)
            while True:
                if self.aborted():
                    raise RunAborted()
                if isinstance(message, Event):
                    self.event(EventKind(message.kind), message.message)
                    message = plan.send(None)
                else:
                    message = plan.send(self.step(message))
        except StopIteration as finished:
            return finished.value
        finally:
            plan.close()

    def step(self, step: Step) -> StepOutcome:
        """Run one step to its end (or its stop condition); a pause holds the instrument, then the rest runs."""
        self.emit(StepStarted(self.last_time_s, step.label))
        self._overload = 0
        taken = _Taken(step.keep_samples)
        if self.hold is not None and self.paused():  # paused before the step began (before the run started, say): hold first
            self._hold(step)
        part: Step | None = step
        stop = None
        checks = _StopChecks(step.stops)
        while part is not None:
            stop, paused = self._acquire(part, step, taken, checks)
            if stop is not None or not paused:
                break
            self._hold(step)
            part = step.remainder(taken.n_samples)
        return taken.outcome(stop)

    def _acquire(self, part: Step, step: Step, taken: "_Taken", checks: "_StopChecks") -> tuple[Stop | None, bool]:
        """Acquire ``part`` of ``step``; returns (stop, paused)."""
        check_kind(part, self.instrument)
        stop, paused = None, False

        def interrupted() -> bool:
            nonlocal paused
            paused = paused or (self.hold is not None and self.paused())  # (kept: a resume before the hold begins still holds)
            return paused or self.aborted()

        def take(block) -> bool:
            nonlocal stop
            with self.turn:
                columns = self._take(block)
                taken.add(columns)
                stop = checks.feed(columns)
            if stop is not None:
                return False
            if self.aborted():
                raise RunAborted()
            return not interrupted()

        self._read(part.acquire(self.instrument), take, interrupted)
        if self.aborted():  # (a read interrupted before the next block came)
            raise RunAborted()
        if stop is None:  # the samples held back are judged before the step ends or holds
            with self.turn:
                stop = checks.feed(None)
        if stop is not None:
            self.event(EventKind.STOP, f"{step.label}: {stop.reason} at {stop.time_s:.6g} s")
            return stop, False
        return None, paused

    def _read(self, acquisition: Iterator[Block], take: Take, interrupted: Interrupted) -> None:
        """Hand each block of ``acquisition`` to ``take`` until it returns False or the blocks run
        out, then close the acquisition (the instrument's output ends).  A polled acquisition is
        read on the acquisition loop when there is one and its polls never wait, else on this
        thread, and ends within CHECK_S of ``interrupted`` saying so; any other is iterated here,
        and its run is asked between its blocks."""
        try:
            if isinstance(acquisition, PolledAcquisition):
                if self.loop is not None and not acquisition.poll_waits:
                    self.loop.drive(acquisition, take, interrupted)
                else:
                    read_on_this_thread(acquisition, take, interrupted, wake=self.control.abort_requested)
            else:
                for block in acquisition:
                    if not take(block):
                        break
        finally:
            acquisition.close()

    def _take(self, block, holding: bool = False) -> dict[str, np.ndarray]:
        """Rebase, record and safety-check one block; a limit fails the run, or pauses it where asked."""
        columns = dict(block.columns)
        columns["time_s"] = columns["time_s"] - self.clock_zero_s
        self.emit(Samples(columns))
        if block.overload is not None:
            self._note_overloads(columns["time_s"], block.overload)
        self.last_time_s = float(columns["time_s"][-1])
        violation = self.safety.check(columns, cumulative=not holding) if self.safety else None
        if violation:
            self.event(EventKind.LIMIT, violation)
            if not (self.hold is not None and not holding and self.safety.limits.on_violation == "pause"):
                raise RunFailed(f"safety limit: {violation}")
            self.control.pause_requested.set()
        return columns

    def _note_overloads(self, time_s: np.ndarray, flags: np.ndarray) -> None:
        """An ``overload`` event at every sample where the instrument's overload bit field changes
        (the samples from there on are suspect: a range was exceeded), whatever the blocks."""
        flags = np.asarray(flags).astype(np.int64)
        changes = np.flatnonzero(np.diff(flags, prepend=self._overload))
        for k in changes:
            value = int(flags[k])
            self.event(EventKind.OVERLOAD, f"instrument overload flags 0x{value:04X} from {time_s[k]:.6g} s" if value
                       else f"instrument overload cleared at {time_s[k]:.6g} s")
        self._overload = int(flags[-1]) if len(flags) else self._overload

    def _hold(self, step: Step) -> None:
        """Hold the instrument as the protocol declared until resumed (or aborted); hold data is recorded."""
        self.event(EventKind.PAUSE, f"{step.label}: paused, {self.hold.value.replace('_', ' ')}")
        self.emit(HoldChanged(True))
        interval = getattr(step, "sample_interval_s", 1.0)

        def resumed() -> bool:
            return not self.paused() or self.aborted()

        def take(block) -> bool:
            with self.turn:
                self._take(block, holding=True)
            return not resumed()

        if self.hold == HoldMode.OPEN_CIRCUIT:
            self._read(self.instrument.open_circuit(HOLD_FOREVER_S, interval), take, resumed)
        elif self.hold == HoldMode.HOLD_CURRENT:
            self._read(self.instrument.galvanostatic(step.current_A, HOLD_FOREVER_S, interval), take, resumed)
        else:
            self.instrument.safe_state()
        while self.paused() and not self.aborted():
            time.sleep(HOLD_POLL_S)
        if self.aborted():
            raise RunAborted()
        self.emit(HoldChanged(False))
        self.event(EventKind.RESUME, f"{step.label}: resumed")

    def aborted(self) -> bool:
        return self.control.abort_requested.is_set()

    def paused(self) -> bool:
        return self.control.pause_requested.is_set()

    def event(self, kind: EventKind, message: str) -> None:
        """Log ``message`` at the latest sample's run time."""
        self.emit(Note(self.last_time_s, kind, message))


class _Taken:
    """A step's samples so far: counted always, kept only when the plan wants them back."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.blocks: list[dict[str, np.ndarray]] = []
        self.n_samples = 0

    def add(self, columns: dict[str, np.ndarray]) -> None:
        self.n_samples += len(columns["time_s"])
        if self.keep:
            self.blocks.append(columns)

    def outcome(self, stop: Stop | None) -> StepOutcome:
        names = self.blocks[0].keys() if self.blocks else ()
        columns = {name: np.concatenate([b[name] for b in self.blocks]) for name in names}
        return StepOutcome(columns, stop, self.n_samples)


class _StopChecks:
    """A step's stop conditions, each fed the step's samples in order: every block, or, for a
    condition with a ``batch_s``, once what it has not seen spans that long.  When any condition
    stops the step, or the samples run out (``feed(None)``), everything held back is judged, and
    the earliest stop ends the step (on a tie, the first condition's): the same stop as feeding
    every condition every block."""

    def __init__(self, conditions) -> None:
        self._conditions = list(conditions)
        self._held: list[list[Mapping[str, np.ndarray]]] = [[] for _ in self._conditions]
        self._fed_to_s = [-np.inf] * len(self._conditions)

    def feed(self, columns: Mapping[str, np.ndarray] | None) -> Stop | None:
        """Take a block (None: the acquisition ended); the stop that ends the step, or None."""
        stops = [self._judge(k, columns, everything=columns is None) for k in range(len(self._conditions))]
        if any(stops):
            stops = [stop or self._judge(k, None, everything=True) for k, stop in enumerate(stops)]
        found = [stop for stop in stops if stop is not None]
        return min(found, key=lambda stop: stop.time_s) if found else None

    def _judge(self, k: int, columns: Mapping[str, np.ndarray] | None, everything: bool) -> Stop | None:
        held = self._held[k]
        if columns is not None and len(columns["time_s"]):
            held.append(columns)
        if not held:
            return None
        if not everything and held[-1]["time_s"][-1] - self._fed_to_s[k] < self._conditions[k].batch_s:
            return None
        block = held[0] if len(held) == 1 else {name: np.concatenate([b[name] for b in held]) for name in held[0]}
        held.clear()
        self._fed_to_s[k] = float(block["time_s"][-1])
        return self._conditions[k].update(block)
