"""End to end on real loopback sockets: the simulated lab driven through the control API."""

import json
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import zmq

from echemd.config import DaemonConfig
from echemd.daemon.client import Client, RemoteError, Subscription
from echemd.daemon.runfile_reader import read_attrs
from echemd.daemon.service import Daemon
from echemd.daemon.stream import DataBlock
from helpers import until

CCD = {"diameter_mm": 2.0}


def collect_stream(subscription, run_id):
    """Raw data blocks and the status sequence of one run, as they come off the PUB socket."""
    blocks, statuses = [], []
    while True:
        message = subscription.receive(10.0)
        assert message is not None, "the stream went quiet before the run ended"
        if isinstance(message, DataBlock):
            if message.run_id == run_id:
                blocks.append(message)
        elif message.kind == "status" and message.header["run_id"] == run_id:
            statuses.append(message.header["status"])
            if message.header["status"] not in ("queued", "running"):
                return blocks, statuses


def test_ccd_run_streams_every_sample_and_recovers_the_cells_ccd(daemon, client):
    with Subscription(zmq.Context.instance(), daemon.publisher.endpoint, b"run.") as subscription:
        subscription.wait_connected()
        run_id = client.submit("ccd", "sim-pstat-1", **CCD)
        blocks, statuses = collect_stream(subscription, run_id)
    record = client.wait(run_id, timeout_s=30)

    assert statuses == ["running", "completed"]
    assert [b.seq for b in blocks] == list(range(len(blocks))) and len(blocks) > 1  # no gaps
    assert [b.offset for b in blocks] == list(np.cumsum([0] + [len(b) for b in blocks[:-1]]))
    with h5py.File(record["file"], "r") as f:
        assert f.attrs["status"] == "completed"
        for name in ("time_s", "current_A", "voltage_V"):
            np.testing.assert_array_equal(f["data"][name][:], np.concatenate([b.columns[name] for b in blocks]))
        assert f["data/voltage_V"].attrs["units"] == "V"
        kinds = [k.decode() for k in f["events/kind"][:]]
        assert kinds.count("step") == 3 and kinds[-1] == "short"  # plate 0.5, strip, plate 1.0: the cell (0.82 mA/cm2) shorts

    result = record["result"]
    cell = daemon.runners["sim-pstat-1"].instrument.cell
    critical = cell.critical_A_cm2 * 1e3  # this cell's own (seeded) critical current density
    assert 0 < result["ccd_mA_cm2"] - critical <= 0.5  # within one step
    assert result["last_passed_mA_cm2"] == result["ccd_mA_cm2"] - 0.5 and result["stopped_by"] == "short"
    assert result["drop_mV"] >= 2.0
    # the run started at the instrument's time 0: the short formed at cell.short_since_s of run time
    # the simulated filament falls from 10 MOhm with a 15 s time constant: it halves the polarization
    # ~115 s after it touches; the drop or the collapse rule sees it within 150 s
    assert 0 < result["short_detected_at_s"] - cell.short_since_s < 150 and result["short_rule"] in ("drop", "collapse")


@pytest.mark.parametrize("critical", [0.7, 1.3, 2.2])
def test_ccd_is_recovered_within_one_step_for_other_cells(lab, critical):
    config = lab()
    pstat = config.instruments[0]
    config = config.model_copy(update={"instruments": [pstat.model_copy(update={"cell": pstat.cell.model_copy(update={"critical_current_mA_cm2": critical, "critical_current_spread": 0.0})})]})
    daemon = Daemon(DaemonConfig.model_validate(config.model_dump()))
    try:
        with Client(daemon.control.endpoint) as client:
            result = client.wait(client.submit("ccd", "sim-pstat-1", **CCD), timeout_s=60)["result"]
    finally:
        daemon.close()
    assert 0 < result["ccd_mA_cm2"] - critical <= 0.5


