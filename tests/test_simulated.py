import math
import time

import numpy as np
import pytest

from echemd.config import SimulatedPotentiostatConfig, SymmetricCellConfig
from echemd.drivers import InstrumentRefused
from echemd.drivers.simulated import SimClock, SimulatedPotentiostat, SymmetricCell
from echemd.drivers.simulated.cell import FARADAY_C_MOL, GAS_CONSTANT_J_MOL_K

LIMITS = {"max_abs_voltage_V": 5.0, "max_abs_current_A": 0.1}


def potentiostat(clock="max", **cell) -> SimulatedPotentiostat:
    config = SimulatedPotentiostatConfig(name="p", driver="simulated-potentiostat", limits=LIMITS, clock=clock, cell=SymmetricCellConfig(**cell))
    instrument = SimulatedPotentiostat(config)
    instrument.open()
    return instrument


def record(acquisition):
    blocks = list(acquisition)
    return {name: np.concatenate([b.columns[name] for b in blocks]) for name in blocks[0].columns}


def test_steady_state_is_ohmic_plus_butler_volmer():
    cell = dict(area_cm2=0.1, ohmic_asr_ohm_cm2=40.0, exchange_current_mA_cm2=0.5, noise_V=0.0, polarization_time_constant_s=5.0)
    data = record(potentiostat(**cell).galvanostatic(-0.1e-3, 200.0, 1.0))  # plating 1 mA/cm2
    thermal = GAS_CONSTANT_J_MOL_K * 298.15 / FARADAY_C_MOL
    expected = -(1e-3 * 40.0 + 4 * thermal * math.asinh(1.0 / (2 * 0.5)))  # -40 mV - 90.6 mV
    assert data["voltage_V"][-1] == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(-0.1306, abs=2e-4)
    assert len(data["time_s"]) == 200 and data["time_s"][0] == 1.0 and data["time_s"][-1] == 200.0
    np.testing.assert_array_equal(data["current_A"], -0.1e-3)


def test_polarization_relaxes_with_its_time_constant():
    data = record(potentiostat(noise_V=0.0, polarization_time_constant_s=20.0).galvanostatic(-20e-6, 200.0, 1.0))
    v = data["voltage_V"]
    ohmic = v[-1] - (v[-1] - v[0]) / math.exp(-1 / 20)  # extrapolate back to t = 0
    # after one time constant 63% of the charge-transfer polarization has built up
    assert (v[19] - ohmic) / (v[-1] - ohmic) == pytest.approx(1 - math.exp(-1), abs=0.01)


def test_no_short_below_the_critical_current_and_a_short_above():
    below = potentiostat(critical_current_mA_cm2=1.0, noise_V=0.0)
    data = record(below.galvanostatic(-0.9e-3 * below.cell.config.area_cm2, 7200.0, 10.0))
    assert below.cell.short_since_s is None
    assert np.ptp(data["voltage_V"][100:]) < 1e-6

    above = potentiostat(critical_current_mA_cm2=1.0, incubation_charge_mAh_cm2=0.01, noise_V=0.0)
    data = record(above.galvanostatic(-1.2e-3 * above.cell.config.area_cm2, 600.0, 1.0))
    assert above.cell.short_since_s == pytest.approx(0.01 / 1.2 * 3600)  # 30 s
    assert abs(data["voltage_V"][-1]) < 0.01 * abs(data["voltage_V"][25])  # collapsed by > 99%


def test_seeded_cells_are_reproducible_and_seeds_differ():
    a, b, c = (record(potentiostat(seed=s).galvanostatic(-1e-5, 50.0, 1.0))["voltage_V"] for s in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.std(np.diff(a[30:])) / math.sqrt(2) == pytest.approx(50e-6, rel=0.35)


def test_out_of_range_requests_are_refused_before_the_cell_is_on():
    instrument = potentiostat()
    with pytest.raises(InstrumentRefused, match="exceeds the instrument's range 1 A"):
        next(instrument.galvanostatic(-2.0, 10.0, 1.0))
    with pytest.raises(InstrumentRefused, match="shorter than the fastest"):
        next(instrument.galvanostatic(-1e-5, 10.0, 0.001))
    assert instrument.output_on is False


def test_closing_an_acquisition_switches_the_cell_off():
    instrument = potentiostat()
    acquisition = instrument.galvanostatic(-1e-5, 100_000.0, 1.0)
    next(acquisition)
    assert instrument.output_on is True
    acquisition.close()
    assert instrument.output_on is False


def test_clock_speed_factor_paces_blocks_in_real_time():
    instrument = potentiostat(clock=400.0)  # 400 simulated seconds per real second
    start = time.monotonic()
    data = record(instrument.galvanostatic(-1e-5, 200.0, 1.0))
    elapsed = time.monotonic() - start
    assert len(data["time_s"]) == 200
    assert 0.4 <= elapsed < 1.5  # 0.5 s nominal


def test_clock_block_sizes():
    assert SimClock("max").block_size(1.0, 10_000) == 60  # one simulated minute
    assert SimClock("max").block_size(0.01, 10_000) == 2048
    assert SimClock(1.0).block_size(1.0, 100) == 1  # real time, 1 s samples: one per block
    assert SimClock(3600.0).block_size(1.0, 10_000) == 900  # 0.25 s of real time
    with pytest.raises(ValueError):
        SimClock(0)


def test_cell_alone_advances_its_time():
    cell = SymmetricCell(SymmetricCellConfig(noise_V=0.0))
    cell.galvanostatic(0.0, np.arange(1.0, 11.0))
    assert cell.galvanostatic(0.0, np.array([1.0]))[0] == 0.0
