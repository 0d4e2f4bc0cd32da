"""The CCD variants through the daemon on preset cells: ramp, plating until short, long-term cycling."""

import h5py
import numpy as np
import pytest

from echemd.daemon.client import RemoteError
from helpers import run_on_cell


def run(folder, preset, protocol, seed=1, **parameters):
    record, cell = run_on_cell(folder, protocol, {"preset": preset, "seed": seed}, **parameters)
    assert record["status"] == "completed", record["error"]
    return record["result"], cell


@pytest.mark.parametrize(("preset", "rate", "step"), [("LLZO-polymer", 2.0, 0.02), ("LLZO-bare", 0.1, 0.002)])
def test_ramp_finds_the_ccd(tmp_path, preset, rate, step):
    result, cell = run(tmp_path, preset, "ccd-ramp", end_mA_cm2=3.0, rate_mA_cm2_per_h=rate, step_mA_cm2=step, sample_interval_s=2.0, voltage_limit_V=4.0)
    critical = cell.critical_A_cm2 * 1e3
    assert result["stopped_by"] == "short"
    assert 0 < result["ccd_mA_cm2"] - critical < 0.15 * critical + 0.05  # the overdrive needed to cross the cell


def test_li3ps4_plated_at_0_8_shorts_after_about_3_2_h(tmp_path):
    result, cell = run(tmp_path, "Li3PS4", "plate-until-short", current_mA_cm2=0.8, max_hours=6, sample_interval_s=5.0, voltage_limit_V=2.0)
    assert result["stopped_by"] == "short"
    assert 3.2 * 0.8 <= result["time_to_short_h"] <= 3.2 * 1.2
    assert 0 < result["short_detected_at_s"] - cell.short_since_s < 300  # found despite the gradual decline before
    slow, _ = run(tmp_path / "slow", "Li3PS4", "plate-until-short", current_mA_cm2=0.6, max_hours=6, sample_interval_s=5.0, voltage_limit_V=2.0)
    assert slow["stopped_by"] == "time_limit" and slow["time_to_short_h"] is None


def test_the_polymer_layer_cycles_at_0_8_without_shorting_and_a_flat_li6ps5cl_cell_does_not(tmp_path):
    result, _ = run(tmp_path / "a", "LLZO-polymer", "cycling", current_mA_cm2=0.8, capacity_mAh_cm2=0.4, cycles=40, sample_interval_s=10.0, voltage_limit_V=2.0)
    assert result["stopped_by"] == "cycles" and result["cycles_completed"] == 40 and result["hours"] == pytest.approx(40.0)
    shorted, cell = run(tmp_path / "b", "Li6PS5Cl-flat", "cycling", current_mA_cm2=1.5, capacity_mAh_cm2=0.2, cycles=10)
    assert shorted["stopped_by"] == "short" and shorted["short_cycle"] == 1
    # in the first step of a run there is no history: inside its settle time only the floor (10 Ohm) sees it,
    # ~210 s after the simulated filament (10 MOhm falling with a 15 s time constant) touches
    assert 0 < shorted["short_detected_at_s"] - cell.short_since_s < 300 and shorted["short_rule"] == "floor"


def test_ccd_by_time_per_half_cycle_and_carrying_on_after_the_short(tmp_path):
    result, cell = run(tmp_path, "Li6PS5Cl-flat", "ccd", half_cycle_s=1800, stop_on_short=False, max_plating_mA_cm2=2.0)
    assert result["stopped_by"] == "short" and result["cycles"] == 4  # went on to the last step
    assert 0 < result["ccd_mA_cm2"] - cell.critical_A_cm2 * 1e3 <= 0.5
    with pytest.raises(RemoteError, match="give capacity_mAh_cm2 or half_cycle_s, not both"):
        run(tmp_path / "x", "Li6PS5Cl-flat", "ccd", half_cycle_s=1800, capacity_mAh_cm2=0.2)


