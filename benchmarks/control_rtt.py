"""Control round trip on loopback: `ping` and `status` p50/p99; `runs` and a small binary `fetch`
(methods that read the disk, answered from the daemon's I/O pool); and submit-to-first-sample time
(the first data block of the run on the stream).

Baseline, in the same run: a bare pyzmq DEALER/ROUTER echo of the same JSON frames (no daemon).
Target: ping p99 <= 2 ms.

    .venv/bin/python benchmarks/control_rtt.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import zmq

from common import percentile, simulated_daemon
from echemd.daemon.client import Subscription
from echemd.daemon.stream import DataBlock


def echo_baseline(requests: int) -> list[float]:
    context = zmq.Context.instance()
    router = context.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def serve():
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        while not stop.is_set():
            if poller.poll(100):
                identity, body = router.recv_multipart()
                request = json.loads(body)
                router.send_multipart([identity, json.dumps({"id": request["id"], "ok": True, "result": {}}).encode()])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    dealer = context.socket(zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    times = []
    for k in range(requests):
        start = time.perf_counter()
        dealer.send(json.dumps({"id": str(k), "method": "ping", "params": {}}).encode())
        json.loads(dealer.recv())
        times.append(time.perf_counter() - start)
    stop.set()
    thread.join()
    dealer.close(0)
    router.close(0)
    return times


def timed(call, requests: int) -> list[float]:
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    baseline = echo_baseline(args.requests)
    with simulated_daemon() as (daemon, client):
        ping = timed(client.ping, args.requests)
        status = timed(client.status, args.requests)
        first_sample = []
        subscription = Subscription(zmq.Context.instance(), daemon.publisher.endpoint, b"run.")
        subscription.wait_connected()
        for _ in range(20):
            start = time.perf_counter()
            run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)
            while not (isinstance(message := subscription.receive(10.0), DataBlock) and message.run_id == run_id):
                pass
            first_sample.append(time.perf_counter() - start)
            client.abort(run_id)
            client.wait(run_id, poll_s=0.01)
        subscription.close()
        disk_requests = max(1, args.requests // 10)
        runs = timed(lambda: client.call("runs"), disk_requests)
        fetch = timed(lambda: client.fetch_blocks(run_id, 0, max_samples=100), disk_requests)
    print(f"{'':<26}{'p50 ms':>9}{'p99 ms':>9}{'x baseline p50':>16}")
    base50 = percentile(baseline, 50)
    for name, values in (("baseline (bare zmq echo)", baseline), ("ping", ping), ("status", status), ("runs (20 runs)", runs),
                         ("fetch (100 samples)", fetch), ("submit to first sample", first_sample)):
        p50, p99 = percentile(values, 50) * 1e3, percentile(values, 99) * 1e3
        print(f"{name:<26}{p50:9.3f}{p99:9.3f}{p50 / (base50 * 1e3):16.1f}")
    print(f"target ping p99 <= 2 ms: {'met' if percentile(ping, 99) <= 2e-3 else 'MISSED'}")


if __name__ == "__main__":
    main()
