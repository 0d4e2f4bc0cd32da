"""Short detection live, through the daemon, at the pacing of a real instrument: a simulated clock of
100-600x real time hands the engine one to a few samples every 10 ms, as a driver polling a 1 Hz
potentiostat does.  The live verdict must equal `echemd analyze ccd` on the run file."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from echemd.daemon.client import Client
from echemd.daemon.service import Daemon

# a short CCD (shorter half cycles than the published protocol's, so the suite stays fast) on 2 mm discs
CCD = dict(diameter_mm=2.0, plating_start_mA_cm2=0.5, plating_increment_mA_cm2=0.5, stripping_mA_cm2=0.5, capacity_mAh_cm2=0.15)
COMPARED = ("ccd_mA_cm2", "last_passed_mA_cm2", "short_detected_at_s", "drop_mV", "short_rule", "short_phase", "shorted_at_start",
            "short_time_into_step_s", "short_capacity_mAh_cm2", "plated_mAh_cm2", "stripped_mAh_cm2")


def analyze_ccd_cli(path) -> dict:
    done = subprocess.run([sys.executable, "-m", "echemd.daemon.cli", "analyze", "ccd", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def samples_per_block(path) -> float:
    with h5py.File(path, "r") as f:
        return len(f["data/time_s"]) / len(f["stream/block_offset"])


def test_at_600x_a_ccd_on_each_potentiostat_stops_on_its_short_and_equals_the_offline_analysis(lab):
    daemon = Daemon(lab(), sim_speed=600.0)
    try:
        with Client(daemon.control.endpoint) as client:
            runs = {name: client.submit("ccd", name, **CCD) for name in ("sim-pstat-1", "sim-pstat-2")}
            records = {name: client.wait(run_id, timeout_s=60) for name, run_id in runs.items()}
    finally:
        daemon.close()
    for name, expected_ccd in (("sim-pstat-1", 1.0), ("sim-pstat-2", 1.5)):  # the cells' critical currents: 0.82, 1.22
        record = records[name]
        live = record["result"]
        assert record["status"] == "completed" and live["stopped_by"] == "short", (name, live)
        assert live["ccd_mA_cm2"] == expected_ccd and live["last_passed_mA_cm2"] == expected_ccd - 0.5
        assert samples_per_block(record["file"]) < 10  # paced as a lab instrument, not in 60 s blocks
        offline = analyze_ccd_cli(record["file"])
        for key in COMPARED:
            assert offline[key] == (pytest.approx(live[key], rel=1e-9) if isinstance(live[key], float) else live[key]), key
        assert live["detection"] == offline["detection"]  # the criterion is recorded with the result, and reused
        for key in ("current_density_mA_cm2", "duration_s", "charge_mAh_cm2", "polarization_mV", "asr_ohm_cm2"):
            assert offline["steps"][key] == pytest.approx(live["steps"][key], rel=1e-9)
        # what labs report, in numbers: every full half cycle passed its 0.15 mAh/cm2; the short came part way in
        steps = live["steps"]
        full = steps["charge_mAh_cm2"][:-1]
        assert full == pytest.approx([0.15] * len(full), rel=2e-3) and 0 < steps["charge_mAh_cm2"][-1] < 0.15
        assert live["plated_mAh_cm2"] == pytest.approx(sum(c for c, ph in zip(steps["charge_mAh_cm2"], steps["phase"]) if ph == "plate"))
        assert live["short_capacity_mAh_cm2"] == pytest.approx(expected_ccd * live["short_time_into_step_s"] / 3600)
        assert live["short_time_into_step_s"] < steps["duration_s"][-1] + 1e-9
        for density, polarization, asr in zip(steps["current_density_mA_cm2"], steps["polarization_mV"], steps["asr_ohm_cm2"]):
            assert asr == pytest.approx(polarization / density, rel=1e-3)  # mV / (mA/cm2) = Ohm cm2
        with h5py.File(record["file"], "r") as f:  # and in the run file, column by column
            np.testing.assert_allclose(f["result/steps/asr_ohm_cm2"][:], steps["asr_ohm_cm2"])


def test_at_100x_plating_until_short_at_3_mA_cm2_stops_on_its_short(lab):
    daemon = Daemon(lab(), sim_speed=100.0)
    try:
        with Client(daemon.control.endpoint) as client:
            record = client.wait(client.submit("plate-until-short", "sim-pstat-1", diameter_mm=2.0, current_mA_cm2=3.0, max_hours=1.0),
                                 timeout_s=60)
        cell = daemon.runners["sim-pstat-1"].instrument.cell
    finally:
        daemon.close()
    result = record["result"]
    assert record["status"] == "completed" and result["stopped_by"] == "short"
    assert samples_per_block(record["file"]) <= 2  # one sample per 10 ms poll
    assert 0 < result["short_detected_at_s"] - cell.short_since_s < 300
    with h5py.File(record["file"], "r") as f:
        assert np.all(np.diff(f["data/time_s"][:]) > 0)
