"""Malformed control requests get error replies on a real ROUTER socket; the daemon keeps serving."""

import json

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
        (b'{"id": "a", "method": "ping", "params": {"x": ' + b"[" * 1500 + b"]" * 1500 + b"}}", "bad_request", "nests too deeply"),
        (b'{"id": "a", "method": "ping", "params": {"x": ' + b"9" * 5000 + b"}}", "bad_request", "Exceeds the limit (4300 digits)"),
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
