"""The Gamry driver end to end against the simulated GamryCOM object model: call order, faults, hangs."""

import sys
import time

import h5py
import numpy as np
import pytest

from echemd.config import DaemonConfig
from echemd.daemon.client import Client
from echemd.daemon.service import Daemon
from echemd.drivers import DriverUnavailable
from helpers import until

LIMITS = {"max_abs_voltage_V": 5.0, "max_abs_current_A": 0.1}
ON, OFF = ("pstat", "SetCell", (1,)), ("pstat", "SetCell", (0,))


def gamry_lab(tmp_path, clock="max", **gamry):
    instrument = {"name": "gamry", "driver": "gamry", "address": "simulated", "clock": clock, "limits": LIMITS,
                  "cell": {"preset": "Li6PS5Cl-flat", "seed": 1}, **gamry}
    return DaemonConfig(control_endpoint="tcp://127.0.0.1:*", publish_endpoint="tcp://127.0.0.1:*", data_dir=tmp_path, instruments=[instrument],
                        instrument_hosts=0)  # (in this process: the tests reach the simulated GamryCOM)


@pytest.fixture
def lab(tmp_path):
    daemons = []

    def start(**kwargs):
        daemon = Daemon(gamry_lab(tmp_path, **kwargs))
        daemons.append(daemon)
        return daemon, Client(daemon.control.endpoint), daemon.runners["gamry"].instrument.backend

    yield start
    for daemon in daemons:
        daemon.close()


def methods(calls):
    return [(kind, method) for kind, method, _ in calls]


def test_ccd_end_to_end_through_gamrycom_with_the_cell_switched_on_and_off_in_order(lab):
    daemon, client, com = lab()
    record = client.wait(client.submit("ccd", "gamry", diameter_mm=2.0), timeout_s=60)
    assert record["status"] == "completed", record["error"]
    cell = com.cell
    assert 0 < record["result"]["ccd_mA_cm2"] - cell.critical_A_cm2 * 1e3 <= 0.5
    daemon.close()
    calls = com.calls
    assert methods(calls[:5]) == [("com", "CoInitialize"), ("devices", "EnumSections"), ("pstat", "Init"), ("pstat", "Open"), ("pstat", "SetCell")]
    assert calls[4] == OFF and calls[5] == ("pstat", "SetIConvention", (com.module.Anodic,))  # not the last user's convention
    assert calls[6] == OFF  # and the safe state again before any command
    assert methods(calls[-2:]) == [("pstat", "Close"), ("com", "CoUninitialize")]
    ons = [k for k, call in enumerate(calls) if call == ON]
    offs = [k for k, call in enumerate(calls) if call == OFF]
    assert len(ons) == 3  # plate 0.5, strip, plate 1.0 (short: the flat cell's critical current is 0.82 mA/cm2)
    for on in ons:  # every cell-on is followed by a cell-off before the next step
        assert any(on < off < next((o for o in ons if o > on), len(calls)) for off in offs)
    first_step = calls[7:ons[0] + 2]
    assert methods(first_step) == [
        ("pstat", "SetCtrlMode"), ("pstat", "SetIERangeMode"), ("pstat", "TestIERange"), ("pstat", "SetIERange"),
        ("pstat", "SetVchRangeMode"), ("pstat", "TestVchRange"), ("pstat", "SetVchRange"),  # the voltage channel covers the limit
        ("pstat", "IEResistor"), ("pstat", "SetVoltage"),  # the level the cell sees as it goes on: this step's current
        ("signal", "Init"), ("dtaq-chrono", "Init"), ("dtaq-chrono", "SetStopXMax"), ("dtaq-chrono", "SetStopXMin"),
        ("pstat", "SetSignal"), ("pstat", "SetCell"), ("dtaq-chrono", "Run"),
    ]
    assert first_step[0][2] == (com.module.GstatMode,) and first_step[11][2] == (True, 5.0) and first_step[12][2] == (True, -5.0)
    assert first_step[5][2] == (5.0,)
    assert com.released_off_thread == []  # every COM object was released on the COM thread
    runs = [k for k, call in enumerate(calls) if call[1] == "Run"]
    stops = [k for k, call in enumerate(calls) if call[1] == "Stop"]
    assert len(stops) == len(runs)  # every acquisition is stopped (Stop(): Run's argument is AutoRun, Run(False) stops nothing)
    for run, stop in zip(runs, stops):
        assert run < stop and any(run < off < stop for off in offs)  # ... after its cell went off


