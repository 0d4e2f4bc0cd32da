"""The daemon: the instruments' queues (and the hosts that run them), the run registry, and the control API's methods."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zmq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from echemd.config.models import DaemonConfig, RunLimits, RunMetadata
from echemd.daemon.acquisition_loop import AcquisitionLoop
from echemd.daemon.alerts import Alerts
from echemd.daemon.control import ControlServer, Framed
from echemd.daemon.errors import ApiError
from echemd.daemon.file_transitions import complete_replacement, pending_replacements
from echemd.daemon.folder_lock import FolderLock, wait_for_previous_hosts
from echemd.daemon.hosts import HostPool, PrivateSockets
from echemd.daemon.instrument_queue import InstrumentQueue
from echemd.daemon.publisher import Publisher
from echemd.daemon.recovery import left_running, recover_file
from echemd.daemon.recorder import publish_status
from echemd.daemon.run import Run
from echemd.daemon.runner import InstrumentRunner
from echemd.daemon.vocabulary import ACTIVE_STATUSES, FINAL_STATUSES, RunStatus
from echemd.daemon.runfile import RunFileSettings, finish_pending_ends, utc_now
from echemd.daemon.runfile_reader import RunFileReader, read_attrs
from echemd.daemon.security import CurveServer, ZapHandler
from echemd.daemon.submissions import SubmissionRecord, Submissions
from echemd.drivers.registry import make_instrument
from echemd.protocols import PROTOCOLS, ProtocolRefused
from echemd.protocols.base import with_defaults

log = logging.getLogger(__name__)
RUN_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
DEFAULT_FETCH_SAMPLES = 100_000
#: Most samples in one JSON fetch reply, whatever max_samples says: encoding them holds the
#: interpreter while every other thread of the daemon waits (ping p99 during JSON fetches: 284 ms
#: with 100,000, 39 ms with 10,000; benchmarks/fetch_large.py).  Binary replies have no such cost.
MAX_JSON_FETCH_SAMPLES = 10_000
#: How long a request that arrives while the daemon is starting waits for it, s.
STARTING_WAIT_S = 30.0
#: How often a run-file replacement a reader blocked (Windows) is tried again, s.
REPLACEMENT_RETRY_S = 5.0


def echemd_version() -> str:
    try:
        return version("echemd")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        return "0+unknown"


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmitParams(_Params):
    protocol: str
    instrument: str
    parameters: dict[str, Any] = {}
    limits: RunLimits | None = None
    metadata: dict[str, Any] = {}
    allow_large: bool = False


class RunParams(_Params):
    run_id: str = Field(pattern=RUN_ID_PATTERN)


class StatusParams(_Params):
    run_id: str | None = Field(None, pattern=RUN_ID_PATTERN)


class QueueParams(_Params):
    instrument: str
    action: Literal["list", "remove", "move"] = "list"
    run_id: str | None = Field(None, pattern=RUN_ID_PATTERN)
    position: int = Field(0, ge=0)


class FetchParams(RunParams):
    from_seq: int = Field(0, ge=0)
    max_samples: int = Field(DEFAULT_FETCH_SAMPLES, ge=1, le=1_000_000)
    binary: bool = False  # columns as raw little-endian float64 frames after the reply, not JSON lists
    packed: bool = False  # (binary) one frame per column name for all the reply's blocks (stream.PackedBlocks)

    @model_validator(mode="after")
    def _packed_only_binary(self) -> "FetchParams":
        if self.packed and not self.binary:
            raise ValueError("packed is for binary replies (JSON columns are lists)")
        return self


class Daemon:
    """Owns the sockets, instruments and runs.  ``handle`` answers control requests (thread-safe)."""

    def __init__(self, config: DaemonConfig, sim_speed: float | str | None = None, cancel_queued: bool = False) -> None:
        """``cancel_queued``: the runs a previous daemon left queued end as aborted instead of
        being queued again."""
        self.config = config
        self.version = echemd_version()
        self.data_dir = Path(config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.folder_lock = FolderLock(self.data_dir)
        self.folder_lock.acquire()  # before any file is touched: raises FolderInUse when another daemon runs here
        try:
            wait_for_previous_hosts(self.data_dir)  # a previous daemon's hosts may still be closing its files
            self.submissions = Submissions(self.data_dir)
            self.alerts = Alerts(config.alerts)
            self.files = RunFileSettings(config.flush_interval_s, config.fsync_interval_s, config.compress_closed_runs,
                                         int(config.disk_reserve_mb * 2**20))
            self.recovering = {path.stem: path for path in left_running(self.data_dir, self.submissions)}
        except BaseException:
            self.folder_lock.release()
            raise
        self._methods = {
            "ping": self.ping,
            "instruments": self.instruments,
            "protocols": self.protocols,
            "submit": self.submit,
            "status": self.status,
            "runs": self.list_runs,
            "result": self.result,
            "abort": self.abort,
            "fetch": self.fetch,
            "queue": self.queue,
            "pause": self.pause,
            "resume": self.resume,
            "shutdown": self.shutdown,
        }  # (before the control socket answers anything)
        self.runs: dict[str, Run] = {}
        self._started = threading.Event()  # set once everything a request may touch exists
        self._lock = threading.Lock()
        self.stopped = threading.Event()
        self.shutdown_requested = threading.Event()
        self._context = zmq.Context()
        self.queues: dict[str, InstrumentQueue] = {}
        self.runners: dict[str, InstrumentRunner] = {}  # the instruments this process runs itself (instrument_hosts = 0)
        self.acquisition_loop = AcquisitionLoop()  # (theirs)
        self.hosts: HostPool | None = None
        self.curve: CurveServer | None = None
        self.publisher: Publisher | None = None
        n_hosts = _host_count(config)
        self._zap = ZapHandler(self._context)
        self._host_sockets: PrivateSockets | None = None
        try:  # whatever fails (a bind, an instrument, a host), everything started is stopped and the folder freed
            self.curve = CurveServer(self._zap, config.security) if config.security is not None else None
            if n_hosts:
                self._host_sockets = sockets = PrivateSockets(self.data_dir, self._zap)
                self.publisher = Publisher.bound(self._context, config.publish_endpoint, secure=self.curve,
                                                 ingest_endpoint=sockets.endpoint("ingest"), ingest_secure=sockets.curve)
                groups = [config.instruments[k::n_hosts] for k in range(n_hosts)]
                self.hosts = HostPool(self._context, groups, files=self.files, version=self.version, sim_speed=sim_speed,
                                      ingest_endpoint=self.publisher.ingest_endpoint, data_dir=self.data_dir, ended=self._ended,
                                      alert=self._alert, died=self._host_died, sockets=sockets)
                executors = dict(self.hosts.instruments)
            else:
                self.publisher = Publisher.bound(self._context, config.publish_endpoint, secure=self.curve)
                for instrument_config in config.instruments:
                    self.runners[instrument_config.name] = InstrumentRunner(
                        make_instrument(instrument_config, sim_speed), instrument_config.limits, self.publisher, self.files, self.version,
                        ended=self._ended, loop=self.acquisition_loop, alert=self._alert)
                executors = dict(self.runners)
            for instrument_config in config.instruments:
                self.queues[instrument_config.name] = InstrumentQueue(executors[instrument_config.name], instrument_config.limits, ended=self._ended)
            self.control = ControlServer(self._context, config.control_endpoint, self.handle, secure=self.curve)
        except BaseException:
            self._close_instruments()
            if self.publisher is not None:
                self.publisher.close()
            self._release_sockets()
            self.folder_lock.release()
            raise
        self.requeued = self._requeue(cancel_queued)
        self._recovery = threading.Thread(target=self._recover, name="echemd-recovery", daemon=True)
        self._recovery.start()
        self._janitor = threading.Thread(target=self._complete_replacements, name="echemd-replacements", daemon=True)
        self._janitor.start()
        self._started.set()
        log.info("echemd %s: control %s, data %s, runs in %s", self.version, self.control.endpoint, self.publisher.endpoint, self.data_dir)

    # --- life cycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Abort every run (instruments to safe state, files closed as aborted), close the sockets."""
        self.stopped.set()
        self._recovery.join()  # the file being recovered is finished; the others wait for the next start
        self._close_instruments()
        self.alerts.wait()  # (the alerts of the runs just ended get their chance)
        self.control.close()
        self.publisher.close()
        self._release_sockets()
        self.folder_lock.release()

    def _requeue(self, cancel: bool) -> list[str]:
        """Queue again, in their order, the runs a previous daemon accepted and never started
        (or end them as aborted when ``cancel``); returns their ids."""
        requeued = []
        for record in self.submissions.records():
            if record.status != RunStatus.QUEUED or record.run_id in self.recovering:
                continue
            if cancel:
                self.submissions.ended(record.run_id, RunStatus.ABORTED, "cancelled at daemon start (--cancel-queued)", utc_now(), in_file=False)
                continue
            try:
                run = self._new_run(record.protocol, record.instrument, record.parameters, record.limits, record.run_id, record.submitted,
                                    record.metadata)
            except ApiError as exc:  # the configuration changed under it: the run cannot go on
                log.error("run %s cannot be queued again: %s", record.run_id, exc.message)
                self.submissions.ended(record.run_id, RunStatus.FAILED, f"cannot be queued again after a restart: {exc.message}", utc_now(), in_file=False)
                continue
            with self._lock:
                self.runs[run.run_id] = run
            self.queues[run.instrument].enqueue(run)
            requeued.append(run.run_id)
        if requeued:
            log.warning("queued again the %d runs the previous daemon had not started: %s", len(requeued), ", ".join(requeued))
        return requeued

    def _recover(self) -> None:
        """Recover the files the previous daemon left open, one by one, until done or stopped."""
        for run_id, path in list(self.recovering.items()):
            if self.stopped.is_set():
                return  # the rest stay as they are: the next start recovers them
            recover_file(path, self.submissions, self.files)
            del self.recovering[run_id]
            record = self._file_record(path)
            if record["status"] == RunStatus.INTERRUPTED:
                self.alerts.raise_alert("interrupted", record, "interrupted by the end of the previous daemon; its file was recovered")

    def _complete_replacements(self) -> None:
        """Until the daemon stops: retry the run-file replacements a reader blocked (Windows), and
        the run ends that waited for disk space (their files are then their records)."""
        while not self.stopped.wait(REPLACEMENT_RETRY_S):
            for path in pending_replacements(self.data_dir):
                complete_replacement(path)
            for run_id in finish_pending_ends():
                self.submissions.remove(run_id)

    def _release_sockets(self) -> None:
        """(Every socket closed) stop the ZAP handler, end the context, remove the hosts' socket folder."""
        self._zap.stop()
        self._context.term()
        if self._host_sockets is not None:
            self._host_sockets.remove()

    def _close_instruments(self) -> None:
        """Stop the queues (a running run ends ``aborted: daemon shutdown``), then the hosts or runners."""
        for queue in self.queues.values():
            queue.stop()
        for queue in self.queues.values():
            queue.join()
        if self.hosts is not None:
            self.hosts.close()
        for runner in self.runners.values():
            runner.close()
        self.acquisition_loop.close()

    def _ended(self, run: Run, status: RunStatus, result: dict[str, Any] | None, error: str, in_file: bool, publish: bool = True) -> None:
        """A run ended (its record already says so): its submission record, its subscribers
        (unless its host publishes the end itself), its alerts."""
        self.submissions.ended(run.run_id, status, error, run.finished, in_file)
        if publish:
            publish_status(self.publisher, run)
        self.alerts.raise_alert(run.status.value, run.record(), error, result)

    def _alert(self, trigger: str, run: Run, message: str) -> None:
        """A run's event raises the alerts configured for it."""
        self.alerts.raise_alert(trigger, run.record(), message)

    def _host_died(self, run: Run, why: str) -> None:
        """The host running ``run`` died: the run ends interrupted, its file recovered as after a daemon crash."""
        run.move_to(RunStatus.RECOVERING)  # (until its file is closed: about 1 s per GB)
        error = f"interrupted: {why}"
        run.finished = utc_now()
        self.submissions.ended(run.run_id, RunStatus.INTERRUPTED, error, run.finished, in_file=False)  # (what recovery writes in the file)
        in_file = False
        if run.file.exists():
            try:
                running = read_attrs(run.file)["status"] == RunStatus.RUNNING
            except (OSError, KeyError, ValueError, RuntimeError):
                running = True
            if running:
                recover_file(run.file, self.submissions, self.files)
            in_file = self.submissions.get(run.run_id) is None or not running
        run.runfile = None
        run.finish(RunStatus.INTERRUPTED, None, error)
        self._ended(run, RunStatus.INTERRUPTED, None, error, in_file)

    # --- control API ------------------------------------------------------------------------
    def handle(self, method: str, params: dict[str, Any]) -> Any:
        if not self._started.wait(STARTING_WAIT_S):  # (a request that arrives while the daemon binds waits for it)
            raise ApiError("shutting_down" if self.stopped.is_set() else "internal", "the daemon has not finished starting")
        handler = self._methods.get(method)
        if handler is None:
            raise ApiError("unknown_method", f"unknown method {method!r}", {"methods": sorted(self._methods)})
        return handler(params)

    def ping(self, params: dict[str, Any]) -> dict[str, Any]:
        _parse(_Params, params)
        return {
            "version": self.version,
            "time": time.time(),
            "control_endpoint": self.control.endpoint,
            "publish_endpoint": self.publisher.endpoint,
        }

    def instruments(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        _parse(_Params, params)
        listing = []
        for name, queue in self.queues.items():
            current = queue.current
            listing.append({
                "name": name,
                **queue.instrument.describe(),
                "limits": queue.limits.model_dump(),
                "state": queue.state,
                "current_run": current.run_id if current else None,
                "queued": [run.run_id for run in queue.queued()],
            })
        return listing

    def protocols(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        _parse(_Params, params)
        return [protocol.describe() for protocol in PROTOCOLS.values()]

    def submit(self, params: dict[str, Any]) -> dict[str, Any]:
        request = _parse(SubmitParams, params)
        if self.stopped.is_set():
            raise ApiError("shutting_down", "the daemon is shutting down")
        run = self._new_run(request.protocol, request.instrument, request.parameters, request.limits, metadata=request.metadata)
        if not request.allow_large:
            self._refuse_absurd_size(run)
        try:
            self.submissions.add(
                run_id=run.run_id, protocol=run.protocol.name, instrument=run.instrument, parameters=run.parameters.model_dump(mode="json"),
                limits=run.limits.model_dump(exclude_none=True) if run.limits else None, submitted=run.submitted, metadata=run.metadata,
            )
        except OSError as exc:
            raise ApiError("storage", f"the run cannot be written down in {self.submissions.folder}: {exc}") from None
        with self._lock:
            self.runs[run.run_id] = run
        try:
            self.queues[run.instrument].enqueue(run)
        except RuntimeError:  # the daemon began to stop meanwhile: the run was not accepted
            self.submissions.remove(run.run_id)
            raise ApiError("shutting_down", "the daemon is shutting down") from None
        log.info("submitted %s: %s on %s", run.run_id, run.protocol.name, run.instrument)
        return {"run_id": run.run_id, "status": run.status, "file": str(run.file)}

    def _refuse_absurd_size(self, run: Run) -> None:
        """Refuse a run projected to record more than max_run_size_gb (10 h at 10 us: 86 GB)."""
        if run.protocol.planned_samples is None:
            return
        samples = run.protocol.planned_samples(run.parameters)
        size_gb = samples * 8 * len(run.protocol.columns_for(run.parameters)) / 1e9
        if size_gb > self.config.max_run_size_gb:
            raise ApiError("refused", f"the run is projected to record {samples:,} samples, {size_gb:,.1f} GB, beyond max_run_size_gb = "
                                      f"{self.config.max_run_size_gb:g}: a longer sample interval, or submit it with allow_large",
                           {"samples": samples, "size_gb": size_gb})

    def _new_run(self, protocol_name: str, instrument: str, raw_parameters: dict[str, Any], limits: RunLimits | dict[str, Any] | None,
                 run_id: str | None = None, submitted: str | None = None, metadata: dict[str, Any] | None = None) -> Run:
        """A run checked against its protocol, its instrument and their limits (ApiError if refused).

        The instrument's configured ``defaults`` fill the parameters the run does not give (not one
        whose alternative it gives: area_cm2 for diameter_mm), its ``metadata`` the metadata."""
        protocol = PROTOCOLS.get(protocol_name)
        if protocol is None:
            raise ApiError("unknown_protocol", f"unknown protocol {protocol_name!r}", {"protocols": sorted(PROTOCOLS)})
        queue = self.queues.get(instrument)
        if queue is None:
            raise ApiError("unknown_instrument", f"unknown instrument {instrument!r}", {"instruments": sorted(self.queues)})
        if queue.instrument.kind != protocol.instrument_kind:
            raise ApiError("refused", f"{protocol.name} needs a {protocol.instrument_kind}; {instrument} is a {queue.instrument.kind}")
        config = self.config.instrument(instrument)
        try:
            parameters = protocol.parameters.model_validate(with_defaults(protocol.parameters, raw_parameters, config.defaults))
            limits = RunLimits.model_validate(limits) if isinstance(limits, dict) else limits
        except ValidationError as exc:
            raise ApiError("invalid_parameters", f"invalid parameters for {protocol.name}: {_summary(exc)}", _details(exc)) from None
        try:
            run_metadata = RunMetadata.model_validate({**config.metadata.given(), **(metadata or {})}).given()
        except ValidationError as exc:
            raise ApiError("invalid_params", f"invalid metadata: {_summary(exc)}", _details(exc)) from None
        try:  # the instrument's limits, tightened by the run's own: nothing beyond either is ever applied
            protocol.check(parameters, queue.instrument, queue.limits.tightened(limits))
        except ProtocolRefused as exc:
            raise ApiError("refused", str(exc)) from None
        run_id = run_id or f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{protocol.name}-{secrets.token_hex(3)}"
        run = Run(run_id, protocol, queue.instrument.name, parameters, self.data_dir / f"{run_id}.h5", limits=limits, metadata=run_metadata)
        if submitted:
            run.submitted = submitted
        return run

    def status(self, params: dict[str, Any]) -> dict[str, Any]:
        request = _parse(StatusParams, params)
        if request.run_id is not None:
            return self._run_record(request.run_id)
        return {
            "version": self.version,
            "instruments": {name: {"state": q.state, "current_run": q.current.run_id if q.current else None} for name, q in self.queues.items()},
            "active_runs": [run.record() for run in self._runs() if run.status not in FINAL_STATUSES],
        }

    def list_runs(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Runs of this session and every run file in the data folder, oldest first."""
        _parse(_Params, params)
        records = {run.run_id: run.record() for run in self._runs()}
        for submission in self.submissions.records():
            if submission.run_id not in records and submission.status in FINAL_STATUSES:
                records[submission.run_id] = _submission_record(submission, self.data_dir)
        for path in sorted(self.data_dir.glob("*.h5")):
            if path.stem not in records:
                records[path.stem] = self._file_record(path)
        return sorted(records.values(), key=lambda record: record.get("started") or record.get("submitted", ""))

    def result(self, params: dict[str, Any]) -> dict[str, Any]:
        request = _parse(RunParams, params)
        record = self._run_record(request.run_id)
        return {key: record[key] for key in ("run_id", "status", "file", "result", "error")}

    def abort(self, params: dict[str, Any]) -> dict[str, Any]:
        request = _parse(RunParams, params)
        run = self._run(request.run_id)
        if run.status not in FINAL_STATUSES:
            self.queues[run.instrument].abort(run)
        return {"run_id": run.run_id, "status": run.status}

    def pause(self, params: dict[str, Any]) -> dict[str, Any]:
        """Pause a running run within 0.1 s (the instrument holds as the protocol declares), or a
        queued one before its first step (it holds as soon as it starts)."""
        run = self._run(_parse(RunParams, params).run_id)
        if run.protocol.pause_hold is None:
            raise ApiError("refused", f"{run.protocol.name} runs cannot be paused")
        if run.status not in ACTIVE_STATUSES:
            raise ApiError("refused", f"run {run.run_id} is {run.status}: only a queued or running run can be paused")
        self.queues[run.instrument].pause(run, True)
        return {"run_id": run.run_id, "status": run.status, "hold": run.protocol.pause_hold}

    def resume(self, params: dict[str, Any]) -> dict[str, Any]:
        """Resume a paused run: the interrupted step goes on for what was left of it."""
        run = self._run(_parse(RunParams, params).run_id)
        if not run.pause_requested.is_set():
            raise ApiError("refused", f"run {run.run_id} is not paused")
        self.queues[run.instrument].pause(run, False)
        return {"run_id": run.run_id, "status": run.status}

    def queue(self, params: dict[str, Any]) -> dict[str, Any]:
        """List an instrument's queue, remove a queued run from it, or move one (position 0 = next)."""
        request = _parse(QueueParams, params)
        queue = self.queues.get(request.instrument)
        if queue is None:
            raise ApiError("unknown_instrument", f"unknown instrument {request.instrument!r}", {"instruments": sorted(self.queues)})
        if request.action != "list":
            if request.run_id is None:
                raise ApiError("invalid_params", f"queue {request.action} needs a run_id")
            run = self._run(request.run_id)
            if run not in queue.queued():
                raise ApiError("refused", f"run {run.run_id} is {run.status}, not queued on {request.instrument}")
            if request.action == "remove":
                queue.abort(run)
            else:
                self.submissions.reorder([queued.run_id for queued in queue.move(run, request.position)])
        return {"instrument": request.instrument, "queued": [run.run_id for run in queue.queued()],
                "current_run": queue.current.run_id if queue.current else None}

    def shutdown(self, params: dict[str, Any]) -> dict[str, Any]:
        """Ask the daemon to stop as on SIGTERM: runs are aborted safely, files closed, the process exits 0."""
        _parse(_Params, params)
        self.shutdown_requested.set()
        return {"shutting_down": True}

    def fetch(self, params: dict[str, Any]) -> dict[str, Any]:
        """Samples of a run from block ``from_seq`` on, as the stream carried them (for gap repair)."""
        request = _parse(FetchParams, params)
        max_samples = request.max_samples if request.binary else min(request.max_samples, MAX_JSON_FETCH_SAMPLES)
        with self._lock:
            run = self.runs.get(request.run_id)
        path = self.data_dir / f"{request.run_id}.h5"
        if run is None and not path.exists():  # ended without a file (see submissions), or unknown
            return _no_blocks(request.run_id, self._run_record(request.run_id)["status"], complete=True)
        runfile = run.runfile if run is not None else None
        status = run.status if run is not None else None  # read before the blocks: a final status means every block is on disk
        # a run in a host: the host answers from its writer (the record may not know yet that the run started)
        hosted = self.hosts.fetch(run, request.from_seq, max_samples) if runfile is None and run is not None and status not in FINAL_STATUSES \
            and self.hosts is not None else None
        if run is not None and runfile is None and hosted is None and (status == RunStatus.QUEUED or not path.exists()):
            return _no_blocks(run.run_id, status, complete=status in FINAL_STATUSES)
        if runfile is not None:
            blocks, n_blocks = runfile.read_blocks(request.from_seq, max_samples)
        elif hosted is not None:
            blocks, n_blocks = hosted
        else:  # a closed file (or, when its host did not answer, what it flushed so far)
            try:
                with RunFileReader(path) as closed:
                    if status is None:
                        status = RunStatus.RECOVERING if request.run_id in self.recovering else RunStatus(closed.attrs["status"])
                    blocks, n_blocks = closed.blocks(request.from_seq, max_samples)
            except (OSError, KeyError, ValueError, RuntimeError) as exc:
                raise ApiError("unreadable", f"the run file {path} cannot be read: {exc}") from None
        next_seq = blocks[-1].seq + 1 if blocks else request.from_seq
        reply = {"run_id": request.run_id, "status": status, "n_blocks": n_blocks, "complete": status in FINAL_STATUSES and next_seq >= n_blocks}
        if request.packed:
            reply["blocks"] = blocks.described
            return Framed(reply, [memoryview(frame) for frame in blocks.frames])
        frames: list[bytes | memoryview] = []  # binary: each column one frame, referred to by its index

        def column(values: np.ndarray) -> list[float] | int:
            if not request.binary:
                return values.tolist()
            frames.append(memoryview(np.ascontiguousarray(values, dtype="<f8")))
            return len(frames) - 1

        reply["blocks"] = [{"seq": b.seq, "offset": b.offset, "t0": b.t0, "units": dict(b.units),
                            "columns": {name: column(values) for name, values in b.columns.items()}} for b in blocks]
        return Framed(reply, frames) if request.binary else reply

    # --- helpers ----------------------------------------------------------------------------
    def _file_record(self, path: Path) -> dict[str, Any]:
        """A run of an earlier session, from its file (``recovering`` while start-up recovery has
        it; ``unreadable`` with the reason when no HDF5 reader opens it, e.g. a file a version of
        echemd before crash-safe transitions left behind)."""
        try:
            return _file_record(path, recovering=path.stem in self.recovering)
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            log.warning("cannot read %s: %s", path, exc)
            return {"run_id": path.stem, "status": RunStatus.UNREADABLE.value, "file": str(path), "started": "", "finished": "", "n_samples": 0,
                    "result": None, "summary": "", "error": f"the run file cannot be read: {exc}"}

    def _runs(self) -> list[Run]:
        with self._lock:
            return list(self.runs.values())

    def _run(self, run_id: str) -> Run:
        with self._lock:
            run = self.runs.get(run_id)
        if run is None:
            raise ApiError("unknown_run", f"no run {run_id!r} in this daemon session")
        return run

    def _run_record(self, run_id: str) -> dict[str, Any]:
        with self._lock:
            run = self.runs.get(run_id)
        if run is not None:
            return run.record()
        path = self.data_dir / f"{run_id}.h5"
        if path.exists():
            return self._file_record(path)
        submission = self.submissions.get(run_id)
        if submission is None:
            raise ApiError("unknown_run", f"no run {run_id!r}")
        return _submission_record(submission, self.data_dir)


def _host_count(config: DaemonConfig) -> int:
    """How many instrument hosts: as configured, by default one per core; never more than one per instrument."""
    wanted = config.instrument_hosts if config.instrument_hosts is not None else (os.cpu_count() or 1)
    return min(wanted, len(config.instruments))


def _no_blocks(run_id: str, status: str, complete: bool) -> dict[str, Any]:
    """The fetch reply for a run without a run file (not started yet, or ended before it had one)."""
    return {"run_id": run_id, "status": status, "n_blocks": 0, "complete": complete, "blocks": []}


def _submission_record(submission: SubmissionRecord, data_dir: Path) -> dict[str, Any]:
    """A run that ended without a run file, as the control API reports it."""
    return {
        "run_id": submission.run_id,
        "protocol": submission.protocol,
        "instrument": submission.instrument,
        "parameters": submission.parameters,
        "metadata": submission.metadata,
        "status": submission.status,
        "submitted": submission.submitted,
        "started": "",
        "finished": submission.finished,
        "file": str(data_dir / f"{submission.run_id}.h5"),
        "n_samples": 0,
        "result": None,
        "summary": "",
        "error": submission.error,
    }


def _file_record(path: Path, recovering: bool = False) -> dict[str, Any]:
    attrs = read_attrs(path)
    return {
        "run_id": attrs["run_id"],
        "protocol": attrs["protocol"],
        "instrument": attrs["instrument"],
        "parameters": json.loads(attrs.get("parameters", "{}")),
        "metadata": json.loads(attrs.get("metadata", "{}")),
        "status": RunStatus.RECOVERING.value if recovering else str(attrs["status"]),
        "started": attrs["started"],
        "finished": attrs["finished"],
        "file": str(path),
        "n_samples": attrs["n_samples"],
        "result": attrs["result"],
        "summary": protocol.presentation.summary_line(attrs["result"]) if (protocol := PROTOCOLS.get(attrs["protocol"])) else "",
        "error": attrs.get("error", ""),
    }


def _parse(model: type[BaseModel], params: dict[str, Any]) -> Any:
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise ApiError("invalid_params", f"invalid params: {_summary(exc)}", _details(exc)) from None


def _details(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"field": ".".join(str(part) for part in e["loc"]) or "(top level)", "message": e["msg"]} for e in exc.errors()]


def _summary(exc: ValidationError) -> str:
    return "; ".join(f"{d['field']}: {d['message']}" for d in _details(exc))