def test_at_a_real_time_clock_t0_plus_time_s_is_each_samples_wall_clock_time(lab):
    daemon = Daemon(lab(), sim_speed=1.0)
    try:
        with Client(daemon.control.endpoint) as client, Subscription(zmq.Context.instance(), daemon.publisher.endpoint, b"run.") as sub:
            sub.wait_connected()
            submitted = time.time()
            run_id = client.submit("plate-until-short", "sim-pstat-1", diameter_mm=2.0, current_mA_cm2=0.5,
                                   max_hours=1 / 3600, sample_interval_s=0.01)
            blocks, _ = collect_stream(sub, run_id)
            arrived = time.time()
    finally:
        daemon.close()
    sampled = np.concatenate([b.t0 + b.columns["time_s"] for b in blocks])
    assert len(sampled) == 100
    assert submitted < sampled[0] < submitted + 0.2  # the first 10 ms sample, taken right after the submission
    assert sampled[-1] <= arrived and sampled[-1] - sampled[0] == pytest.approx(0.99)


def test_the_client_stream_equals_the_run_file_even_when_joining_late(client):
    run_id = client.submit("ccd", "sim-pstat-2", **CCD)
    client.wait(run_id, timeout_s=30)  # the whole run went by before anyone subscribed
    blocks = list(client.subscribe(run_id))
    assert [b.seq for b in blocks] == list(range(len(blocks)))
    with h5py.File(client.status(run_id)["file"], "r") as f:
        np.testing.assert_array_equal(f["data/voltage_V"][:], np.concatenate([b.columns["voltage_V"] for b in blocks]))


@pytest.mark.parametrize(
    ("protocol", "instrument", "parameters", "code", "text"),
    [
        ("ccd", "sim-pstat-1", {"diameter_mm": 2, "plating_start_mA_cm2": -0.5}, "invalid_parameters", "plating_start_mA_cm2: Input should be greater than 0"),
        ("ccd", "sim-pstat-1", {"diameter_mm": 2, "stripping_mA_cm2": "lots"}, "invalid_parameters", "stripping_mA_cm2: Input should be a valid number"),
        ("ccd", "sim-pstat-1", {}, "invalid_parameters", "give exactly one of area_cm2 and diameter_mm"),
        ("ccd", "sim-pstat-1", {"diameter_mm": 2, "bogus": 1}, "invalid_parameters", "bogus: Extra inputs are not permitted"),
        ("cccd", "sim-pstat-1", CCD, "unknown_protocol", "unknown protocol 'cccd'"),
        ("ccd", "sim-pstat-9", CCD, "unknown_instrument", "unknown instrument 'sim-pstat-9'"),
        ("ccd", "sim-smu-1", CCD, "refused", "ccd needs a potentiostat; sim-smu-1 is a sourcemeter"),
        ("ccd", "sim-pstat-1", {"area_cm2": 1.0, "max_plating_mA_cm2": 200, "capacity_mAh_cm2": 20}, "refused", "exceeds the configured limit max_abs_current_A = 0.1 A"),
        ("ccd", "sim-pstat-1", {"diameter_mm": 2, "voltage_limit_V": 8}, "refused", "exceeds the configured limit max_abs_voltage_V = 5 V"),
        ("ccd", "sim-pstat-1", {"diameter_mm": 2, "capacity_mAh_cm2": None}, "invalid_parameters", "give capacity_mAh_cm2 or half_cycle_s"),
        ("ccd", "sim-pstat-1", {"diameter_mm": 1e308}, "invalid_parameters", "diameter_mm: Input should be less than or equal to 1000"),
        ("ccd", "sim-pstat-1", {"diameter_mm": 2, "settle_s": 100, "settle_max_s": 50}, "invalid_parameters", "settle_max_s (50 s) is shorter than settle_s (100 s)"),
    ],
)
def test_bad_submissions_get_specific_errors_and_nothing_runs(daemon, client, protocol, instrument, parameters, code, text):
    with pytest.raises(RemoteError) as error:
        client.submit(protocol, instrument, **parameters)
    assert error.value.code == code
    assert text in error.value.message
    assert client.runs() == [] and not list(daemon.data_dir.glob("*.h5*"))  # no run file (the folder holds only the daemon's lock)
    assert client.wait(client.submit("ccd", "sim-pstat-1", **CCD), timeout_s=30)["status"] == "completed"


