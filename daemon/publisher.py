"""The data stream's publisher, fed by the runs' threads without a Python thread in between.

Each run's messages go in a PUSH socket of its own (its lane), the heartbeat in its thread's, all
on one inproc queue (outbox.py); libzmq's proxy (one thread, in C, outside the GIL) forwards what
arrives to the outgoing socket.  A message therefore leaves as soon as it is sent, even while other
threads keep the interpreter busy: with dozens of channels a Python forwarding thread would wait
its turn for the GIL and add latency.  In the daemon the outgoing socket is the PUB socket clients
subscribe to, and the same proxy takes the instrument hosts' messages (each host's own publisher
pushes them to the daemon's ingest endpoint).  A run's messages come from one process, in its
lane, so they keep their order whichever of the process's threads sends them (its runner's, the
acquisition loop).
"""

from __future__ import annotations

import itertools
import logging
import os
import struct
import threading
import time
from typing import Any

import zmq

from echemd.daemon.control import bind_or_close
from echemd.daemon.outbox import Outbox
from echemd.daemon.security import ClientKeys, SocketSecurity
from echemd.daemon.stream import DataBlock, encode_data, encode_heartbeat, encode_notice

log = logging.getLogger(__name__)
HEARTBEAT_INTERVAL_S = 1.0
_publishers = itertools.count()


class Publisher:
    """Publishes data blocks, events and status changes of runs, and a heartbeat about once a second.

    In the daemon (:meth:`bound`) the proxy feeds the PUB socket clients subscribe to, and takes
    the instrument hosts' messages too, on the ingest endpoint; in an instrument host
    (:meth:`to_daemon`) it feeds a PUSH socket connected to that ingest endpoint: a host's
    messages reach subscribers through the daemon's proxy, in the order the host sent them."""

    def __init__(self, context: zmq.Context, outgoing: zmq.Socket, endpoint: str, heartbeat: bool, ingest_endpoint: str | None = None,
                 ingest_secure: SocketSecurity | None = None) -> None:
        """``outgoing``: the socket the proxy feeds (owned from now on), at ``endpoint``;
        ``ingest_endpoint``: also take messages from other processes there (bound; see
        :attr:`ingest_endpoint`), as a CURVE server when ``ingest_secure`` (its ``apply``) says so
        (the daemon's own threads, over inproc, need no keys)."""
        self.endpoint = endpoint
        self._context = context
        self._socket = outgoing
        name = next(_publishers)
        self._outbox = Outbox(context, "publish")
        self._incoming = self._outbox.pull
        self.ingest_endpoint = ""
        if ingest_endpoint is not None:
            self._incoming.setsockopt(zmq.RCVHWM, 100_000)
            if ingest_secure is not None:
                ingest_secure.apply(self._incoming)
            bind_or_close(self._incoming, ingest_endpoint)
            self.ingest_endpoint = self._incoming.getsockopt_string(zmq.LAST_ENDPOINT)
        control = f"inproc://echemd-publish-control-{name}"
        self._control = context.socket(zmq.PAIR)
        self._control.bind(control)
        proxy_control = context.socket(zmq.PAIR)
        proxy_control.connect(control)
        self._proxy = threading.Thread(target=self._forward, args=(proxy_control,), name="echemd-publisher", daemon=True)
        self._proxy.start()
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="echemd-heartbeat", daemon=True) if heartbeat else None
        if self._heartbeat is not None:
            self._heartbeat.start()

    @classmethod
    def bound(cls, context: zmq.Context, endpoint: str, high_water_mark: int = 10_000, secure: SocketSecurity | None = None,
              ingest_endpoint: str | None = None, ingest_secure: SocketSecurity | None = None) -> "Publisher":
        """The daemon's publisher: a PUB socket bound to ``endpoint`` (raises ZMQError when it
        cannot be), taking the hosts' messages on ``ingest_endpoint``."""
        socket = context.socket(zmq.PUB)
        if secure is not None:
            secure.apply(socket)
        socket.setsockopt(zmq.SNDHWM, high_water_mark)
        socket.setsockopt(zmq.LINGER, 500)
        bind_or_close(socket, endpoint)
        return cls(context, socket, socket.getsockopt_string(zmq.LAST_ENDPOINT), heartbeat=True, ingest_endpoint=ingest_endpoint,
                   ingest_secure=ingest_secure)

    @classmethod
    def to_daemon(cls, context: zmq.Context, ingest_endpoint: str, keys: ClientKeys | None = None) -> "Publisher":
        """An instrument host's publisher: everything goes to the daemon's ``ingest_endpoint``
        (with the host's CURVE ``keys`` where the link has them)."""
        socket = context.socket(zmq.PUSH)
        if keys is not None:
            keys.apply(socket)
        socket.setsockopt(zmq.SNDHWM, 100_000)
        socket.setsockopt(zmq.LINGER, 2000)
        socket.connect(ingest_endpoint)
        return cls(context, socket, ingest_endpoint, heartbeat=False)

    def data(self, block: DataBlock) -> None:
        """(When the proxy is gone or stuck the stream shows a gap: the run file has every sample.)"""
        self._outbox.send(encode_data(block), lane=block.run_id)

    def notice(self, run_id: str, kind: str, header: dict[str, Any], last: bool = False) -> None:
        """Publish a run's notice; ``last``: the run publishes nothing more (its lane closes)."""
        self._outbox.send(encode_notice(run_id, kind, header), lane=run_id)
        if last:
            self._outbox.end_lane(run_id)

    def close(self) -> None:
        """Forward what was sent, then close the sockets (a second call does nothing)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        self._drain(timeout_s=2.0)
        self._control.send(b"TERMINATE")
        self._proxy.join(timeout=5)
        self._outbox.close()
        for socket in (self._control, self._socket):
            socket.close()

    def _forward(self, control: zmq.Socket) -> None:
        try:
            zmq.proxy_steerable(self._incoming, self._socket, None, control)
        except zmq.ZMQError as exc:  # pragma: no cover - context torn down under us
            log.error("publisher proxy stopped: %s", exc)
        finally:
            control.close()

    def _drain(self, timeout_s: float) -> None:
        """Wait until the proxy has taken every frame the senders handed it."""
        sent = self._outbox.frames_sent
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._control.send(b"STATISTICS")
            frontend_frames_in = struct.unpack("=Q", self._control.recv_multipart()[0])[0]
            if frontend_frames_in >= sent:
                return
            time.sleep(0.005)
        log.warning("publisher closed with messages not yet forwarded")

    def _beat(self) -> None:
        while not self._stop.is_set():
            self._outbox.send(encode_heartbeat({"time": time.time(), "pid": os.getpid()}))
            self._stop.wait(HEARTBEAT_INTERVAL_S)

