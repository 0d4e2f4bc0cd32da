"""The Keithley 2400 driver: exact SCPI traffic (pymeasure's protocol adapter), then end to end on the SCPI simulator."""

import time

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymeasure.adapters import ProtocolAdapter

from echemd.config import DaemonConfig, Keithley2400Config
from echemd.daemon.client import Client
from echemd.daemon.service import Daemon
from echemd.drivers import DriverError, InstrumentRefused
from echemd.drivers.keithley2400 import TIMESTAMP_WRAP_S, Keithley2400Sourcemeter, UnwrappedTimestamp

LIMITS = {"max_abs_voltage_V": 10.0, "max_abs_current_A": 1e-3}
OK = '0,"No error"'
OPEN = [
    (":FORMAT:ELEMENTS VOLTAGE, CURRENT, RESISTANCE, TIME, STATUS", None),
    ("OUTPUT 0", None),
    ("*CLS", None),  # the error queue a previous user left
    (":SYST:TIME:RES", None),
    ("SYST:ERR?", OK),
]
CONFIGURE = [
    ("*RST", None),  # a known state, then explicitly what the sweep relies on:
    (":FORM:ELEM VOLT,CURR,RES,TIME,STAT", None),  # never the last user's reading layout
    (":SYST:TIME:RES:AUTO 0", None),  # one time base for the run
    (":ARM:COUN 1", None),  # one reading per list point
    (":SENSE:AVERAGE 0", None),  # no filter (it multiplies each reading's time)
    (":SYSTEM:AZERO:STATE 1", None),  # autozero: accurate, 3 conversions per reading (in the timeout)
    (":SOURCE:FUNCTION VOLT", None),
    (":SENS:FUNC 'CURR'", None),
    (":SENS:CURR:RANG:AUTO 1", None),  # never +9.9E37 from a fixed range
    (":SENSE:CURRENT:PROTECTION 0.001", None),
    (":SENSE:CURRENT:PROTECTION?", "1.000000E-03"),  # read back before the output goes on
    (":SOURCE:VOLTAGE:RANGE 0.2", None),
    (":SOURCE:VOLTAGE 0", None),  # the idle level held before and between lists
    (":SOUR:VOLT:PROT 20", None),
    (":SENSE:CURRENT:NPLCYCLES 0.1", None),
    (":SOURCE:DELAY 0.01", None),
    (":SOUR:VOLT:MODE LIST", None),
    ("SYST:ERR?", OK),
]
READING = "0.000000E+00,1.000000E-12,9.91E37,1.200000E-02,0,-1.000000E-01,-1.000000E-11,1.0E10,2.400000E-02,0,-2.000000E-01,-1.000000E-03,2.0E02,3.600000E-02,8"
# the third reading beyond its range: +9.9E37 and status bit 16 (range compliance)
OVERFLOWED = READING.replace("-1.000000E-03,2.0E02,3.600000E-02,8", "9.900000E+37,2.0E02,3.600000E-02,65536")


def driver(pairs):
    adapter = ProtocolAdapter(pairs)
    config = Keithley2400Config(name="k", driver="keithley2400", address="GPIB0::24::INSTR", limits=LIMITS)
    instrument = Keithley2400Sourcemeter(config, adapter=adapter)
    instrument.open()
    return instrument, adapter


def assert_all_sent(adapter):
    assert adapter._index == len(adapter.comm_pairs), f"not sent: {adapter.comm_pairs[adapter._index:]}"