def test_the_recorded_current_and_voltage_are_the_instruments_readings_not_the_setpoints(lab):
    daemon, client, com = lab()
    instrument = daemon.runners["gamry"].instrument
    blocks = list(instrument.galvanostatic(-1e-5, 20.0, 1.0))
    current = np.concatenate([b.columns["current_A"] for b in blocks])
    assert np.all(np.abs(current + 1e-5) < 1e-8) and np.ptp(current) > 0  # Im: the setpoint within the reading noise
    blocks = list(instrument.potentiostatic(0.05, 20.0, 1.0))
    voltage = np.concatenate([b.columns["voltage_V"] for b in blocks])
    assert np.all(np.abs(voltage - 0.05) < 1e-3) and np.ptp(voltage) > 0  # Vf, not the programmed 50 mV


def test_the_instrument_stops_itself_beyond_the_voltage_limit_in_either_polarity(lab):
    daemon, client, com = lab()
    instrument = daemon.runners["gamry"].instrument
    for current_A in (4e-3, -4e-3):  # ~2.3 kOhm: 9 V either way, beyond the 5 V limit
        blocks = list(instrument.galvanostatic(current_A, 60.0, 1.0))
        voltage = np.concatenate([b.columns["voltage_V"] for b in blocks])
        assert len(voltage) < 60 and np.sign(voltage[-1]) == np.sign(current_A) and abs(voltage[-1]) > 5.0


def test_eis_end_to_end_recovers_the_cells_dc_resistance(lab, tmp_path):
    daemon, client, com = lab()
    record = client.wait(client.submit("eis", "gamry", start_Hz=1e6, end_Hz=0.01, points_per_decade=5), timeout_s=60)
    assert record["status"] == "completed", record["error"]
    result = record["result"]
    assert result["points"] == 41
    assert result["low_frequency_real_ohm"] == pytest.approx(com.cell.dc_resistance_ohm(), rel=0.03)
    assert result["kk"]["valid"] and result["rms_relative_residual_percent"] < 5
    assert result["parameters"]["R0"] > 0 and len(result["arcs"]) == 2
    with h5py.File(record["file"], "r") as f:
        np.testing.assert_allclose(f["data/frequency_Hz"][[0, -1]], [1e6, 0.01])
        assert f["data/z_real_ohm"].attrs["units"] == "Ohm"
    measures = [call for call in com.calls if call[1] == "Measure"]
    # ReadZ answers Retry (type library: 1; Ok is 0) when it changes its current range; the driver
    # measures that frequency again, so every frequency ends with one good reading
    frequencies = [call[2][0] for call in measures]
    assert len(set(frequencies)) == 41 and len(measures) > 41 and measures[0][2] == (1e6, 0.01)
    assert com.calls[-1] == OFF


def test_a_readz_that_keeps_asking_to_retry_fails_the_run_with_the_cell_off(lab, monkeypatch):
    from echemd.drivers.gamry import READZ_MAX_PASSES
    from echemd.drivers.simulated import gamrycom

    def always_retry(self, frequency_Hz, amplitude_V):
        self._call("Measure", frequency_Hz, amplitude_V)
        self._com.fire(self, "_IGamryReadZEvents_OnDataDone", gamrycom.CONSTANTS.ReadZStatusRetry)

    monkeypatch.setattr(gamrycom.ReadZ, "Measure", always_retry)
    daemon, client, com = lab()
    record = client.wait(client.submit("eis", "gamry", start_Hz=1e5, end_Hz=1.0, points_per_decade=2), timeout_s=30)
    assert record["status"] == "failed" and f"retry {READZ_MAX_PASSES} times at 100000 Hz" in record["error"]
    last_measure = max(k for k, call in enumerate(com.calls) if call[1] == "Measure")
    assert sum(call[1] == "Measure" for call in com.calls) == READZ_MAX_PASSES and OFF in com.calls[last_measure:]


