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
