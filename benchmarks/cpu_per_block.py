"""echemd's own CPU per 10 ms block, without pacing and without other channels: a steadier figure than
a latency percentile on a noisy machine, for comparing two versions of the data path.

A plate-until-short run at 1 kHz (the run latency_scale.py runs on each channel), its samples handed
out 10 a block as a driver polling every 10 ms gets them, but without waiting (the simulated clock
runs as fast as possible; only its block size is set to 10 samples).  Measured in the same run:

- baseline: the same plan on the same simulated potentiostat driven by the engine, every event
  thrown away (the cell model, the plan and the engine's own loop);
- echemd: the run submitted to a daemon in this process (instruments in the daemon's process):
  run file, short detector, safety checks, stream, control.

Prints the CPU of the process per block for each (medians of ``--repeats``) and the difference,
echemd's own cost per block.  latency_scale.py's "daemon" cores at N channels divided by the blocks
a second (100 N) give the same cost under N paced channels: the excess over this figure is what
waking for the blocks costs.

    .venv/bin/python benchmarks/cpu_per_block.py [--seconds 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics

from common import simulated_daemon
from echemd.config import load_default_config
from echemd.daemon.engine import Engine
from echemd.drivers.registry import open_instrument
from echemd.drivers.simulated.clock import SimClock
from echemd.protocols import PROTOCOLS

SAMPLES_PER_BLOCK = 10


def ten_samples_a_block(self, sample_interval_s: float, remaining: int, from_time_s: float | None = None) -> int:
    return max(1, min(SAMPLES_PER_BLOCK, remaining))


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bare(parameters: dict) -> float:
    protocol = PROTOCOLS["plate-until-short"]
    engine = Engine(open_instrument(load_default_config().instrument("sim-pstat-1")), emit=lambda event: None)
    start = cpu_s()
    engine.run(protocol.plan(protocol.parameters(**parameters)))
    return cpu_s() - start


def through_daemon(parameters: dict) -> tuple[float, int]:
    with simulated_daemon(instrument_hosts=0) as (_, client):
        start = cpu_s()
        record = client.wait(client.submit("plate-until-short", "sim-pstat-1", **parameters), poll_s=0.05, timeout_s=600)
        spent = cpu_s() - start
    if record["status"] != "completed":
        raise RuntimeError(f"the run ended {record['status']}: {record['error']}")
    return spent, record["n_samples"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="cell time of the run, s (1,000 samples a second)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    SimClock.block_size = SimClock.acquired = ten_samples_a_block  # (this process's simulated instruments, iterated or polled)
    parameters = dict(diameter_mm=2.0, current_mA_cm2=0.5, max_hours=args.seconds / 3600, sample_interval_s=1e-3, smoothing_s=15e-3)
    bare(parameters)  # (imports and filters loaded before the timing)
    baseline = statistics.median(bare(parameters) for _ in range(args.repeats))
    runs = [through_daemon(parameters) for _ in range(args.repeats)]
    echemd, samples = statistics.median(spent for spent, _ in runs), runs[0][1]
    blocks = samples / SAMPLES_PER_BLOCK
    print(f"{samples:,} samples in {blocks:,.0f} blocks of {SAMPLES_PER_BLOCK} (medians of {args.repeats})")
    print(f"baseline: engine + cell, events thrown away   {baseline / blocks * 1e6:6.1f} us of CPU per block")
    print(f"echemd: daemon, run file, detector, stream    {echemd / blocks * 1e6:6.1f} us of CPU per block "
          f"({echemd / baseline:.1f}x baseline)")
    print(f"echemd's own                                  {(echemd - baseline) / blocks * 1e6:6.1f} us of CPU per block")


if __name__ == "__main__":
    main()
