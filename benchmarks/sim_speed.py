"""How much faster than real time a full simulated CCD runs (target: >= 30,000x).

Measures, in the same run:
- baseline: the CCD plan run by the engine on the simulated potentiostat, nothing recorded or sent;
- echemd: the same CCD submitted to a daemon on loopback (run file, stream, control API) and
  waited for through the client.
Prints medians over repeats and the ratio of simulated to wall-clock time for each.

    .venv/bin/python benchmarks/sim_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py

from common import wait_for_hosts
from echemd.config import load_default_config
from echemd.daemon.client import Client
from echemd.daemon.engine import Engine
from echemd.daemon.service import Daemon
from echemd.drivers.registry import open_instrument
from echemd.protocols import CCD

PARAMETERS = {"diameter_mm": 2.0}


def bare_plan(config) -> tuple[float, float]:
    """(wall s, simulated s) of a CCD plan run by the engine on the simulated potentiostat, nothing recorded."""
    instrument = open_instrument(config.instrument("sim-pstat-1"))
    engine = Engine(instrument, emit=lambda event: None)
    start = time.perf_counter()
    engine.run(CCD.plan(CCD.parameters(**PARAMETERS)))
    return time.perf_counter() - start, instrument.time_s


def through_daemon(config) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        daemon = Daemon(config.model_copy(update={"control_endpoint": "tcp://127.0.0.1:*", "publish_endpoint": "tcp://127.0.0.1:*", "data_dir": Path(folder)}))
        try:
            with Client(daemon.control.endpoint) as client:
                wait_for_hosts(client)
                start = time.perf_counter()
                run_id = client.submit("ccd", "sim-pstat-1", **PARAMETERS)
                record = client.wait(run_id, poll_s=0.01)
                wall = time.perf_counter() - start
            with h5py.File(record["file"], "r") as f:  # (the instrument is in a host: its last sample says how far it got)
                return wall, float(f["data/time_s"][-1])
        finally:
            daemon.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = load_default_config()
    for name, measure in (("baseline: engine + cell, nothing recorded", bare_plan), ("echemd: daemon, run file, stream, client", through_daemon)):
        walls, simulated = zip(*(measure(config) for _ in range(args.repeats)))
        wall = statistics.median(walls)
        print(f"{name:<42} simulated {simulated[0] / 3600:5.2f} h in {wall * 1e3:7.1f} ms (median of {args.repeats}) "
              f"-> {simulated[0] / wall:9,.0f}x real time")


if __name__ == "__main__":
    main()
