"""The simulated instruments and the physics of their cells, against numbers worked out by hand."""

import math
import time

import numpy as np
import pytest

from echemd.config import SimulatedPotentiostatConfig, SymmetricCellConfig
from echemd.drivers import InstrumentRefused
from echemd.drivers.simulated import SimClock, SimulatedPotentiostat, SymmetricCell
from echemd.drivers.simulated.cell import FARADAY_C_MOL, GAS_CONSTANT_J_MOL_K

LIMITS = {"max_abs_voltage_V": 5.0, "max_abs_current_A": 0.1}
# (the mechanics below are written for a critical current of 1 mA/cm2, not the preset's)
QUIET = dict(noise_V=0.0, mains_pickup_V=0.0, drift_V_per_sqrt_h=0.0, nucleation_overshoot_mV=0.0, eis_noise=0.0, critical_current_mA_cm2=1.0)
THERMAL_V = GAS_CONSTANT_J_MOL_K * 298.15 / FARADAY_C_MOL


def potentiostat(clock="max", **cell) -> SimulatedPotentiostat:
    config = SimulatedPotentiostatConfig(name="p", driver="simulated-potentiostat", limits=LIMITS, clock=clock, cell=SymmetricCellConfig(**cell))
    instrument = SimulatedPotentiostat(config)
    instrument.open()
    return instrument


def record(acquisition):
    blocks = list(acquisition)
    return {name: np.concatenate([b.columns[name] for b in blocks]) for name in blocks[0].columns}


def test_steady_state_is_ohmic_plus_butler_volmer():
    # 1 mm thick, 2 mS/cm: 50 Ohm cm2 bulk; + 5 gb + 10 interface; j0 0.5 mA/cm2; plating 1 mA/cm2
    # (below the void onset: the stripping counter electrode keeps its contact)
    cell = dict(area_cm2=0.1, thickness_um=1000, bulk_conductivity_mS_cm=2.0, grain_boundary_asr_ohm_cm2=5.0,
                interface_asr_ohm_cm2=10.0, exchange_current_mA_cm2=0.5, void_onset_mA_cm2=2.0, **QUIET)
    data = record(potentiostat(**cell).galvanostatic(-0.1e-3, 20.0, 1.0))
    expected = -(1e-3 * 65.0 + 4 * THERMAL_V * math.asinh(1.0 / (2 * 0.5)))  # -65 mV - 90.6 mV
    assert data["voltage_V"][-1] == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(-0.1556, abs=2e-4)
    assert len(data["time_s"]) == 20 and data["time_s"][0] == 1.0 and data["time_s"][-1] == 20.0
    np.testing.assert_array_equal(data["current_A"], -0.1e-3)


def test_double_layer_relaxes_with_r_ct_times_c_dl():
    # R_ct (both electrodes, linear) = 2RT/(F j0) = 102.8 Ohm cm2; C = 1000 uF/cm2 -> tau = 0.103 s
    cell = SymmetricCell(SymmetricCellConfig(charge_transfer_capacitance_uF_cm2=1000.0, **QUIET))
    area, tau = cell.config.area_cm2, 2 * THERMAL_V / 0.5e-3 * 1000e-6
    t = np.arange(1, 201) * 0.01
    v = cell.galvanostatic(1e-6 * area, t)  # 1 uA/cm2: linear regime
    ohmic = 1e-6 * (cell.bulk_asr_ohm_cm2 + 4.0 + 6.0)
    eta = v - ohmic
    assert eta[9] / eta[-1] == pytest.approx(1 - math.exp(-0.1 / tau), abs=2e-3)  # after 0.1 s


def test_nucleation_overshoot_appears_when_plating_starts_and_decays():
    cell = SymmetricCell(SymmetricCellConfig(**{**QUIET, "nucleation_overshoot_mV": 10.0, "void_onset_mA_cm2": 2.0}))
    area = cell.config.area_cm2
    cell.galvanostatic(0.5e-3 * area, np.arange(1.0, 100.0))  # stripping first: no overshoot
    v = cell.galvanostatic(-1e-3 * area, np.arange(1.0, 601.0))
    # 10 mV at 1 mA/cm2, decayed by the 1/3600 mAh/cm2 plated before the first sample (1 s)
    assert v[0] - v[-1] == pytest.approx(-0.010 * math.exp(-1 / 3.6), rel=1e-6)
    assert abs(v[-1] - v[-100]) < 1e-6  # gone after 0.001 mAh/cm2 * a few


