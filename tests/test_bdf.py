"""A run as a Battery Data Format table: the BDF's labels and SI units, every time-series row
once, step and cycle counts from the protocol's steps, metadata in the sidecar."""

import csv
import json
import sys
import subprocess
from pathlib import Path

import h5py
import numpy as np

from echemd.daemon.client import Client
from echemd.daemon.service import Daemon

ECHEMD = [sys.executable, "-m", "echemd.daemon.cli"]
REQUIRED = ["Test Time / s", "Voltage / V", "Current / A"]


def test_a_ccd_with_spectra_exports_as_a_bdf_table_with_its_sidecar(lab, tmp_path):
    daemon = Daemon(lab(), sim_speed="max")
    try:
        with Client(daemon.control.endpoint) as client:
            record = client.wait(client.submit("ccd", "sim-pstat-1", diameter_mm=2.0, eis_at=["end"],
                                               metadata={"sample": "LPSCl-07", "temperature_C": 25, "stack_pressure_MPa": 5}), timeout_s=60)
    finally:
        daemon.close()
    done = subprocess.run([*ECHEMD, "export", record["file"], "--format", "bdf"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    table_path = Path(record["file"]).with_suffix(".bdf.csv")
    assert done.stdout.strip() == str(table_path)
    with open(table_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], np.array(rows[1:], dtype=float)
    assert header[:3] == REQUIRED  # the BDF's required columns, labelled 'Quantity / Unit'
    assert header[3:] == ["Unix Time / s", "Step Count / 1", "Cycle Count / 1", "Ambient Temperature / degC", "Applied Pressure / Pa"]
    column = dict(zip(header, body.T))
    with h5py.File(record["file"], "r") as f:
        t, i, v = (f["data"][name][:] for name in ("time_s", "current_A", "voltage_V"))
        kept = np.isfinite(i)
        t0 = float(f.attrs["t0_unix_s"])
        steps = [(time, message.decode()) for time, kind, message in zip(f["events/time_s"][:], f["events/kind"][:], f["events/message"][:])
                 if kind == b"step"]
    assert (~kept).sum() > 0 and len(body) == kept.sum()  # the spectrum's rows are not cycler data: left out
    np.testing.assert_array_equal(column["Test Time / s"], t[kept])
    np.testing.assert_array_equal(column["Voltage / V"], v[kept])
    np.testing.assert_array_equal(column["Current / A"], i[kept])
    assert np.all(np.diff(column["Test Time / s"]) >= 0)  # monotonic test time
    np.testing.assert_allclose(column["Unix Time / s"], t0 + t[kept], rtol=0, atol=1e-6)
    assert set(column["Ambient Temperature / degC"]) == {25.0} and set(column["Applied Pressure / Pa"]) == {5e6}
    step, cycle = column["Step Count / 1"], column["Cycle Count / 1"]
    assert step[0] == 1 and np.all(np.diff(step) >= 0) and np.all(np.diff(cycle) >= 0)
    labels = [label for _, label in steps]
    last_cycle = max(int(label.split("cycle ")[1].split(":")[0]) for label in labels if label.startswith("cycle "))
    assert cycle[-1] == last_cycle and step[-1] <= len(steps)
    first_strip = labels.index(next(label for label in labels if "strip" in label)) + 1
    assert np.all(i[kept][step == first_strip] > 0)  # stripping: the current's sign as echemd records it
    sidecar = json.loads(Path(str(table_path).removesuffix(".csv") + ".json").read_text())
    assert sidecar["run"]["run_id"] == record["run_id"] and sidecar["metadata"]["sample"] == "LPSCl-07"
    assert sidecar["columns"]["Voltage / V"] == "voltage_volt" and sidecar["columns"]["Applied Pressure / Pa"] == "applied_pressure_pa"
    assert sidecar["rows_left_out"] == int((~kept).sum())


def test_a_run_without_current_and_voltage_is_refused(lab, tmp_path):
    daemon = Daemon(lab(), sim_speed="max")
    try:
        with Client(daemon.control.endpoint) as client:
            record = client.wait(client.submit("eis", "sim-pstat-2", area_cm2=0.0314, end_Hz=1.0), timeout_s=60)
    finally:
        daemon.close()
    done = subprocess.run([*ECHEMD, "export", record["file"], "--format", "bdf", "-o", str(tmp_path / "x.bdf.csv")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "BDF describes cycler data" in done.stderr and not (tmp_path / "x.bdf.csv").exists()
