"""Helpers shared by test modules (importable: pytest puts tests/ on the path)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from echemd.config import DaemonConfig, SymmetricCellConfig
from echemd.daemon.client import Client
from echemd.daemon.service import Daemon

if sys.version_info >= (3, 11):
    import tomllib
else:  # (a declared dependency on 3.10)
    import tomli as tomllib

#: The repository's root folder.
ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    """The repository's pyproject.toml, parsed."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def run_on_cell(folder, protocol: str, cell: dict, clock="max", **parameters):
    """Run ``protocol`` to its end on a lab of one simulated potentiostat holding ``cell`` (its clock
    ``clock``: "max" or a speed factor); returns (record, cell model)."""
    cell_config = SymmetricCellConfig(**cell)
    config = DaemonConfig(
        control_endpoint="tcp://127.0.0.1:*", publish_endpoint="tcp://127.0.0.1:*", data_dir=folder,
        instruments=[{"name": "cell", "driver": "simulated-potentiostat", "cell": cell_config.model_dump(), "clock": clock,
                      "limits": {"max_abs_voltage_V": 5.0, "max_abs_current_A": 0.1}}],
        instrument_hosts=0,  # (in this process: the cell model is returned)
    )
    daemon = Daemon(config)
    try:
        with Client(daemon.control.endpoint) as client:
            record = client.wait(client.submit(protocol, "cell", area_cm2=cell_config.area_cm2, **parameters), timeout_s=120)
    finally:
        daemon.close()
    return record, daemon.runners["cell"].instrument.cell


def ccd_under_way(client: Client, samples: int, instrument: str = "sim-pstat-1") -> str:
    """Submit a CCD on a 2 mm disc and return its run id once it has recorded ``samples`` samples."""
    run_id = client.submit("ccd", instrument, diameter_mm=2.0)
    while client.status(run_id)["n_samples"] < samples:
        time.sleep(0.01)
    return run_id


def until(condition, timeout_s: float = 20.0, poll_s: float = 0.02) -> None:
    """Wait for ``condition()`` to hold; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(poll_s)
