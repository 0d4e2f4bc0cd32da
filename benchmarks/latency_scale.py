"""Latency at 1 kHz per channel and scale to many channels, on 2 cores.

For N simulated potentiostats sampling at 1 kHz in real time (clock 1), each running a plating
step, a subscriber in its own process (as a lab's client would be; it subscribes to its runs, which
wait in their instruments' queues until it is connected) measures every sample's latency: arrival
time minus acquisition time (``t0 + time_s``: the run's time zero and the instrument's clock are
read together, and a simulated instrument's clock follows the wall clock).  Also: samples lost
(must be 0), the CPU (cores) and resident memory of the daemon and its instrument hosts, and the
round trip of a control ``ping`` sent every 10 ms by another process while the channels run.

Baselines, in the same run:
- latency: the same 10 ms blocks (a simulated instrument polled every POLL_REAL_S) published by a
  bare pyzmq script to a subscriber process: what the block size alone costs;
- CPU: the N simulated instruments alone (cell model and pacing, read by one acquisition loop as
  a host reads them, every block thrown away), so the
  daemon's own share is the difference: the simulation runs inside the hosts here, while real
  instruments compute their samples themselves;
- ping: the same request, timed by the same process between two of its pings, sent to a bare pyzmq
  ROUTER in a process of its own that sends it back: the round trip the loaded machine alone allows.

Targets (2-core machine): 64 channels at 1 kHz lossless, p99 <= 40 ms, ping p99 <= 5 ms; (16-core
machine) 256 channels p99 <= 25 ms.

    .venv/bin/python benchmarks/latency_scale.py [--channels 1 8 32 64] [--seconds 5] [--hosts N] [--tcp-link] [--repeat N]
                                                 [--subscribers N] [--pin-hosts]

``--hosts``: instrument hosts (default: the daemon's, one per core; 0: every instrument in the
daemon's process, as before the hosts).  ``--tcp-link``: the daemon and its hosts meet over TCP on
loopback with CURVE, as on Windows (default here: ipc sockets).  ``--repeat``: measure each channel
count N times (a row each) and end with the medians: on a noisy 2-core machine one run's p99 can
be half or twice the next one's.  ``--pin-hosts``: each host on a core of its own, the daemon and
the measuring processes on the others (Linux; needs more cores than hosts): a host as it runs on a
machine with a core for every host.  ``--subscribers``: share the runs out among N subscriber
processes: one Python process receiving every block needs ~40 us of CPU per block (waking for
it, decoding it, timing its samples; measured at 64 channels), so from ~200 channels (20,000
blocks/s) one subscriber would be the bottleneck of a machine with cores to spare (on 16 cores:
256 channels with 4).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import threading
import time

import numpy as np
import zmq

from common import host_pids, process_cpu_s, process_rss_mb, simulated_daemon
from echemd.config import SimulatedPotentiostatConfig
from echemd.daemon import hosts as instrument_hosts
from echemd.daemon.acquisition_loop import AcquisitionLoop
from echemd.daemon.client import Subscription
from echemd.daemon.stream import DataBlock, run_topic
from echemd.drivers.simulated import SimulatedPotentiostat
from echemd.drivers.simulated.clock import POLL_REAL_S

RATE_HZ = 1000.0
CURRENT_A = -1.57e-5  # 0.5 mA/cm2 on a 2 mm disc


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def echo_until_stopped(endpoints) -> None:
    """In a child process: a bare pyzmq ROUTER that sends every message back (the ping baseline)."""
    router = zmq.Context.instance().socket(zmq.ROUTER)
    endpoints.put(f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}")
    while (frames := router.recv_multipart())[-1] != b"stop":
        router.send_multipart(frames)
    router.close(0)


def ping_while(endpoint: str, seconds: float, results) -> None:
    """In a child process: every 10 ms a control ping to the daemon, and between two of them the
    same request to a bare pyzmq echo process (the baseline: what a round trip between two
    processes costs on this machine under the same load); reports both round trips."""
    from echemd.daemon.client import Client

    spawn = multiprocessing.get_context("spawn")
    endpoints = spawn.Queue()
    echo = spawn.Process(target=echo_until_stopped, args=(endpoints,))
    echo.start()
    bare = zmq.Context.instance().socket(zmq.DEALER)
    bare.connect(endpoints.get(timeout=30))
    request = b'{"id": "1", "method": "ping", "params": {}}'
    bare.send(request)
    bare.recv()  # (connected)
    times, bare_times = [], []
    with Client(endpoint, timeout_s=10) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            client.ping()
            times.append(time.perf_counter() - started)
            time.sleep(0.005)
            started = time.perf_counter()
            bare.send(request)
            bare.recv()
            bare_times.append(time.perf_counter() - started)
            time.sleep(0.005)
    bare.send(b"stop")
    bare.close(linger=1000)
    echo.join(10)
    results.put({"ping_p50_ms": float(np.percentile(times, 50) * 1e3), "ping_p99_ms": float(np.percentile(times, 99) * 1e3),
                 "bare_ping_p99_ms": float(np.percentile(bare_times, 99) * 1e3)})


def subscribe(endpoint: str, run_ids: list[str], seconds: float, ready, results) -> None:
    """In a child process: receive the data blocks of ``run_ids``, time every sample; reports the
    samples received and every latency, s."""
    latencies, received = [], 0
    expected = len(run_ids) * round(seconds * RATE_HZ)
    with Subscription(zmq.Context.instance(), endpoint, [run_topic(run_id, "data") for run_id in run_ids]) as subscription:
        subscription.wait_connected()
        ready.set()
        deadline = time.monotonic() + seconds + 60
        while time.monotonic() < deadline and received < expected:
            message = subscription.receive(1.0)
            if isinstance(message, DataBlock):
                latencies.append(time.time() - (message.t0 + message.columns["time_s"]))
                received += len(message)
    results.put((received, np.concatenate(latencies) if latencies else np.array([np.nan])))


def channel_configs(channels: int) -> list[SimulatedPotentiostatConfig]:
    pstat = {"driver": "simulated-potentiostat", "clock": 1.0, "limits": {"max_abs_voltage_V": 5.0, "max_abs_current_A": 0.1}}
    return [SimulatedPotentiostatConfig(name=f"ch{k}", **pstat, cell={"seed": k}) for k in range(channels)]


def wait_running(client, run_ids: list[str], timeout_s: float = 60.0) -> None:
    """Return once every run of ``run_ids`` is running (a host starts many runs one after another)."""
    deadline = time.monotonic() + timeout_s
    while (statuses := {client.status(run_id)["status"] for run_id in run_ids}) != {"running"}:
        if statuses - {"queued", "running"}:
            raise RuntimeError(f"a placeholder run ended before it was needed ({sorted(statuses)})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the placeholder runs did not all start within {timeout_s:.0f} s")
        time.sleep(0.1)


def pin(pid: int | str, cores: set[int]) -> None:
    """Every thread of process ``pid`` (threads it starts later inherit it) on ``cores`` (Linux)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cores)