def test_abort_stops_the_run_switches_the_cell_off_and_keeps_the_data(lab):
    daemon = Daemon(lab(), sim_speed=300.0)  # the CCD would take ~30 s of real time
    try:
        with Client(daemon.control.endpoint) as client:
            run_id = client.submit("ccd", "sim-pstat-1", **CCD)
            until(lambda: client.status(run_id)["n_samples"] >= 100)
            assert daemon.runners["sim-pstat-1"].instrument.output_on is True
            client.abort(run_id)
            record = client.wait(run_id, timeout_s=5)
            assert record["status"] == "aborted"
            assert daemon.runners["sim-pstat-1"].instrument.output_on is False
            streamed = list(client.subscribe(run_id))
    finally:
        daemon.close()
    with h5py.File(record["file"], "r") as f:
        assert f.attrs["status"] == "aborted" and f.attrs["finished"]
        n = len(f["data/time_s"])
        assert n == record["n_samples"] >= 100
        assert sum(len(b) for b in streamed) == n
        assert b"abort" in list(f["events/kind"][:])


def test_runs_on_one_instrument_queue_and_runs_on_two_go_in_parallel(lab):
    daemon = Daemon(lab(), sim_speed=2000.0)
    try:
        with Client(daemon.control.endpoint) as client:
            first = client.submit("ccd", "sim-pstat-1", **CCD)
            second = client.submit("ccd", "sim-pstat-1", **CCD)
            other = client.submit("ccd", "sim-pstat-2", **CCD)
            until(lambda: client.status(other)["status"] == client.status(first)["status"] == "running")
            assert client.status(second)["status"] == "queued"
            listing = {i["name"]: i for i in client.instruments()}
            assert listing["sim-pstat-1"]["queued"] == [second] and listing["sim-pstat-2"]["current_run"] == other
            client.abort(first)
            client.abort(other)
            assert client.wait(second, timeout_s=30)["status"] == "completed"
            statuses = {r["run_id"]: r["status"] for r in client.runs()}
            assert statuses == {first: "aborted", second: "completed", other: "aborted"}
    finally:
        daemon.close()


def test_shutdown_aborts_running_runs_and_leaves_readable_files(lab):
    daemon = Daemon(lab(), sim_speed=300.0)
    with Client(daemon.control.endpoint) as client:
        run_id = client.submit("ccd", "sim-pstat-1", **CCD)
        until(lambda: client.status(run_id)["n_samples"] >= 10)
        path = client.status(run_id)["file"]
    daemon.close()
    assert daemon.runners["sim-pstat-1"].instrument.output_on is False
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "aborted" and len(f["data/voltage_V"]) >= 10


def test_instruments_and_protocols_describe_themselves(client):
    instruments = {i["name"]: i for i in client.instruments()}
    assert instruments["sim-pstat-1"]["capabilities"]["max_current_A"] == 1.0
    assert instruments["sim-smu-1"]["kind"] == "sourcemeter" and instruments["sim-smu-1"]["limits"]["max_abs_voltage_V"] == 10.0
    protocols = {p["name"]: p for p in client.protocols()}
    ccd = protocols["ccd"]
    assert ccd["instrument_kind"] == "potentiostat" and ccd["columns"] == {"time_s": "s", "current_A": "A", "voltage_V": "V"}
    assert protocols["cafm-sweep"]["columns"]["bias_V"] == "V"
    assert ccd["parameters_schema"]["properties"]["drop_threshold_mV"]["default"] == 2.0


