"""An instrument host: a process that owns some of the daemon's instruments and runs their runs.

``python -m echemd.daemon.host --link ENDPOINT --name NAME`` (the daemon starts its hosts itself).
The host says hello on the daemon's link (host_link.py), gets its instruments' configuration,
opens them, and then runs what the daemon starts on them: a thread per instrument with its
InstrumentRunner, one acquisition loop reading their polled acquisitions (acquisition_loop.py),
one run file writer for the process, and a publisher that pushes the stream to the daemon.
Several hosts use several cores: each is an interpreter of its own.

When the daemon goes away (its process ended, or nothing heard from it for DAEMON_SILENT_S) or
asks the host to stop, every running run stops (within 0.1 s), its instrument goes to its safe
state and its file closes (``interrupted`` when the daemon was lost, ``aborted: daemon shutdown``
when it stopped); then the host exits.  Ctrl-C in the daemon's terminal is the daemon's business:
the host ignores SIGINT; SIGTERM stops it as the daemon's ``stop`` would.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
import time
from typing import Any

import zmq
from pydantic import TypeAdapter

from echemd.config.models import InstrumentConfig
from echemd.daemon import host_link
from echemd.daemon.acquisition_loop import AcquisitionLoop
from echemd.daemon.folder_lock import hold_as_host
from echemd.daemon.host_link import ACK_TIMEOUT_S, BEAT_S, DAEMON_SILENT_S, encode
from echemd.daemon.outbox import Outbox
from echemd.daemon.publisher import Publisher
from echemd.daemon.recorder import publish_status
from echemd.daemon.run import Run
from echemd.daemon.runfile import RunFileSettings
from echemd.daemon.runner import InstrumentRunner
from echemd.daemon.security import ClientKeys
from echemd.daemon.vocabulary import RunStatus
from echemd.drivers.registry import make_instrument

log = logging.getLogger(__name__)
#: How long a host waits for its setup after saying hello, s.
SETUP_TIMEOUT_S = 60.0
#: How long a stopping host waits for its runs to end before it exits anyway, s.
STOP_TIMEOUT_S = 30.0
INSTRUMENT_CONFIG = TypeAdapter(InstrumentConfig)


class InstrumentHost:
    def __init__(self, link_endpoint: str, name: str, keys: ClientKeys | None = None) -> None:
        """``keys``: the link's CURVE keys, where it has them (host_link.LinkCurve)."""
        self.name = name
        self.context = zmq.Context()
        self.link = self.context.socket(zmq.DEALER)
        if keys is not None:
            keys.apply(self.link)
        self.link.setsockopt_string(zmq.IDENTITY, name)
        self.link.setsockopt(zmq.LINGER, 2000)
        self.link.connect(link_endpoint)
        self.outbox = Outbox(self.context, "host-link")
        self.parent_pid = os.getppid()
        self.runs: dict[str, Run] = {}
        self.acks: dict[str, threading.Event] = {}
        self.daemon_lost = False
        self.stop_reason = ""
        self.last_heard = time.monotonic()
        self.link.send(encode("hello", pid=os.getpid()))
        setup = self._wait_for_setup()
        self._lock_file = hold_as_host(setup["data_dir"])
        self.publisher = Publisher.to_daemon(self.context, setup["ingest"], keys)
        files = RunFileSettings(**setup["files"])
        self.acquisition_loop = AcquisitionLoop()
        self.runners: dict[str, InstrumentRunner] = {}
        self.inboxes: dict[str, queue.SimpleQueue[Run | None]] = {}
        self.threads: list[threading.Thread] = []
        for raw in setup["instruments"]:
            config = INSTRUMENT_CONFIG.validate_python(raw)
            runner = InstrumentRunner(make_instrument(config, setup["sim_speed"]), config.limits, self.publisher, files, setup["version"],
                                      ended=self._ended, loop=self.acquisition_loop, alert=self._alert)
            self.runners[config.name] = runner
            self.inboxes[config.name] = inbox = queue.SimpleQueue()
            thread = threading.Thread(target=self._serve_instrument, args=(runner, inbox), name=f"echemd-runner-{config.name}", daemon=True)
            thread.start()
            self.threads.append(thread)
        _load_what_runs_need()
        self.link.send(encode("ready", connected=self._connected()))

    def _wait_for_setup(self) -> dict[str, Any]:
        if not self.link.poll(SETUP_TIMEOUT_S * 1000):
            raise RuntimeError(f"no setup from the daemon within {SETUP_TIMEOUT_S:g} s")
        message = host_link.decode(self.link.recv())
        if message["kind"] != "setup":
            raise RuntimeError(f"expected the daemon's setup, got {message['kind']!r}")
        return message

    def _connected(self) -> dict[str, bool]:
        return {name: runner.connected for name, runner in self.runners.items()}

    # --- runner threads ------------------------------------------------------------------------
    def _serve_instrument(self, runner: InstrumentRunner, inbox: "queue.SimpleQueue[Run | None]") -> None:
        while (run := inbox.get()) is not None:
            runner.execute(run)

    def _ended(self, run: Run, status: RunStatus, result: dict[str, Any] | None, error: str, in_file: bool) -> None:
        """(A runner thread) the run ended: the daemon writes it down, then the stream says so."""
        ack = self.acks[run.run_id] = threading.Event()
        self.outbox.send([encode("ended", run_id=run.run_id, result=result, error=error, in_file=in_file, finished=run.finished,
                                 **host_link.snapshot(run))], lane=run.run_id)  # (the snapshot's status is the run's final one)
        self.outbox.end_lane(run.run_id)
        if not self.daemon_lost:
            ack.wait(ACK_TIMEOUT_S)
        publish_status(self.publisher, run)
        self.runs.pop(run.run_id, None)
        self.acks.pop(run.run_id, None)

    def _alert(self, trigger: str, run: Run, message: str) -> None:
        """(The runner's thread, or the acquisition loop's: the run's lane keeps the alerts before its end.)"""
        self.outbox.send([encode("alert", run_id=run.run_id, trigger=trigger, message=message)], lane=run.run_id)

    # --- the link --------------------------------------------------------------------------------
    def serve(self) -> None:
        """Answer the daemon until it says stop or is lost; then end the runs and exit the process."""
        poller = zmq.Poller()
        poller.register(self.link, zmq.POLLIN)
        poller.register(self.outbox.pull, zmq.POLLIN)
        reported: dict[str, dict[str, Any]] = {}
        next_beat = time.monotonic()
        deadline = None  # once stopping: when to give up waiting for the runs
        while True:
            ready = dict(poller.poll(BEAT_S * 500))
            if self.link in ready:
                self._receive(host_link.decode(self.link.recv()))
            if self.outbox.pull in ready:
                frames = self.outbox.pull.recv_multipart()
                if not self.daemon_lost:
                    self.link.send_multipart(frames)
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + BEAT_S
                if not self.daemon_lost:
                    self.link.send(encode("beat", connected=self._connected()))
                    reported = self._report_progress(reported)
                if not self.stop_reason and (os.getppid() != self.parent_pid or now - self.last_heard > DAEMON_SILENT_S):
                    self._stop("the daemon was lost (its process ended or stopped answering): the instrument was put in its safe state",
                               RunStatus.INTERRUPTED, lost=True)
            if self.stop_reason:
                deadline = deadline or now + STOP_TIMEOUT_S
                if not any(thread.is_alive() for thread in self.threads) and not self.outbox.pull.poll(0):
                    break
                if now > deadline:
                    log.error("host %s: runs still running %g s after stop; exiting", self.name, STOP_TIMEOUT_S)
                    break
        for runner in self.runners.values():
            runner.close()
        self.acquisition_loop.close()
        if not self.daemon_lost:  # (when it is lost nobody takes the stream any more: it could wait forever)
            self.publisher.close()  # the last statuses reach the daemon
            self.link.close(linger=1000)
        logging.shutdown()
        os._exit(0)  # (the files are closed; the interpreter's own teardown would only make the daemon wait)

    def _receive(self, message: dict[str, Any]) -> None:
        self.last_heard = time.monotonic()
        kind = message["kind"]
        if kind == "start":
            if self.stop_reason:  # (the daemon stops its queues before its hosts: not expected)
                log.error("host %s: run %s started while stopping: ignored", self.name, message["run"]["run_id"])
                return
            run = host_link.run_from_message(message["run"])
            self.runs[run.run_id] = run
            self.inboxes[run.instrument].put(run)
        elif kind == "control":
            run = self.runs.get(message["run_id"])
            if run is not None:
                _apply_control(run, message)
        elif kind == "ack":
            ack = self.acks.get(message["run_id"])
            if ack is not None:
                ack.set()
        elif kind == "fetch":
            run = self.runs.get(message["run_id"])
            runfile = run.runfile if run is not None else None
            if runfile is None:
                self.link.send(encode("fetched", request=message["request"], missing=True))
            else:  # (from the writer's memory: what it has not flushed yet too)
                blocks, n_blocks = runfile.read_blocks(message["from_seq"], message["max_samples"])
                self.link.send_multipart(host_link.blocks_message(message["request"], blocks, n_blocks), copy=False)
        elif kind == "stop":
            self._stop(message["reason"], RunStatus.ABORTED)
        elif kind != "beat":
            log.warning("host %s: unknown message %r", self.name, kind)

    def _report_progress(self, reported: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Tell the daemon where each running run stands, when that changed; returns what was told."""
        now = {run_id: host_link.snapshot(run) for run_id, run in list(self.runs.items()) if run.started and not run.done.is_set()}
        changed = {run_id: state for run_id, state in now.items() if reported.get(run_id) != state}
        if changed:
            self.link.send(encode("progress", runs=changed))
        return now

    def _stop(self, reason: str, status: RunStatus, lost: bool = False) -> None:
        """Stop every run (within 0.1 s: safe state, file closed) and take no more."""
        log.warning("host %s stopping: %s", self.name, reason) if lost else log.info("host %s stopping: %s", self.name, reason)
        self.stop_reason = reason
        self.daemon_lost = lost
        for ack in list(self.acks.values()):  # (no daemon to wait for)
            if lost:
                ack.set()
        for run in list(self.runs.values()):
            _apply_control(run, {"abort": True, "reason": reason, "status": status.value, "pause": False})
        for inbox in self.inboxes.values():
            inbox.put(None)


#: Hosts run this much nicer than their daemon: on a saturated machine the daemon's control thread
#: (an abort, a pause) and its stream's proxy get the CPU first and the hosts absorb the wait in
#: larger blocks (2-core machine, 64 channels at 1 kHz: control ping p99 9-15 -> 4.8-5.5 ms, the
#: stream's p99 183-828 -> 179-198 ms; benchmarks/README.md).  No effect on a machine with cores
#: to spare.
HOST_NICENESS = 5

def _load_what_runs_need() -> None:
    """Import every protocol and the detector's filters now, before the host says it is ready (the
    CLI loads them on first use; here a first run would wait ~0.4 s for them)."""
    import scipy.ndimage  # noqa: F401  (streaming.py's running filters)

    from echemd.protocols import PROTOCOLS

    list(PROTOCOLS.values())


def _apply_control(run: Run, message: dict[str, Any]) -> None:
    if message["abort"]:
        run.abort_reason, run.abort_status = message["reason"] or run.abort_reason, RunStatus(message["status"])
        run.abort_requested.set()
    if message["pause"]:
        run.pause_requested.set()
    else:
        run.pause_requested.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m echemd.daemon.host", description="an echemd instrument host (started by the daemon)")
    parser.add_argument("--link", required=True, help="the daemon's host link endpoint")
    parser.add_argument("--name", required=True, help="this host's name")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format=f"%(asctime)s %(levelname)s [{args.name}] %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "nice"):  # (POSIX)
        os.nice(HOST_NICENESS)
    host = InstrumentHost(args.link, args.name, host_link.keys_from_environment())
    signal.signal(signal.SIGTERM, lambda *_: host._stop("aborted: instrument host stopped (SIGTERM)", RunStatus.ABORTED))
    host.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
