"""The link between the daemon and its instrument hosts: one JSON object per ZeroMQ message,
``{"kind": ..., ...}`` (a ROUTER socket in the daemon, a DEALER in each host, whose identity is the
host's name).  Nothing else passes between them: a host gets its instruments' configuration over
the link and pushes its data stream to the daemon's ingest endpoint, so a host could as well run
on another machine.  Where the link is TCP its sockets are CURVE, with keys made at each daemon
start (:class:`LinkCurve`): no one else can pose as a host or push data into the stream.

host -> daemon
  ``hello {pid}``; ``ready {connected: {instrument: bool}}`` once its instruments are opened;
  ``beat {connected}`` every BEAT_S; ``progress {runs: {run_id: snapshot}}`` when a running run
  changed (status, samples, step); ``alert {run_id, trigger, message}``; ``ended {run_id, status,
  result, error, in_file, ...snapshot}``, answered by ``ack {run_id}`` once the daemon's record says
  so (only then does the host publish the final status: a client that sees it finds the record).
daemon -> host
  ``setup {instruments, files, version, sim_speed, ingest, data_dir}``; ``start {run}``;
  ``control {run_id, abort, reason, status, pause}``; ``beat {}``; ``stop {reason}``;
  ``fetch {request, run_id, from_seq, max_samples}``, answered by ``fetched {request, run_id,
  n_blocks, blocks}`` followed by the blocks' columns packed as a client's binary fetch gets them
  (one frame per column name, little-endian float64: stream.PackedBlocks), or
  ``fetched {request, missing: true}`` when the host no longer runs that run (its file is complete).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from echemd.config.models import RunLimits
from echemd.daemon.run import Run
from echemd.daemon.security import ClientKeys, ZapHandler, serve_curve
from echemd.daemon.stream import PackedBlocks
from echemd.protocols import PROTOCOLS

#: How often each side tells the other it is alive, s.
BEAT_S = 0.2
#: A host not heard from for this long is taken for hung: killed and restarted, s.
HOST_SILENT_S = 5.0
#: A host that has not heard from its daemon for this long gives up (its runs end interrupted), s.
DAEMON_SILENT_S = 3.0
#: How long a host waits for the daemon to write down a run's end before it publishes it, s.
ACK_TIMEOUT_S = 10.0
#: How long the daemon waits for a host's answer to a fetch before it reads the file instead, s.
FETCH_TIMEOUT_S = 10.0


#: The ZAP domain of the daemon's sockets that face its hosts (the link and the ingest).
ZAP_DOMAIN = "echemd-hosts"
#: The environment variable a host finds its CURVE keys in (never its arguments, which any local
#: user can read; a process's environment only its owner can).
KEYS_VARIABLE = "ECHEMD_HOST_KEYS"


class LinkCurve:
    """CURVE on a TCP host link: a key pair for the daemon and one its hosts share, made at each
    daemon start and never written down.  The daemon's link and ingest sockets are CURVE servers
    whose ZAP handler admits the hosts' key only; a host gets its keys (not the daemon's secret) in
    its environment.  Over TCP on loopback (Windows, where there are no ipc sockets) this keeps
    other local users out, as the private socket folder does on POSIX; it is also what a host on
    another machine would need."""

    def __init__(self, zap: ZapHandler) -> None:
        self.public, self.secret = zmq.curve_keypair()
        host_public, host_secret = zmq.curve_keypair()
        self.hosts = ClientKeys(self.public, host_public, host_secret)
        zap.admit(ZAP_DOMAIN, self)

    def callback(self, domain: str, client_key: bytes) -> bool:
        """(ZAP) only the hosts' key is admitted."""
        return client_key == self.hosts.public

    def apply(self, socket: zmq.Socket) -> None:
        """Make ``socket`` (not yet bound) a CURVE server for the hosts."""
        serve_curve(socket, self.public, self.secret, ZAP_DOMAIN)

    def environment(self) -> dict[str, str]:
        """What to add to a host's environment for it to find its keys."""
        keys = self.hosts
        return {KEYS_VARIABLE: json.dumps({"server": keys.server_public.decode(), "public": keys.public.decode(), "secret": keys.secret.decode()})}


def keys_from_environment() -> ClientKeys | None:
    """(In a host) its link keys, taken out of the environment (its children do not inherit them);
    None when its link is not CURVE."""
    raw = os.environ.pop(KEYS_VARIABLE, None)
    if raw is None:
        return None
    keys = json.loads(raw)
    return ClientKeys(keys["server"].encode(), keys["public"].encode(), keys["secret"].encode())


def encode(kind: str, **fields: Any) -> bytes:
    return json.dumps({"kind": kind, **fields}).encode()


def decode(frame: bytes) -> dict[str, Any]:
    return json.loads(frame)


def run_message(run: Run) -> dict[str, Any]:
    """What a host needs to execute ``run``."""
    return {"run_id": run.run_id, "protocol": run.protocol.name, "instrument": run.instrument,
            "parameters": run.parameters.model_dump(mode="json"), "file": str(run.file), "metadata": run.metadata,
            "limits": run.limits.model_dump(exclude_none=True) if run.limits else None}


def run_from_message(message: dict[str, Any]) -> Run:
    """The host's Run for a ``start`` message's run (validated again: the same models, the same result)."""
    protocol = PROTOCOLS[message["protocol"]]
    return Run(message["run_id"], protocol, message["instrument"], protocol.parameters.model_validate(message["parameters"]),
               Path(message["file"]), metadata=message["metadata"],
               limits=RunLimits.model_validate(message["limits"]) if message["limits"] else None)


def snapshot(run: Run) -> dict[str, Any]:
    """Where a running run stands, as the host tells the daemon."""
    return {"status": run.status.value, "started": run.started, "n_samples": run.n_samples, "steps_started": run.steps_started,
            "step": run.step_label, "status_seq": run.status_seq}


def apply_snapshot(run: Run, state: dict[str, Any]) -> None:
    """Bring the daemon's record of ``run`` to where its host says it stands."""
    if not run.done.is_set():
        run.move_to(state["status"])
    run.started = state["started"]
    run.samples_reported = state["n_samples"]
    run.steps_started = state["steps_started"]
    run.step_label = state["step"]
    run.status_seq = max(run.status_seq, state["status_seq"])


def blocks_message(request: int, blocks: PackedBlocks, n_blocks: int) -> list[bytes | np.ndarray]:
    """A ``fetched`` answer: its JSON frame, then the blocks' frames (stream.PackedBlocks)."""
    return [encode("fetched", request=request, run_id=blocks.run_id, n_blocks=n_blocks, blocks=blocks.described), *blocks.frames]


def blocks_from_message(message: dict[str, Any], frames: list[bytes]) -> PackedBlocks:
    return PackedBlocks(message["run_id"], message["blocks"], frames)
