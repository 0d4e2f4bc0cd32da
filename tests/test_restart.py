"""What a stop, a restart or a blocked file replacement does to the runs: nothing is lost or forgotten."""

import os
import threading
import time

import h5py
import pytest

from echemd.daemon import file_transitions, service
from echemd.daemon.client import Client, RemoteError
from echemd.daemon.runfile_reader import read_attrs
from echemd.daemon.service import Daemon
from helpers import until
from test_crash import crash, serve

CCD = {"diameter_mm": 2.0}
PSTAT = "sim-pstat-1"


def test_queued_runs_survive_a_clean_stop_in_their_order_and_the_running_one_says_why_it_ended(lab):
    daemon = Daemon(lab(), sim_speed=1.0)  # real time: the first run is still going when the daemon stops
    with Client(daemon.control.endpoint) as client:
        running = client.submit("ccd", PSTAT, **CCD)
        queued = [client.submit("ccd", PSTAT, **CCD, sample_interval_s=n) for n in (1, 2, 3)]
        client.call("queue", instrument=PSTAT, action="move", run_id=queued[2], position=0)
        until(lambda: client.status(running)["status"] == "running")
        submitted = {run_id: client.status(run_id)["submitted"] for run_id in queued}
    daemon.close()
    assert read_attrs(daemon.data_dir / f"{running}.h5")["error"] == "aborted: daemon shutdown"
    assert daemon.runs[running].status == "aborted" and daemon.runs[running].error == "aborted: daemon shutdown"

    daemon = Daemon(lab(), sim_speed=1.0)
    try:
        assert daemon.requeued == [queued[2], queued[0], queued[1]]  # the order the operator left
        with Client(daemon.control.endpoint) as client:
            until(lambda: client.status(queued[2])["status"] == "running")
            assert client.instruments()[0]["queued"] == [queued[0], queued[1]]
            for run_id, interval in zip(queued, (1, 2, 3)):  # the same runs: ids, parameters, submission times
                record = client.status(run_id)
                assert record["parameters"]["sample_interval_s"] == interval and record["submitted"] == submitted[run_id]
            assert client.status(running)["status"] == "aborted"  # from its file
    finally:
        daemon.close()

    daemon = Daemon(lab(), sim_speed=1.0, cancel_queued=True)  # the operator says: drop what waits
    try:
        with Client(daemon.control.endpoint) as client:
            assert daemon.requeued == [] and client.instruments()[0]["queued"] == []
            assert client.status(queued[2])["status"] == "aborted"  # it had started: its file says so
            for run_id in queued[:2]:  # never started: the submission record says how they ended
                record = client.status(run_id)
                assert record["status"] == "aborted" and "--cancel-queued" in record["error"] and record["n_samples"] == 0
                assert client.fetch(run_id)["complete"] is True
            listed = {record["run_id"]: record["status"] for record in client.runs()}
            assert [listed[run_id] for run_id in (running, *queued)] == ["aborted"] * 4
    finally:
        daemon.close()


def test_a_run_whose_instrument_is_gone_after_a_restart_ends_failed_not_forgotten(lab):
    daemon = Daemon(lab(), sim_speed=1.0)
    with Client(daemon.control.endpoint) as client:
        client.submit("ccd", PSTAT, **CCD)
        waiting = client.submit("ccd", PSTAT, **CCD)
    daemon.close()
    config = lab()
    config = config.model_copy(update={"instruments": [i for i in config.instruments if i.name != PSTAT]})
    daemon = Daemon(config)
    try:
        with Client(daemon.control.endpoint) as client:
            record = client.status(waiting)
            assert record["status"] == "failed" and "unknown instrument" in record["error"]
    finally:
        daemon.close()


