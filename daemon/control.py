"""The control socket (ZeroMQ ROUTER): JSON requests in, JSON replies out, one thread owns it.

A request is one frame ``{"id": str, "method": str, "params": {...}}`` (frames a DEALER or REQ
client puts before it are echoed back).  The reply to a request that succeeded is remembered by
its id for ten minutes: a client that retries (same id) gets it again and nothing runs twice.  The reply is ``{"id", "ok": true, "result": ...}`` or
``{"id", "ok": false, "error": {"code", "message", "details"}}``.  Nothing a client sends can stop
the loop: malformed requests get an error reply, oversized frames are dropped by ZeroMQ
(MAXMSGSIZE) and handlers' unexpected exceptions become ``internal`` errors.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import zmq

from echemd.daemon.errors import ApiError

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 1 << 20
#: Requests that change something are logged at INFO with the client's key; queries at DEBUG.
LOGGED_METHODS = frozenset({"submit", "abort", "pause", "resume", "queue", "shutdown"})
Handler = Callable[[str, dict[str, Any]], Any]


#: Replies remembered for retried requests (by request id), and for how long, s.
REPLY_CACHE_SIZE, REPLY_CACHE_S = 10_000, 600.0


class ReplyCache:
    """Replies by request id, so a retried request is answered again and never executed twice."""

    def __init__(self, size: int = REPLY_CACHE_SIZE, ttl_s: float = REPLY_CACHE_S) -> None:
        self.size, self.ttl_s = size, ttl_s
        self._replies: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def get(self, request_id: str) -> bytes | None:
        entry = self._replies.get(request_id)
        if entry is None or time.monotonic() - entry[0] > self.ttl_s:
            return None
        return entry[1]

    def put(self, request_id: str, reply: bytes) -> None:
        self._replies[request_id] = (time.monotonic(), reply)
        self._replies.move_to_end(request_id)
        while len(self._replies) > self.size:
            self._replies.popitem(last=False)


class ControlServer:
    def __init__(self, context: zmq.Context, endpoint: str, handler: Handler, secure=None) -> None:
        self._handler = handler
        self._cache = ReplyCache()
        self._secure = secure is not None
        self._socket = context.socket(zmq.ROUTER)
        if secure is not None:
            secure.apply(self._socket)
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        self._socket.setsockopt(zmq.LINGER, 500)
        self._socket.setsockopt(zmq.SNDHWM, 10_000)
        self._socket.bind(endpoint)
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="echemd-control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            frames = self._socket.recv_multipart(copy=False)
            if len(frames) < 2:
                continue  # no identity: cannot answer
            client_key = frames[-1].get("User-Id") if self._secure else "plaintext loopback"
            identity, *envelope, body = (frame.bytes for frame in frames)
            reply = self.answer(body, client_key)
            try:
                self._socket.send_multipart([identity, *envelope, reply], flags=zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # client gone or not reading: never block on one client
                log.warning("dropped a reply: %s", exc)

    def answer(self, body: bytes, client_key: str = "") -> bytes:
        """The reply frame to one request frame; the request is logged with the client's key."""
        request_id: Any = None
        try:
            try:
                request = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ApiError("bad_request", f"the request is not JSON: {exc}") from None
            if not isinstance(request, dict):
                raise ApiError("bad_request", "the request must be a JSON object with id, method and params")
            request_id = request.get("id")
            if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
                request_id = None
                raise ApiError("bad_request", "'id' must be a string")
            cached = self._cache.get(str(request_id))
            if cached is not None:
                return cached
            method, params = request.get("method"), request.get("params", {})
            if not isinstance(method, str):
                raise ApiError("bad_request", "'method' must be a string")
            if not isinstance(params, dict):
                raise ApiError("bad_request", "'params' must be a JSON object")
            level = logging.INFO if method in LOGGED_METHODS else logging.DEBUG
            log.log(level, "request %s %s from %s", request_id, method, client_key)
            reply = {"id": request_id, "ok": True, "result": self._handler(method, params)}
            encoded = json.dumps(reply).encode()
            self._cache.put(str(request_id), encoded)
            return encoded
        except ApiError as exc:
            reply = {"id": request_id, "ok": False, "error": exc.as_dict()}
        except Exception as exc:
            log.exception("request failed")
            reply = {"id": request_id, "ok": False, "error": ApiError("internal", f"{type(exc).__name__}: {exc}").as_dict()}
        return json.dumps(reply).encode()
