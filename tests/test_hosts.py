"""Instrument hosts: the instruments run in processes of their own; what a host's death or its
daemon's does to the runs, and that runs through a host give what runs in the daemon give."""

import contextlib
import os
import signal
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import zmq

from echemd.daemon import host_link, hosts
from echemd.daemon.client import Client, Subscription
from echemd.daemon.host import HOST_NICENESS
from echemd.daemon.runfile_reader import read_attrs
from echemd.daemon.security import ClientKeys
from echemd.daemon.service import Daemon
from echemd.daemon.stream import DataBlock, encode_data
from helpers import until
from test_daemon import collect_stream

CCD = {"diameter_mm": 2.0}


def host_pid(daemon, instrument):
    return daemon.hosts.instruments[instrument].host.process.pid


def test_runs_in_two_hosts_stream_every_sample_and_give_the_cells_ccd(lab):
    daemon = Daemon(lab(instrument_hosts=2), sim_speed="max")
    try:
        pids = {host_pid(daemon, name) for name in ("sim-pstat-1", "sim-pstat-2")}
        assert len(pids) == 2 and os.getpid() not in pids  # one process each, not the daemon's
        # nicer than the daemon once started: its control and stream come first on a saturated machine
        until(lambda: {os.getpriority(os.PRIO_PROCESS, pid) for pid in pids} == {os.getpriority(os.PRIO_PROCESS, 0) + HOST_NICENESS})
        if Path(f"/proc/{os.getpid()}/environ").exists() and "MALLOC_ARENA_MAX" not in os.environ:  # (Linux) one malloc arena per host
            assert all(b"MALLOC_ARENA_MAX=1" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") for pid in pids)
        with Client(daemon.control.endpoint) as client, Subscription(zmq.Context.instance(), daemon.publisher.endpoint, b"run.") as sub:
            sub.wait_connected()
            first = client.submit("ccd", "sim-pstat-1", **CCD)
            blocks, statuses = collect_stream(sub, first)
            record = client.wait(first, timeout_s=30)
            second = client.wait(client.submit("ccd", "sim-pstat-2", **CCD), timeout_s=30)
        assert statuses == ["running", "completed"]  # the end published once the daemon's record said so
        assert [b.seq for b in blocks] == list(range(len(blocks))) and len(blocks) > 1
        assert record["status"] == second["status"] == "completed"
        assert record["result"]["ccd_mA_cm2"] == 1.0 and second["result"]["ccd_mA_cm2"] == 1.5  # the flat and the contoured cell of the default lab
        with h5py.File(record["file"], "r") as f:
            assert f.attrs["status"] == "completed" and len(f["data/time_s"]) == record["n_samples"] == sum(len(b) for b in blocks)
            np.testing.assert_array_equal(f["data/voltage_V"][:], np.concatenate([b.columns["voltage_V"] for b in blocks]))
    finally:
        daemon.close()


def test_pause_resume_abort_and_fetch_reach_a_run_in_its_host(lab):
    daemon = Daemon(lab(instrument_hosts=1), sim_speed=1.0)  # real time
    try:
        with Client(daemon.control.endpoint) as client:
            run_id = client.submit("ccd", "sim-pstat-1", **CCD, sample_interval_s=0.05)
            until(lambda: client.status(run_id)["n_samples"] >= 10)
            fetched, reply = client.fetch_blocks(run_id)  # from the host's writer: unflushed samples too
            assert reply["status"] == "running" and sum(len(b) for b in fetched) >= 10 and [b.seq for b in fetched] == list(range(len(fetched)))
            as_json = client.fetch(run_id, max_samples=sum(len(b) for b in fetched))["blocks"]  # (the host's packed answer, unpacked)
            assert [b["columns"]["time_s"] for b in as_json] == [b.columns["time_s"].tolist() for b in fetched]
            client.call("pause", run_id=run_id)
            until(lambda: client.status(run_id)["status"] == "paused")
            assert daemon.queues["sim-pstat-1"].state == "running"
            client.call("resume", run_id=run_id)
            until(lambda: client.status(run_id)["status"] == "running")
            client.abort(run_id)
            record = client.wait(run_id, timeout_s=10)
        assert record["status"] == "aborted" and record["error"] == "aborted on request"
        assert read_attrs(Path(record["file"]))["status"] == "aborted"
        assert daemon.queues["sim-pstat-1"].state == "idle"
        with h5py.File(record["file"], "r") as f:  # what the host answered while running is what its file kept
            for block in fetched:
                for name, values in block.columns.items():
                    np.testing.assert_array_equal(values, f["data"][name][block.offset:block.offset + len(block)])
    finally:
        daemon.close()


def test_slowly_sampled_runs_in_a_host_stop_at_once_on_abort_and_on_shutdown(lab):
    """In real time, sampled every 5 s: an abort ends the run, and the daemon's close the other,
    within 1.5 and 2.5 s (the next sample is 4.7 s away), each file closed as aborted."""
    daemon = Daemon(lab(instrument_hosts=1), sim_speed=1.0)
    closed = False
    try:
        with Client(daemon.control.endpoint) as client:
            aborted = client.submit("ccd", "sim-pstat-1", **CCD, sample_interval_s=5.0)
            running = client.submit("ccd", "sim-pstat-2", **CCD, sample_interval_s=5.0)
            until(lambda: all(client.status(run_id)["status"] == "running" for run_id in (aborted, running)))
            time.sleep(0.3)
            asked = time.monotonic()
            client.abort(aborted)
            record = client.wait(aborted, timeout_s=10)
            assert time.monotonic() - asked < 1.5 and record["status"] == "aborted"
            asked = time.monotonic()
            daemon.close()
            closed = True
            assert time.monotonic() - asked < 2.5
    finally:
        if not closed:
            daemon.close()
    assert read_attrs(Path(record["file"]))["status"] == "aborted"
    assert read_attrs(Path(daemon.runs[running].file))["status"] == "aborted"


@pytest.mark.parametrize("ipc_link", [True, False], ids=["ipc", "tcp-curve"])
def test_a_host_killed_mid_run_is_noticed_its_run_interrupted_and_recovered_and_it_comes_back(lab, monkeypatch, ipc_link):
    monkeypatch.setattr(hosts, "IPC_LINK", ipc_link)  # (over TCP the host started again gets its keys again)
    daemon = Daemon(lab(instrument_hosts=2), sim_speed=1.0)
    try:
        with Client(daemon.control.endpoint) as client:
            victim = client.submit("ccd", "sim-pstat-1", **CCD, sample_interval_s=0.05)
            bystander = client.submit("ccd", "sim-pstat-2", **CCD, sample_interval_s=0.05)
            until(lambda: client.status(victim)["n_samples"] >= 20 and client.status(bystander)["n_samples"] > 0)
            time.sleep(1.0)  # (flushed: the flush interval is 0.5 s)
            reported = client.status(victim)["n_samples"]
            killed_at = time.monotonic()
            os.kill(host_pid(daemon, "sim-pstat-1"), signal.SIGKILL)
            until(lambda: client.status(victim)["status"] == "interrupted", timeout_s=5)
            noticed_s = time.monotonic() - killed_at
            record = client.status(victim)
            assert noticed_s < 1.5 and "its instrument host host-0 ended" in record["error"]
            attrs = read_attrs(Path(record["file"]))  # recovered as after a daemon crash: closed, what was flushed kept
            assert attrs["status"] == "interrupted" and attrs["n_samples"] >= reported - 20 and attrs["n_samples"] > 0
            assert client.status(bystander)["status"] == "running"  # the other host's run goes on
            until(lambda: daemon.queues["sim-pstat-1"].state == "idle", timeout_s=30)  # started again
            again = client.submit("ccd", "sim-pstat-1", **CCD, sample_interval_s=0.05)
            until(lambda: client.status(again)["n_samples"] > 0)
            client.abort(again)
            assert client.wait(again, timeout_s=10)["status"] == "aborted"
            client.abort(bystander)
            assert client.wait(bystander, timeout_s=10)["status"] == "aborted"
    finally:
        daemon.close()


def test_a_subscriber_that_joins_a_run_in_its_host_late_gets_every_block_once(lab):
    """The missed blocks come from the host's writer, before the daemon's record even knows the run started."""
    daemon = Daemon(lab(instrument_hosts=1), sim_speed=20.0)
    try:
        with Client(daemon.control.endpoint) as client:
            run_id = client.submit("plate-until-short", "sim-pstat-1", diameter_mm=2.0, current_mA_cm2=0.5, max_hours=0.01,
                                   sample_interval_s=0.05)
            with Subscription(zmq.Context.instance(), daemon.publisher.endpoint, b"run.") as raw:
                raw.wait_connected()
                while not ((message := raw.receive(10.0)) is not None and getattr(message, "run_id", "") == run_id):
                    pass
            fetched, _ = client.fetch_blocks(run_id)  # at once: the host reports the run's start up to 0.2 s later
            assert fetched and fetched[0].seq == 0
            blocks = list(client.subscribe(run_id))  # joins later: what it missed is fetched
            record = client.wait(run_id, timeout_s=30)
        assert [b.seq for b in blocks] == list(range(len(blocks)))
        assert sum(len(b) for b in blocks) == record["n_samples"] > 0
    finally:
        daemon.close()


def test_a_tcp_link_is_curve_and_admits_no_one_but_the_daemons_hosts(lab, monkeypatch, caplog):
    """The link as on Windows (no ipc sockets there): TCP on loopback, which any local user can
    reach.  Runs go through it as over ipc; a stranger can neither push data into the stream nor
    talk on the link, in plaintext or with the daemon's public key and a key of its own."""
    monkeypatch.setattr(hosts, "IPC_LINK", False)
    daemon = Daemon(lab(instrument_hosts=1), sim_speed="max")
    context = zmq.Context()
    try:
        link, ingest, curve = daemon.hosts.link_endpoint, daemon.publisher.ingest_endpoint, daemon.hosts.curve
        assert link.startswith("tcp://127.0.0.1:") and ingest.startswith("tcp://127.0.0.1:")
        host = daemon.hosts.hosts["host-0"]
        assert curve.hosts.secret.decode() not in " ".join(host.process.args)  # its keys come in its environment
        with Client(daemon.control.endpoint) as client, Subscription(zmq.Context.instance(), daemon.publisher.endpoint, b"run.") as sub:
            sub.wait_connected()
            run_id = client.submit("ccd", "sim-pstat-1", **CCD)
            blocks, statuses = collect_stream(sub, run_id)
            record = client.wait(run_id, timeout_s=30)
            assert statuses == ["running", "completed"] and record["result"]["ccd_mA_cm2"] == 1.0
            assert [b.seq for b in blocks] == list(range(len(blocks))) and sum(len(b) for b in blocks) == record["n_samples"]

            stranger_public, stranger_secret = zmq.curve_keypair()
            callers = {"plaintext": None, "stranger": ClientKeys(curve.public, stranger_public, stranger_secret),
                       "host": curve.hosts}  # (the hosts' own keys: what the test would see of a stranger let in)
            sockets = []  # (kept open until the end: a closed socket's message never leaves)
            for name, keys in callers.items():
                push, dealer = context.socket(zmq.PUSH), context.socket(zmq.DEALER)
                sockets += [push, dealer]
                for socket in (push, dealer):
                    socket.setsockopt(zmq.LINGER, 0)
                    socket.setsockopt(zmq.SNDTIMEO, 2000)  # a refused caller may be left with nowhere to queue a message
                    if keys is not None:
                        keys.apply(socket)
                dealer.setsockopt_string(zmq.IDENTITY, f"caller-{name}")
                push.connect(ingest)
                dealer.connect(link)
                with contextlib.suppress(zmq.Again):
                    push.send_multipart(encode_data(DataBlock(f"forged-{name}", 0, 0, 0.0, {"time_s": np.zeros(3)}, {"time_s": "s"})))
                with contextlib.suppress(zmq.Again):
                    dealer.send(host_link.encode("beat", connected={}))
            forged, deadline = set(), time.monotonic() + 3.0
            while time.monotonic() < deadline:
                message = sub.receive(0.2)
                if isinstance(message, DataBlock) and message.run_id.startswith("forged-"):
                    forged.add(message.run_id)
        assert forged == {"forged-host"}
        heard = {entry.getMessage() for entry in caplog.records if "unknown peer" in entry.getMessage()}
        assert heard == {"host link: a message from an unknown peer b'caller-host'"}
    finally:
        context.destroy(linger=0)
        daemon.close()


def test_an_ipc_link_lives_in_a_folder_only_its_user_can_enter(lab):
    daemon = Daemon(lab(instrument_hosts=1), sim_speed="max")
    try:
        link, ingest = daemon.hosts.link_endpoint, daemon.publisher.ingest_endpoint
        folder = Path(link.removeprefix("ipc://")).parent
        assert daemon.hosts.curve is None and ingest == f"ipc://{folder / 'ingest'}"
        assert folder.stat().st_mode & 0o777 == 0o700
    finally:
        daemon.close()
    assert not folder.exists()
