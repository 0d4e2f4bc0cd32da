"""An instrument's queue, in the daemon: its runs wait here and go to its runner one at a time.

The runner (runner.py) lives where the instrument lives, in an instrument host process or in
the daemon's own; the queue reaches it through an :class:`Executor`, so the queue, the abort of a
queued run, reordering and shutdown work the same either way.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Protocol

from echemd.config.models import InstrumentLimits
from echemd.daemon.run import Run
from echemd.daemon.runner import Ended
from echemd.daemon.vocabulary import RunStatus
from echemd.drivers.base import Instrument

log = logging.getLogger(__name__)
SHUTDOWN = "aborted: daemon shutdown"


class Executor(Protocol):
    """Where an instrument's runs execute (an InstrumentRunner, or a host's stand-in for one)."""

    #: The instrument, for its description and the checks of a submission (in a host's case a
    #: copy this process never opens).
    instrument: Instrument

    @property
    def state(self) -> str:
        """When no run is running: idle, offline (unreachable), or starting (its host is starting)."""

    def execute(self, run: Run) -> None:
        """Run ``run``; returns once it ended (the queue's ``ended`` was told)."""

    def control(self, run: Run) -> None:
        """The run's abort or pause request changed: pass it on to wherever it runs."""


class InstrumentQueue:
    def __init__(self, executor: Executor, limits: InstrumentLimits, ended: Ended) -> None:
        """``ended``: told how a run that never reached the runner ended (aborted while queued)."""
        self.executor = executor
        self.instrument = executor.instrument
        self.limits = limits
        self.ended = ended
        self.current: Run | None = None
        self._queue: collections.deque[Run] = collections.deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"echemd-queue-{self.instrument.name}", daemon=True)
        self._thread.start()

    @property
    def state(self) -> str:
        """The instrument's state: running, idle, offline or starting (not a run status)."""
        current, state = self.current, self.executor.state
        if current is not None and not current.done.is_set() and state != "starting":  # (an ended run is ended for the instrument too)
            return "running"
        return state

    def queued(self) -> list[Run]:
        with self._cv:
            return list(self._queue)

    def enqueue(self, run: Run) -> None:
        with self._cv:
            if self._stopping:
                raise RuntimeError("the daemon is shutting down")
            self._queue.append(run)
            self._cv.notify()

    def move(self, run: Run, position: int) -> list[Run]:
        """Put a queued run at ``position`` (0 = next) of this instrument's queue; returns the queue."""
        with self._cv:
            if run not in self._queue:
                raise ValueError(f"run {run.run_id} is not queued on {self.instrument.name}")
            self._queue.remove(run)
            self._queue.insert(max(0, min(position, len(self._queue))), run)
            return list(self._queue)

    def abort(self, run: Run, reason: str = "") -> None:
        """Abort a queued run at once, or ask a running one to stop (within 0.1 s)."""
        with self._cv:
            if run in self._queue:
                self._queue.remove(run)
                run.finish(RunStatus.ABORTED, None, "aborted before it started")
                self.ended(run, RunStatus.ABORTED, None, "aborted before it started", False)
                return
        if reason:
            run.abort_reason = reason
        run.abort_requested.set()
        self.executor.control(run)

    def pause(self, run: Run, paused: bool) -> None:
        """Ask a running run to hold (``paused``) or to go on."""
        if paused:
            run.pause_requested.set()
        else:
            run.pause_requested.clear()
        self.executor.control(run)

    def stop(self) -> None:
        """Take no more runs and abort the running one (``aborted: daemon shutdown``); see
        :meth:`join`.  The queued runs stay written down as queued: the next daemon queues them again."""
        with self._cv:
            self._stopping = True
            self._queue.clear()
            current = self.current
            self._cv.notify()
        if current is not None:
            self.abort(current, SHUTDOWN)

    def join(self, timeout_s: float = 30.0) -> None:
        """Wait for the running run's end, after :meth:`stop`."""
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                run = self._queue.popleft()
                self.current = run
            try:
                self.executor.execute(run)
            except BaseException:  # pragma: no cover - the executor ends the run whatever happens; the queue goes on
                log.exception("queue %s: unexpected error", self.instrument.name)
                if not run.done.is_set():
                    error = "the instrument's runner failed unexpectedly (see the daemon log)"
                    run.finish(RunStatus.FAILED, None, error)
                    self.ended(run, RunStatus.FAILED, None, error, False)
            finally:
                self.current = None