def test_an_abort_switches_the_cell_off_after_the_last_cook(lab):
    daemon, client, com = lab(clock=200.0)
    run_id = client.submit("ccd", "gamry", diameter_mm=2.0)
    while client.status(run_id)["n_samples"] < 50:
        time.sleep(0.02)
    client.abort(run_id)
    assert client.wait(run_id, timeout_s=10)["status"] == "aborted"
    after = methods(com.calls[max(k for k, c in enumerate(com.calls) if c[1] == "Cook"):])
    assert after[:3] == [("dtaq-chrono", "Cook"), ("pstat", "SetCell"), ("dtaq-chrono", "Stop")]
    assert com.calls[len(com.calls) - len(after) + 1] == OFF


def test_a_slowly_sampled_run_pauses_and_aborts_at_once_in_real_time(lab):
    """Sampled every 5 s in real time: a pause holds (cell off) and an abort ends the run within a
    fraction of a second, not at the next point (the driver cooks every 50 ms and its run is asked
    between cooks; the COM thread never waits for a point)."""
    daemon, client, com = lab(clock=1.0)
    run_id = client.submit("ccd", "gamry", diameter_mm=2.0, sample_interval_s=5.0)
    until(lambda: client.status(run_id)["status"] == "running" and ON in com.calls)
    time.sleep(0.3)
    asked = time.monotonic()
    client.call("pause", run_id=run_id)
    until(lambda: client.status(run_id)["status"] == "paused", poll_s=0.005)
    paused_s = time.monotonic() - asked
    asked = time.monotonic()
    client.abort(run_id)
    record = client.wait(run_id, timeout_s=10)
    aborted_s = time.monotonic() - asked
    assert paused_s < 1.0 and aborted_s < 1.5 and record["status"] == "aborted"  # (the next point: 4.7 s away)
    assert record["n_samples"] == 0 and com.calls.count(ON) == 1 and com.calls[-1] == OFF  # (the hold left the cell off)


def test_an_eis_run_aborts_at_once_while_a_low_frequency_is_measured(lab):
    """In real time, 1 kHz to 0.1 Hz, a decade a point: aborted 1.5 s in, while the 1 Hz reading
    (4 cycles: 4 s) is under way, the run ends within a fraction of a second, the cell off; ReadZ's
    Measure returns at once, as GamryCOM's does (the reading ends with its OnDataDone event)."""
    daemon, client, com = lab(clock=1.0)
    run_id = client.submit("eis", "gamry", start_Hz=1e3, end_Hz=0.1, points_per_decade=1)
    until(lambda: ("readz", "Measure", (1.0, 0.01)) in com.calls, poll_s=0.005)
    time.sleep(0.3)
    asked = time.monotonic()
    client.abort(run_id)
    record = client.wait(run_id, timeout_s=10)
    assert time.monotonic() - asked < 1.5 and record["status"] == "aborted"  # (the reading: 3.7 s more)
    assert record["n_samples"] == 3 and com.calls[-1] == OFF  # 1 kHz, 100 Hz, 10 Hz read; 1 Hz abandoned


def test_a_com_error_mid_run_fails_the_run_with_the_cell_off_and_the_next_run_reconnects(lab):
    daemon, client, com = lab()
    cooks = 0

    original = com.record

    def fail_on_the_tenth_cook(kind, method, args):
        nonlocal cooks
        cooks += method == "Cook"
        if cooks == 10:
            com.fail_on = "Cook"
        return original(kind, method, args)

    com.record = fail_on_the_tenth_cook
    record = client.wait(client.submit("ccd", "gamry", diameter_mm=2.0), timeout_s=30)
    assert record["status"] == "failed" and "GamryCOM error" in record["error"] and "simulated failure in dtaq-chrono.Cook" in record["error"]
    failure = max(k for k, c in enumerate(com.calls) if c[1] == "Cook")
    assert OFF in com.calls[failure:]
    assert ("pstat", "Close", ()) in com.calls[failure:]  # dropped after the fault
    with h5py.File(record["file"], "r") as f:
        assert f.attrs["status"] == "failed" and len(f["data/voltage_V"]) > 0
    com.fail_on = None
    com.record = original
    again = client.wait(client.submit("eis", "gamry", start_Hz=1e5, end_Hz=1.0, points_per_decade=2), timeout_s=30)
    assert again["status"] == "completed"
    reopened = [k for k, c in enumerate(com.calls) if c[:2] == ("pstat", "Open")]
    assert len(reopened) == 2


