"""An instrument's runner: owns one instrument and runs one run at a time on it.

For each run the runner creates the run file, drives the protocol's plan through an Engine whose
events go to the run's Recorder (file + stream), applies the safety limits, and, whatever happens
(completion, abort, an exception, the daemon's shutdown or loss), puts the instrument in its safe
state and closes the file.  It lives where the instrument lives: in an instrument host process,
or in the daemon's own process (``instrument_hosts = 0``).  How the run ended goes to ``ended``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from echemd.config.models import InstrumentLimits
from echemd.daemon.acquisition_loop import AcquisitionLoop
from echemd.daemon.engine import Engine, RunAborted
from echemd.daemon.publisher import Publisher
from echemd.daemon.recorder import Alert, Recorder, publish_status
from echemd.daemon.run import Run
from echemd.daemon.runfile import RunFile, RunFileSettings, utc_now
from echemd.daemon.vocabulary import EventKind, RunStatus
from echemd.drivers.base import DriverError, Instrument

log = logging.getLogger(__name__)
#: Told how a run ended: (run, status, result, error, in_file: its run file says so).
Ended = Callable[[Run, RunStatus, "dict[str, Any] | None", str, bool], None]


class InstrumentRunner:
    def __init__(self, instrument: Instrument, limits: InstrumentLimits, publisher: Publisher, files: RunFileSettings, version: str,
                 ended: Ended, loop: AcquisitionLoop, alert: Alert | None = None) -> None:
        """``files``: how run files are written.  ``loop``: the acquisition loop this process's
        runners share (see Engine).  ``alert``: raises an alert on a run's event."""
        self.instrument = instrument
        self.limits = limits
        self.publisher = publisher
        self.files = files
        self.version = version
        self.ended = ended
        self.alert = alert
        self.loop = loop
        self.connected = False
        self.connect()

    def connect(self) -> str:
        """(Re)open the instrument and put it in its safe state; returns an error message, or ""."""
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

    def close(self) -> None:
        try:
            self.instrument.close()
        except Exception:  # pragma: no cover - logged, the process still exits
            log.exception("closing %s failed", self.instrument.name)

    @property
    def state(self) -> str:
        return "idle" if self.connected else "offline"

    def control(self, run: Run) -> None:
        """(In this process the engine reads the run's abort and pause requests itself.)"""

    def execute(self, run: Run) -> None:
        """Run ``run`` to its end (``ended`` is told how, whatever happens)."""
        try:
            self._execute(run)
        except BaseException:  # pragma: no cover - _execute ends the run whatever happens
            log.exception("runner %s: unexpected error", self.instrument.name)
            if not run.done.is_set():
                self._end(run, RunStatus.FAILED, None, "the instrument's runner failed unexpectedly (see the daemon log)", False)

    def _execute(self, run: Run) -> None:
        protocol = run.protocol
        unreachable = "" if self.connected else self.connect()
        if unreachable:
            self._end(run, RunStatus.FAILED, None, unreachable, False)
            return
        # the run's time zero: the instrument's clock and the wall clock read together, so that
        # t0_unix_s + time_s is each sample's wall-clock time
        clock_zero_s, t0_unix_s = self.instrument.time_s, time.time()
        try:
            columns = protocol.columns_for(run.parameters)
            runfile = RunFile(
                run.file,
                run_id=run.run_id,
                protocol=protocol.name,
                parameters=run.parameters.model_dump(mode="json"),
                instrument=self.instrument.name,
                columns={column.name: column.units for column in columns},
                descriptions={column.name: column.description for column in columns},
                sparse=protocol.sparse_columns(run.parameters),
                version=self.version,
                settings=self.files,
                t0_unix_s=t0_unix_s,
                attributes={**protocol.run_attributes(run.parameters), "metadata": json.dumps(run.metadata)},
                nexus_plot=protocol.presentation.nexus_plot,
            )
        except Exception as exc:  # nothing was applied: the run fails before it starts
            log.exception("run %s: cannot create its run file", run.run_id)
            self._end(run, RunStatus.FAILED, None, f"cannot create the run file {run.file}: {type(exc).__name__}: {exc}", False)
            return
        run.runfile = runfile
        run.move_to(RunStatus.RUNNING)
        run.started = utc_now()
        publish_status(self.publisher, run)
        engine = Engine(self.instrument, Recorder(run, runfile, self.publisher, self.alert).emit, control=run,
                        limits=self.limits.tightened(run.limits), hold=protocol.pause_hold, clock_zero_s=clock_zero_s, loop=self.loop)
        status, result, error, instrument_fault = RunStatus.FAILED, None, "", False
        try:
            result = engine.run(protocol.plan(run.parameters))
            status = RunStatus.COMPLETED
        except RunAborted:
            status, error = run.abort_status, run.abort_reason
        except BaseException as exc:  # KeyboardInterrupt or SystemExit raised in a driver too: the runner goes on
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
                    engine.event(EventKind.ERROR if status == RunStatus.FAILED else EventKind.ABORT, error)
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
                self.connect()
            self._end(run, status, result, error, in_file)
            log.info("run %s %s (%d samples) %s", run.run_id, status, run.n_samples, error)

    def _end(self, run: Run, status: RunStatus, result: dict[str, Any] | None, error: str, in_file: bool) -> None:
        run.finish(status, result, error)
        self.ended(run, status, result, error, in_file)
