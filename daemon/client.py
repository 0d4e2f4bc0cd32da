"""The Python client for scripts: control requests (DEALER) and a lossless run stream (SUB + fetch).

    from echemd.daemon.client import Client
    with Client() as client:
        run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)
        for block in client.subscribe(run_id):          # every sample once, in order
            print(block.offset, block.columns["voltage_V"][-1])
        print(client.result(run_id)["result"]["ccd_mA_cm2"])
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import zmq

from echemd.daemon.errors import EchemdError
from echemd.daemon.vocabulary import FINAL_STATUSES
from echemd.daemon.security import ClientKeys
from echemd.daemon.stream import HEARTBEAT_TOPIC, DataBlock, PackedBlocks, decode, run_topic

log = logging.getLogger(__name__)

DEFAULT_CONTROL_ENDPOINT = "tcp://127.0.0.1:5710"


class RemoteError(EchemdError):
    """The daemon answered with an error; ``code`` and ``details`` are as in docs/protocol.md."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details


class Client:
    """A connection to one daemon.  Not thread-safe: use one Client per thread."""

    def __init__(self, endpoint: str = DEFAULT_CONTROL_ENDPOINT, timeout_s: float = 10.0, context: zmq.Context | None = None,
                 keys: ClientKeys | None = None) -> None:
        """``keys``: CURVE keys for a daemon with a [security] table (see echemd.daemon.security)."""
        self.endpoint = endpoint
        self.keys = keys
        self.timeout_s = timeout_s
        self._context = context or zmq.Context.instance()
        self._socket: zmq.Socket | None = None
        self._publish_endpoint: str | None = None
        self._packed = True  # binary fetches ask for packed replies (until a daemon does not know them)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    # --- requests -----------------------------------------------------------------------------
    def call(self, method: str, request_id: str | None = None, **params: Any) -> Any:
        """Send one request and return its result; raises RemoteError or TimeoutError.

        Retrying with the same ``request_id`` after a timeout is safe: the daemon answers a request
        id it has already executed from its cache.
        """
        return self.call_framed(method, request_id, **params)[0]

    def call_framed(self, method: str, request_id: str | None = None, **params: Any) -> tuple[Any, list[zmq.Frame]]:
        """As :meth:`call`, also returning the binary frames that follow the reply (``fetch`` with ``binary``)."""
        if self._socket is None:
            self._socket = self._context.socket(zmq.DEALER)
            self._socket.setsockopt(zmq.LINGER, 0)
            # (a DEALER's send waits while it has no connection: a daemon that refused our key
            # leaves it none, and the request would wait forever)
            self._socket.setsockopt(zmq.SNDTIMEO, max(1, int(self.timeout_s * 1000)))
            if self.keys is not None:
                self.keys.apply(self._socket)
            self._socket.connect(self.endpoint)
        request_id = request_id or uuid.uuid4().hex
        deadline = time.monotonic() + self.timeout_s
        try:
            self._socket.send(json.dumps({"id": request_id, "method": method, "params": params}).encode())
        except zmq.Again:
            self.close()
            raise TimeoutError(f"could not send {method!r} to {self.endpoint} within {self.timeout_s} s (no connection)") from None
        while (remaining := deadline - time.monotonic()) > 0:
            if not self._socket.poll(int(remaining * 1000) + 1):
                break
            head, *frames = self._socket.recv_multipart(copy=False)
            reply = json.loads(head.bytes)
            if reply.get("id") != request_id:
                continue  # a late reply to an earlier, timed-out request
            if reply.get("ok"):
                return reply["result"], frames
            error = reply.get("error") or {}
            raise RemoteError(error.get("code", "unknown"), error.get("message", ""), error.get("details"))
        self.close()  # drop the socket so a late reply cannot be mistaken for the next one
        raise TimeoutError(f"no reply from {self.endpoint} to {method!r} within {self.timeout_s} s")

    def ping(self) -> dict[str, Any]:
        return self.call("ping")

    def instruments(self) -> list[dict[str, Any]]:
        return self.call("instruments")

    def protocols(self) -> list[dict[str, Any]]:
        return self.call("protocols")

    def submit(self, protocol: str, instrument: str, limits: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None,
               allow_large: bool = False, **parameters: Any) -> str:
        """Queue a run; returns its run_id.  ``limits``: the run's own safety limits (RunLimits fields);
        ``metadata``: what the lab records of it (sample, operator, notes, cell, electrolyte, ...:
        see RunMetadata in the configuration docs), on top of the instrument's configured metadata.
        ``allow_large``: run it even when it is projected beyond the daemon's max_run_size_gb.

        Raises RemoteError (e.g. invalid_parameters, refused).
        """
        request: dict[str, Any] = {"protocol": protocol, "instrument": instrument, "parameters": parameters}
        if limits:
            request["limits"] = limits
        if metadata:
            request["metadata"] = metadata
        if allow_large:
            request["allow_large"] = True
        return self.call("submit", **request)["run_id"]

    def status(self, run_id: str | None = None) -> dict[str, Any]:
        return self.call("status") if run_id is None else self.call("status", run_id=run_id)

    def runs(self) -> list[dict[str, Any]]:
        return self.call("runs")

    def result(self, run_id: str) -> dict[str, Any]:
        return self.call("result", run_id=run_id)

    def abort(self, run_id: str) -> dict[str, Any]:
        return self.call("abort", run_id=run_id)

    def fetch(self, run_id: str, from_seq: int = 0, max_samples: int | None = None) -> dict[str, Any]:
        """Blocks of a run from ``from_seq`` on, as JSON (see docs/protocol.md); :meth:`fetch_blocks`
        is the fast way for many samples."""
        params: dict[str, Any] = {"run_id": run_id, "from_seq": from_seq}
        if max_samples is not None:
            params["max_samples"] = max_samples
        return self.call("fetch", **params)

    def fetch_blocks(self, run_id: str, from_seq: int = 0, max_samples: int | None = None) -> tuple[list[DataBlock], dict[str, Any]]:
        """Blocks of a run from ``from_seq`` on, their columns sent as raw float64 frames (about 3x
        smaller than JSON, no number formatting), packed in one frame per column; and the reply
        (``status``, ``n_blocks``, ``complete``).  A daemon that does not know ``packed`` (an earlier
        version) is asked again without it."""
        params: dict[str, Any] = {"run_id": run_id, "from_seq": from_seq, "binary": True, **({"packed": True} if self._packed else {})}
        if max_samples is not None:
            params["max_samples"] = max_samples
        try:
            reply, frames = self.call_framed("fetch", **params)
        except RemoteError as exc:
            if not (self._packed and exc.code == "invalid_params" and any(d.get("field") == "packed" for d in exc.details or [])):
                raise
            self._packed = False
            return self.fetch_blocks(run_id, from_seq, max_samples)
        return list(PackedBlocks(run_id, reply["blocks"], [frame.buffer for frame in frames])), reply

    def wait(self, run_id: str, timeout_s: float | None = None, poll_s: float = 0.2) -> dict[str, Any]:
        """Block until the run ends; return its record.  Raises TimeoutError after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            record = self.status(run_id)
            if record["status"] in FINAL_STATUSES:
                return record
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {record['status']} after {timeout_s} s")
            time.sleep(poll_s)

    # --- stream -------------------------------------------------------------------------------
    @property
    def publish_endpoint(self) -> str:
        if self._publish_endpoint is None:
            self._publish_endpoint = self.ping()["publish_endpoint"]
        return self._publish_endpoint

    def subscribe(self, run_id: str, idle_s: float = 0.5, patience_s: float | None = None) -> Iterator[DataBlock]:
        """Every data block of a run, once and in order, until the run ends.

        Blocks come live from the PUB socket; any the socket missed (joined late, high-water mark)
        are fetched from the daemon, as is everything when the stream is quiet for ``idle_s``.  A
        daemon that does not answer a fetch (stalled, restarting) is asked again from the last
        block received, for ``patience_s`` (None: as long as it takes; then TimeoutError).
        """
        with Subscription(self._context, self.publish_endpoint, run_topic(run_id), self.keys) as subscription:
            expected = 0
            while True:
                message = subscription.receive(idle_s)
                if isinstance(message, DataBlock):
                    if message.seq < expected:
                        continue
                    missed, _ = self._fetch_from(run_id, expected, message.seq, patience_s)
                    yield from missed
                    expected = message.seq + 1
                    yield message
                    continue
                ended = message is not None and message.kind == "status" and message.header.get("status") in FINAL_STATUSES
                if message is not None and not ended:
                    continue
                # quiet, or the run ended: whatever is still missing comes from the daemon
                rest, complete = self._fetch_from(run_id, expected, None, patience_s)
                yield from rest
                expected += len(rest)
                if complete:
                    return

    def _fetch_from(self, run_id: str, from_seq: int, until: int | None, patience_s: float | None) -> tuple[list[DataBlock], bool]:
        """Blocks ``from_seq`` .. ``until`` - 1 (or all there are), and whether the run has no more."""
        blocks: list[DataBlock] = []
        deadline = None if patience_s is None else time.monotonic() + patience_s
        while until is None or from_seq < until:
            try:
                fetched, reply = self.fetch_blocks(run_id, from_seq)
            except TimeoutError:
                if deadline is not None and time.monotonic() > deadline:
                    raise
                log.warning("no answer from %s to a fetch of run %s from block %d; asking again", self.endpoint, run_id, from_seq)
                continue
            new = [block for block in fetched if until is None or block.seq < until]
            blocks += new
            if new:
                from_seq = new[-1].seq + 1
            if not new or (reply["complete"] and until is None):
                if until is not None and from_seq < until:
                    raise RuntimeError(f"the daemon has no block {from_seq} of run {run_id}")
                return blocks, reply["complete"] and from_seq >= reply["n_blocks"]
        return blocks, False


class Subscription:
    """A SUB socket on the data stream for a topic prefix, or several (and the heartbeat)."""

    def __init__(self, context: zmq.Context, endpoint: str, prefix: bytes | Iterable[bytes], keys: ClientKeys | None = None) -> None:
        prefixes = (prefix,) if isinstance(prefix, bytes) else tuple(prefix)
        if not all(isinstance(each, bytes) for each in prefixes):  # (before the socket: one left open would block the context's term())
            raise TypeError(f"topic prefixes are bytes (see stream.run_topic), got {prefix!r}")
        self._socket = context.socket(zmq.SUB)
        if keys is not None:
            keys.apply(self._socket)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, 100_000)
        for each in prefixes:
            self._socket.setsockopt(zmq.SUBSCRIBE, each)
        self._socket.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC)
        self._socket.connect(endpoint)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._socket.close()

    def receive(self, timeout_s: float):
        """The next DataBlock or Notice, or None after ``timeout_s`` without one."""
        if not self._socket.poll(int(timeout_s * 1000)):
            return None
        return decode(self._socket.recv_multipart())

    def wait_connected(self, timeout_s: float = 5.0) -> None:
        """Return once a heartbeat arrived: from then on nothing published is lost to a slow join."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = self.receive(deadline - time.monotonic())
            if message is not None and getattr(message, "kind", None) == "heartbeat":
                return
        raise TimeoutError("no heartbeat from the daemon")