def voided_contact(stripping_mA_cm2: float, charge_mAh_cm2: float, onset=0.5, growth=0.5, steps=200_000) -> float:
    """The contact left after stripping, by small explicit steps of da/dQ = -g (s / a - s_on)."""
    a, dq = 1.0, charge_mAh_cm2 / steps
    for _ in range(steps):
        a -= growth * max(0.0, stripping_mA_cm2 / a - onset) * dq
    return a


def test_fast_stripping_opens_voids_and_plating_heals_them():
    cell = SymmetricCell(SymmetricCellConfig(**QUIET))
    area = cell.config.area_cm2
    slow = cell.galvanostatic(0.3e-3 * area, np.arange(1.0, 3601.0))
    assert cell.state.contact == 1.0 and abs(slow[-1] - slow[100]) < 1e-9  # below the 0.5 mA/cm2 onset
    fast = cell.galvanostatic(1.0e-3 * area, np.arange(1.0, 1801.0))  # 0.5 mAh/cm2 at 1 mA/cm2
    lost = 1 - voided_contact(1.0, 0.5)  # growth 0.5 * local overdrive (1/a - 0.5) over 0.5 mAh/cm2: 0.144
    assert cell.state.contact == pytest.approx(1 - lost, rel=1e-5) and lost > 0.5 * 0.5 * 0.5  # (runs away: > the 0.125 at a = 1)
    assert fast[-1] > fast[10] + 5e-3  # polarization rises as contact is lost
    cell.galvanostatic(-0.5e-3 * area, np.arange(1.0, 3601.0))  # plating 0.5 mAh/cm2 heals
    assert cell.state.contact == pytest.approx(1 - lost * math.exp(-5 * 0.5), rel=1e-5)


def test_the_stripping_counter_electrode_voids_while_the_working_one_plates():
    cell = SymmetricCell(SymmetricCellConfig(**QUIET))
    area = cell.config.area_cm2
    v = cell.galvanostatic(-1.0e-3 * area, np.arange(1.0, 1801.0))  # 0.5 mAh/cm2 at 1 mA/cm2: the counter strips
    assert cell.state.contact == 1.0
    lost = 1 - voided_contact(1.0, 0.5)
    assert cell.state.counter_contact == pytest.approx(1 - lost, rel=1e-5)
    assert v[-1] < v[10] - 3e-3  # the cell polarizes further as the counter electrode loses contact
    cell.galvanostatic(0.4e-3 * area, np.arange(1.0, 4501.0))  # 0.5 mAh/cm2 plated back onto it (below the onset)
    assert cell.state.counter_contact == pytest.approx(1 - lost * math.exp(-5 * 0.5), rel=1e-5)
    assert cell.state.contact == 1.0


def test_a_reference_electrode_sees_the_working_electrode_and_its_share_of_the_electrolyte():
    # 1 mm, 2 mS/cm: 50 Ohm cm2 bulk, 5 gb, 10 interface (both sides); reference a quarter of the way across
    values = dict(area_cm2=0.1, thickness_um=1000, bulk_conductivity_mS_cm=2.0, grain_boundary_asr_ohm_cm2=5.0,
                  interface_asr_ohm_cm2=10.0, exchange_current_mA_cm2=0.5, **QUIET)
    two = SymmetricCell(SymmetricCellConfig(**values))
    three = SymmetricCell(SymmetricCellConfig(**values, reference_electrode=True, reference_position=0.25))
    t = np.arange(1.0, 1801.0)
    v2, v3 = two.galvanostatic(-1e-4, t), three.galvanostatic(-1e-4, t)  # plating 1 mA/cm2: the counter voids
    one_electrode_ct = 2 * THERMAL_V * math.asinh(1.0 / (2 * 0.5))
    assert v3[-1] == pytest.approx(-(1e-3 * (0.25 * 55.0 + 5.0) + one_electrode_ct), rel=1e-6)  # steady, blind to the counter
    assert abs(v3[-1] - v3[10]) < 1e-6 and v2[-1] < v2[10] - 3e-3  # the cell voltage rises with the voiding counter
    # impedance: the working electrode's arcs and the share of the electrolyte, at the low-frequency limit
    z_dc = three.impedance_ohm(np.array([1e-5]))[0]
    assert z_dc.real * 0.1 == pytest.approx(0.25 * 55.0 + 5.0 + THERMAL_V / 0.5e-3, rel=1e-3)