def test_a_file_replacement_a_reader_blocks_keeps_the_original_and_completes_later(lab, monkeypatch):
    """Windows refuses to replace a file a reader holds open: the run still ends right, its new
    content waits beside the original, and the daemon puts it in place once the reader is gone."""
    real_replace = os.replace
    blocked = set()

    def windows_replace(source, target):
        if os.fspath(target) in blocked:
            raise PermissionError(13, "The process cannot access the file because it is being used by another process")
        real_replace(source, target)

    monkeypatch.setattr(file_transitions.os, "replace", windows_replace)
    monkeypatch.setattr(service, "REPLACEMENT_RETRY_S", 0.05)
    daemon = Daemon(lab())
    try:
        with Client(daemon.control.endpoint) as client:
            run_id = client.submit("ccd", PSTAT, **CCD)
            path = daemon.data_dir / f"{run_id}.h5"
            until(lambda: path.exists())
            blocked.add(os.fspath(path))  # a viewer opened the file
            assert client.wait(run_id, timeout_s=30)["status"] == "completed"
            with h5py.File(path, "r") as original:  # untouched, complete as of the run's last flush
                assert original.attrs["status"] == "running" and len(original["data/time_s"]) == client.status(run_id)["n_samples"]
            assert read_attrs(path)["status"] == "completed"  # the daemon reads the waiting copy
            assert [r["status"] for r in client.runs() if r["run_id"] == run_id] == ["completed"]
            blocked.clear()  # the viewer closed it
            until(lambda: not file_transitions.pending_replacements(daemon.data_dir), timeout_s=5)
            with h5py.File(path, "r") as replaced:
                assert replaced.attrs["status"] == "completed" and replaced["result"].attrs["ccd_mA_cm2"] > 0
    finally:
        daemon.close()


def test_a_driver_raising_keyboard_interrupt_fails_that_run_and_the_queue_goes_on(lab, monkeypatch):
    daemon = Daemon(lab())
    try:
        instrument = daemon.runners[PSTAT].instrument
        real = instrument.galvanostatic
        calls = []

        def interrupted(*args, **kwargs):  # Ctrl+C delivered into the driver's thread (comtypes' PumpEvents)
            calls.append(1)
            if len(calls) == 1:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(instrument, "galvanostatic", interrupted)
        with Client(daemon.control.endpoint) as client:
            first, second = client.submit("ccd", PSTAT, **CCD), client.submit("ccd", PSTAT, **CCD)
            assert client.wait(first, timeout_s=30)["status"] == "failed"
            assert client.status(first)["error"].startswith("KeyboardInterrupt")
            assert client.wait(second, timeout_s=30)["status"] == "completed"
            assert instrument.output_on is False and daemon.queues[PSTAT].state == "idle"
    finally:
        daemon.close()


def test_a_daemon_serves_at_once_and_recovers_what_the_previous_one_left_in_the_background(lab, tmp_path, monkeypatch):
    from echemd.daemon import recovery

    process, client = serve(tmp_path)  # a daemon in its own process, killed mid-run with its hosts (a power cut)
    left = client.submit("ccd", PSTAT, **CCD)
    until(lambda: client.status(left)["n_samples"] > 0)
    crash(process)
    client.close()

    real_recover, gate = recovery.recover, threading.Event()

    def slow_recover(*args, **kwargs):  # a large file on a slow disk
        gate.wait(10)
        return real_recover(*args, **kwargs)

    monkeypatch.setattr(recovery, "recover", slow_recover)
    started = time.monotonic()
    daemon = Daemon(lab(data_dir=tmp_path / "runs"))
    try:
        with Client(daemon.control.endpoint) as client:
            assert client.ping() and time.monotonic() - started < 5  # bound and serving before recovery ends
            assert client.status(left)["status"] == "recovering"
            assert [r["status"] for r in client.runs() if r["run_id"] == left] == ["recovering"]
            assert client.wait(client.submit("ccd", "sim-pstat-2", **CCD), timeout_s=30)["status"] == "completed"  # runs go on meanwhile
            gate.set()
            assert client.wait(left, timeout_s=20)["status"] == "interrupted"
            assert client.fetch(left)["complete"] is True
    finally:
        gate.set()
        daemon.close()


def test_a_run_file_no_reader_opens_is_reported_as_unreadable_not_as_an_internal_error(lab):
    daemon = Daemon(lab())
    try:
        broken = daemon.data_dir / "20261101T000000-ccd-abcdef.h5"
        broken.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)  # 48 bytes: what a kill inside creation used to leave
        with Client(daemon.control.endpoint) as client:
            record = client.status(broken.stem)
            assert record["status"] == "unreadable" and "cannot be read" in record["error"]
            assert [r["status"] for r in client.runs() if r["run_id"] == broken.stem] == ["unreadable"]
            with pytest.raises(RemoteError) as refused:
                client.fetch(broken.stem)
            assert refused.value.code == "unreadable"
    finally:
        daemon.close()
