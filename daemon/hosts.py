"""The daemon's instrument hosts: it starts them, links them, notices when one dies, restarts it.

The instruments are shared out among the hosts (host.py) in the configuration's order, round robin.
The daemon keeps each run's record (status, samples, step) up to date from what its host reports
over the link (host_link.py); each instrument's queue reaches its host through a
:class:`HostedInstrument`, the queue's executor.

A host that dies is noticed within BEAT_S (its process ended) or HOST_SILENT_S (it stopped
answering: it is killed): the runs it was running end ``interrupted`` and their files are
recovered exactly as after a daemon crash, its instruments are offline until it is back, and it
is started again (its new runner puts each instrument in its safe state before anything else).
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from echemd.config.models import InstrumentConfig
from echemd.daemon import host_link
from echemd.daemon.control import bind_or_close
from echemd.daemon.host_link import BEAT_S, FETCH_TIMEOUT_S, HOST_SILENT_S, LinkCurve, encode
from echemd.daemon.instrument_queue import SHUTDOWN
from echemd.daemon.outbox import Outbox
from echemd.daemon.recorder import Alert
from echemd.daemon.run import Run
from echemd.daemon.runner import Ended
from echemd.daemon.runfile import RunFileSettings
from echemd.daemon.security import ZapHandler
from echemd.daemon.stream import PackedBlocks
from echemd.daemon.vocabulary import RunStatus
from echemd.drivers.base import Instrument
from echemd.drivers.registry import make_instrument

log = logging.getLogger(__name__)
#: How long a host may take from its start to having opened its instruments, s.
HOST_START_S = 60.0
#: How long the daemon waits for its hosts to end their runs and exit when it stops, s.
HOST_STOP_S = 40.0
#: The folder of the daemon's and its hosts' sockets, in the data folder.
HOST_SOCKETS = ".echemd-hosts"
#: Longest folder path for them (a Unix socket's whole path must fit in ~107 bytes).
MAX_SOCKET_FOLDER = 90
#: A host that dies this soon after its start died "quickly": its next start waits longer (1, 2, 4 ... 30 s), s.
QUICK_DEATH_S = 10.0
#: Told that a run's host died: (run, why); ends the run and recovers its file.
HostDied = Callable[[Run, str], None]
#: What a host's environment has unless the daemon's says otherwise.  glibc gives every thread that
#: allocates an arena of its own, which keeps what that thread freed: a host's acquisition loop
#: (the blocks) and a runner's thread (the run file's compressed copy when its run ends) each held
#: their own high-water mark, 12-21 MB more resident memory after a 10-million-sample run
#: (benchmarks/memory_filesize.py).  One arena: a host's threads take turns on one interpreter anyway.
#: (Other C libraries ignore the variable.)
HOST_ENVIRONMENT = {"MALLOC_ARENA_MAX": "1"}


#: Whether the daemon and its hosts meet on ipc sockets (POSIX); elsewhere TCP on loopback, with CURVE.
IPC_LINK = os.name == "posix"


class PrivateSockets:
    """Where the daemon and its hosts meet, so that no other local user can pose as a host or push
    data into the stream: on POSIX, ipc sockets in a folder only this user can enter (mode 0700);
    elsewhere TCP on loopback, whose sockets are CURVE (:attr:`curve`).  The folder is
    ``.echemd-hosts`` in the data folder (the folder lock makes it this daemon's), or a temporary
    one where that path is too long for a socket."""

    def __init__(self, data_dir: Path, zap: ZapHandler) -> None:
        self.data_dir = data_dir
        self.folder: Path | None = None  # (made on first use)
        #: The keys of the link's sockets: None over ipc (the folder keeps others out).
        self.curve = None if IPC_LINK else LinkCurve(zap)

    def endpoint(self, name: str) -> str:
        if self.curve is not None:
            return "tcp://127.0.0.1:*"
        if self.folder is None:
            folder = self.data_dir / HOST_SOCKETS
            if len(str(folder)) <= MAX_SOCKET_FOLDER:
                folder.mkdir(mode=0o700, exist_ok=True)
                folder.chmod(0o700)
                for stale in folder.iterdir():  # (a killed daemon's sockets)
                    stale.unlink(missing_ok=True)
            else:
                folder = Path(tempfile.mkdtemp(prefix="echemd-hosts-"))
            self.folder = folder
        return f"ipc://{self.folder / name}"

    def remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class Host:
    """One host process as the daemon knows it."""

    name: str
    configs: list[InstrumentConfig]
    process: subprocess.Popen | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    connected: dict[str, bool] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)  # started on it and not ended
    last_heard: float = field(default_factory=time.monotonic)
    starts: int = 0  # how many times it was started
    started_at: float = 0.0  # when it was last started (monotonic)
    quick_deaths: int = 0  # deaths in a row within QUICK_DEATH_S of a start: the restarts back off
    failure: str = ""  # why it is not running, when it is not
    lock: threading.Lock = field(default_factory=threading.Lock)


class HostedInstrument:
    """An instrument that lives in a host, as its queue sees it (the queue's Executor)."""

    def __init__(self, pool: "HostPool", host: Host, instrument: Instrument) -> None:
        self.pool = pool
        self.host = host
        self.instrument = instrument  # a copy never opened here: its description and the checks of a submission

    @property
    def state(self) -> str:
        if not self.host.ready.is_set():
            return "offline" if self.host.failure and self.host.process is None else "starting"
        return "idle" if self.host.connected.get(self.instrument.name, False) else "offline"

    def execute(self, run: Run) -> None:
        host = self.host
        deadline = time.monotonic() + HOST_START_S
        while True:
            with host.lock:
                if host.ready.is_set():
                    host.runs[run.run_id] = run
                    break
            if time.monotonic() > deadline or self.pool.closing.is_set():
                error = f"the instrument host {host.name} of {self.instrument.name} is not running: {host.failure or 'it did not start'}"
                run.finish(RunStatus.FAILED, None, error)
                self.pool.ended(run, RunStatus.FAILED, None, error, False)
                return
            host.ready.wait(0.2)
        self.pool.send(host, "start", run=host_link.run_message(run))
        if run.abort_requested.is_set() or run.pause_requested.is_set():  # (asked before it reached the host)
            self.control(run)
        run.done.wait()

    def control(self, run: Run) -> None:
        with self.host.lock:
            if run.run_id not in self.host.runs:
                return  # not on the host (yet): execute() passes the request on
        self.pool.send(self.host, "control", run_id=run.run_id, abort=run.abort_requested.is_set(), reason=run.abort_reason,
                       status=run.abort_status.value, pause=run.pause_requested.is_set())


class HostPool:
    def __init__(self, context: zmq.Context, groups: list[list[InstrumentConfig]], *, files: RunFileSettings, version: str,
                 sim_speed: float | str | None, ingest_endpoint: str, data_dir: Path, ended: Ended, alert: Alert, died: HostDied,
                 sockets: PrivateSockets) -> None:
        """``ended``: told how each run ended (the daemon's record, submissions, alerts); ``alert``:
        raises a run's alert; ``died``: a run's host died under it; ``sockets``: where the link is
        bound (the ingest endpoint, already bound by the publisher, is one of them too)."""
        self.ended, self.alert, self.died = ended, alert, died
        self.closing = threading.Event()
        self._setup = {"files": files.__dict__, "version": version, "sim_speed": sim_speed, "ingest": ingest_endpoint, "data_dir": str(data_dir)}
        self.hosts = {f"host-{k}": Host(f"host-{k}", configs) for k, configs in enumerate(groups)}
        self.instruments = {config.name: HostedInstrument(self, host, make_instrument(config, sim_speed))
                            for host in self.hosts.values() for config in host.configs}
        self._link = context.socket(zmq.ROUTER)
        self._link.setsockopt(zmq.LINGER, 0)
        self._link.setsockopt(zmq.ROUTER_MANDATORY, 1)  # (a message to a host that is gone raises instead of vanishing)
        self.curve = sockets.curve
        if self.curve is not None:
            self.curve.apply(self._link)
        bind_or_close(self._link, sockets.endpoint("link"))
        self.link_endpoint = self._link.getsockopt_string(zmq.LAST_ENDPOINT)
        self._outbox = Outbox(context, "daemon-link")
        self._requests = itertools.count()
        self._fetches: dict[int, tuple[threading.Event, list]] = {}  # request -> (answered, [blocks, n_blocks])
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="echemd-host-link", daemon=True)
        self._thread.start()
        for host in self.hosts.values():  # (they start in the background: their instruments are "starting" until then)
            self._start(host)

    # --- life cycle ------------------------------------------------------------------------------
    def _start(self, host: Host) -> None:
        host.starts += 1
        host.started_at = host.last_heard = time.monotonic()
        host.failure = ""
        command = [sys.executable, "-m", "echemd.daemon.host", "--link", self.link_endpoint, "--name", host.name,
                   "--log-level", logging.getLevelName(logging.getLogger().getEffectiveLevel())]
        environment = {**HOST_ENVIRONMENT, **os.environ, **(self.curve.environment() if self.curve is not None else {})}
        host.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, env=environment)
        log.info("instrument host %s (pid %d): %s", host.name, host.process.pid, ", ".join(config.name for config in host.configs))

    def close(self) -> None:
        """Tell every host to stop (their runs end ``aborted: daemon shutdown`` if any still
        runs), wait for them to exit, and close the link."""
        self.closing.set()
        for host in self.hosts.values():
            if host.ready.is_set():
                self.send(host, "stop", reason=SHUTDOWN)
            elif host.process is not None:  # still starting: no run on it yet
                host.process.terminate()
        deadline = time.monotonic() + HOST_STOP_S
        for host in self.hosts.values():
            if host.process is None:
                continue
            try:
                host.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("instrument host %s did not stop: killed", host.name)
                host.process.kill()
                host.process.wait()
        self._stopped.set()
        self._thread.join(5)
        self._outbox.close()
        self._link.close()

    def fetch(self, run: Run, from_seq: int, max_samples: int) -> tuple[PackedBlocks, int] | None:
        """(Any thread) blocks of a run a host is running, from its writer (what it has not flushed
        too); None when the host no longer runs it (its file is then complete) or does not answer."""
        host = self.instruments[run.instrument].host
        request, answered = next(self._requests), threading.Event()
        self._fetches[request] = (answered, [])
        try:
            self.send(host, "fetch", request=request, run_id=run.run_id, from_seq=from_seq, max_samples=max_samples)
            if not answered.wait(FETCH_TIMEOUT_S):
                log.warning("instrument host %s did not answer a fetch of run %s", host.name, run.run_id)
                return None
            answer = self._fetches[request][1]
            return (answer[0], answer[1]) if answer else None
        finally:
            self._fetches.pop(request, None)

    def send(self, host: Host, kind: str, **fields: Any) -> None:
        """(Any thread) a message to ``host``."""
        self._outbox.send([host.name.encode(), encode(kind, **fields)])

    # --- the link thread -------------------------------------------------------------------------
    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._link, zmq.POLLIN)
        poller.register(self._outbox.pull, zmq.POLLIN)
        next_beat = time.monotonic()
        while not self._stopped.is_set():
            ready = dict(poller.poll(BEAT_S * 250))
            if self._link in ready:
                identity, frame, *frames = self._link.recv_multipart()
                host = self.hosts.get(identity.decode(errors="replace"))
                if host is None:
                    log.warning("host link: a message from an unknown peer %r", identity)
                else:
                    try:
                        self._receive(host, host_link.decode(frame), frames)
                    except Exception:  # pragma: no cover - a bad message must not stop the link
                        log.exception("host link: cannot handle a message of %s", host.name)
            if self._outbox.pull in ready:
                frames = self._outbox.pull.recv_multipart()
                try:
                    self._link.send_multipart(frames)
                except zmq.ZMQError as exc:  # the host is gone: its death is noticed below
                    log.debug("host link: cannot reach %s: %s", frames[0].decode(), exc)
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + BEAT_S
                for host in self.hosts.values():
                    self._watch(host, now)

    def _receive(self, host: Host, message: dict[str, Any], frames: list[bytes]) -> None:
        host.last_heard = time.monotonic()
        kind = message["kind"]
        if kind == "hello":
            self._link.send_multipart([host.name.encode(), encode("setup", instruments=[config.model_dump(mode="json") for config in host.configs],
                                                                  **self._setup)])
        elif kind in ("ready", "beat"):
            host.connected = message["connected"]
            if kind == "ready":
                log.info("instrument host %s ready: %s", host.name, message["connected"])
                host.ready.set()
                if self.closing.is_set():  # (ready as the daemon stops)
                    self._link.send_multipart([host.name.encode(), encode("stop", reason=SHUTDOWN)])
        elif kind == "progress":
            for run_id, state in message["runs"].items():
                run = host.runs.get(run_id)
                if run is not None:
                    host_link.apply_snapshot(run, state)
        elif kind == "alert":
            run = host.runs.get(message["run_id"])
            if run is not None:
                self.alert(message["trigger"], run, message["message"])
        elif kind == "ended":
            with host.lock:
                run = host.runs.pop(message["run_id"], None)
            if run is not None:
                host_link.apply_snapshot(run, message)
                run.runfile = None
                status = RunStatus(message["status"])
                run.finish(status, message["result"], message["error"])
                run.finished = message["finished"] or run.finished
                self.ended(run, status, message["result"], message["error"], message["in_file"], publish=False)
            self._link.send_multipart([host.name.encode(), encode("ack", run_id=message["run_id"])])  # (now the host publishes the end)
        elif kind == "fetched":
            waiting = self._fetches.get(message["request"])
            if waiting is not None:
                if not message.get("missing"):
                    waiting[1].extend([host_link.blocks_from_message(message, frames), message["n_blocks"]])
                waiting[0].set()
        else:
            log.warning("host link: unknown message %r from %s", kind, host.name)

    def _watch(self, host: Host, now: float) -> None:
        """Beat to a ready host; notice a dead or silent one."""
        if host.process is None:
            return
        code = host.process.poll()
        if code is None and now - host.last_heard > (HOST_SILENT_S if host.ready.is_set() else HOST_START_S):
            log.error("instrument host %s silent for %.1f s: killed", host.name, now - host.last_heard)
            host.process.kill()
            code = host.process.wait()
        if code is not None:
            if self.closing.is_set():
                return
            self._lost(host, f"its instrument host {host.name} ended (exit code {code})")
        elif host.ready.is_set():
            try:
                self._link.send_multipart([host.name.encode(), encode("beat")])
            except zmq.ZMQError:
                pass

    def _lost(self, host: Host, why: str) -> None:
        """A host died: its runs end interrupted, and it is started again (in the background)."""
        with host.lock:
            host.ready.clear()
            host.failure = why
            runs, host.runs = list(host.runs.values()), {}
        host.quick_deaths = host.quick_deaths + 1 if time.monotonic() - host.started_at < QUICK_DEATH_S else 0
        delay = min(30.0, 2.0 ** (host.quick_deaths - 1)) if host.quick_deaths else 0.0
        log.error("%s; its runs %s end interrupted; starting it again in %g s", why, [run.run_id for run in runs] or "(none)", delay)

        def replace() -> None:
            for run in runs:
                self.died(run, why)
            if not self.closing.wait(delay):
                self._start(host)

        host.process = None
        threading.Thread(target=replace, name=f"echemd-restart-{host.name}", daemon=True).start()
