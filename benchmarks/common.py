"""Helpers for the benchmark scripts: a daemon on the simulated lab, medians, printing."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from echemd.config import load_default_config
from echemd.daemon.client import Client
from echemd.daemon.service import Daemon


@contextmanager
def simulated_daemon(**changes):
    """A daemon with the embedded simulated lab on free loopback ports, run files in a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        config = load_default_config().model_copy(update={
            "control_endpoint": "tcp://127.0.0.1:*", "publish_endpoint": "tcp://127.0.0.1:*", "data_dir": Path(folder), **changes,
        })
        daemon = Daemon(config)
        try:
            with Client(daemon.control.endpoint) as client:
                wait_for_hosts(client)
                yield daemon, client
        finally:
            daemon.close()


def wait_for_hosts(client: Client, timeout_s: float = 60.0) -> None:
    """Return once no instrument is ``starting`` (its host is up): timings leave the start-up out."""
    deadline = time.monotonic() + timeout_s
    while any(instrument["state"] == "starting" for instrument in client.instruments()):
        if time.monotonic() > deadline:
            raise TimeoutError("instrument hosts still starting")
        time.sleep(0.05)


def median(values) -> float:
    return statistics.median(values)


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def host_pids(daemon) -> list[int]:
    """The process ids of a daemon's instrument hosts (none when its instruments run in its own process)."""
    return [host.process.pid for host in daemon.hosts.hosts.values()] if daemon.hosts is not None else []


def process_cpu_s(pid: int) -> float:
    """User + system CPU of a running process, s (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process (this one by default), MB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024