def test_a_short_collapses_the_reading_against_the_reference_too():
    cell = SymmetricCell(SymmetricCellConfig(critical_current_spread=0.0, reference_electrode=True, **QUIET))
    v = cell.galvanostatic(-1.5e-3 * cell.config.area_cm2, np.arange(1.0, 601.0))
    assert cell.short_since_s == pytest.approx(36.0, rel=1e-9)
    assert abs(v[-1]) < 0.02 * abs(v[30])


def test_the_reading_carries_the_mains_hum_aliased_by_the_sampling():
    cell = SymmetricCell(SymmetricCellConfig(**{**QUIET, "mains_pickup_V": 20e-6}))
    at_rest = cell.galvanostatic(0.0, np.arange(1, 2001) * 0.0013)  # 1.3 ms sampling of 50 Hz: a 1.54 Hz beat
    assert np.ptp(at_rest) == pytest.approx(40e-6, rel=0.02)
    whole_periods = SymmetricCell(SymmetricCellConfig(**{**QUIET, "mains_pickup_V": 20e-6})).galvanostatic(0.0, np.arange(1.0, 101.0))
    assert np.ptp(whole_periods) < 1e-9  # sampling at whole mains periods sees it as a constant offset


def test_no_short_below_the_critical_current_and_a_short_above():
    below = SymmetricCell(SymmetricCellConfig(critical_current_spread=0.0, **QUIET))
    area = below.config.area_cm2
    below.galvanostatic(-0.95e-3 * area, np.arange(1.0, 36001.0, 10.0))
    assert below.short_since_s is None

    above = SymmetricCell(SymmetricCellConfig(critical_current_spread=0.0, **QUIET))
    v = above.galvanostatic(-1.5e-3 * area, np.arange(1.0, 601.0))
    # overdrive 0.5 mA/cm2 against 0.005 mAh/cm2 of dendrite charge: 36 s
    assert above.short_since_s == pytest.approx(36.0, rel=1e-9)
    assert abs(v[-1]) < 0.01 * abs(v[30])  # a hard short: collapsed by > 99%


def test_a_soft_short_keeps_a_fraction_of_the_voltage_and_flickers():
    cell = SymmetricCell(SymmetricCellConfig(critical_current_spread=0.0, short_kind="soft", **QUIET))
    v = cell.galvanostatic(-1.5e-3 * cell.config.area_cm2, np.arange(1.0, 1201.0))
    after = v[-300:] / v[30]
    assert 0.1 < np.median(after) < 0.4 and np.std(after) > 0.01


def test_seeded_cells_are_reproducible_and_seeds_differ():
    def trace(seed):
        cell = SymmetricCell(SymmetricCellConfig(seed=seed))
        return cell.critical_A_cm2, cell.galvanostatic(-1e-5, np.arange(1.0, 51.0))

    (jc_a, a), (jc_b, b), (jc_c, c) = trace(7), trace(7), trace(8)
    assert jc_a == jc_b and jc_a != jc_c
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.std(np.diff(a[30:])) / math.sqrt(2) == pytest.approx(50e-6, rel=0.35)


def test_potentiostatic_inverts_galvanostatic():
    cell = dict(**QUIET)
    pstat = potentiostat(**cell)
    v = record(pstat.galvanostatic(-3e-5, 30.0, 1.0))["voltage_V"][-1]
    i = record(potentiostat(**cell).potentiostatic(float(v), 30.0, 1.0))["current_A"]
    assert i[-1] == pytest.approx(-3e-5, rel=1e-3)


def test_open_circuit_of_a_symmetric_cell_relaxes_to_zero():
    pstat = potentiostat(**{**QUIET, "charge_transfer_capacitance_uF_cm2": 1e5})  # tau ~ 10 s
    record(pstat.galvanostatic(-3e-5, 60.0, 1.0))
    ocv = record(pstat.open_circuit(120.0, 1.0))
    assert ocv["voltage_V"][0] < -0.01 and abs(ocv["voltage_V"][-1]) < 1e-4
    np.testing.assert_array_equal(ocv["current_A"], 0.0)


def test_out_of_range_requests_are_refused_before_the_cell_is_on():
    instrument = potentiostat()
    with pytest.raises(InstrumentRefused, match="exceeds the instrument's range 1 A"):
        next(instrument.galvanostatic(-2.0, 10.0, 1.0))
    with pytest.raises(InstrumentRefused, match="shorter than the fastest"):
        next(instrument.galvanostatic(-1e-5, 10.0, 1e-6))
    with pytest.raises(InstrumentRefused, match="exceeds the instrument's range 12 V"):
        next(instrument.potentiostatic(20.0, 10.0, 1.0))
    with pytest.raises(InstrumentRefused, match="outside the instrument's 1e-05 - 2e\\+06 Hz"):
        next(instrument.eis(np.array([3e6, 1.0]), 0.01, None))
    assert instrument.output_on is False


