"""`echemd demo`: a daemon with the simulated lab on free loopback ports, driven through the real API.

It runs an EIS and a CCD test on the two simulated Li|Li6PS5Cl|Li cells and a c-AFM sweep on the
simulated tip, in parallel, shows the CCD's progress from the data stream, prints every result and
writes a plot beside each run file.
"""

from __future__ import annotations

import math
from pathlib import Path

from echemd.config import load_default_config
from echemd.daemon.client import Client
from echemd.daemon.service import Daemon
from echemd.daemon.vocabulary import RunStatus
from echemd.protocols import PROTOCOLS

CCD_PARAMETERS = {"diameter_mm": 2.0, "plating_start_mA_cm2": 0.5, "plating_increment_mA_cm2": 0.5,
                  "stripping_mA_cm2": 0.2, "capacity_mAh_cm2": 0.2, "max_plating_mA_cm2": 3.0}
AREA_CM2 = math.pi * (CCD_PARAMETERS["diameter_mm"] / 20) ** 2


def run_demo(data_dir: Path, out=print) -> bool:
    """Returns True when every run completed."""
    from echemd.protocols.io.plots import plot_run

    config = load_default_config().model_copy(update={
        "control_endpoint": "tcp://127.0.0.1:*",
        "publish_endpoint": "tcp://127.0.0.1:*",
        "data_dir": data_dir,
    })
    daemon = Daemon(config)
    try:
        with Client(daemon.control.endpoint) as client:
            out(f"echemd {client.ping()['version']} demo: daemon on {daemon.control.endpoint}, run files in {data_dir}/")
            for instrument in client.instruments():
                out(f"  instrument {instrument['name']:<12} {instrument['kind']:<12} {instrument['driver']}")
            runs = {
                "CCD, flat interface (sim-pstat-1)": client.submit("ccd", "sim-pstat-1", **CCD_PARAMETERS),
                "EIS, contoured interface (sim-pstat-2)": client.submit("eis", "sim-pstat-2", start_Hz=1e6, end_Hz=0.1, area_cm2=AREA_CM2),
                "CCD, contoured interface (sim-pstat-2)": client.submit("ccd", "sim-pstat-2", **CCD_PARAMETERS),
                "c-AFM sweeps, tip on a grain boundary (sim-smu-1)": client.submit("cafm-sweep", "sim-smu-1", cycles=3, positive_vertex_V=1.0),
            }
            out("CCD test (Li|Li6PS5Cl|Li, 2 mm discs; plate 0.5 mA/cm2 + 0.5 per cycle, strip 0.2, 0.2 mAh/cm2):")
            steps = StepPrinter(out, "sim-pstat-1", AREA_CM2)
            samples = 0
            for block in client.subscribe(runs["CCD, flat interface (sim-pstat-1)"]):
                samples += len(block)
                steps.feed(block.columns["time_s"], block.columns["current_A"], block.columns["voltage_V"])
            steps.flush()
            out(f"  streamed {samples} samples of sim-pstat-1's run")
            ok = True
            for title, run_id in runs.items():
                record = client.wait(run_id, timeout_s=600)
                ok &= record["status"] == RunStatus.COMPLETED
                out(f"{title}: {record['status']}")
                out("  " + PROTOCOLS[record["protocol"]].presentation.summarize(record["result"] or {}))
                plot = Path(record["file"]).with_suffix(".png")
                plot_run(record["file"], plot)
                out(f"  run file {record['file']} ({record['n_samples']} samples), plot {plot}")
            return ok
    finally:
        daemon.close()


class StepPrinter:
    """Prints one line per constant-current step of a streamed run: when, what, polarization at its end."""

    def __init__(self, out, name: str, area_cm2: float) -> None:
        self.out, self.name, self.area_cm2 = out, name, area_cm2
        self.current = self.start_s = self.end_s = self.last_V = None

    def feed(self, time_s, current_A, voltage_V) -> None:
        for t, i, v in zip(time_s, current_A, voltage_V):
            if i != self.current:
                self.flush()
                self.current, self.start_s = i, t
            self.end_s, self.last_V = t, v

    def flush(self) -> None:
        if self.current is None:
            return
        action = "plate" if self.current < 0 else "strip"
        self.out(f"  {self.name}  {self.start_s / 3600:6.3f} - {self.end_s / 3600:6.3f} h  {action} "
                 f"{abs(self.current) / self.area_cm2 * 1e3:4.2f} mA/cm2  V at end {self.last_V * 1e3:8.2f} mV")
        self.current = None
