"""Two- and three-electrode plating runs: what is measured, what the run file records, what is refused."""

import h5py
import pytest

from conftest import lab_config
from echemd.daemon.client import Client, RemoteError
from echemd.daemon.service import Daemon
from helpers import run_on_cell


def steps_by_phase(result: dict, phase: str) -> list[float]:
    steps = result["steps"]
    return [p for p, kind in zip(steps["polarization_mV"], steps["phase"]) if kind == phase]


def test_a_three_electrode_ccd_watches_the_working_electrode_and_records_how_it_was_wired(tmp_path):
    cell = {"preset": "Li6PS5Cl-flat", "seed": 3}
    two, _ = run_on_cell(tmp_path / "two", "ccd", cell)
    three, model = run_on_cell(tmp_path / "three", "ccd", {**cell, "reference_electrode": True}, electrodes=3)
    assert two["status"] == three["status"] == "completed"
    # the dendrite is the working electrode's: the same short, found on the reference channel
    assert three["result"]["ccd_mA_cm2"] == two["result"]["ccd_mA_cm2"] == 1.0
    assert three["result"]["stopped_by"] == "short"
    # the working electrode's polarization: its own interface and half the electrolyte, under half the cell's
    for two_mV, three_mV in zip(steps_by_phase(two["result"], "plate"), steps_by_phase(three["result"], "plate")):
        assert 0.3 * two_mV < three_mV < 0.5 * two_mV
    with h5py.File(three["file"], "r") as f:
        assert f.attrs["electrodes"] == 3 and f.attrs["voltage_measured"] == "working vs reference electrode"
        assert "reference electrode" in f["data/voltage_V"].attrs["description"]
    with h5py.File(two["file"], "r") as f:
        assert f.attrs["electrodes"] == 2 and f.attrs["voltage_measured"] == "working vs counter electrode (cell voltage)"


def test_a_run_whose_wiring_differs_from_the_instruments_is_refused_before_anything_is_applied(tmp_path):
    daemon = Daemon(lab_config(tmp_path))
    try:
        with Client(daemon.control.endpoint) as client:
            with pytest.raises(RemoteError, match="sim-pstat-1 is wired with 2 electrodes, the run asks for electrodes = 3"):
                client.submit("ccd", "sim-pstat-1", diameter_mm=2.0, electrodes=3)
            assert client.runs() == []
            with pytest.raises(RemoteError, match="electrodes"):
                client.submit("ccd", "sim-pstat-1", diameter_mm=2.0, electrodes=4)
    finally:
        daemon.close()