def test_a_run_whose_file_cannot_be_created_fails_cleanly_and_stays_accounted_for(daemon, client):
    first = client.submit("ccd", "sim-pstat-1", **CCD)
    blocked = client.submit("ccd", "sim-pstat-1", **CCD)  # queued behind the first
    Path(client.status(blocked)["file"]).mkdir()  # something else holds its file's name
    client.abort(first)
    record = client.wait(blocked, timeout_s=10)
    assert record["status"] == "failed" and "cannot create the run file" in record["error"]
    assert daemon.runners["sim-pstat-1"].instrument.output_on is False
    assert daemon.queues["sim-pstat-1"].state == "idle"  # the instrument is fine: it stays connected
    written = json.loads((daemon.data_dir / "submitted" / f"{blocked}.json").read_text())
    assert written["status"] == "failed" and "cannot create the run file" in written["error"]  # it survives a restart
    assert client.wait(client.submit("ccd", "sim-pstat-1", **CCD), timeout_s=30)["status"] == "completed"


def test_a_run_the_data_folder_cannot_take_is_refused_at_submit(daemon, client):
    shutil.rmtree(daemon.data_dir)  # (it holds only the daemon's lock files)
    daemon.data_dir.write_text("a file where the run folder should be")
    with pytest.raises(RemoteError) as refused:
        client.submit("ccd", "sim-pstat-1", **CCD)
    assert refused.value.code == "storage" and "cannot be written down" in refused.value.message
    assert client.instruments()[0]["queued"] == [] and daemon.runners["sim-pstat-1"].instrument.output_on is False
    daemon.data_dir.unlink()
    daemon.data_dir.mkdir()
    assert client.wait(client.submit("ccd", "sim-pstat-1", **CCD), timeout_s=30)["status"] == "completed"


def test_a_disk_that_fills_mid_run_fails_the_run_safely_and_keeps_what_was_flushed(lab, monkeypatch):
    from echemd.daemon.runfile import RunFile

    daemon = Daemon(lab(), sim_speed=200.0)
    try:
        with Client(daemon.control.endpoint) as client:
            run_id = client.submit("ccd", "sim-pstat-1", **CCD)
            until(lambda: client.status(run_id)["n_samples"] >= 50)
            until(lambda: read_attrs(daemon.data_dir / f"{run_id}.h5")["n_samples"] >= 50)  # flushed

            def disk_full(self, batch):
                raise OSError(28, "No space left on device")

            monkeypatch.setattr(RunFile, "_write_batch", disk_full)
            record = client.wait(run_id, timeout_s=20)
            assert daemon.runners["sim-pstat-1"].instrument.output_on is False
            assert client.instruments()[0]["state"] == "idle"  # the disk failed, not the instrument: it stays connected
    finally:
        daemon.close()
    assert record["status"] == "failed" and "No space left on device" in record["error"]
    attrs = read_attrs(Path(record["file"]))
    assert attrs["status"] == "failed" and "No space left on device" in attrs["error"] and attrs["n_samples"] >= 50


def test_a_new_daemon_removes_half_rewritten_copies_and_keeps_the_originals(lab):
    config = lab()
    daemon = Daemon(config)
    try:
        with Client(daemon.control.endpoint) as client:
            record = client.wait(client.submit("ccd", "sim-pstat-1", **CCD), timeout_s=30)
    finally:
        daemon.close()
    stale = Path(record["file"]).with_suffix(".h5.rewriting")
    stale.write_bytes(b"the start of a copy cut short by a crash")
    Daemon(config).close()
    assert not stale.exists() and read_attrs(Path(record["file"]))["status"] == "completed"


def test_queue_can_be_listed_reordered_and_pruned(lab):
    daemon = Daemon(lab(), sim_speed=500.0)
    try:
        with Client(daemon.control.endpoint) as client:
            running = client.submit("ccd", "sim-pstat-1", **CCD)
            a, b, c = (client.submit("ccd", "sim-pstat-1", **CCD) for _ in range(3))
            until(lambda: client.status(running)["status"] == "running")
            assert client.call("queue", instrument="sim-pstat-1")["queued"] == [a, b, c]
            assert client.call("queue", instrument="sim-pstat-1", action="move", run_id=c, position=0)["queued"] == [c, a, b]
            assert client.call("queue", instrument="sim-pstat-1", action="remove", run_id=a)["queued"] == [c, b]
            assert client.status(a)["status"] == "aborted"
            with pytest.raises(RemoteError, match="is running, not queued"):
                client.call("queue", instrument="sim-pstat-1", action="remove", run_id=running)
            client.abort(running)
            until(lambda: client.status(c)["status"] == "running")  # the moved run went first
            assert client.status(b)["status"] == "queued"
            client.abort(c), client.abort(b)
    finally:
        daemon.close()