def test_a_sweep_sends_exactly_this_scpi_and_flags_compliance_per_point():
    pairs = OPEN + CONFIGURE + [
        ("OUTPUT 1", None),
        (":SOUR:LIST:VOLT 0,-0.1,-0.2", None),
        (":TRIG:COUN 3", None),
        (":READ?", READING),
        ("SYST:ERR?", OK),
        ("OUTPUT 0", None),
    ]
    instrument, adapter = driver(pairs)
    (block,) = list(instrument.voltage_sweep(np.array([0.0, -0.1, -0.2]), 1e-3, 0.01))
    assert_all_sent(adapter)
    np.testing.assert_array_equal(block.columns["bias_V"], [0.0, -0.1, -0.2])
    np.testing.assert_array_equal(block.columns["current_A"], [1e-12, -1e-11, -1e-3])
    np.testing.assert_array_equal(block.columns["compliance"], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(block.columns["time_s"], [0.012, 0.024, 0.036])
    assert adapter.connection.timeout == 5000  # restored after the sweep


def test_the_output_goes_off_when_a_reading_is_garbled():
    pairs = OPEN + CONFIGURE + [
        ("OUTPUT 1", None),
        (":SOUR:LIST:VOLT 0,-0.1,-0.2", None),
        (":TRIG:COUN 3", None),
        (":READ?", "1.0,2.0,3.0"),
        ("OUTPUT 0", None),
    ]
    instrument, adapter = driver(pairs)
    with pytest.raises(DriverError, match="returned 3 values for 3 readings, not 15"):
        list(instrument.voltage_sweep(np.array([0.0, -0.1, -0.2]), 1e-3, 0.01))
    assert_all_sent(adapter)


@pytest.mark.parametrize("reply", [
    ",".join(["1.0E-06"] * 3),  # current only (pymeasure 0.15's layout): 3 values, not 3 rows
    ",".join(["1.0E-06"] * 10),  # a multiple of 5 that is still not 3 readings: the old check passed it
])
def test_a_reading_layout_other_than_five_elements_per_point_is_refused(reply):
    pairs = OPEN + CONFIGURE + [("OUTPUT 1", None), (":SOUR:LIST:VOLT 0,-0.1,-0.2", None), (":TRIG:COUN 3", None), (":READ?", reply), ("OUTPUT 0", None)]
    instrument, adapter = driver(pairs)
    with pytest.raises(DriverError, match="another reading layout is set"):
        list(instrument.voltage_sweep(np.array([0.0, -0.1, -0.2]), 1e-3, 0.01))
    assert_all_sent(adapter)


def test_an_overflowed_reading_is_nan_and_flagged_never_a_current():
    pairs = OPEN + CONFIGURE + [("OUTPUT 1", None), (":SOUR:LIST:VOLT 0,-0.1,-0.2", None), (":TRIG:COUN 3", None), (":READ?", OVERFLOWED),
                                ("SYST:ERR?", OK), ("OUTPUT 0", None)]
    instrument, adapter = driver(pairs)
    (block,) = list(instrument.voltage_sweep(np.array([0.0, -0.1, -0.2]), 1e-3, 0.01))
    assert np.isnan(block.columns["current_A"][2]) and block.columns["current_A"][1] == -1e-11
    np.testing.assert_array_equal(block.columns["compliance"], [0.0, 0.0, 1.0])


def test_a_compliance_the_2400_did_not_take_never_turns_the_output_on():
    pairs = OPEN + CONFIGURE[:10] + [(":SENSE:CURRENT:PROTECTION?", "1.050000E-04"), ("OUTPUT 0", None)]
    instrument, adapter = driver(pairs)
    with pytest.raises(DriverError, match="compliance set to 0.001 A but the 2400 reports 0.000105 A"):
        list(instrument.voltage_sweep(np.array([0.0, -0.1, -0.2]), 1e-3, 0.01))
    assert_all_sent(adapter)


def test_errors_in_the_queue_fail_the_sweep_with_the_output_off():
    pairs = OPEN + CONFIGURE[:-1] + [("SYST:ERR?", '-222,"Parameter data out of range"'), ("SYST:ERR?", OK), ("OUTPUT 0", None)]
    instrument, adapter = driver(pairs)
    with pytest.raises(DriverError, match="-222 \"Parameter data out of range\""):
        list(instrument.voltage_sweep(np.array([0.0, -0.1, -0.2]), 1e-3, 0.01))
    assert_all_sent(adapter)


def test_a_bias_beyond_the_software_limit_is_refused_before_any_traffic():
    instrument, adapter = driver(list(OPEN))
    with pytest.raises(InstrumentRefused, match="exceeds the voltage limit 10 V"):
        instrument.voltage_sweep(np.array([0.0, -12.0]), 1e-3, 0.01)
    with pytest.raises(InstrumentRefused, match="compliance 0.01 A must be > 0 and <= the limit 0.001 A"):
        instrument.voltage_sweep(np.array([0.0, -1.0]), 1e-2, 0.01)
    assert_all_sent(adapter)


# --- end to end on the SCPI simulator, through the daemon -----------------------------------------
def lab(tmp_path, clock="max"):
    smu = {"name": "k2400", "driver": "keithley2400", "address": "simulated", "clock": clock, "limits": LIMITS,
           "junction": {"preset": "LLZO-tip", "seed": 5}}
    pstat = {"name": "sim-pstat-1", "driver": "simulated-potentiostat", "limits": {"max_abs_voltage_V": 5.0, "max_abs_current_A": 0.1}}
    return DaemonConfig(control_endpoint="tcp://127.0.0.1:*", publish_endpoint="tcp://127.0.0.1:*", data_dir=tmp_path, instruments=[smu, pstat],
                        instrument_hosts=0)  # (in this process: the tests read the pyvisa-sim adapter)


SWEEP = {"negative_vertex_V": -0.5, "positive_vertex_V": 1.0, "step_V": 0.005, "rate_V_s": 0.5}


def test_cafm_sweep_end_to_end_through_the_real_driver(tmp_path):
    daemon = Daemon(lab(tmp_path))
    try:
        with Client(daemon.control.endpoint) as client:
            record = client.wait(client.submit("cafm-sweep", "k2400", cycles=2, **SWEEP), timeout_s=60)
        adapter = daemon.runners["k2400"].instrument._adapter
    finally:
        daemon.close()
    assert record["status"] == "completed", record["error"]
    first, second = record["result"]["triggering_bias_V"]
    assert first == pytest.approx(-0.12, abs=0.006)  # forming at the grain boundary
    assert -0.3 < second < -0.1  # the set bias after a reset
    with h5py.File(record["file"], "r") as f:
        bias = f["data/bias_V"][:]
        assert len(bias) == 2 * 601 and f["data/current_A"].attrs["units"] == "A"
        assert np.all(np.diff(f["data/time_s"][:]) > 0)
    read_commands = [c for c in adapter.commands if c == ":READ?"]
    assert len(read_commands) == 14  # 601 points per cycle in lists of 100: hardware sweeps, not a query per point
    assert adapter.commands[-1] == "OUTPUT 0" and adapter.output is False


def test_a_visa_timeout_mid_run_fails_that_run_only_and_the_next_run_reconnects(tmp_path):
    daemon = Daemon(lab(tmp_path, clock=20.0))
    try:
        with Client(daemon.control.endpoint) as client:
            adapter = daemon.runners["k2400"].instrument._adapter
            run_id = client.submit("cafm-sweep", "k2400", cycles=50, **SWEEP)
            other = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)
            deadline = time.monotonic() + 30
            while client.status(run_id)["n_samples"] < 200:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            adapter.fault = "timeout"
            record = client.wait(run_id, timeout_s=30)
            assert record["status"] == "failed" and "VI_ERROR_TMO" in record["error"]
            assert adapter.output is False  # writes still reach the 2400: the safe state switched it off
            assert client.wait(other, timeout_s=60)["status"] == "completed"  # the other instrument kept going
            adapter.fault = None
            again = client.wait(client.submit("cafm-sweep", "k2400", cycles=1, **SWEEP), timeout_s=60)
            assert again["status"] == "completed"
    finally:
        daemon.close()
    with h5py.File(record["file"], "r") as f:
        assert f.attrs["status"] == "failed" and len(f["data/bias_V"]) >= 200
        assert b"error" in list(f["events/kind"][:])


