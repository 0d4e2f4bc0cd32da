"""The control socket (ZeroMQ ROUTER): JSON requests in, JSON replies out, one thread owns it.

Methods that read the disk (``fetch``, ``runs``) run on a small pool of threads, so a large fetch
never holds up other clients' requests; their replies go out through the socket's thread like
every other (replies to one client may then come in another order than its requests: match them
by id).  A reply may carry binary frames after its JSON frame (``fetch`` with ``binary``).

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

import zmq

from echemd.daemon.errors import ApiError
from echemd.daemon.outbox import Outbox
from echemd.daemon.security import SocketSecurity

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 1 << 20
#: Requests that change something are logged at INFO with the client's key; queries at DEBUG.
LOGGED_METHODS = frozenset({"submit", "abort", "pause", "resume", "queue", "shutdown"})
Handler = Callable[[str, dict[str, Any]], Any]


#: Replies remembered for retried requests: how many, how many bytes in all, and for how long, s.
REPLY_CACHE_SIZE, REPLY_CACHE_BYTES, REPLY_CACHE_S = 10_000, 16 << 20, 600.0
#: The methods whose replies are remembered: those that change something must not run twice.
REMEMBERED_METHODS = LOGGED_METHODS
#: Methods that read the disk: answered on the I/O pool, off the socket's thread.
DISK_METHODS = frozenset({"fetch", "runs"})
IO_THREADS = 2
RequestKey = tuple[str, str, str, str]


@dataclass
class Framed:
    """A handler's result that carries binary frames, sent after the JSON reply frame in order
    (the result refers to them by index, 0 = the first after the JSON)."""

    result: Any
    frames: list[bytes | memoryview]


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
    def __init__(self, context: zmq.Context, endpoint: str, handler: Handler, secure: SocketSecurity | None = None) -> None:
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
        self._io = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="echemd-control-io")
        self._answers = Outbox(context, "control-answers")  # the I/O pool's replies, for this socket's thread to send
        self._thread = threading.Thread(target=self._loop, name="echemd-control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._io.shutdown(wait=True, cancel_futures=True)
        self._answers.close()
        self._socket.close()

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._answers.pull, zmq.POLLIN)
        while not self._stop.is_set():
            ready = dict(poller.poll(100))
            if self._answers.pull in ready:  # a reply from the pool: sent as soon as it is ready
                self._send(self._answers.pull.recv_multipart(copy=False))
            if self._socket not in ready:
                continue
            frames = self._socket.recv_multipart(copy=False)
            if len(frames) < 2:
                continue  # no identity: cannot answer
            client_key = frames[-1].get("User-Id") if self._secure else "plaintext loopback"
            identity, *envelope, body = (frame.bytes for frame in frames)
            try:
                request = parse_request(body)
            except ApiError as exc:
                self._send([identity, *envelope, _error(getattr(exc, "request_id", None), exc)])
                continue
            if request[1] in DISK_METHODS:
                self._io.submit(lambda head=[identity, *envelope], r=request, key=client_key: self._answers.send([*head, *self.execute(*r, key)], copy=False))
            else:
                self._send([identity, *envelope, *self.execute(*request, client_key)])

    def _send(self, frames: list[bytes | memoryview]) -> None:
        try:
            self._socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:  # client gone or not reading: never block on one client
            log.warning("dropped a reply: %s", exc)

    def execute(self, request_id: str | int, method: str, params: dict[str, Any], client_key: str) -> list[bytes | memoryview]:
        """Run one parsed request (or answer it from the reply cache); the reply frames.  The
        request is logged with the client's key."""
        try:
            key = request_key(client_key, request_id, method, params) if method in REMEMBERED_METHODS else None
            cached = self._cache.get(key) if key is not None else None
            if cached is not None:
                return [cached]
            level = logging.INFO if method in LOGGED_METHODS else logging.DEBUG
            log.log(level, "request %s %s from %s", request_id, method, client_key)
            result = self._handler(method, params)
            frames = result.frames if isinstance(result, Framed) else []
            encoded = json.dumps({"id": request_id, "ok": True, "result": result.result if isinstance(result, Framed) else result}).encode()
            if key is not None:
                self._cache.put(key, encoded)
            return [encoded, *frames]
        except ApiError as exc:
            return [_error(request_id, exc)]
        except Exception as exc:
            log.exception("request failed")
            return [_error(request_id, ApiError("internal", f"{type(exc).__name__}: {exc}"))]


def parse_request(body: bytes) -> tuple[str | int, str, dict[str, Any]]:
    """(id, method, params) of a request frame; ApiError ``bad_request`` when it is not one."""
    try:
        request = json.loads(body, parse_constant=_not_a_number)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: bad JSON, or an integer of thousands of digits
        reason = "it nests too deeply" if isinstance(exc, RecursionError) else exc
        raise ApiError("bad_request", f"the request is not JSON: {reason}") from None
    if not isinstance(request, dict):
        raise ApiError("bad_request", "the request must be a JSON object with id, method and params")
    request_id = request.get("id")
    if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
        raise ApiError("bad_request", "'id' must be a string")
    method, params = request.get("method"), request.get("params", {})
    if not isinstance(method, str):
        raise BadRequest("'method' must be a string", request_id)
    if not isinstance(params, dict):
        raise BadRequest("'params' must be a JSON object", request_id)
    return request_id, method, params


class BadRequest(ApiError):
    """``bad_request`` for a request whose id could be read: the reply carries it."""

    def __init__(self, message: str, request_id: str | int) -> None:
        super().__init__("bad_request", message)
        self.request_id = request_id


def _error(request_id: str | int | None, error: ApiError) -> bytes:
    return json.dumps({"id": request_id, "ok": False, "error": error.as_dict()}).encode()
