"""Run metadata (the sample, the operator, the cell) and per-instrument defaults, through the API and the CLI."""

import json

import h5py
import pytest

from conftest import lab_config
from echemd.daemon.client import Client, RemoteError
from echemd.daemon.service import Daemon
from test_cli import echemd, served  # noqa: F401 - the fixture


def lab_with_a_configured_cell(tmp_path):
    """The simulated lab, sim-pstat-1 configured with its cell's metadata and its disc diameter."""
    config = lab_config(tmp_path)
    configured = {"metadata": {"electrolyte": "Li6PS5Cl", "cell": "disc-2mm", "stack_pressure_MPa": 7.0},
                  "defaults": {"diameter_mm": 2.0, "not_a_ccd_parameter": 1}}
    instruments = [type(instrument).model_validate({**instrument.model_dump(), **configured})
                   if instrument.name == "sim-pstat-1" else instrument for instrument in config.instruments]
    return config.model_copy(update={"instruments": instruments})


def test_metadata_and_defaults_reach_the_run_file_and_every_report_after_a_restart_too(tmp_path):
    config = lab_with_a_configured_cell(tmp_path)
    daemon = Daemon(config)
    try:
        with Client(daemon.control.endpoint) as client:
            run_id = client.submit("ccd", "sim-pstat-1", metadata={"sample": "LPSCl-07", "operator": "ana", "batch_no": 7,
                                                                    "stack_pressure_MPa": 5.0}, max_plating_mA_cm2=1.0)
            record = client.wait(run_id, timeout_s=60)
            # the instrument's diameter filled the parameter the run did not give; an area given instead wins
            other = client.wait(client.submit("ccd", "sim-pstat-1", area_cm2=0.05, max_plating_mA_cm2=0.5), timeout_s=60)
    finally:
        daemon.close()
    expected = {"sample": "LPSCl-07", "operator": "ana", "batch_no": 7, "electrolyte": "Li6PS5Cl", "cell": "disc-2mm",
                "stack_pressure_MPa": 5.0}  # the run's own value over the instrument's
    assert record["status"] == "completed" and record["metadata"] == expected
    assert record["parameters"]["diameter_mm"] == 2.0 and record["parameters"]["area_cm2"] is None
    assert other["status"] == "completed" and other["parameters"]["area_cm2"] == 0.05 and other["parameters"]["diameter_mm"] is None
    with h5py.File(record["file"], "r") as f:
        assert json.loads(f.attrs["metadata"]) == expected
        assert json.loads(f.attrs["parameters"])["diameter_mm"] == 2.0
    daemon = Daemon(config)  # a later session reads it from the file
    try:
        with Client(daemon.control.endpoint) as client:
            assert client.status(run_id)["metadata"] == expected
            assert {r["run_id"]: r["metadata"] for r in client.runs()}[run_id] == expected
    finally:
        daemon.close()


@pytest.mark.parametrize(("metadata", "message"), [
    ({"bad key": 1}, "letters, digits and underscores"),
    ({"nested": {"a": 1}}, "a string, number or boolean"),
    ({"temperature_C": "warm"}, "temperature_C"),
    ({"thickness_um": -3}, "thickness_um"),
])
def test_bad_metadata_is_refused_before_anything_runs(tmp_path, metadata, message):
    daemon = Daemon(lab_config(tmp_path))
    try:
        with Client(daemon.control.endpoint) as client:
            with pytest.raises(RemoteError, match=message) as error:
                client.submit("ccd", "sim-pstat-1", diameter_mm=2.0, metadata=metadata)
            assert error.value.code == "invalid_params" and client.runs() == []
    finally:
        daemon.close()


def test_the_cli_records_metadata_and_finds_runs_by_sample_protocol_and_date(served):  # noqa: F811
    _, control, _ = served()
    done = echemd("run", "ccd", "--instrument", "sim-pstat-1", "-p", "diameter_mm=2", "-p", "max_plating_mA_cm2=0.5",
                  "-m", "sample=LPSCl-07", "-m", "operator=ana", "--wait", "--json", "--endpoint", control)
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)["run_id"]
    done = echemd("run", "eis", "--instrument", "sim-pstat-2", "-p", "end_Hz=100", "-m", "sample=LLZO-2", "--wait", "--endpoint", control)
    assert done.returncode == 0, done.stderr
    table = echemd("runs", "--sample", "LPSCl-07", "--endpoint", control).stdout.splitlines()
    assert table[0].split() == ["RUN", "STATUS", "PROTOCOL", "INSTRUMENT", "SAMPLE", "STARTED", "(UTC)", "SAMPLES", "RESULT"]
    assert len(table) == 2 and table[1].split()[:5] == [first, "completed", "ccd", "sim-pstat-1", "LPSCl-07"]
    assert "ccd_mA_cm2=none (max_current)" in table[1]
    assert table[0].index("SAMPLE") == table[1].index("LPSCl-07")  # columns line up
    records = json.loads(echemd("runs", "--protocol", "eis", "--json", "--endpoint", control).stdout)
    assert [r["metadata"]["sample"] for r in records] == ["LLZO-2"]
    assert len(echemd("runs", "--since", "2999-01-01", "--endpoint", control).stdout.splitlines()) == 1  # the header only
    assert len(echemd("runs", "--since", "2000-01-01", "--endpoint", control).stdout.splitlines()) == 3
    done = echemd("run", "ccd", "--instrument", "sim-pstat-1", "-p", "diameter_mm=2", "-p", "diameter_mm=3", "--endpoint", control)
    assert done.returncode == 2 and "-p diameter_mm given twice (2 and 3)" in done.stderr and "Traceback" not in done.stderr
    done = echemd("runs", "--since", "yesterday", "--endpoint", control)
    assert done.returncode == 2 and "expected a date such as 2026-11-01" in done.stderr