def test_shutdown_request_is_acknowledged_and_flagged(daemon, client):
    assert client.call("shutdown") == {"shutting_down": True}
    assert daemon.shutdown_requested.is_set()


def test_run_limits_tighten_the_instruments_and_fail_the_run_safely(daemon, client):
    # a run's own limits are checked at submit like the instrument's: nothing beyond them is applied
    with pytest.raises(RemoteError, match="voltage_limit_V = 1 V exceeds the configured limit max_abs_voltage_V = 0.05 V"):
        client.submit("ccd", "sim-pstat-1", limits={"max_abs_voltage_V": 0.05}, **CCD)
    with pytest.raises(RemoteError, match="a 2 V bias exceeds the configured limit max_abs_voltage_V = 1 V"):
        client.submit("cafm-sweep", "sim-smu-1", negative_vertex_V=-2.0, limits={"max_abs_voltage_V": 1.0})
    assert client.runs() == []
    record = client.wait(client.submit("ccd", "sim-pstat-1", limits={"max_charge_C": 1e-4}, **CCD), timeout_s=30)
    assert record["status"] == "failed" and "beyond the limit max_charge_C = 0.0001" in record["error"]
    assert record["limits"] == {"max_charge_C": 1e-4}
    assert daemon.runners["sim-pstat-1"].instrument.output_on is False
    clamped = client.wait(client.submit("cafm-sweep", "sim-smu-1", compliance_A=1e-6, limits={"max_compliance_hits": 3}), timeout_s=30)
    assert clamped["status"] == "failed" and "compliance hits" in clamped["error"]
    loose = client.wait(client.submit("ccd", "sim-pstat-1", limits={"max_abs_voltage_V": 100.0}, **CCD), timeout_s=30)
    assert loose["status"] == "completed"  # a run's limits never loosen the lab's 5 V
    with pytest.raises(RemoteError, match="limits.max_charge_C: Input should be greater than 0"):
        client.submit("ccd", "sim-pstat-1", limits={"max_charge_C": -1}, **CCD)


def test_pause_holds_at_open_circuit_and_resume_finishes_the_step(lab):
    daemon = Daemon(lab(), sim_speed=100.0)
    try:
        with Client(daemon.control.endpoint) as client:
            run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0, max_plating_mA_cm2=0.5)  # one cycle: 0.4 h + 1 h
            until(lambda: client.status(run_id)["n_samples"] >= 100)
            assert client.call("pause", run_id=run_id)["hold"] == "open_circuit"
            until(lambda: client.status(run_id)["status"] == "paused")
            n_paused = client.status(run_id)["n_samples"]
            until(lambda: client.status(run_id)["n_samples"] >= n_paused + 100)  # open-circuit samples while paused
            client.call("resume", run_id=run_id)
            until(lambda: client.status(run_id)["status"] == "running")
            until(lambda: daemon.runners["sim-pstat-1"].instrument.output_on)  # plating again
            daemon.runners["sim-pstat-1"].instrument.clock.speed = "max"  # finish quickly
            record = client.wait(run_id, timeout_s=60)
            with pytest.raises(RemoteError, match="eis runs cannot be paused"):
                client.call("pause", run_id=client.submit("eis", "sim-pstat-2"))
    finally:
        daemon.close()
    assert record["status"] == "completed"
    with h5py.File(record["file"], "r") as f:
        kinds = [k.decode() for k in f["events/kind"][:]]
        current = f["data/current_A"][:]
        assert kinds.count("pause") == kinds.count("resume") == 1
        assert np.sum(current == 0.0) >= 100  # the hold at open circuit was recorded
        plated = -np.sum(current[current < 0]) * 1.0  # A s: the plating step still passed its full capacity
        assert plated == pytest.approx(0.2e-3 * 3600 * np.pi * 0.01, rel=0.01)


