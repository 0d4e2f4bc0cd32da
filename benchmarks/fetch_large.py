"""Fetching a million samples: time and bytes as JSON and as binary frames, the other clients'
ping meanwhile, and the daemon's memory after repeated fetches.

Baseline, in the same run: reading the same columns straight from the closed run file with h5py
(eleven times, in turn with eleven binary fetches: the medians are compared).
Targets: binary fetch of 1 M samples within 3x the h5py read; ping p99 while fetches run
<= 50 ms (disk reads run off the control thread); memory growth over 10 fetches < 50 MB (replies
are never cached).

    .venv/bin/python benchmarks/fetch_large.py [--samples 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import h5py

from common import median, percentile, simulated_daemon
from echemd.daemon.client import Client

#: Whole reads with h5py and whole binary fetches, taken in turn.
ROUNDS = 11


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


FETCHER = """
import sys, time
from echemd.daemon.client import Client
endpoint, run_id, mode, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
client, deadline = Client(endpoint, timeout_s=120), time.monotonic() + seconds
while time.monotonic() < deadline:
    seq, complete = 0, False
    while not complete:
        if mode == "binary":
            blocks, reply = client.fetch_blocks(run_id, seq, max_samples=1_000_000)
            seq = blocks[-1].seq + 1 if blocks else seq
        else:
            reply = client.fetch(run_id, seq, max_samples=1_000_000)
            seq = reply["blocks"][-1]["seq"] + 1 if reply["blocks"] else seq
        complete = reply["complete"] and seq >= reply["n_blocks"]
"""


def ping_while(endpoint: str, process: subprocess.Popen) -> list[float]:
    """Ping round trips (s) every 10 ms until ``process`` ends."""
    times = []
    with Client(endpoint) as client:
        while process.poll() is None:
            sent = time.perf_counter()
            client.ping()
            times.append(time.perf_counter() - sent)
            time.sleep(0.01)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    args = parser.parse_args()
    with simulated_daemon(compress_closed_runs=False) as (daemon, client):
        # one plating/stripping cycle sampled every 10 ms: 1 M samples in 10,000 s of cell time
        run_id = client.submit("cycling", "sim-pstat-1", diameter_mm=2.0, sample_interval_s=0.01, current_mA_cm2=0.1, cycles=1,
                               capacity_mAh_cm2=args.samples * 0.01 / 2 / 3600 * 0.1)
        record = client.wait(run_id, timeout_s=600)
        n = record["n_samples"]
        path = record["file"]
        client.timeout_s = 120

        def read_with_h5py() -> tuple[float, int]:
            started = time.perf_counter()
            with h5py.File(path, "r") as f:
                columns = {name: f["data"][name][:] for name in f["data"]}
            return time.perf_counter() - started, len(columns)

        def whole(fetch, size_of) -> tuple[float, int]:
            """Time (s) to fetch the whole run, and its bytes (counted off the clock)."""
            elapsed, seq, size = 0.0, 0, 0
            while seq is not None:
                started = time.perf_counter()
                seq, reply = fetch(seq)
                elapsed += time.perf_counter() - started
                size += size_of(reply)
            return elapsed, size

        def json_fetch(seq):
            reply = client.fetch(run_id, seq, max_samples=1_000_000)
            return (reply["blocks"][-1]["seq"] + 1 if reply["blocks"] and not reply["complete"] else None), reply

        def binary_fetch(seq):
            blocks, reply = client.fetch_blocks(run_id, seq, max_samples=1_000_000)
            return (blocks[-1].seq + 1 if blocks and not reply["complete"] else None), (blocks, reply)

        def json_size(reply) -> int:
            return len(json.dumps(reply))

        def binary_size(answer) -> int:
            blocks, reply = answer
            return sum(values.nbytes for block in blocks for values in block.columns.values()) + len(json.dumps(reply))

        json_s, json_bytes = whole(json_fetch, json_size)
        baseline_times, binary_times = [], []
        for _ in range(ROUNDS):  # interleaved: the machine's noise falls on both alike
            baseline_times.append(read_with_h5py())
            binary_times.append(whole(binary_fetch, binary_size))
        baseline_s, n_columns = median([t for t, _ in baseline_times]), baseline_times[0][1]
        binary_s, binary_bytes = median([t for t, _ in binary_times]), binary_times[0][1]

        pings = {}
        for mode in ("binary", "json"):  # another process fetches the whole run again and again
            fetcher = subprocess.Popen([sys.executable, "-c", FETCHER, daemon.control.endpoint, run_id, mode, "8"])
            pings[mode] = ping_while(daemon.control.endpoint, fetcher)
        memory_before = rss_mb()
        for _ in range(5):
            whole(json_fetch, json_size)
            whole(binary_fetch, binary_size)
        memory_after = rss_mb()
    print(f"run: {n:,} samples, {n_columns} columns; h5py read of the closed file (baseline): {baseline_s * 1e3:.0f} ms (median of {ROUNDS})")
    print(f"fetch as JSON:   {json_s:.2f} s, {json_bytes / 1e6:.0f} MB on the wire")
    print(f"fetch as binary: {binary_s:.3f} s (median of {ROUNDS}, interleaved with the baseline's reads), {binary_bytes / 1e6:.0f} MB; {binary_s / baseline_s:.1f}x the h5py read, "
          f"{json_s / binary_s:.0f}x faster than JSON")
    for mode, times in pings.items():
        print(f"ping while another process fetches the whole run as {mode} for 8 s: p50 {percentile(times, 50) * 1e3:.1f} ms, "
              f"p99 {percentile(times, 99) * 1e3:.1f} ms, max {max(times) * 1e3:.0f} ms ({len(times)} pings)")
    print(f"process memory (daemon + this client): {memory_before:.0f} MB before 10 more whole fetches, {memory_after:.0f} MB after "
          f"(peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
