"""The control socket (ZeroMQ ROUTER): JSON requests in, JSON replies out, one thread owns it.

A request is one frame ``{"id": str, "method": str, "params": {...}}`` (frames a DEALER or REQ
client puts before it are echoed back).  The reply to a request that changed something (submit,
abort, pause, resume, queue, shutdown) and succeeded is remembered for ten minutes under the
client's key, the id as sent, the method and a digest of the parameters: a client that retries the
same request gets it again and nothing runs twice, while a request that differs in any of these is
a new one.  Queries are never remembered (they run again, fresh).  The reply is ``{"id", "ok": true, "result": ...}`` or
``{"id", "ok": false, "error": {"code", "message", "details"}}``.  Nothing a client sends can stop
the loop: malformed requests get an error reply, oversized frames are dropped by ZeroMQ
(MAXMSGSIZE) and handlers' unexpected exceptions become ``internal`` errors.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import socket as stdlib_socket
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


#: Replies remembered for retried requests: how many, how many bytes in all, and for how long, s.
REPLY_CACHE_SIZE, REPLY_CACHE_BYTES, REPLY_CACHE_S = 10_000, 16 << 20, 600.0
#: The methods whose replies are remembered: those that change something must not run twice.
REMEMBERED_METHODS = LOGGED_METHODS
RequestKey = tuple[str, str, str, str]


def request_key(client_key: str, request_id: str | int, method: str, params: dict[str, Any]) -> RequestKey:
    """What makes a retry the same request: the client, the id as sent (5 is not "5"), the method
    and the parameters."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    return client_key, json.dumps(request_id), method, digest


class ReplyCache:
    """Replies by request key, so a retried request is answered again and never executed twice;
    bounded in count, bytes and age."""

    def __init__(self, size: int = REPLY_CACHE_SIZE, max_bytes: int = REPLY_CACHE_BYTES, ttl_s: float = REPLY_CACHE_S) -> None:
        self.size, self.max_bytes, self.ttl_s = size, max_bytes, ttl_s
        self.bytes = 0
        self._replies: OrderedDict[RequestKey, tuple[float, bytes]] = OrderedDict()

    def get(self, key: RequestKey) -> bytes | None:
        entry = self._replies.get(key)
        if entry is None or time.monotonic() - entry[0] > self.ttl_s:
            return None
        return entry[1]

    def put(self, key: RequestKey, reply: bytes) -> None:
        old = self._replies.pop(key, None)
        if old is not None:
            self.bytes -= len(old[1])
        self._replies[key] = (time.monotonic(), reply)
        self.bytes += len(reply)
        while len(self._replies) > self.size or self.bytes > self.max_bytes:
            self.bytes -= len(self._replies.popitem(last=False)[1][1])


def bind_or_close(socket: zmq.Socket, endpoint: str) -> None:
    """Bind ``socket``; if that fails, close it before raising (an open socket would block the
    context's term() forever: a daemon that cannot bind must exit, not hang).  An ``ipc`` path that
    another process is serving is refused as in use: ZeroMQ would silently take it over."""
    try:
        if _ipc_in_use(endpoint):
            raise zmq.ZMQError(errno.EADDRINUSE, f"Address already in use (addr={endpoint!r}: another process serves it)")
        socket.bind(endpoint)
    except zmq.ZMQError:
        socket.close(linger=0)
        raise


def _ipc_in_use(endpoint: str) -> bool:
    """Whether ``endpoint`` is an ipc socket file a live process accepts connections on."""
    path = endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else ""
    if not path or path.startswith("@") or not hasattr(stdlib_socket, "AF_UNIX") or not os.path.exists(path):
        return False
    probe = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
        return True
    except OSError:  # refused: a stale file a crashed daemon left, which binding replaces
        return False
    finally:
        probe.close()


def _not_a_number(name: str) -> float:
    """NaN and Infinity are not JSON, and no parameter of echemd's may be one: refused at the door."""
    raise ValueError(f"{name} is not a number echemd accepts (every number must be finite)")


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
        bind_or_close(self._socket, endpoint)
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
                request = json.loads(body, parse_constant=_not_a_number)
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: bad JSON, or an integer of thousands of digits
                reason = "it nests too deeply" if isinstance(exc, RecursionError) else exc
                raise ApiError("bad_request", f"the request is not JSON: {reason}") from None
            if not isinstance(request, dict):
                raise ApiError("bad_request", "the request must be a JSON object with id, method and params")
            request_id = request.get("id")
            if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
                request_id = None
                raise ApiError("bad_request", "'id' must be a string")
            method, params = request.get("method"), request.get("params", {})
            if not isinstance(method, str):
                raise ApiError("bad_request", "'method' must be a string")
            if not isinstance(params, dict):
                raise ApiError("bad_request", "'params' must be a JSON object")
            key = request_key(client_key, request_id, method, params) if method in REMEMBERED_METHODS else None
            cached = self._cache.get(key) if key is not None else None
            if cached is not None:
                return cached
            level = logging.INFO if method in LOGGED_METHODS else logging.DEBUG
            log.log(level, "request %s %s from %s", request_id, method, client_key)
            reply = {"id": request_id, "ok": True, "result": self._handler(method, params)}
            encoded = json.dumps(reply).encode()
            if key is not None:
                self._cache.put(key, encoded)
            return encoded
        except ApiError as exc:
            reply = {"id": request_id, "ok": False, "error": exc.as_dict()}
        except Exception as exc:
            log.exception("request failed")
            reply = {"id": request_id, "ok": False, "error": ApiError("internal", f"{type(exc).__name__}: {exc}").as_dict()}
        return json.dumps(reply).encode()
