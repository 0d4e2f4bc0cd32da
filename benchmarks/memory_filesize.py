"""Resident memory over a long run, and run-file size per sample against the raw data.

A plating run of N samples (default 10 million, 100 Hz cell time, as fast as the simulator goes)
through the daemon; the resident memory of the daemon and its instrument hosts is sampled every 0.5 s.  Target: growth
< 20 MB.  Then the run file's size per sample against the raw 24 bytes (three float64 columns), and
what HDF5 compression would do on the same data, timed: on the closed file, and while the file is
written as the daemon writes it (small appends, each flushed), where every flush rewrites the
chunk being filled.

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

from common import host_pids, process_rss_mb, simulated_daemon
from echemd.daemon.runfile import CHUNK

INTERVAL_S = 0.01
COMPRESSIONS = (("none", {}), ("lzf", {"compression": "lzf"}), ("shuffle+lzf", {"compression": "lzf", "shuffle": True}),
                ("shuffle+gzip-1", {"compression": "gzip", "compression_opts": 1, "shuffle": True}))
LIVE_SAMPLES, LIVE_BATCH = 400_000, 250  # 1 kHz flushed every 0.25 s


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
        pids = ["self", *host_pids(daemon)]

        def rss_mb() -> float:  # the daemon and its instrument hosts
            return sum(map(process_rss_mb, pids))

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
        compressed = "compressed when the run ended" if daemon.config.compress_closed_runs else "uncompressed"
        print(f"run file ({compressed}): {size / n:.1f} bytes/sample vs 24 raw ({size / (24 * n):.2f}x)")
        with tempfile.TemporaryDirectory() as folder:
            print("compressing the closed file (whole columns at once):")
            for name, options in COMPRESSIONS:
                target = Path(folder) / f"closed-{name}.h5"
                t0 = time.perf_counter()
                with h5py.File(target, "w") as f:
                    for column, values in data.items():
                        f.create_dataset(column, data=values, chunks=(CHUNK,), **options)
                seconds = time.perf_counter() - t0
                print(f"  {name:<14} {target.stat().st_size / n:5.1f} bytes/sample, written in {seconds:.2f} s")
            live = {column: values[:LIVE_SAMPLES] for column, values in data.items()}
            print(f"compressing while the run is written ({LIVE_SAMPLES:,} samples appended {LIVE_BATCH} at a time, "
                  "flushed after each, SWMR: the daemon's pattern at 1 kHz):")
            for name, options in COMPRESSIONS:
                target = Path(folder) / f"live-{name}.h5"
                seconds = write_live(target, live, options)
                print(f"  {name:<14} {target.stat().st_size / LIVE_SAMPLES:5.1f} bytes/sample, {seconds / LIVE_SAMPLES * 1e6:.2f} us/sample")


def write_live(path: Path, data: dict[str, np.ndarray], options: dict) -> float:
    """Append ``data`` in LIVE_BATCH-sample batches with a flush after each, as the run file does; seconds taken."""
    with h5py.File(path, "w", libver="latest") as f:
        datasets = {c: f.create_dataset(c, shape=(0,), maxshape=(None,), dtype="<f8", chunks=(CHUNK,), **options) for c in data}
        f.swmr_mode = True
        t0 = time.perf_counter()
        for start in range(0, len(data["time_s"]), LIVE_BATCH):
            for column, values in data.items():
                batch = values[start : start + LIVE_BATCH]
                datasets[column].resize((start + len(batch),))
                datasets[column][start:] = batch
            f.flush()
        return time.perf_counter() - t0


if __name__ == "__main__":
    main()
