"""Resident memory over a long run, and run-file size per sample against the raw data.

A plating run of N samples (default 10 million, 100 Hz cell time, as fast as the simulator goes)
through the daemon; the daemon process's resident memory is sampled every 0.5 s.  Target: growth
< 20 MB.  Then the run file's size per sample against the raw 24 bytes (three float64 columns), and
what HDF5 compression would save on the same data (lzf, gzip), timed.

    .venv/bin/python benchmarks/memory_filesize.py [--samples 10000000]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np

from common import simulated_daemon

INTERVAL_S = 0.01


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000_000)
    args = parser.parse_args()
    hours = args.samples * INTERVAL_S / 3600
    readings, done = [], threading.Event()

    def sample_memory():
        while not done.wait(0.5):
            readings.append(rss_mb())

    with simulated_daemon() as (daemon, client):
        before = rss_mb()
        threading.Thread(target=sample_memory, daemon=True).start()
        start = time.perf_counter()
        run_id = client.submit("plate-until-short", "sim-pstat-1", diameter_mm=2.0, current_mA_cm2=0.5, max_hours=hours,
                               sample_interval_s=INTERVAL_S, voltage_limit_V=2.0)
        record = client.wait(run_id, timeout_s=3600, poll_s=0.5)
        elapsed = time.perf_counter() - start
        done.set()
        path = Path(record["file"])
        size = path.stat().st_size
        with h5py.File(path, "r") as f:
            data = {name: f["data"][name][:] for name in f["data"]}
        n = record["n_samples"]
        print(f"{n:,} samples in {elapsed:.1f} s ({n / elapsed:,.0f} samples/s)")
        early = np.median(readings[: max(1, len(readings) // 10)])
        print(f"resident memory: {before:.0f} MB before, {early:.0f} MB early in the run, {max(readings):.0f} MB peak, "
              f"{readings[-1]:.0f} MB at the end: growth {max(readings) - early:.1f} MB "
              f"(target < 20 MB: {'met' if max(readings) - early < 20 else 'MISSED'})")
        print(f"run file: {size / n:.1f} bytes/sample vs 24 raw ({size / (24 * n):.2f}x)")
        with tempfile.TemporaryDirectory() as folder:
            for name, options in (("none", {}), ("lzf", {"compression": "lzf"}), ("gzip 4", {"compression": "gzip", "compression_opts": 4})):
                target = Path(folder) / f"{name.replace(' ', '')}.h5"
                t0 = time.perf_counter()
                with h5py.File(target, "w") as f:
                    for column, values in data.items():
                        f.create_dataset(column, data=values, chunks=(4096,), **options)
                seconds = time.perf_counter() - t0
                print(f"  compression {name:<7} {target.stat().st_size / n:5.1f} bytes/sample, written in {seconds:.2f} s")


if __name__ == "__main__":
    main()