def test_every_shipped_parameter_set_is_accepted_by_its_protocol_on_the_simulated_lab(tmp_path):
    from echemd.config import parameter_sets

    instrument = {"ccd": "sim-pstat-1", "ccd-ramp": "sim-pstat-1", "plate-until-short": "sim-pstat-1", "cafm-sweep": "sim-smu-1",
                  "memristor": "sim-smu-1"}
    daemon = Daemon(lab_config(tmp_path))
    try:
        with Client(daemon.control.endpoint) as client:
            for name in parameter_sets.shipped():
                protocol, parameters = parameter_sets.load(name)
                run_id = client.submit(protocol, instrument[protocol], **parameters)
                record = client.status(run_id)
                assert {key: record["parameters"][key] for key in parameters} == parameters, name
                client.abort(run_id)
    finally:
        daemon.close()


def test_run_takes_parameter_files_shipped_sets_and_an_earlier_runs_parameters(served, tmp_path):  # noqa: F811
    _, control, _ = served()
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"protocol": "ccd", "diameter_mm": 2.0, "max_plating_mA_cm2": 0.5, "capacity_mAh_cm2": 0.05}))
    done = echemd("run", "--params", mine, "--instrument", "sim-pstat-1", "-p", "stripping_mA_cm2=0.1", "--wait", "--json",
                  "--endpoint", control)
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)["run_id"]
    record = json.loads(echemd("status", first, "--json", "--endpoint", control).stdout)
    assert record["protocol"] == "ccd" and record["instrument"] == "sim-pstat-1"
    assert {k: record["parameters"][k] for k in ("diameter_mm", "max_plating_mA_cm2", "capacity_mAh_cm2", "stripping_mA_cm2")} == \
        {"diameter_mm": 2.0, "max_plating_mA_cm2": 0.5, "capacity_mAh_cm2": 0.05, "stripping_mA_cm2": 0.1}
    # the same again, on the other potentiostat, one parameter changed
    done = echemd("run", "--like", first, "--instrument", "sim-pstat-2", "-p", "capacity_mAh_cm2=0.1", "--wait", "--json", "--endpoint", control)
    assert done.returncode == 0, done.stderr
    again = json.loads(echemd("status", json.loads(done.stdout)["run_id"], "--json", "--endpoint", control).stdout)
    assert again["instrument"] == "sim-pstat-2" and again["parameters"] == {**record["parameters"], "capacity_mAh_cm2": 0.1}
    # a shipped set, by name
    done = echemd("run", "--params", "ccd-li6ps5cl", "--instrument", "sim-pstat-1", "-p", "max_plating_mA_cm2=0.5", "--endpoint", control)
    assert done.returncode == 0, done.stderr
    shipped = json.loads(echemd("status", done.stdout.strip(), "--json", "--endpoint", control).stdout)
    assert shipped["parameters"]["stripping_mA_cm2"] == 0.2 and shipped["parameters"]["drop_threshold_mV"] == 2.0
    # what cannot be: each a clear exit 2
    bad = tmp_path / "bad.toml"
    bad.write_text("diameter_mm = \n")
    for args, message in [(("--params", "no-such-set"), "no such file, nor a shipped parameter set (shipped: cafm-llzo-grain-boundary"),
                          (("--params", bad), "not valid TOML"),
                          (("eis", "--params", "ccd-li6ps5cl"), "the protocol differs: ccd from --params ccd-li6ps5cl, eis from the command line"),
                          (("--instrument", "sim-pstat-1"), "name the protocol"),
                          (("ccd",), "name the instrument")]:
        done = echemd("run", *args, "--endpoint", control)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)


def test_a_run_projected_to_be_absurdly_large_is_refused_with_its_projection_unless_allowed(tmp_path):
    daemon = Daemon(lab_config(tmp_path))
    try:
        with Client(daemon.control.endpoint) as client:
            huge = dict(diameter_mm=2.0, current_mA_cm2=0.8, max_hours=10, sample_interval_s=1e-5)
            with pytest.raises(RemoteError, match=r"projected to record 3,600,000,000 samples, 86.4 GB, beyond max_run_size_gb = 20") as error:
                client.submit("plate-until-short", "sim-pstat-1", **huge)
            assert error.value.code == "refused" and error.value.details["samples"] == 3_600_000_000
            assert client.runs() == []
            run_id = client.submit("plate-until-short", "sim-pstat-1", allow_large=True, **huge)  # the operator says so
            client.abort(run_id)
            assert client.wait(run_id, timeout_s=30)["status"] == "aborted"
            # an ordinary CCD is far below: 9,480 samples at 1 s
            client.abort(client.submit("ccd", "sim-pstat-1", diameter_mm=2.0))
    finally:
        daemon.close()