def pin_hosts(daemon) -> set[int]:
    """Each instrument host on a core of its own (the last ones), this process (the daemon, and
    the processes it starts from now on) on the others: as on a machine with a core for every host.
    Returns the cores this process had."""
    pids, cores = host_pids(daemon), sorted(os.sched_getaffinity(0))
    if len(cores) <= len(pids):
        raise SystemExit(f"--pin-hosts needs more cores than hosts ({len(cores)} cores, {len(pids)} hosts)")
    for pid, core in zip(pids, reversed(cores)):
        pin(pid, {core})
    pin("self", set(cores[:len(cores) - len(pids)]))
    return set(cores)


def measure(channels: int, seconds: float, hosts: int | None, subscribers: int, pinned: bool = False) -> dict:
    spawn = multiprocessing.get_context("spawn")
    results, pings = spawn.Queue(), spawn.Queue()
    plating = {"diameter_mm": 2.0, "current_mA_cm2": 0.5}
    with simulated_daemon(instruments=channel_configs(channels), instrument_hosts=hosts) as (daemon, client):
        all_cores = pin_hosts(daemon) if pinned else None
        # every instrument busy first (a slowly sampled run), so that the measured runs wait in
        # their queues while the subscribers, who must know their run ids, connect
        placeholders = [client.submit("plate-until-short", f"ch{k}", **plating, max_hours=1.0, sample_interval_s=0.5) for k in range(channels)]
        runs = [client.submit("plate-until-short", f"ch{k}", **plating, max_hours=seconds / 3600, sample_interval_s=1 / RATE_HZ,
                              smoothing_s=15 / RATE_HZ) for k in range(channels)]
        wait_running(client, placeholders)
        readies = [spawn.Event() for _ in range(subscribers)]
        children = [spawn.Process(target=subscribe, args=(daemon.publisher.endpoint, runs[k::subscribers], seconds, ready, results))
                    for k, ready in enumerate(readies)]
        for child in children:
            child.start()
        if not all(ready.wait(60) for ready in readies):
            raise RuntimeError("a subscriber process did not connect")
        if {client.status(run_id)["status"] for run_id in placeholders} != {"running"}:
            raise RuntimeError("a placeholder run ended before the subscribers connected: a measured run started unobserved")
        pinger = spawn.Process(target=ping_while, args=(daemon.control.endpoint, seconds, pings))
        pids = host_pids(daemon)
        host_cpu0 = {pid: process_cpu_s(pid) for pid in pids}
        cpu0, wall0 = cpu_s() + sum(host_cpu0.values()), time.monotonic()
        for run_id in placeholders:  # the measured runs start
            client.abort(run_id)
        pinger.start()
        for run_id in runs:
            client.wait(run_id, timeout_s=seconds + 60)
        host_cpu = {pid: process_cpu_s(pid) - host_cpu0[pid] for pid in pids}
        wall = time.monotonic() - wall0
        cores = (cpu_s() + sum(host_cpu0.values()) + sum(host_cpu.values()) - cpu0) / wall
        busiest_host = max(host_cpu.values(), default=0.0) / wall
        rss = process_rss_mb() + sum(map(process_rss_mb, pids))
        received = [results.get(timeout=90) for _ in children]
        for child in children:
            child.join(10)
        pinger.join(seconds + 30)
        if all_cores is not None:
            pin("self", all_cores)
    latency = np.concatenate([latencies for _, latencies in received])
    return {"received": sum(count for count, _ in received), "p50_ms": float(np.percentile(latency, 50) * 1e3),
            "p99_ms": float(np.percentile(latency, 99) * 1e3), "max_ms": float(np.max(latency) * 1e3), **pings.get(timeout=10),
            "expected": channels * round(seconds * RATE_HZ), "cores": cores, "busiest_host": busiest_host, "rss_mb": rss, "hosts": len(pids)}


