"""Run by tests/test_full_disk.py as root of its own mount namespace (``unshare -rm``): a daemon
whose data folder is a small tmpfs that fills mid-run.  Exits 0 when every check holds."""

import os
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

from conftest import lab_config
from echemd.daemon import service
from echemd.daemon.client import Client
from echemd.daemon.service import Daemon
from helpers import until

scratch = Path(sys.argv[1])
disk = scratch / "disk"
disk.mkdir()
os.system(f"mount -t tmpfs -o size=8m tmpfs {disk}") == 0 or sys.exit(77)
service.REPLACEMENT_RETRY_S = 0.1
ballast = disk / "ballast"
ballast.write_bytes(b"\0" * 4 * 2**20)  # someone else's 4 MB: deleting it gives the space back
config = lab_config(scratch, data_dir=disk / "runs", disk_reserve_mb=1.0)


def open_fds():
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return sorted(link for link in links if link.startswith(str(disk)))


daemon = Daemon(config, sim_speed=300.0)  # ~30,000 samples/s: the disk fills within seconds, write by write
with Client(daemon.control.endpoint) as client:
    filled = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0, sample_interval_s=0.01, capacity_mAh_cm2=5.0)
    record = client.wait(filled, timeout_s=60)
    assert record["status"] == "failed" and "disk full" in record["error"], record
    assert daemon.runners["sim-pstat-1"].instrument.output_on is False and daemon.queues["sim-pstat-1"].state == "idle"
    path = Path(record["file"])
    with h5py.File(path, "r", libver="latest", swmr=True) as f:  # what was flushed, gap-free, no zeros
        t = f["data/time_s"][:]
        assert len(t) > 0 and all(len(f["data"][c]) == len(t) for c in f["data"]) and np.all(np.diff(t) > 0)
        assert np.all(f["data/voltage_V"][:] != 0) and f["stream/block_offset"][-1] < len(t)
    assert open_fds() == [str(disk / "runs" / ".echemd.lock")], open_fds()  # no handle leaked

    filler = disk / "filler"  # whatever the failed write left above the reserve, someone else takes
    filler.write_bytes(b"\0" * max(0, shutil.disk_usage(disk).free - 2**20 - 100_000))
    refused = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)  # the disk is still full
    record = client.wait(refused, timeout_s=30)
    assert record["status"] == "failed" and "cannot create the run file" in record["error"] and "disk full" in record["error"]
    assert sorted(p.name for p in (disk / "runs").glob("*.h5*")) == [path.name]  # no empty or partial files

    ballast.unlink()  # space is back: the daemon writes the first run's end
    filler.unlink()
    until(lambda: h5py.File(path, "r", libver="latest", swmr=True).attrs["status"] == "failed")
    with h5py.File(path, "r") as f:
        assert "disk full" in f.attrs["error"] and len(f["data/time_s"]) == len(t)
    # then its submission record goes (the file is its record now; removed after the end is written)
    until(lambda: not (disk / "runs" / "submitted" / f"{filled}.json").exists())
daemon.close()  # (a full disk used to make this segfault)

daemon = Daemon(config)  # a restart finds both runs, as they ended
try:
    with Client(daemon.control.endpoint) as client:
        statuses = {r["run_id"]: (r["status"], r["error"]) for r in client.runs()}
        assert statuses[filled][0] == "failed" and statuses[refused][0] == "failed" and "disk full" in statuses[refused][1]
        assert client.wait(client.submit("ccd", "sim-pstat-1", diameter_mm=2.0), timeout_s=60)["status"] == "completed"
finally:
    daemon.close()
print("full disk: every check held")