def test_ccd_with_conditioning_cycles_and_open_circuit_rests_records_both_and_keeps_its_verdict(tmp_path):
    record, cell = run_on_cell(tmp_path, "ccd", {"preset": "Li6PS5Cl-flat", "seed": 3},
                               conditioning_cycles=2, conditioning_mA_cm2=0.1, rest_s=30.0)
    assert record["status"] == "completed", record["error"]
    result = record["result"]
    assert result["ccd_mA_cm2"] == 1.0 and result["stopped_by"] == "short" and result["shorted_in_conditioning"] is False
    steps = result["steps"]
    assert steps["stage"][:4] == ["conditioning"] * 4 and set(steps["stage"][4:]) == {"ccd"}
    assert steps["label"][0] == "conditioning 1: plate 0.1 mA/cm2" and steps["label"][4] == "cycle 1: plate 0.5 mA/cm2"
    assert steps["duration_s"][0] == pytest.approx(0.2 / 0.1 * 3600)
    # every half cycle before the short was followed by a rest; a symmetric cell relaxes to ~0 V there
    rested = steps["ocv_after_mV"][:-1]
    assert len(rested) == len(steps["label"]) - 1 and all(abs(v) < 0.5 for v in rested) and steps["ocv_after_mV"][-1] is None
    with h5py.File(record["file"], "r") as f:
        current, time_s = f["data/current_A"][:], f["data/time_s"][:]
        kinds, messages = f["events/kind"][:].astype(str), f["events/message"][:].astype(str)
    rests = [m for k, m in zip(kinds, messages) if k == "step" and m.endswith("rest at open circuit")]
    assert len(rests) == len(rested) and rests[0] == "conditioning 1: plate 0.1 mA/cm2: rest at open circuit"
    assert np.count_nonzero(current == 0.0) == 30 * len(rests)  # 30 s at 1 s per rest, cell off
    assert np.all(np.diff(time_s) > 0)


def test_a_short_while_conditioning_means_no_ccd(tmp_path):
    result, _ = run(tmp_path, "LLZO-bare", "ccd", conditioning_cycles=3, conditioning_mA_cm2=0.2, capacity_mAh_cm2=0.02,
                    plating_start_mA_cm2=0.3, max_plating_mA_cm2=0.5, sample_interval_s=5.0)
    assert result["shorted_in_conditioning"] is True and result["ccd_mA_cm2"] is None and result["stopped_by"] == "short"
    assert result["last_passed_mA_cm2"] is None and result["cycles"] == 0
    assert result["steps"]["stage"] == ["conditioning"] * len(result["steps"]["stage"])


def test_a_rest_shorter_than_a_sample_is_refused(tmp_path):
    with pytest.raises(RemoteError, match=r"rest_s \(0.5 s\) is shorter than one sample interval \(1 s\)"):
        run(tmp_path, "Li6PS5Cl-flat", "ccd", rest_s=0.5)


@pytest.mark.parametrize("onset", [0.3, 0.5])
def test_csc_finds_where_stripping_starts_to_void_the_working_electrode(tmp_path, onset):
    # voids grow above the onset (local stripping current density), strongly enough to show within a half cycle
    cell = {"preset": "Li6PS5Cl-flat", "seed": 1, "void_onset_mA_cm2": onset, "void_growth_per_mAh_cm2": 5.0}
    record, model = run_on_cell(tmp_path, "csc", cell)
    assert record["status"] == "completed", record["error"]
    result = record["result"]
    assert result["stopped_by"] == "voiding" and result["voiding_rise_percent"] > 10
    assert onset < result["critical_stripping_mA_cm2"] <= onset + 0.4  # never below the onset: no voids there
    assert result["last_passed_stripping_mA_cm2"] == pytest.approx(result["critical_stripping_mA_cm2"] - 0.1)
    steps = result["steps"]
    strips = [(d, rise) for phase, d, rise in zip(steps["phase"], steps["current_density_mA_cm2"], steps["rise_percent"]) if phase == "strip"]
    assert all(abs(rise) < 0.5 for d, rise in strips if d <= onset)  # flat below the onset
    rises = [rise for d, rise in strips if d > onset]
    assert rises == sorted(rises) and rises[-1] > 10  # and rising faster step by step above it
    assert model.state.contact < 1.0 and result["short_rule"] is None


def test_csc_of_a_cell_that_does_not_void_reaches_its_last_step_and_a_limit_without_a_rise_is_no_csc(tmp_path):
    result, _ = run(tmp_path / "a", "Li6PS5Cl-flat", "csc", max_stripping_mA_cm2=0.5)  # the flat preset's onset
    assert result["stopped_by"] == "max_current" and result["critical_stripping_mA_cm2"] is None
    assert result["last_passed_stripping_mA_cm2"] == 0.5 and result["cycles"] == 5
    # ~14 mV per 0.1 mA/cm2 stripped: 0.1 V is reached at 0.8 mA/cm2 by the cell's resistance, not by voids
    limited, _ = run(tmp_path / "b", "Li6PS5Cl-flat", "csc", voltage_limit_V=0.1)
    assert limited["stopped_by"] == "voltage_limit" and limited["critical_stripping_mA_cm2"] is None
    assert limited["last_passed_stripping_mA_cm2"] == 0.7 and limited["steps"]["current_density_mA_cm2"][-1] == 0.8