def test_a_hung_com_server_fails_the_run_and_a_fresh_com_thread_serves_the_next(lab):
    daemon, client, com = lab(com_timeout_s=1.0)
    com.hang_on = "Cook"
    record = client.wait(client.submit("ccd", "gamry", diameter_mm=2.0), timeout_s=30)
    assert record["status"] == "failed" and "looks hung" in record["error"]
    com.hang_on = None
    com.release.set()  # the old COM thread wakes up and ends
    again = client.wait(client.submit("eis", "gamry", start_Hz=1e5, end_Hz=1.0, points_per_decade=2), timeout_s=30)
    assert again["status"] == "completed", again["error"]
    assert sum(1 for c in com.calls if c[1] == "CoInitialize") == 2


@pytest.mark.skipif(sys.platform == "win32", reason="checks the message off Windows")
def test_without_windows_the_gamry_driver_fails_at_start_saying_what_it_needs(tmp_path):
    with pytest.raises(DriverUnavailable, match="needs Windows with the Gamry Framework"):
        Daemon(gamry_lab(tmp_path, address="IFC1010-12345"))


# --- against what an instrument someone used before is left as (see the simulated GamryCOM) ------
def test_the_cell_goes_on_at_each_steps_own_level_and_reads_beyond_the_last_users_voltage_range(lab):
    daemon, client, com = lab()
    record = client.wait(client.submit("ccd", "gamry", diameter_mm=2.0), timeout_s=60)
    assert record["status"] == "completed", record["error"]
    currents = [call[2][0] for call in com.calls if call[:2] == ("signal", "Init")]
    np.testing.assert_allclose(com.cell_on_levels, currents, rtol=1e-9)  # never the 0.8 V left set (0.8 A through a 1 A range)
    with h5py.File(record["file"], "r") as f:
        assert np.abs(f["data/voltage_V"][:]).max() > 0.03  # not clipped at the 30 mV range left set


def test_eis_at_open_circuit_runs_at_the_measured_open_circuit_voltage_set_up_as_gamrys_script(lab):
    daemon, client, com = lab()
    com.open_circuit_V = 0.05  # a cell whose open-circuit voltage is not 0 V
    record = client.wait(client.submit("eis", "gamry", start_Hz=1e5, end_Hz=1.0, points_per_decade=3, circuit=None,
                                       impedance_guess_ohm=800.0), timeout_s=60)
    assert record["status"] == "completed", record["error"]
    calls = com.calls
    on = calls.index(ON)
    before_on = calls[:on]
    measured = max(k for k, call in enumerate(before_on) if call[:2] == ("pstat", "MeasureV"))
    set_voltage = [call for call in before_on[measured:] if call[:2] == ("pstat", "SetVoltage")]
    assert len(set_voltage) == 1 and set_voltage[0][2][0] == pytest.approx(0.05, abs=2e-3)  # the OCV, not 0 V
    assert ("pstat", "SetIERangeMode", (False,)) in before_on[measured:]
    settings = {method: args for kind, method, args in before_on if kind == "readz" and method.startswith("Set")}
    assert settings == {"SetSpeed": (com.module.ReadZSpeedNorm,), "SetGain": (1.0,), "SetINoise": (0.0,), "SetVNoise": (0.0,),
                        "SetIENoise": (0.0,), "SetZmod": (800.0,)}
    (idc,) = [call for call in calls[on:] if call[:2] == ("readz", "SetIdc")]
    assert abs(idc[2][0]) < 1e-6  # at open circuit the cell draws (almost) nothing
    limits = [call[2] for call in calls if call[:2] == ("readz", "SetCycleLim")]
    assert limits[0] == (10, 20) and limits[-1] == (2, 4)  # 100 kHz ... 1 Hz
    with h5py.File(record["file"], "r") as f:
        recorded = f["data/frequency_Hz"][:]
    asked = np.logspace(5, 0, 16)
    np.testing.assert_array_equal(recorded, [float(f"{x:.4g}") for x in asked])  # what the instrument applied (Zfreq)
    assert not np.array_equal(recorded, asked)


