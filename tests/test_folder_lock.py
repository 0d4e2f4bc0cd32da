"""One daemon per data folder: a second one is refused before it touches a file, and the first one's
live run is kept whole (a second daemon used to rewrite it as `interrupted` under the first)."""

import os
import subprocess
import sys
import time

import h5py
import pytest

from echemd.daemon.client import Client
from echemd.daemon.folder_lock import FolderInUse
from echemd.daemon.service import Daemon
from helpers import ccd_under_way


def test_a_second_daemon_on_the_same_folder_is_refused_and_the_live_run_is_kept(lab):
    first = Daemon(lab(), sim_speed=3000.0)  # the CCD runs for ~3 s
    try:
        with Client(first.control.endpoint) as client:
            run_id = ccd_under_way(client, 500)
            with pytest.raises(FolderInUse, match=f"in use by another echemd daemon \\(pid {os.getpid()} on "):
                Daemon(lab())
            record = client.wait(run_id, timeout_s=60)
    finally:
        first.close()
    assert record["status"] == "completed" and record["result"]["stopped_by"] == "short"
    with h5py.File(record["file"], "r") as f:
        assert f.attrs["status"] == "completed" and len(f["data/time_s"]) == record["n_samples"]
    Daemon(lab()).close()  # the folder is free again once the first daemon has stopped


def test_echemd_serve_on_a_folder_in_use_exits_2_naming_the_holder(tmp_path):
    serve = [sys.executable, "-m", "echemd.daemon.cli", "serve", "--data-dir", str(tmp_path),
             "--control", "tcp://127.0.0.1:0", "--publish", "tcp://127.0.0.1:0"]
    holder = subprocess.Popen(serve, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / ".echemd.lock.holder").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run(serve, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"in use by another echemd daemon (pid {holder.pid} on" in second.stderr and "--data-dir" in second.stderr
    finally:
        holder.terminate()
        assert holder.wait(30) == 0
    assert not (tmp_path / ".echemd.lock.holder").exists()