def simulation_only(channels: int, seconds: float) -> float:
    """Cores the N simulated instruments use alone: read by one acquisition loop, as a host reads
    them, every block thrown away.  (Read by a thread each, waking for every block, the same 64
    instruments took 0.58-0.64 cores against the loop's 0.19 on a 2-core machine.)"""
    instruments = [SimulatedPotentiostat(config) for config in channel_configs(channels)]
    loop = AcquisitionLoop()

    def acquire(instrument: SimulatedPotentiostat) -> None:
        instrument.open()
        loop.drive(instrument.galvanostatic(CURRENT_A, seconds, 1 / RATE_HZ), lambda block: True)

    threads = [threading.Thread(target=acquire, args=(instrument,)) for instrument in instruments]
    cpu0, wall0 = cpu_s(), time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spent = (cpu_s() - cpu0) / (time.monotonic() - wall0)
    loop.close()
    return spent


def publish_10ms_blocks(endpoint_queue, seconds: float) -> None:
    """In a child process: publish 1 kHz timestamps in POLL_REAL_S blocks, paced in real time."""
    pub = zmq.Context.instance().socket(zmq.PUB)
    endpoint_queue.put(f"tcp://127.0.0.1:{pub.bind_to_random_port('tcp://127.0.0.1')}")
    time.sleep(0.5)  # slow joiner
    per_block = round(POLL_REAL_S * RATE_HZ)
    start = time.time()
    for k in range(int(seconds * RATE_HZ / per_block)):
        times = start + (k * per_block + np.arange(1, per_block + 1)) / RATE_HZ
        time.sleep(max(0.0, times[-1] - time.time()))
        pub.send(times.tobytes())
    pub.send(b"")
    pub.close(linger=1000)


