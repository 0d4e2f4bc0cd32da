"""The CCD variants through the daemon on preset cells: ramp, plating until short, long-term cycling."""

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
