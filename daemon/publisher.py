"""The daemon's ZeroMQ PUB socket: one thread owns it; workers hand it messages through a queue."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any

import zmq

from echemd.daemon.stream import DataBlock, encode_data, encode_heartbeat, encode_notice

log = logging.getLogger(__name__)
HEARTBEAT_INTERVAL_S = 1.0
_STOP = object()


class Publisher:
    """Publishes data blocks, events and status changes of runs, and a heartbeat about once a second."""

    def __init__(self, context: zmq.Context, endpoint: str, high_water_mark: int = 10_000, secure=None) -> None:
        self._socket = context.socket(zmq.PUB)
        if secure is not None:
            secure.apply(self._socket)
        self._socket.setsockopt(zmq.SNDHWM, high_water_mark)
        self._socket.setsockopt(zmq.LINGER, 500)
        self._socket.bind(endpoint)
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="echemd-publisher", daemon=True)
        self._thread.start()

    def data(self, block: DataBlock) -> None:
        self._queue.put(encode_data(block))

    def notice(self, run_id: str, kind: str, header: dict[str, Any]) -> None:
        self._queue.put(encode_notice(run_id, kind, header))

    def close(self) -> None:
        """Send what is queued, then close the socket."""
        self._queue.put(_STOP)
        self._thread.join(timeout=5)
        self._socket.close()

    def _loop(self) -> None:
        next_beat = 0.0
        while True:
            now = time.monotonic()
            if now >= next_beat:
                self._socket.send_multipart(encode_heartbeat({"time": time.time(), "pid": os.getpid()}))
                next_beat = now + HEARTBEAT_INTERVAL_S
            try:
                message = self._queue.get(timeout=max(0.0, next_beat - time.monotonic()))
            except queue.Empty:
                continue
            if message is _STOP:
                return
            try:
                self._socket.send_multipart(message)
            except zmq.ZMQError:  # pragma: no cover - socket torn down under us
                log.exception("publisher could not send")
