"""A run as a Battery Data Format table (Battery Data Alliance, BDF 1.0): ``RUN.bdf.csv``.

The BDF's fixed columns, labelled 'Quantity / Unit' in SI: the required ``Test Time / s``,
``Voltage / V`` and ``Current / A``; the recommended ``Unix Time / s`` (the run's time zero plus
the test time), ``Step Count / 1`` (the protocol step a sample belongs to, from 1) and
``Cycle Count / 1`` (a plating/stripping cycle, from the step's label ``cycle N: ...``; 1 where
the protocol has no cycles); and, when the run's metadata gives them, ``Ambient Temperature /
degC`` and ``Applied Pressure / Pa`` (``temperature_C``, ``stack_pressure_MPa``).  Rows that do not
hold a current and a voltage (a CCD's impedance spectra) are left out: BDF is a cycler's time
series.  A sidecar ``RUN.bdf.json`` holds what the table cannot: the run, its protocol and
parameters, its metadata, the column map to BDF's machine-readable names, and echemd's current
sign (plating on the working electrode negative, as recorded).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from echemd.daemon.runfile_reader import RunFileReader

#: echemd's quantity -> (BDF label, BDF machine-readable name).
COLUMNS = {
    "time_s": ("Test Time / s", "test_time_second"),
    "voltage_V": ("Voltage / V", "voltage_volt"),
    "current_A": ("Current / A", "current_ampere"),
    "unix_time": ("Unix Time / s", "unix_time_second"),
    "step": ("Step Count / 1", "step_count"),
    "cycle": ("Cycle Count / 1", "cycle_count"),
    "temperature": ("Ambient Temperature / degC", "ambient_temperature_celsius"),
    "pressure": ("Applied Pressure / Pa", "applied_pressure_pa"),
}
CYCLE_IN_LABEL = re.compile(r"\bcycle (\d+)\b")


class NotCyclerData(ValueError):
    """The run has no current and voltage over time (an EIS or c-AFM run): BDF does not describe it."""


def export_bdf(run_file: str | Path, out: str | Path) -> Path:
    """Write ``out`` (the table) and ``out`` with ``.json`` for ``.csv`` (the sidecar); returns ``out``."""
    out = Path(out)
    with RunFileReader(run_file) as run:
        if not {"time_s", "current_A", "voltage_V"} <= set(run.names):
            raise NotCyclerData(f"{run_file}: a {run.protocol} run has no current and voltage over time: BDF describes cycler data")
        columns, attrs, metadata = run.columns(["time_s", "voltage_V", "current_A"]), run.attrs, run.metadata
        steps = [(t, message) for t, kind, message in run.events() if kind == "step"]
        record = {"run_id": attrs.get("run_id"), "protocol": run.protocol, "instrument": attrs.get("instrument"),
                  "parameters": run.parameters, "status": attrs.get("status"), "started": attrs.get("started"),
                  "finished": attrs.get("finished"), "t0_unix_s": attrs.get("t0_unix_s")}
    t = columns["time_s"]
    kept = np.isfinite(columns["current_A"]) & np.isfinite(columns["voltage_V"])
    step_starts = np.array([s for s, _ in steps], dtype=np.float64)
    # (a step's event carries the time of the last sample before it: a sample at that time is the step before's)
    step = np.searchsorted(step_starts, t, side="left").clip(1, None) if steps else np.ones(t.size, dtype=np.int64)
    cycle_of_step = [int(m[1]) if (m := CYCLE_IN_LABEL.search(label)) else 0 for _, label in steps]
    cycle_of_step = np.maximum.accumulate(np.maximum(cycle_of_step, 1)) if steps else np.ones(1, dtype=np.int64)
    table = {"time_s": t, "voltage_V": columns["voltage_V"], "current_A": columns["current_A"],
             "unix_time": float(record["t0_unix_s"]) + t, "step": step, "cycle": cycle_of_step[np.asarray(step) - 1]}
    if metadata.get("temperature_C") is not None:
        table["temperature"] = np.full(t.size, float(metadata["temperature_C"]))
    if metadata.get("stack_pressure_MPa") is not None:
        table["pressure"] = np.full(t.size, float(metadata["stack_pressure_MPa"]) * 1e6)
    names = list(table)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([COLUMNS[name][0] for name in names])
        integer = {"step", "cycle"}
        for k in np.flatnonzero(kept):
            writer.writerow([int(table[name][k]) if name in integer else repr(float(table[name][k])) for name in names])
    sidecar = {"bdf_version": "1.0", "source": "echemd", "run": record, "metadata": metadata,
               "columns": {COLUMNS[name][0]: COLUMNS[name][1] for name in names},
               "current_sign": "as recorded by echemd: negative while the working electrode plates (lithium deposited on it)",
               "rows_left_out": int(t.size - kept.sum())}
    out.with_name(out.name.removesuffix(".csv") + ".json").write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
    return out
