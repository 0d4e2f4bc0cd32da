"""Latency at 1 kHz per channel and scale to many channels, on 2 cores.

For N simulated potentiostats sampling at 1 kHz in real time (clock 1), each running a plating
step, a subscriber measures every sample's latency: arrival time minus acquisition time (run start
+ sample time).  Also: samples lost (must be 0), daemon CPU (cores) and resident memory.
Baseline, in the same run: the same blocks published by a bare pyzmq script (no run file, no
engine): the latency the block size alone costs.  Targets: p99 <= 20 ms; 64 channels lossless.

    .venv/bin/python benchmarks/latency_scale.py [--channels 1 8 64] [--seconds 5]
"""

from __future__ import annotations

import argparse
import resource
import threading
import time

import numpy as np
import zmq

from common import percentile, simulated_daemon
from echemd.config import SimulatedPotentiostatConfig
from echemd.daemon.client import Subscription
from echemd.daemon.stream import DataBlock
from echemd.drivers.simulated.clock import MAX_BLOCK_REAL_S

RATE_HZ = 1000.0


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def measure(channels: int, seconds: float) -> dict:
    pstat = {"driver": "simulated-potentiostat", "clock": 1.0, "limits": {"max_abs_voltage_V": 5.0, "max_abs_current_A": 0.1}}
    instruments = [SimulatedPotentiostatConfig(name=f"ch{k}", **pstat, cell={"seed": k}) for k in range(channels)]
    with simulated_daemon(instruments=instruments) as (daemon, client):
        latencies, counts = [], {}
        with Subscription(zmq.Context.instance(), daemon.publisher.endpoint, b"run.") as subscription:
            subscription.wait_connected()
            cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
            runs = [client.submit("plate-until-short", f"ch{k}", diameter_mm=2.0, current_mA_cm2=0.5, max_hours=seconds / 3600,
                                  sample_interval_s=1 / RATE_HZ, smoothing_samples=15) for k in range(channels)]
            deadline = time.monotonic() + seconds + 10
            while time.monotonic() < deadline and sum(counts.values()) < channels * seconds * RATE_HZ:
                message = subscription.receive(1.0)
                if isinstance(message, DataBlock):
                    arrived = time.time()
                    latencies.extend(arrived - (message.t0 + message.columns["time_s"]))
                    counts[message.run_id] = counts.get(message.run_id, 0) + len(message)
            cpu1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        for run_id in runs:
            client.wait(run_id, timeout_s=30)
        expected = channels * round(seconds * RATE_HZ)
        cores = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / (wall1 - wall0)
        return {"received": sum(counts.values()), "expected": expected, "p50_ms": percentile(latencies, 50) * 1e3,
                "p99_ms": percentile(latencies, 99) * 1e3, "cores": cores, "rss_mb": rss_mb()}


def baseline(seconds: float) -> dict:
    """The same 1 kHz blocks (MAX_BLOCK_REAL_S long) through bare pyzmq: what the block size alone costs."""
    context = zmq.Context.instance()
    pub = context.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{port}")
    time.sleep(0.3)
    per_block = int(MAX_BLOCK_REAL_S * RATE_HZ)
    latencies = []

    def produce():
        start = time.time()
        for k in range(int(seconds * RATE_HZ / per_block)):
            times = start + (k * per_block + np.arange(1, per_block + 1)) / RATE_HZ
            time.sleep(max(0.0, times[-1] - time.time()))
            pub.send(times.tobytes())
        pub.send(b"")

    threading.Thread(target=produce, daemon=True).start()
    while (frame := sub.recv()):
        latencies.extend(time.time() - np.frombuffer(frame))
    pub.close(0)
    sub.close(0)
    return {"p50_ms": percentile(latencies, 50) * 1e3, "p99_ms": percentile(latencies, 99) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    base = baseline(args.seconds)
    print(f"baseline (bare pyzmq, {MAX_BLOCK_REAL_S * 1e3:.0f} ms blocks): p50 {base['p50_ms']:.1f} ms, p99 {base['p99_ms']:.1f} ms")
    print(f"{'channels':>8}{'received':>12}{'lost':>7}{'p50 ms':>9}{'p99 ms':>9}{'p99/base':>9}{'cores':>7}{'RSS MB':>8}")
    for n in args.channels:
        r = measure(n, args.seconds)
        print(f"{n:8d}{r['received']:12d}{r['expected'] - r['received']:7d}{r['p50_ms']:9.1f}{r['p99_ms']:9.1f}"
              f"{r['p99_ms'] / base['p99_ms']:9.2f}{r['cores']:7.2f}{r['rss_mb']:8.0f}")


if __name__ == "__main__":
    main()
