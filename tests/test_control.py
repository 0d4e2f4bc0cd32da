"""Malformed control requests get error replies on a real ROUTER socket; the daemon keeps serving."""

import json
import time

import numpy as np
import pytest
import zmq

from echemd.daemon.client import Client


@pytest.fixture
def raw(daemon):
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, 5000)
    socket.connect(daemon.control.endpoint)
    yield socket
    socket.close()


def ask(socket, frame: bytes) -> dict:
    socket.send(frame)
    return json.loads(socket.recv())


@pytest.mark.parametrize(
    ("frame", "code", "text"),
    [
        (b"\xff\xfe not json", "bad_request", "not JSON"),
        (b"[1, 2]", "bad_request", "JSON object"),
        (b'{"id": "a", "params": {}}', "bad_request", "'method' must be a string"),
        (b'{"id": "a", "method": "ping", "params": [1]}', "bad_request", "'params' must be a JSON object"),
        (b'{"id": {"x": 1}, "method": "ping"}', "bad_request", "'id' must be a string"),
        (b'{"id": "a", "method": "launch_missiles"}', "unknown_method", "unknown method 'launch_missiles'"),
        (b'{"id": "a", "method": "status", "params": {"run_id": 5}}', "invalid_params", "run_id: Input should be a valid string"),
        (b'{"id": "a", "method": "status", "params": {"run_id": "../../etc/passwd"}}', "invalid_params", "run_id: String should match pattern"),
        (b'{"id": "a", "method": "result", "params": {"run_id": "nope"}}', "unknown_run", "no run 'nope'"),
        (b'{"id": "a", "method": "ping", "params": {"x": 1}}', "invalid_params", "x: Extra inputs are not permitted"),
        (b'{"id": "a", "method": "submit", "params": {"protocol": "eis", "instrument": "sim-pstat-1", "parameters": {"dc_bias_V": NaN}}}',
         "bad_request", "NaN is not a number echemd accepts"),
        (b'{"id": "a", "method": "ping", "params": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}", "bad_request", "nests too deeply"),  # (3.13 parses 9,000 levels)
        (b'{"id": "a", "method": "ping", "params": {"x": ' + b"9" * 5000 + b"}}", "bad_request", "Exceeds the limit (4300"),  # (3.10 and 3.11 word the rest differently)
    ],
)
def test_malformed_requests_get_error_replies(raw, frame, code, text):
    reply = ask(raw, frame)
    assert reply["ok"] is False
    assert reply["error"]["code"] == code
    assert text in reply["error"]["message"]
    assert ask(raw, b'{"id": "p", "method": "ping"}')["ok"] is True


def test_replies_carry_the_request_id_and_req_envelopes_are_echoed(daemon):
    req = zmq.Context.instance().socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.setsockopt(zmq.RCVTIMEO, 5000)
    req.connect(daemon.control.endpoint)
    req.send(b'{"id": "r-42", "method": "ping"}')
    reply = json.loads(req.recv())
    req.close()
    assert reply["id"] == "r-42" and reply["ok"] and reply["result"]["publish_endpoint"] == daemon.publisher.endpoint


def test_an_oversized_request_is_dropped_and_others_are_still_served(daemon, raw):
    raw.send(b"x" * (2 << 20))  # over MAXMSGSIZE: ZeroMQ drops the peer
    with Client(daemon.control.endpoint, timeout_s=5) as client:
        assert client.ping()["version"]


def test_binary_fetch_carries_the_same_samples_as_json_in_raw_float64_frames(daemon):
    with Client(daemon.control.endpoint, timeout_s=10) as client:
        run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)
        client.wait(run_id, timeout_s=30)
        as_json = client.fetch(run_id, max_samples=1_000_000)
        blocks, reply = client.fetch_blocks(run_id, max_samples=1_000_000)
    assert reply["complete"] and reply["n_blocks"] == as_json["n_blocks"] == len(blocks) > 1
    for block, raw in zip(blocks, as_json["blocks"]):
        assert (block.seq, block.offset, block.t0, dict(block.units)) == (raw["seq"], raw["offset"], raw["t0"], raw["units"])
        for name, values in raw["columns"].items():
            assert block.columns[name].dtype == "<f8" and block.columns[name].tolist() == values  # bit for bit


