"""Hand ZeroMQ messages from any thread to the one thread (or libzmq proxy) that owns a socket.

ZeroMQ sockets are not thread-safe.  Each sending thread gets its own PUSH socket, connected to
one inproc PULL socket (:attr:`Outbox.pull`) that the owner polls or proxies; one thread's
messages keep their order.  Messages that must keep their order although more than one thread
sends them (a run's: its runner's thread, and the acquisition loop while it reads the run's
instrument) go in a *lane*: a PUSH socket of their own, which one thread at a time uses (a
socket may move between threads that synchronize, ZeroMQ's rule).  Messages sent on a socket that
is then closed are still delivered.
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
        self._senders: list[tuple[zmq.Socket, list[int]]] = []  # every open socket
        self._lanes: dict[str, tuple[zmq.Socket, list[int]]] = {}
        self._frames_of_ended_lanes = 0
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def frames_sent(self) -> int:
        """Frames every thread handed over so far."""
        with self._lock:
            return self._frames_of_ended_lanes + sum(count[0] for _, count in self._senders)

    def send(self, frames: list[bytes | memoryview], lane: str | None = None, copy: bool = True) -> bool:
        """Hand ``frames`` (one message) over, in ``lane`` when given (its messages keep their
        order, whichever thread sends them: one at a time, each having waited for the one before);
        False (and logged) when the owner took none for SEND_TIMEOUT_MS.  ``copy=False``: large
        frames are handed over without a copy (their buffers must not change until sent)."""
        if lane is None:
            sender = getattr(self._local, "sender", None)
            if sender is None:
                sender = self._local.sender = self._new_sender()
        else:
            with self._lock:
                sender = self._lanes.get(lane)
            if sender is None:
                sender = self._new_sender()
                with self._lock:
                    self._lanes[lane] = sender
        try:
            sender[0].send_multipart(frames, copy=copy)
        except zmq.ZMQError as exc:
            log.error("could not hand over a message (%s): %s", frames[0][:40].decode(errors="replace"), exc)
            return False
        sender[1][0] += len(frames)
        return True

    def end_lane(self, lane: str) -> None:
        """Close ``lane``'s socket (what was sent in it is still delivered; a later send opens it again)."""
        with self._lock:
            sender = self._lanes.pop(lane, None)
            if sender is not None:
                self._senders.remove(sender)
                self._frames_of_ended_lanes += sender[1][0]
        if sender is not None:
            sender[0].close()

    def _new_sender(self) -> tuple[zmq.Socket, list[int]]:
        socket = self._context.socket(zmq.PUSH)
        socket.setsockopt(zmq.SNDHWM, 100_000)
        socket.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
        socket.connect(self.endpoint)
        sender = (socket, [0])
        with self._lock:
            self._senders.append(sender)
        return sender

    def close(self) -> None:
        with self._lock:
            for socket, _ in self._senders:
                socket.close(linger=0)
            self._senders.clear()
            self._lanes.clear()
        self.pull.close(linger=0)
