"""A run's recorder: the one funnel everything a run produces goes through.

The engine emits typed events (run_events.py: a step began, samples arrived, a note for the log,
the instrument started or stopped holding) into :meth:`Recorder.emit`, in the order they happen, from
one thread at a time (the run's runner, or the acquisition loop while it reads the run's
instrument: the runner waits for it meanwhile); the recorder gives each its sequence number (the block and event indices of
the run file), writes it to the run file and publishes it on the data stream, and keeps the run's
progress and status, the way bluesky's RunEngine hands its documents to subscribers.  Nothing else
writes a running run's file or stream.
"""

from __future__ import annotations

from collections.abc import Callable

from echemd.daemon.publisher import Publisher
from echemd.daemon.run import Run
from echemd.daemon.run_events import HoldChanged, Note, RunEvent, Samples, StepStarted
from echemd.daemon.runfile import RunFile
from echemd.daemon.vocabulary import EventKind, RunStatus

#: Raises an alert: (trigger, run, message); the daemon raises its configured alerts, an instrument host sends it to the daemon.
Alert = Callable[[str, Run, str], None]


def publish_status(publisher: Publisher, run: Run) -> None:
    """Publish the run's status (its own sequence of status notices); once the run is done, its last notice."""
    header = {"seq": run.status_seq, "status": run.status.value, "n_samples": run.n_samples, "error": run.error}
    run.status_seq += 1
    publisher.notice(run.run_id, "status", header, last=run.done.is_set())


class Recorder:
    """Records and publishes one running run's events (see the module docstring)."""

    def __init__(self, run: Run, runfile: RunFile, publisher: Publisher, alert: Alert | None = None) -> None:
        self.run = run
        self.runfile = runfile
        self.publisher = publisher
        self.alert = alert

    def emit(self, event: RunEvent) -> None:
        """Write ``event`` to the run file and publish it.  Raises what the run file raises (a full
        disk: OSError): the engine then fails the run."""
        if isinstance(event, Samples):
            self.publisher.data(self.runfile.append(event.columns))
        elif isinstance(event, Note):
            self._log(event.time_s, event.kind, event.message)
            if self.alert is not None:
                self.alert(event.kind.value, self.run, event.message)
        elif isinstance(event, StepStarted):
            self.run.steps_started += 1
            self.run.step_label = event.label
            self._log(event.time_s, EventKind.STEP, event.label)
        elif isinstance(event, HoldChanged):
            self.run.move_to(RunStatus.PAUSED if event.holding else RunStatus.RUNNING)
            publish_status(self.publisher, self.run)
        else:
            raise TypeError(f"not a run event: {event!r}")

    def _log(self, time_s: float, kind: EventKind, message: str) -> None:
        seq = self.runfile.add_event(time_s, kind.value, message)
        self.publisher.notice(self.run.run_id, "event", {"seq": seq, "time_s": time_s, "kind": kind.value, "message": message})