def test_a_packed_binary_fetch_sends_a_frame_per_column_and_needs_binary(daemon, raw):
    with Client(daemon.control.endpoint, timeout_s=10) as client:
        run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)
        client.wait(run_id, timeout_s=30)
        as_json = client.fetch(run_id, max_samples=1_000_000)
    raw.send(json.dumps({"id": "p", "method": "fetch", "params": {"run_id": run_id, "max_samples": 1_000_000, "binary": True, "packed": True}}).encode())
    head, *frames = raw.recv_multipart()
    reply = json.loads(head)["result"]
    names = list(as_json["blocks"][0]["columns"])
    assert len(frames) == len(names) == 3 and len(reply["blocks"]) == len(as_json["blocks"]) > 1
    for name in names:  # each column's frame: every block's values, one block after the other
        frame = np.frombuffer(frames[reply["blocks"][0]["columns"][name][0]], dtype="<f8")
        assert frame.tolist() == [value for block in as_json["blocks"] for value in block["columns"][name]]
    assert [(b["n"], b["columns"]["time_s"][1]) for b in reply["blocks"][:2]] == [(len(as_json["blocks"][0]["columns"]["time_s"]), 0),
                                                                                (len(as_json["blocks"][1]["columns"]["time_s"]), reply["blocks"][0]["n"])]
    answer = ask(raw, json.dumps({"id": "q", "method": "fetch", "params": {"run_id": run_id, "packed": True}}).encode())
    assert answer["error"]["code"] == "invalid_params" and "binary" in answer["error"]["message"]


def test_a_client_asks_a_daemon_that_knows_no_packed_fetch_again_without_it(daemon, monkeypatch):
    from echemd.daemon import service

    class EarlierFetchParams(service.RunParams):  # the parameters of a daemon before packed replies
        from_seq: int = 0
        max_samples: int = service.DEFAULT_FETCH_SAMPLES
        binary: bool = False

        @property
        def packed(self) -> bool:  # (what today's code reads; not a parameter: asking for it is refused)
            return False

    with Client(daemon.control.endpoint, timeout_s=10) as client:
        run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)
        client.wait(run_id, timeout_s=30)
        packed, _ = client.fetch_blocks(run_id, max_samples=1_000_000)
        monkeypatch.setattr(service, "FetchParams", EarlierFetchParams)
        with Client(daemon.control.endpoint, timeout_s=10) as other:
            one_frame_each, reply = other.fetch_blocks(run_id, max_samples=1_000_000)
            assert other.fetch_blocks(run_id, 1)[0][0].seq == 1  # (a later fetch on that client works too)
    assert reply["complete"] and len(one_frame_each) == len(packed) > 1
    for a, b in zip(packed, one_frame_each):
        assert (a.seq, a.offset, a.t0, dict(a.units)) == (b.seq, b.offset, b.t0, dict(b.units))
        assert {name: values.tolist() for name, values in a.columns.items()} == {name: values.tolist() for name, values in b.columns.items()}


def test_a_slow_disk_read_never_holds_up_other_requests(daemon, monkeypatch):
    real_fetch = daemon.fetch

    def slow_fetch(params):  # a fetch of a million samples from a cold disk
        time.sleep(1.5)
        return real_fetch(params)

    monkeypatch.setitem(daemon._methods, "fetch", slow_fetch)
    with Client(daemon.control.endpoint, timeout_s=10) as client:
        run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)
        client.wait(run_id, timeout_s=30)
    fetcher = zmq.Context.instance().socket(zmq.DEALER)
    fetcher.setsockopt(zmq.LINGER, 0)
    fetcher.connect(daemon.control.endpoint)
    try:
        started = time.monotonic()
        fetcher.send(json.dumps({"id": "f", "method": "fetch", "params": {"run_id": run_id}}).encode())
        with Client(daemon.control.endpoint, timeout_s=5) as other:
            pings = []
            for _ in range(5):
                sent = time.monotonic()
                other.ping()
                pings.append(time.monotonic() - sent)
        assert max(pings) < 0.5 and time.monotonic() - started < 1.4  # answered while the fetch still reads
        assert fetcher.poll(5000) and json.loads(fetcher.recv_multipart()[0])["ok"] is True
    finally:
        fetcher.close()


def test_a_subscriber_carries_on_after_the_daemon_stalls(daemon, monkeypatch):
    """Fetches unanswered for longer than the client's timeout: the subscriber asks again from the
    last block it has, and still sees every block once."""
    real_fetch, stalls = daemon.fetch, [2]

    def stalling_fetch(params):
        if stalls[0]:
            stalls[0] -= 1
            time.sleep(0.8)
        return real_fetch(params)

    monkeypatch.setitem(daemon._methods, "fetch", stalling_fetch)
    with Client(daemon.control.endpoint, timeout_s=0.3) as client:
        run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)
        client.timeout_s = 10
        client.wait(run_id, timeout_s=30)
        client.timeout_s = 0.3
        blocks = list(client.subscribe(run_id))  # everything comes from fetches; the first two stall
        n_blocks = client.fetch_blocks(run_id, from_seq=10**9)[1]["n_blocks"]
    assert stalls == [0] and [block.seq for block in blocks] == list(range(n_blocks))