def test_an_instrument_unreachable_at_start_is_offline_and_its_runs_fail_clearly(tmp_path):
    config = lab(tmp_path).model_dump()
    config["instruments"][0].update(address="GPIB0::24::INSTR", visa_library="/nonexistent/libvisa.so")
    daemon = Daemon(DaemonConfig.model_validate(config))
    try:
        with Client(daemon.control.endpoint) as client:
            states = {i["name"]: i["state"] for i in client.instruments()}
            assert states == {"k2400": "offline", "sim-pstat-1": "idle"}
            record = client.wait(client.submit("cafm-sweep", "k2400", **SWEEP), timeout_s=10)
            assert record["status"] == "failed" and "cannot reach k2400" in record["error"] and "GPIB0::24::INSTR" in record["error"]
            assert client.wait(client.submit("ccd", "sim-pstat-1", diameter_mm=2.0), timeout_s=30)["status"] == "completed"
    finally:
        daemon.close()


# --- the 2400 as a shared bench leaves it (the SCPI simulator starts dirty, see its docstring) ----
def simulated_2400(**changes):
    config = Keithley2400Config(name="k", driver="keithley2400", address="simulated", limits=LIMITS,
                                junction={"preset": "LLZO-tip", "seed": 5}, **changes)
    instrument = Keithley2400Sourcemeter(config)
    instrument.open()
    return instrument, instrument._adapter


