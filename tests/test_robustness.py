"""The control socket under abuse and retries; the stream under loss."""

import json

import h5py
import numpy as np
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echemd.daemon.client import Client, Subscription
from helpers import ccd_under_way

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON = SCALARS | st.lists(SCALARS, max_size=4) | st.dictionaries(st.text(max_size=8), SCALARS | st.lists(SCALARS, max_size=3), max_size=4)
METHODS = st.sampled_from(["ping", "submit", "status", "runs", "result", "abort", "fetch", "instruments", "protocols", "nope", ""]) | st.text(max_size=12)
REQUESTS = (
    st.binary(max_size=200)  # not JSON at all
    | JSON.map(lambda v: json.dumps(v).encode())  # JSON, not a request
    | st.fixed_dictionaries({"id": st.text(max_size=8) | st.integers() | st.none(), "method": METHODS, "params": JSON}).map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries({"id": st.uuids().map(str), "method": st.just("submit"),  # near misses of a real submit
                             "params": st.fixed_dictionaries({"protocol": st.sampled_from(["ccd", "cafm-sweep", "eis", "x"]),
                                                              "instrument": st.sampled_from(["sim-pstat-1", "sim-smu-1", "y"]),
                                                              "parameters": st.dictionaries(st.sampled_from(["diameter_mm", "area_cm2", "cycles", "start_Hz"]), JSON, min_size=1, max_size=3)
                                                              .map(lambda p: {**p, "bogus": 1})})}).map(lambda v: json.dumps(v).encode())
)


def test_ten_thousand_malformed_requests_each_get_an_answer_and_a_ccd_still_runs(daemon, client):
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, 5000)
    socket.connect(daemon.control.endpoint)
    answered = []

    @settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(REQUESTS)
    def one(frame):
        socket.send(frame)
        reply = json.loads(socket.recv())
        assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool)
        answered.append(reply["ok"])

    one()
    socket.close()
    assert len(answered) >= 10_000 and answered.count(False) > 5_000
    assert client.runs() == []  # nothing malformed started a run
    record = client.wait(client.submit("ccd", "sim-pstat-1", diameter_mm=2.0), timeout_s=60)
    assert record["status"] == "completed" and record["result"]["ccd_mA_cm2"] is not None


def test_a_retried_submit_runs_once(daemon, client):
    first = client.call("submit", request_id="retry-1", protocol="ccd", instrument="sim-pstat-1", parameters={"diameter_mm": 2.0})
    again = client.call("submit", request_id="retry-1", protocol="ccd", instrument="sim-pstat-1", parameters={"diameter_mm": 2.0})
    assert again == first
    assert [r["run_id"] for r in client.runs()] == [first["run_id"]]


def test_a_request_id_reused_for_another_method_or_parameters_is_a_new_request(daemon, client):
    client.call("ping", request_id="5")
    run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)
    aborted = client.call("abort", request_id="5", run_id=run_id)  # the same id as the ping: still an abort
    assert aborted["run_id"] == run_id and client.wait(run_id, timeout_s=30)["status"] == "aborted"
    other = client.call("submit", request_id="retry-2", protocol="ccd", instrument="sim-pstat-2", parameters={"diameter_mm": 2.0})
    changed = client.call("submit", request_id="retry-2", protocol="ccd", instrument="sim-pstat-2", parameters={"diameter_mm": 3.0})
    assert changed["run_id"] != other["run_id"]  # other parameters: a new run, not the old reply
    numeric = client.call("submit", request_id=7, protocol="ccd", instrument="sim-pstat-2", parameters={"diameter_mm": 2.0})
    text = client.call("submit", request_id="7", protocol="ccd", instrument="sim-pstat-2", parameters={"diameter_mm": 2.0})
    assert numeric["run_id"] != text["run_id"]  # 7 and "7" are different ids


def test_queries_are_answered_fresh_and_the_cache_is_bounded_in_bytes(daemon, client):
    from echemd.daemon.control import ReplyCache

    run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)
    first = client.call("status", request_id="s", run_id=run_id)
    client.wait(run_id, timeout_s=30)
    again = client.call("status", request_id="s", run_id=run_id)  # the same query later: its answer now
    assert first["status"] in ("queued", "running") and again["status"] == "completed"
    cache = ReplyCache(max_bytes=1000)
    for k in range(50):
        cache.put(("c", str(k), "submit", ""), b"x" * 100)
    assert cache.bytes <= 1000 and cache.get(("c", "49", "submit", "")) is not None and cache.get(("c", "0", "submit", "")) is None


def test_a_subscriber_joining_mid_run_sees_every_sample_once(lab):
    from echemd.daemon.service import Daemon

    daemon = Daemon(lab(), sim_speed=3000.0)  # the CCD streams for ~3 s
    try:
        with Client(daemon.control.endpoint) as client:
            run_id = ccd_under_way(client, 1000)
            with Subscription(zmq.Context.instance(), daemon.publisher.endpoint, f"run.{run_id}.data".encode()) as raw:
                blocks = list(client.subscribe(run_id))  # joins late: the first blocks come from fetch
                first_live = raw.receive(1.0)
            file = client.status(run_id)["file"]
    finally:
        daemon.close()
    assert [b.seq for b in blocks] == list(range(len(blocks)))
    assert first_live is None or first_live.seq > 0  # what a bare subscriber missed
    with h5py.File(file, "r") as f:
        np.testing.assert_array_equal(f["data/time_s"][:], np.concatenate([b.columns["time_s"] for b in blocks]))
