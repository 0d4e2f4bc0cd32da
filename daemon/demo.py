"""`echemd demo`: a daemon with the simulated lab on free loopback ports, driven through the real API."""

from __future__ import annotations

import math
from pathlib import Path

from echemd.config import load_default_config
from echemd.daemon.client import Client
from echemd.daemon.service import Daemon

CCD_PARAMETERS = {"diameter_mm": 2.0, "plating_start_mA_cm2": 0.5, "plating_increment_mA_cm2": 0.5,
                  "stripping_mA_cm2": 0.2, "capacity_mAh_cm2": 0.2, "max_plating_mA_cm2": 3.0}


def run_demo(data_dir: Path, out=print) -> bool:
    """Run a CCD on both simulated potentiostats in parallel; print progress and results.

    Returns True when every run completed.
    """
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
            runs = {name: client.submit("ccd", name, **CCD_PARAMETERS) for name in ("sim-pstat-1", "sim-pstat-2")}
            out("CCD test (Li|Li6PS5Cl|Li, 2 mm discs; plate 0.5 mA/cm2 + 0.5 per cycle, strip 0.2, 0.2 mAh/cm2):")
            area_cm2 = math.pi * (CCD_PARAMETERS["diameter_mm"] / 20) ** 2
            steps = StepPrinter(out, "sim-pstat-1", area_cm2)
            samples = 0
            for block in client.subscribe(runs["sim-pstat-1"]):
                samples += len(block)
                steps.feed(block.columns["time_s"], block.columns["current_A"], block.columns["voltage_V"])
            steps.flush()
            out(f"  streamed {samples} samples of sim-pstat-1's run")
            ok = True
            for name, run_id in runs.items():
                record = client.wait(run_id, timeout_s=600)
                result = record["result"] or {}
                ok &= record["status"] == "completed"
                out(f"{name}: {record['status']}; CCD = {result.get('ccd_mA_cm2')} mA/cm2 "
                    f"(last passed {result.get('last_passed_mA_cm2')} mA/cm2), short detected at "
                    f"{_hours(result.get('short_detected_at_s'))}, drop {_mv(result.get('drop_mV'))}")
                out(f"  run file: {record['file']} ({record['n_samples']} samples)")
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


def _hours(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.3f} h"


def _mv(millivolts: float | None) -> str:
    return "-" if millivolts is None else f"{millivolts:.2f} mV"