def test_what_the_last_user_left_changes_nothing_a_sweep_records():
    instrument, adapter = simulated_2400()
    assert adapter.arm_count == 2 and adapter.filter_on and not adapter.current_autorange and adapter.timestamp_reset_per_read
    biases = np.linspace(0.0, -0.5, 250)  # through the forming bias: up to the 1 mA compliance
    blocks = list(instrument.voltage_sweep(biases, 1e-3, 0.01))
    time_s = np.concatenate([b.columns["time_s"] for b in blocks])
    current = np.concatenate([b.columns["current_A"] for b in blocks])
    assert len(time_s) == 250  # one reading per point (arm count 1), 5 elements each
    assert np.all(np.isfinite(current)) and np.abs(current).max() > 1.05e-6  # autorange: nothing clipped at the old 1 uA range
    np.testing.assert_allclose(np.diff(time_s), 0.01 + 3 * 0.1 / 50, rtol=1e-6)  # no filter (x10), autozero on (x3); one time base
    assert adapter.output is False


def test_run_time_keeps_increasing_across_the_timestamps_wrap_at_99999_999_s():
    instrument, adapter = simulated_2400()
    adapter.time_zero_s = adapter.time_s - 99_995.0  # 27.8 h into a run: the 2400 reports 99,995 s
    before = instrument.time_s
    blocks = list(instrument.voltage_sweep(np.linspace(0.0, 0.5, 600), 1e-3, 0.01))  # 600 x 16 ms: 9.6 s, through the wrap
    time_s = np.concatenate([b.columns["time_s"] for b in blocks])
    assert 99_995.0 <= before < time_s[0] and time_s[-1] > 100_000.0 and instrument.time_s >= time_s[-1]
    spacing = np.diff(time_s)  # (near 1e5 s the 2400's 7 digits resolve 10 ms)
    assert np.all(spacing > 0) and spacing.max() < 0.03 and np.mean(spacing) == pytest.approx(0.016, rel=1e-3)  # no jump back of 100,000 s
    assert adapter._timestamp() < 10.0  # what the 2400 itself reports now


def test_a_slow_sweep_gets_a_visa_timeout_that_covers_autozero():
    """NPLC 10 at 50 Hz: 0.2 s per conversion, 0.6 s per reading with autozero; a timeout computed
    from NPLC alone (100 x 0.21 s + 5 s) would give up after 26 s of a 61 s list."""
    instrument, adapter = simulated_2400(nplc=10)
    (block, *_) = list(instrument.voltage_sweep(np.linspace(0.0, 0.2, 100), 1e-3, 0.01))
    assert len(block) == 100 and adapter.connection.timeout == 5000  # restored afterwards


@given(st.lists(st.floats(0.0, 40_000.0), min_size=1, max_size=40), st.data())
def test_the_unwrapped_timestamp_does_not_depend_on_how_readings_are_split_into_lists(steps, data):
    stamps = np.cumsum(steps) % TIMESTAMP_WRAP_S  # what the 2400 reports: monotonic time modulo its wrap
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stamps) - 1)))))
    clock = UnwrappedTimestamp()
    pieces = np.concatenate([clock.unwrap(piece) for piece in np.split(stamps, cuts)])
    np.testing.assert_allclose(pieces, np.cumsum(steps), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(pieces, UnwrappedTimestamp().unwrap(stamps))


def test_the_run_file_says_what_bias_v_is_in_compliance(tmp_path):
    daemon = Daemon(lab(tmp_path))
    try:
        with Client(daemon.control.endpoint) as client:
            record = client.wait(client.submit("cafm-sweep", "k2400", cycles=1, **SWEEP), timeout_s=60)
    finally:
        daemon.close()
    with h5py.File(record["file"], "r") as f:
        assert "terminal voltage is lower" in f["data/bias_V"].attrs["description"] and f["data/bias_V"].attrs["units"] == "V"
        assert "NaN where the reading overflowed" in f["data/current_A"].attrs["description"]
