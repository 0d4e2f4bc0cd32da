"""The daemon's stream path alone at many channels: does its proxy keep up with 256 channels at 1 kHz?

latency_scale.py needs a host core per ~16-32 simulated channels, so on 2 cores it stops at 64-96
channels; the daemon's own part of the stream (the hosts' ingest socket, libzmq's proxy, the PUB
socket, ZeroMQ's one I/O thread) is what every host shares, and can be loaded alone.  Here
producer processes stand in for the instrument hosts: each pushes 10 ms blocks of 10 samples (the
stream's own format, ``stream.encode_data``) for its channels, paced in real time, into a real
daemon's ingest endpoint, as a host's publisher does; subscriber processes, each subscribed to its
channels' data topics, time every sample (arrival minus ``t0 + time_s``).  Nothing runs an engine,
a run file or a cell model: those are the hosts' work, one core each.

Baseline, in the same run: the same producers publishing on PUB sockets of their own, the same
subscribers connected to them straight (bare pyzmq, no daemon): what the machine alone allows
that many messages.  Reported for each: samples received and lost, latency p50 / p99 / max, and
the daemon process's cores (its simulated lab's instrument hosts stay idle, in their own processes).

    .venv/bin/python benchmarks/stream_capacity.py [--channels 64 128 256] [--seconds 5] [--producers 2] [--subscribers 4]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time

import numpy as np
import zmq

from common import simulated_daemon
from echemd.daemon.stream import DataBlock, encode_data, run_topic

RATE_HZ = 1000.0
BLOCK_SAMPLES = 10  # a host polling its instruments every 10 ms


def channel_ids(channels: int) -> list[str]:
    return [f"ch{k:04d}" for k in range(channels)]


def produce(endpoint: str | None, run_ids: list[str], seconds: float, start_at: float, endpoints, done) -> None:
    """In a child process: push (into the daemon's ingest, at ``endpoint``) or publish (bound here,
    the endpoint put on ``endpoints``) the blocks of ``run_ids`` every 10 ms from ``start_at``
    (Unix time) for ``seconds``."""
    context = zmq.Context()
    if endpoint is not None:
        socket = context.socket(zmq.PUSH)
        socket.setsockopt(zmq.SNDHWM, 100_000)
        socket.connect(endpoint)
    else:
        socket = context.socket(zmq.PUB)
        socket.setsockopt(zmq.SNDHWM, 100_000)
        endpoints.put(f"tcp://127.0.0.1:{socket.bind_to_random_port('tcp://127.0.0.1')}")
    values = np.zeros(BLOCK_SAMPLES)
    units = {"time_s": "s", "voltage_V": "V", "current_A": "A"}
    n_blocks = int(seconds * RATE_HZ / BLOCK_SAMPLES)
    for seq in range(n_blocks):
        offset = seq * BLOCK_SAMPLES
        times = (offset + np.arange(1, BLOCK_SAMPLES + 1)) / RATE_HZ
        time.sleep(max(0.0, start_at + times[-1] - time.time()))
        for run_id in run_ids:
            socket.send_multipart(encode_data(DataBlock(run_id, seq, offset, start_at, {"time_s": times, "voltage_V": values, "current_A": values}, units)))
    done.wait(seconds + 60)  # (the subscribers have everything before the sockets go)
    socket.close(linger=2000)
    context.term()


def subscribe(endpoints: list[str], run_ids: list[str], expected: int, ready, results) -> None:
    """In a child process: receive the data blocks of ``run_ids``; reports samples received and every latency, s."""
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.RCVHWM, 100_000)
    for run_id in run_ids:
        socket.setsockopt(zmq.SUBSCRIBE, run_topic(run_id, "data"))
    for endpoint in endpoints:
        socket.connect(endpoint)
    time.sleep(0.5)  # (ZeroMQ's slow joiner: the subscriptions reach the publisher)
    ready.set()
    latencies, received = [], 0
    deadline = time.monotonic() + 120
    while received < expected and time.monotonic() < deadline:
        if not socket.poll(1000):
            continue
        _, header, payload = socket.recv_multipart()
        arrived = time.time()
        described = json.loads(header)
        latencies.append(arrived - (described["t0"] + np.frombuffer(payload, dtype="<f8", count=described["n"])))  # (time_s comes first)
        received += described["n"]
    results.put((received, np.concatenate(latencies) if latencies else np.array([np.nan])))
    socket.close(0)
    context.term()


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(channels: int, seconds: float, producers: int, subscribers: int, ingest: str | None, publish: str | None) -> dict:
    """One measurement: through the daemon (``ingest``: its ingest endpoint, ``publish``: its PUB
    endpoint) or, with both None, bare pyzmq."""
    spawn = multiprocessing.get_context("spawn")
    run_ids = channel_ids(channels)
    endpoints, results, done = spawn.Queue(), spawn.Queue(), spawn.Event()
    start_at = time.time() + 6.0 + 0.02 * channels / producers  # after every process is up and subscribed
    makers = [spawn.Process(target=produce, args=(ingest, run_ids[k::producers], seconds, start_at, endpoints, done), daemon=True)
              for k in range(producers)]
    for maker in makers:
        maker.start()
    sources = [publish] if publish is not None else [endpoints.get(timeout=30) for _ in makers]
    expected_each = [len(run_ids[k::subscribers]) * int(seconds * RATE_HZ) for k in range(subscribers)]
    readies = [spawn.Event() for _ in range(subscribers)]
    takers = [spawn.Process(target=subscribe, args=(sources, run_ids[k::subscribers], expected_each[k], readies[k], results), daemon=True)
              for k in range(subscribers)]  # (daemon: a failed measurement leaves no process behind)
    for taker in takers:
        taker.start()
    if not all(ready.wait(30) for ready in readies) or time.time() > start_at:
        raise RuntimeError("the subscribers were not ready before the producers started")
    time.sleep(max(0.0, start_at - time.time()))
    cpu0, wall0 = cpu_s(), time.monotonic()
    received = [results.get(timeout=seconds + 150) for _ in takers]
    cores = (cpu_s() - cpu0) / (time.monotonic() - wall0)
    done.set()
    for process in (*makers, *takers):
        process.join(30)
    latency = np.concatenate([latencies for _, latencies in received]) * 1e3
    return {"received": sum(count for count, _ in received), "expected": sum(expected_each),
            "p50": float(np.percentile(latency, 50)), "p99": float(np.percentile(latency, 99)), "max": float(np.max(latency)), "cores": cores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--producers", type=int, default=2, help="processes standing in for the instrument hosts")
    parser.add_argument("--subscribers", type=int, default=4)
    args = parser.parse_args()
    print(f"{'channels':>8}{'path':>8}{'received':>10}{'lost':>6}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'daemon cores':>14}")
    for channels in args.channels:
        with simulated_daemon() as (daemon, _):  # (its simulated lab's hosts stay idle)
            through = measure(channels, args.seconds, args.producers, args.subscribers, daemon.publisher.ingest_endpoint, daemon.publisher.endpoint)
        bare = measure(channels, args.seconds, args.producers, args.subscribers, None, None)
        for path, r in (("daemon", through), ("bare", bare)):
            cores = f"{r['cores']:14.2f}" if path == "daemon" else f"{'-':>14}"
            print(f"{channels:8d}{path:>8}{r['received']:10.0f}{r['expected'] - r['received']:6.0f}{r['p50']:8.1f}{r['p99']:8.1f}{r['max']:8.1f}{cores}", flush=True)
    print("daemon: the producers push into a real daemon's ingest endpoint (as instrument hosts do) and the subscribers take its PUB "
          "socket; bare: the same producers publishing straight to the same subscribers. Latency of every sample (arrival minus "
          "acquisition time); daemon cores: its process while the blocks flow (no instruments, no runs).")


if __name__ == "__main__":
    main()