def latency_baseline(seconds: float) -> dict:
    """The same blocks through bare pyzmq between two processes: the latency the block size alone costs."""
    spawn = multiprocessing.get_context("spawn")
    endpoints = spawn.Queue()
    producer = spawn.Process(target=publish_10ms_blocks, args=(endpoints, seconds))
    producer.start()
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoints.get(timeout=30))
    latencies = []
    while (frame := sub.recv()):
        latencies.append(time.time() - np.frombuffer(frame))
    producer.join()
    sub.close(0)
    latency = np.concatenate(latencies)
    return {"p50_ms": float(np.percentile(latency, 50) * 1e3), "p99_ms": float(np.percentile(latency, 99) * 1e3)}


def print_row(channels: int, r: dict, base: dict) -> None:
    print(f"{channels:8d}{r['received']:10.0f}{r['expected'] - r['received']:6.0f}{r['p50_ms']:8.1f}{r['p99_ms']:8.1f}{r['max_ms']:8.1f}"
          f"{r['p99_ms'] / base['p99_ms']:9.2f}{r['cores']:7.2f}{r['sim']:9.2f}{r['cores'] - r['sim']:8.2f}{r['rss_mb']:8.0f}"
          f"{r['hosts']:6.0f}{r['busiest_host']:8.2f}{r['ping_p99_ms']:9.2f}{r['bare_ping_p99_ms']:10.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--hosts", type=int, default=None, help="instrument hosts (default: one per core; 0: none)")
    parser.add_argument("--tcp-link", action="store_true", help="the host link over TCP with CURVE, as on Windows")
    parser.add_argument("--repeat", type=int, default=1, help="runs per channel count (the medians follow)")
    parser.add_argument("--subscribers", type=int, default=1, help="subscriber processes, the runs shared out among them")
    parser.add_argument("--pin-hosts", action="store_true", help="each host on a core of its own, everything else on the other cores (Linux)")
    args = parser.parse_args()
    if args.tcp_link:
        instrument_hosts.IPC_LINK = False
    base = latency_baseline(args.seconds)
    print(f"latency baseline (bare pyzmq, {POLL_REAL_S * 1e3:.0f} ms blocks, 2 processes): p50 {base['p50_ms']:.1f} ms, p99 {base['p99_ms']:.1f} ms")
    print(f"{'channels':>8}{'received':>10}{'lost':>6}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'p99/base':>9}"
          f"{'cores':>7}{'sim only':>9}{'daemon':>8}{'RSS MB':>8}{'hosts':>6}{'busiest':>8}{'ping p99':>9}{'bare ping':>10}")
    runs: dict[int, list[dict]] = {}
    for n in args.channels:
        for _ in range(args.repeat):
            r = measure(n, args.seconds, args.hosts, args.subscribers, args.pin_hosts)
            r["sim"] = simulation_only(n, args.seconds)
            runs.setdefault(n, []).append(r)
            print_row(n, r, base)
    if args.repeat > 1:
        print(f"medians of {args.repeat} runs:")
        for n, rows in runs.items():
            print_row(n, {key: float(np.median([r[key] for r in rows])) for key in rows[0]}, base)
    print("cores and RSS: the daemon process and its instrument hosts (simulated instruments included); sim only: the same "
          "instruments alone, read by one acquisition loop; daemon: the difference; busiest: cores of the busiest host (one Python process: it cannot use more than one); ping p99: control round trip (ms) from another process "
          "meanwhile; bare ping: p99 of the same request between two bare pyzmq processes, timed alternately with it. Targets (2 cores): 64 channels 0 lost, p99 <= 40 ms, ping p99 <= 5 ms.")


if __name__ == "__main__":
    main()
