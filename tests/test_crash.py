"""Fault injection: SIGKILL the daemon mid-run, again and again; no flushed sample may be lost.

A daemon killed alone leaves its instrument hosts, which put their instruments in their safe state,
close their files as ``interrupted`` and exit; a daemon killed with its hosts (its process group:
as in a power cut) leaves files saying ``running``, which the next daemon recovers."""

import os
import random
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

from echemd.daemon.client import Client
from echemd.daemon.folder_lock import wait_for_previous_hosts

ECHEMD = [sys.executable, "-m", "echemd.daemon.cli"]


def serve(tmp_path, speed="600"):
    control, publish = f"ipc://{tmp_path}/control", f"ipc://{tmp_path}/publish"
    process = subprocess.Popen([*ECHEMD, "serve", "--control", control, "--publish", publish, "--data-dir", str(tmp_path / "runs"),
                                "--sim-speed", speed], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    client = Client(control, timeout_s=0.5)
    for _ in range(100):
        try:
            client.ping()
            break
        except TimeoutError:
            assert process.poll() is None, process.stderr.read().decode()
    client.timeout_s = 10
    process.data_dir = tmp_path / "runs"
    return process, client


def crash(process, hosts_too=True):
    """SIGKILL the daemon, with its instrument hosts (its process group) or alone.  With its hosts,
    return once they are gone too (a host being killed may still hold its run file's lock: seen as
    'unable to lock file' when the file was opened at once), as the next daemon waits for them."""
    if hosts_too:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    if hosts_too:
        wait_for_previous_hosts(process.data_dir, timeout_s=10)


def check_prefix(path, spacing_s=1.0):
    """The file opens; the prefix every column holds (a kill during a flush can leave one column's
    new extent written and another's not: docs/data-format.md, recovery keeps this prefix) is a
    gap-free prefix of the run: ``spacing_s`` apart within a step (the instrument's clock runs on
    between steps, so each new step may start later)."""
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        n = min(len(f["data"][c]) for c in f["data"])
        t = f["data/time_s"][:n]
        steps = int(np.sum(f["events/kind"][:] == b"step"))
        spacing, expected = np.diff(t), spacing_s or (np.median(np.diff(t)) if n > 1 else 0.0)
        assert np.all(spacing >= expected * (1 - 1e-9)) and np.sum(np.abs(spacing - expected) > 1e-9 * max(1.0, expected)) <= max(0, steps - 1)
        assert np.all(np.isfinite(f["data/voltage_V"][:n]))
        return n, str(f.attrs["status"])


def test_sigkill_mid_run_six_times_with_and_without_the_hosts_loses_no_flushed_sample(tmp_path):
    rng = random.Random(7)
    killed = []  # (run_id, samples the daemon had reported >= 1 s before the kill, hosts killed too)
    process = None
    try:
        for k in range(6):
            process, client = serve(tmp_path)  # (waits for the hosts of a daemon killed alone to end)
            if killed:  # the restarted daemon reports the previous run interrupted, with what it had flushed
                run_id, reported, hosts_too = killed[-1]
                record = client.wait(run_id, timeout_s=20)  # recovered in the background: `recovering` until then
                assert record["status"] == "interrupted"
                assert hosts_too or "the daemon was lost" in record["error"]  # its host closed the file itself
                n, status = check_prefix(tmp_path / "runs" / f"{run_id}.h5")
                assert status == "interrupted" and n >= reported
            run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)
            deadline = time.monotonic() + 20
            while client.status(run_id)["n_samples"] == 0:
                assert time.monotonic() < deadline, "the run did not start"
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
            reported = client.status(run_id)["n_samples"]
            time.sleep(1.1)  # longer than the flush interval (0.5 s) plus one block (at most 0.25 s)
            hosts_too = k % 2 == 0
            crash(process, hosts_too)
            client.close()
            if hosts_too:
                n, status = check_prefix(tmp_path / "runs" / f"{run_id}.h5")  # readable right after the crash
                assert status == "running" and n >= reported > 0
            killed.append((run_id, reported, hosts_too))
        process, client = serve(tmp_path)
        client.wait(killed[-1][0], timeout_s=20)
        statuses = {r["run_id"]: r["status"] for r in client.runs()}
        assert all(statuses[run_id] == "interrupted" for run_id, _, _ in killed)
        record = client.wait(client.submit("ccd", "sim-pstat-1", diameter_mm=2.0), timeout_s=60)
        assert record["status"] == "completed"
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)


def test_sigkill_at_random_moments_among_short_runs_leaves_every_file_readable_and_every_run_accounted_for(tmp_path):
    """Runs back to back at full speed: kills land in file creation, writing, closing, compression
    and the start-up itself; every submitted run must come back with its status, every file readable.

    At full speed a fresh cell's CCD takes ~50 ms and the next ones, on the shorted cell, a few ms:
    a kill at a moment drawn over a second finds a run going about one time in twenty.  So every
    other kill is drawn within a few ms of the cycle's first run file appearing (the daemon's own
    record of the run lags its host by up to a progress beat, longer than such a run)."""
    rng = random.Random(20261202)
    submitted: list[str] = []
    process = None
    try:
        for cycle in range(8):
            process, client = serve(tmp_path, "max")
            cycle_runs = [client.submit("ccd", "sim-pstat-1", diameter_mm=2.0) for _ in range(4)]
            submitted += cycle_runs
            while next(i for i in client.instruments() if i["name"] == "sim-pstat-1")["state"] == "starting":
                time.sleep(0.02)  # (its host is starting: the runs begin once it is up)
            if cycle % 2:
                time.sleep(rng.uniform(0.0, 1.0))
            else:
                deadline = time.monotonic() + 10
                while not (tmp_path / "runs" / f"{cycle_runs[0]}.h5").exists() and time.monotonic() < deadline:
                    time.sleep(0.001)
                time.sleep(rng.uniform(0.0, 0.005))
            crash(process)
            client.close()
            for path in (tmp_path / "runs").glob("*.h5"):  # readable right after the crash
                check_prefix(path, spacing_s=None)
        process, client = serve(tmp_path, "max")
        for run_id in submitted:  # the ones still queued run now
            assert client.wait(run_id, timeout_s=60)["status"] in ("completed", "interrupted")
        listed = {record["run_id"]: record for record in client.runs()}
        assert set(submitted) <= set(listed)
        assert any(listed[run_id]["status"] == "interrupted" for run_id in submitted)
        for path in (tmp_path / "runs").glob("*.h5"):
            with h5py.File(path, "r") as f:  # closed for good: opens without SWMR
                assert str(f.attrs["status"]) in ("completed", "interrupted")
        assert not [p.name for p in (tmp_path / "runs").iterdir() if p.suffix in (".creating", ".rewriting", ".ready")]
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