def test_ctrl_c_on_the_com_thread_switches_the_cell_off_there_and_reaches_the_main_thread(lab, monkeypatch):
    from echemd.drivers import comthread

    forwarded = []
    monkeypatch.setattr(comthread, "forward_interrupt", lambda: forwarded.append(True))
    daemon, client, com = lab(clock=200.0)
    run_id = client.submit("ccd", "gamry", diameter_mm=2.0)
    deadline = time.monotonic() + 20
    while client.status(run_id)["n_samples"] < 20:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    calls_before = len(com.calls)
    com.interrupt_pump = True  # Ctrl+C: comtypes' PumpEvents raises KeyboardInterrupt on the COM thread
    record = client.wait(run_id, timeout_s=30)
    assert record["status"] == "failed" and "COM thread ended" in record["error"]
    assert OFF in com.calls[calls_before:] and forwarded == [True]
    assert daemon.runners["gamry"].instrument.backend is com
    again = client.wait(client.submit("eis", "gamry", start_Hz=1e4, end_Hz=10.0, points_per_decade=2, circuit=None), timeout_s=30)
    assert again["status"] == "completed"  # a fresh COM thread serves the next run


def test_an_instrument_that_stops_answering_mid_eis_fails_the_run_with_the_cell_off(lab):
    daemon, client, com = lab(acquisition_grace_s=0.5)
    com.stall = True  # ReadZ never reports: no OnDataDone
    started = time.monotonic()
    record = client.wait(client.submit("eis", "gamry", start_Hz=1e5, end_Hz=10.0, points_per_decade=2, circuit=None), timeout_s=30)
    assert record["status"] == "failed" and "ReadZ gave no reading" in record["error"] and time.monotonic() - started < 10
    assert com.calls[-1] == OFF or OFF in com.calls[-4:]


def test_a_reference_3000_is_created_with_its_own_progid(lab):
    daemon, client, com = lab(pstat_class="GamryCOM.GamryPstat")
    record = client.wait(client.submit("eis", "gamry", start_Hz=1e4, end_Hz=10.0, points_per_decade=2, circuit=None), timeout_s=30)
    assert record["status"] == "completed", record["error"]


def test_the_instruments_overload_flags_become_events_at_the_samples_where_they_change(lab):
    daemon, client, com = lab()
    daemon.runners["gamry"].instrument._set_vch_range = lambda pstat: None  # (a driver that left the 30 mV range set)
    record = client.wait(client.submit("ccd", "gamry", diameter_mm=2.0), timeout_s=60)
    with h5py.File(record["file"], "r") as f:
        kinds, messages = f["events/kind"][:], f["events/message"][:]
        t, v = f["data/time_s"][:], f["data/voltage_V"][:]
    overloads = [m.decode() for k, m in zip(kinds, messages) if k == b"overload"]
    assert overloads and "flags 0x0002 from" in overloads[0]  # the voltage channel's bit
    first = float(overloads[0].rsplit("from ", 1)[1].split(" s")[0])
    assert first == pytest.approx(t[np.argmax(np.abs(v) >= 0.03 - 1e-12)], rel=1e-5)  # where the readings hit the range
    steps = sum(k == b"step" for k in kinds)
    assert steps >= 3 and len(overloads) >= 2  # each step whose readings reach the range reports it anew


def test_overload_events_do_not_depend_on_how_samples_are_split_into_blocks():
    from echemd.daemon.engine import Engine
    from echemd.daemon.run_events import Note
    from echemd.drivers.base import Block

    flags = np.array([0, 0, 2, 2, 2, 0, 0, 1, 1, 3, 0])
    t = np.arange(len(flags), dtype=float)
    found = []
    for cuts in ([], [1], [2, 3], [5, 9], list(range(1, 11))):
        events = []
        engine = Engine(None, lambda event: events.append(event.message) if isinstance(event, Note) else None, clock_zero_s=0.0)
        for time_s, piece in zip(np.split(t, cuts), np.split(flags, cuts)):
            engine._take(Block({"time_s": time_s}, overload=piece))
        found.append(events)
    assert all(events == found[0] for events in found)
    assert found[0] == ["instrument overload flags 0x0002 from 2 s", "instrument overload cleared at 5 s",
                        "instrument overload flags 0x0001 from 7 s", "instrument overload flags 0x0003 from 9 s",
                        "instrument overload cleared at 10 s"]
