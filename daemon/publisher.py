"""The daemon's ZeroMQ PUB socket, fed by every worker thread without a Python thread in between.

Each thread that publishes gets its own PUSH socket on an inproc queue; libzmq's proxy (one thread,
in C, outside the GIL) forwards what arrives to the PUB socket.  A worker's message therefore
leaves as soon as the worker sends it, even while other threads keep the interpreter busy: with
dozens of channels a Python forwarding thread would wait its turn for the GIL and add latency.
Messages of one run come from its worker thread only, so they keep their order.
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

from echemd.daemon.stream import DataBlock, encode_data, encode_heartbeat, encode_notice

log = logging.getLogger(__name__)
HEARTBEAT_INTERVAL_S = 1.0
#: How long a worker may wait to hand a message to the proxy before it is dropped (the stream's
#: sequence numbers show the gap and fetch repairs it), ms.
SEND_TIMEOUT_MS = 2000
_publishers = itertools.count()


class Publisher:
    """Publishes data blocks, events and status changes of runs, and a heartbeat about once a second."""

    def __init__(self, context: zmq.Context, endpoint: str, high_water_mark: int = 10_000, secure=None) -> None:
        self._context = context
        self._socket = context.socket(zmq.PUB)
        if secure is not None:
            secure.apply(self._socket)
        self._socket.setsockopt(zmq.SNDHWM, high_water_mark)
        self._socket.setsockopt(zmq.LINGER, 500)
        bind_or_close(self._socket, endpoint)
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        name = next(_publishers)
        self._queue_endpoint = f"inproc://echemd-publish-{name}"
        self._incoming = context.socket(zmq.PULL)
        self._incoming.bind(self._queue_endpoint)
        control = f"inproc://echemd-publish-control-{name}"
        self._control = context.socket(zmq.PAIR)
        self._control.bind(control)
        proxy_control = context.socket(zmq.PAIR)
        proxy_control.connect(control)
        self._senders: list[_Sender] = []
        self._senders_lock = threading.Lock()
        self._local = threading.local()
        self._proxy = threading.Thread(target=self._forward, args=(proxy_control,), name="echemd-publisher", daemon=True)
        self._proxy.start()
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="echemd-heartbeat", daemon=True)
        self._heartbeat.start()

    def data(self, block: DataBlock) -> None:
        self._send(encode_data(block))

    def notice(self, run_id: str, kind: str, header: dict[str, Any]) -> None:
        self._send(encode_notice(run_id, kind, header))

    def close(self) -> None:
        """Forward what was sent, then close the sockets (a second call does nothing)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._heartbeat.join(timeout=5)
        self._drain(timeout_s=2.0)
        self._control.send(b"TERMINATE")
        self._proxy.join(timeout=5)
        with self._senders_lock:
            for sender in self._senders:
                sender.socket.close(linger=0)
        for socket in (self._control, self._incoming, self._socket):
            socket.close()

    def _send(self, message: list[bytes]) -> None:
        sender = getattr(self._local, "sender", None)
        if sender is None:
            sender = self._local.sender = _Sender(self._context, self._queue_endpoint)
            with self._senders_lock:
                self._senders.append(sender)
        try:
            sender.socket.send_multipart(message)
            sender.frames += len(message)
        except zmq.ZMQError as exc:  # the proxy is gone or stuck: the stream shows a gap, the file has it all
            log.error("publisher could not forward a message on %s: %s", message[0].decode(errors="replace"), exc)

    def _forward(self, control: zmq.Socket) -> None:
        try:
            zmq.proxy_steerable(self._incoming, self._socket, None, control)
        except zmq.ZMQError as exc:  # pragma: no cover - context torn down under us
            log.error("publisher proxy stopped: %s", exc)
        finally:
            control.close()

    def _drain(self, timeout_s: float) -> None:
        """Wait until the proxy has taken every frame the senders handed it."""
        with self._senders_lock:
            sent = sum(sender.frames for sender in self._senders)
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
            self._send(encode_heartbeat({"time": time.time(), "pid": os.getpid()}))
            self._stop.wait(HEARTBEAT_INTERVAL_S)


class _Sender:
    """One publishing thread's PUSH socket into the proxy, and the frames it sent."""

    def __init__(self, context: zmq.Context, endpoint: str) -> None:
        self.socket = context.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.SNDHWM, 100_000)
        self.socket.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
        self.socket.connect(endpoint)
        self.frames = 0
