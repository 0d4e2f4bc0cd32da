"""One worker thread per instrument: runs its queued runs one at a time and owns the instrument.

For each run the worker creates the run file, drives the protocol's plan, records and publishes
every block as it arrives, applies the daemon's safety limits, and, whatever happens (completion,
abort, an exception, daemon shutdown), puts the instrument in its safe state and closes the file.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time

from echemd.config.models import InstrumentLimits
from echemd.daemon.alerts import Alerts
from echemd.daemon.engine import Engine, RunAborted
from echemd.daemon.publisher import Publisher
from echemd.daemon.recorder import Recorder, publish_status
from echemd.daemon.run import Run
from echemd.daemon.runfile import RunFile, RunFileSettings, utc_now
from echemd.daemon.submissions import Submissions
from echemd.daemon.vocabulary import EventKind, RunStatus
from echemd.drivers.base import DriverError, Instrument

log = logging.getLogger(__name__)


class InstrumentWorker:
    def __init__(
        self,
        instrument: Instrument,
        limits: InstrumentLimits,
        publisher: Publisher,
        files: RunFileSettings,
        version: str,
        turn: threading.Lock | None = None,
        submissions: Submissions | None = None,
        alerts: Alerts | None = None,
    ) -> None:
        """``files``: how run files are written.  ``turn``: the lock the daemon's workers take
        turns on to process a block (see Engine).  ``submissions``: where the daemon wrote its
        runs down, told how each ended.  ``alerts``: the commands to run on chosen events."""
        self.alerts = alerts
        self.submissions = submissions
        self.turn = turn
        self.files = files
        self.instrument = instrument
        self.limits = limits
        self.publisher = publisher
        self.version = version
        self.current: Run | None = None
        self.connected = False
        self._connect()
        self._queue: collections.deque[Run] = collections.deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"echemd-worker-{instrument.name}", daemon=True)
        self._thread.start()

    @property
    def state(self) -> str:
        current = self.current
        if current is not None and not current.done.is_set():  # (an ended run is ended for the instrument too)
            return "running"  # (an instrument state, not a run status)
        return "idle" if self.connected else "offline"

    def _connect(self) -> str:
        """(Re)open the instrument; returns an error message, or "" when connected."""
        try:
            self.instrument.open()
            self.instrument.safe_state()  # whatever state it was left in, before any command
        except Exception as exc:
            log.warning("%s: cannot connect: %s", self.instrument.name, exc)
            self.connected = False
            return f"cannot reach {self.instrument.name}: {exc}"
        self.connected = True
        return ""

    def _disconnect(self) -> None:
        """After a fault: drop the connection (best effort) so the next run reconnects."""
        self.connected = False
        try:
            self.instrument.close()
        except Exception as exc:
            log.warning("%s: close after a fault failed: %s", self.instrument.name, exc)

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

    def abort(self, run: Run) -> None:
        """Abort a queued run at once, or ask a running one to stop at its next block."""
        with self._cv:
            if run in self._queue:
                self._queue.remove(run)
                self._end(run, RunStatus.ABORTED, error="aborted before it started")
                return
        run.abort_requested.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Abort the running run (``aborted: daemon shutdown``), wait for the instrument to be safe,
        close it.  The queued runs stay written down as queued: the next daemon queues them again."""
        with self._cv:
            self._stopping = True
            self._queue.clear()
            if self.current is not None:
                self.current.abort_reason = "aborted: daemon shutdown"
                self.current.abort_requested.set()
            self._cv.notify()
        self._thread.join(timeout_s)
        try:
            self.instrument.close()
        except Exception:  # pragma: no cover - logged, the daemon still exits
            log.exception("closing %s failed", self.instrument.name)

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
                self._execute(run)
            except BaseException:  # pragma: no cover - _execute ends the run whatever happens; the queue goes on
                log.exception("worker %s: unexpected error", self.instrument.name)
                if not run.done.is_set():
                    self._end(run, RunStatus.FAILED, error="the instrument's worker failed unexpectedly (see the daemon log)")
            finally:
                self.current = None

    def _execute(self, run: Run) -> None:
        protocol = run.protocol
        unreachable = "" if self.connected else self._connect()
        if unreachable:
            self._end(run, RunStatus.FAILED, error=unreachable)
            return
        # the run's time zero: the instrument's clock and the wall clock read together, so that
        # t0_unix_s + time_s is each sample's wall-clock time
        clock_zero_s, t0_unix_s = self.instrument.time_s, time.time()
        try:
            runfile = RunFile(
                run.file,
                run_id=run.run_id,
                protocol=protocol.name,
                parameters=run.parameters.model_dump(mode="json"),
                instrument=self.instrument.name,
                columns={column.name: column.units for column in protocol.columns_for(run.parameters)},
                descriptions={column.name: column.description for column in protocol.columns_for(run.parameters)},
                sparse=protocol.sparse_columns(run.parameters),
                version=self.version,
                settings=self.files,
                t0_unix_s=t0_unix_s,
                attributes={**protocol.run_attributes(run.parameters), "metadata": json.dumps(run.metadata)},
            )
        except Exception as exc:  # nothing was applied: the run fails before it starts
            log.exception("run %s: cannot create its run file", run.run_id)
            self._end(run, RunStatus.FAILED, error=f"cannot create the run file {run.file}: {type(exc).__name__}: {exc}")
            return
        run.runfile = runfile
        run.status, run.started = RunStatus.RUNNING, utc_now()
        publish_status(self.publisher, run)
        engine = Engine(self.instrument, Recorder(run, runfile, self.publisher, self.alerts).emit, control=run,
                        limits=self.limits.tightened(run.limits), hold=protocol.pause_hold, clock_zero_s=clock_zero_s, turn=self.turn)
        status, result, error, instrument_fault = RunStatus.FAILED, None, "", False
        try:
            result = engine.run(protocol.plan(run.parameters))
            status = RunStatus.COMPLETED
        except RunAborted:
            status, error = RunStatus.ABORTED, run.abort_reason
        except BaseException as exc:  # KeyboardInterrupt or SystemExit raised in a driver too: the worker goes on
            status, error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
            instrument_fault = isinstance(exc, (DriverError, TimeoutError))
            log.exception("run %s failed", run.run_id)
        finally:
            reachable = True
            try:
                self.instrument.safe_state()
            except Exception as exc:
                log.exception("%s: safe state failed", self.instrument.name)
                status, error, reachable = RunStatus.FAILED, error or f"safe state failed: {exc}", False
            if status != RunStatus.COMPLETED:
                try:
                    engine.event(EventKind.ABORT if status == RunStatus.ABORTED else EventKind.ERROR, error)
                except Exception as exc:  # e.g. the file is what failed: the run's error says it all
                    log.warning("run %s: cannot record its %s event: %s", run.run_id, status, exc)
            in_file = True
            try:  # the file may be what failed (a full disk): the run still ends, and says so
                runfile.close(status, result, error)
            except Exception as exc:
                log.exception("run %s: cannot close its run file", run.run_id)
                status, error, in_file = RunStatus.FAILED, error or f"cannot close the run file: {exc}", False
            if instrument_fault or not reachable:  # a fresh connection for what comes next: offline only if that fails
                self._disconnect()
                self._connect()
            self._end(run, status, result, error, in_file)
            log.info("run %s %s (%d samples) %s", run.run_id, status, run.n_samples, error)

    def _end(self, run: Run, status: RunStatus, result: dict | None = None, error: str = "", in_file: bool = False) -> None:
        """The run ended: tell its record (``in_file``: its run file says how), its waiters, its subscribers."""
        run.finish(status, result, error)
        if self.submissions is not None:
            self.submissions.ended(run.run_id, status, error, run.finished, in_file)
        publish_status(self.publisher, run)
        if self.alerts is not None:
            self.alerts.raise_alert(run.status.value, run, error, result)
