"""Hand ZeroMQ messages from any thread to the one thread (or libzmq proxy) that owns a socket.

ZeroMQ sockets are not thread-safe.  Each sending thread gets its own PUSH socket, connected to
one inproc PULL socket (:attr:`Outbox.pull`) that the owner polls or proxies; one thread's
messages keep their order.
"""

from __future__ import annotations

import itertools
import logging
import threading

import zmq

log = logging.getLogger(__name__)
#: How long a thread may wait to hand a message over before it is dropped, ms.
SEND_TIMEOUT_MS = 2000
_outboxes = itertools.count()


class Outbox:
    def __init__(self, context: zmq.Context, name: str) -> None:
        self._context = context
        self.endpoint = f"inproc://echemd-{name}-{next(_outboxes)}"
        self.pull = context.socket(zmq.PULL)
        self.pull.bind(self.endpoint)
        self._senders: list[tuple[zmq.Socket, list[int]]] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def frames_sent(self) -> int:
        """Frames every thread handed over so far."""
        with self._lock:
            return sum(count[0] for _, count in self._senders)

    def send(self, frames: list[bytes]) -> bool:
        """Hand ``frames`` (one message) over; False (and logged) when the owner took none for
        SEND_TIMEOUT_MS."""
        sender = getattr(self._local, "sender", None)
        if sender is None:
            socket = self._context.socket(zmq.PUSH)
            socket.setsockopt(zmq.SNDHWM, 100_000)
            socket.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
            socket.connect(self.endpoint)
            sender = self._local.sender = (socket, [0])
            with self._lock:
                self._senders.append(sender)
        try:
            sender[0].send_multipart(frames)
        except zmq.ZMQError as exc:
            log.error("could not hand over a message (%s): %s", frames[0][:40].decode(errors="replace"), exc)
            return False
        sender[1][0] += len(frames)
        return True

    def close(self) -> None:
        with self._lock:
            for socket, _ in self._senders:
                socket.close(linger=0)
            self._senders.clear()
        self.pull.close(linger=0)