def test_a_limit_can_pause_the_run_instead_of_failing_it(daemon, client):
    run_id = client.submit("ccd", "sim-pstat-1", limits={"max_charge_C": 0.01, "on_violation": "pause"}, **CCD)
    until(lambda: client.status(run_id)["status"] == "paused")
    assert daemon.runners["sim-pstat-1"].instrument.output_on is False  # open circuit: the cell is off
    client.abort(run_id)
    record = client.wait(run_id, timeout_s=30)
    assert record["status"] == "aborted"
    with h5py.File(record["file"], "r") as f:
        kinds = [k.decode() for k in f["events/kind"][:]]
        assert kinds[kinds.index("limit") + 1] == "pause"


def test_runs_report_their_step_and_progress(lab):
    daemon = Daemon(lab(), sim_speed=2000.0)
    try:
        with Client(daemon.control.endpoint) as client:
            run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0, max_plating_mA_cm2=1.5)  # 3 cycles: 6 steps
            until(lambda: client.status(run_id)["step"].startswith("cycle 1: strip"))
            assert client.status(run_id)["progress"] == pytest.approx(2 / 6)
            record = client.wait(run_id, timeout_s=60)
    finally:
        daemon.close()
    assert record["progress"] == 1.0 and record["step"].startswith("cycle 2: plate")  # the cell shorts at 1 mA/cm2


def test_a_request_that_arrives_while_the_daemon_starts_waits_for_it(lab, tmp_path, monkeypatch):
    """The control socket answers from its own thread as soon as it is bound, before the daemon has
    finished starting (seen in CI: 'Daemon' object has no attribute '_methods'): a request that
    arrives then waits for the daemon and gets its answer."""
    import threading

    from echemd.daemon import service

    class SlowToReturn(service.ControlServer):  # bound and serving, then a pause before the daemon goes on
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            time.sleep(1.0)

    monkeypatch.setattr(service, "ControlServer", SlowToReturn)
    endpoint = f"ipc://{tmp_path}/control"
    answers = []

    def ping_while_it_starts():
        with Client(endpoint, timeout_s=5) as client:
            answers.append(client.call("instruments"))

    pinger = threading.Thread(target=ping_while_it_starts)
    pinger.start()
    daemon = Daemon(lab(control_endpoint=endpoint))
    try:
        pinger.join(10)
        assert len(answers) == 1 and {i["name"] for i in answers[0]} == {"sim-pstat-1", "sim-pstat-2", "sim-smu-1"}
    finally:
        daemon.close()


def test_a_queued_run_paused_holds_before_its_first_step_and_runs_when_resumed(lab):
    """Pausing a run that has not started (queued behind another, or its host still starting)
    holds it at open circuit as soon as it starts: no current before it is resumed."""
    daemon = Daemon(lab(), sim_speed=1.0)
    try:
        with Client(daemon.control.endpoint) as client:
            first = client.submit("ccd", "sim-pstat-1", **CCD)
            second = client.submit("ccd", "sim-pstat-1", **CCD, sample_interval_s=0.1)
            assert client.call("pause", run_id=second)["status"] == "queued"
            client.abort(first)
            until(lambda: client.status(second)["status"] == "paused")
            until(lambda: client.status(second)["n_samples"] >= 5)
            held = np.concatenate([b.columns["current_A"] for b in client.fetch_blocks(second)[0]])
            assert len(held) >= 5 and np.all(held == 0.0)  # open circuit from its first sample
            client.call("resume", run_id=second)

            def plating():
                blocks = client.fetch_blocks(second)[0]
                return np.any(np.concatenate([b.columns["current_A"] for b in blocks]) < 0)

            until(plating)
            client.abort(second)
            assert client.wait(second, timeout_s=10)["status"] == "aborted"
    finally:
        daemon.close()