def test_closing_an_acquisition_switches_the_cell_off():
    instrument = potentiostat()
    acquisition = instrument.galvanostatic(-1e-5, 100_000.0, 1.0)
    next(acquisition)
    assert instrument.output_on is True
    acquisition.close()
    assert instrument.output_on is False


def test_polled_impedance_readings_come_when_their_time_has_come_the_same_as_iterated():
    """Two periods a reading (at least 0.2 s), at 10x real time: 1 kHz and 100 Hz take 0.02 s each,
    1 Hz 0.2 s.  Polled, nothing comes before a reading's time and each comes once it has passed;
    the readings are those of an instrument iterated."""
    frequencies = np.array([1e3, 100.0, 1.0])
    iterated = record(potentiostat(clock=10.0).eis(frequencies, 0.01, None))
    polled = potentiostat(clock=10.0).eis(frequencies, 0.01, None)
    start, arrivals = time.monotonic(), []
    assert polled.poll() is None  # (the first reading has only begun)
    while True:
        try:
            block = polled.poll()
        except StopIteration:
            break
        if block is not None:
            arrivals.append((time.monotonic() - start, block))
        time.sleep(0.002)
    assert [len(block) for _, block in arrivals] == [1, 1, 1]
    arrived = np.array([t for t, _ in arrivals])
    assert np.all(arrived >= [0.02, 0.04, 0.24]) and np.all(arrived < [0.2, 0.2, 0.45])  # never early; late only by a loaded machine
    polled_columns = {name: np.concatenate([block.columns[name] for _, block in arrivals]) for name in iterated}
    for name in ("frequency_Hz", "z_real_ohm", "z_imag_ohm"):
        np.testing.assert_array_equal(polled_columns[name], iterated[name])
    np.testing.assert_allclose(np.diff(polled_columns["time_s"]), [0.2, 2.0])  # (each instrument's clock starts where it was opened)
    np.testing.assert_allclose(np.diff(iterated["time_s"]), [0.2, 2.0])


def test_clock_speed_factor_paces_blocks_in_real_time():
    instrument = potentiostat(clock=400.0)  # 400 simulated seconds per real second
    start = time.monotonic()
    data = record(instrument.galvanostatic(-1e-5, 200.0, 1.0))
    elapsed = time.monotonic() - start
    assert len(data["time_s"]) == 200
    assert 0.4 <= elapsed < 1.5  # 0.5 s nominal


@pytest.mark.parametrize("clock", [1.0, "max"])
def test_the_instrument_clock_runs_between_acquisitions_only_at_a_paced_clock(clock):
    instrument = potentiostat(clock=clock)
    first = record(instrument.galvanostatic(-1e-5, 0.05, 0.01))["time_s"]
    time.sleep(0.2)
    second = record(instrument.galvanostatic(-1e-5, 0.05, 0.01))["time_s"]
    gap = second[0] - first[-1]
    if clock == "max":
        assert gap == pytest.approx(0.01)  # cell time only: the next sample follows on
    else:
        assert 0.2 <= gap < 0.5  # the 0.2 s between the acquisitions passed on the instrument too


def test_a_consumer_that_fell_behind_gets_what_was_acquired_meanwhile():
    clock = SimClock(1.0)
    clock.anchor(0.0)
    assert 10 <= clock.block_size(1e-3, 10_000, from_time_s=0.0) <= 20  # on time: one poll interval
    assert 100 <= clock.block_size(1e-3, 10_000, from_time_s=-0.1) <= 110  # 100 ms behind: 100 ms of samples
    assert clock.block_size(1e-3, 10_000, from_time_s=-10.0) == 250  # 10 s behind: capped at 0.25 s
    assert clock.block_size(1e-3, 42, from_time_s=-10.0) == 42


def test_clock_block_sizes():
    assert SimClock("max").block_size(1.0, 10_000) == 60  # one simulated minute
    assert SimClock("max").block_size(0.01, 10_000) == 2048
    assert SimClock(1.0).block_size(1.0, 100) == 1  # real time, 1 s samples: one per block
    assert SimClock(3600.0).block_size(1.0, 10_000) == 36  # 10 ms of real time: the poll interval
    assert SimClock(1.0).block_size(1e-3, 10_000) == 10  # 1 kHz in real time: 10 ms blocks
    with pytest.raises(ValueError):
        SimClock(0)
