"""Impedance spectra between the half cycles of a CCD: one run file holding both kinds of data."""

import json

import h5py
import numpy as np
import pytest

from conftest import lab_config
from echemd.daemon.client import Client, RemoteError
from echemd.daemon.service import Daemon
from echemd.drivers.simulated import SymmetricCell
from echemd.config import SymmetricCellConfig
from echemd.protocols.io.readers import read_gamry
from helpers import run_on_cell
from test_analyze import echemd

SWEEP = {"start_Hz": 1e6, "end_Hz": 10.0, "points_per_decade": 5}  # 26 points


@pytest.fixture(scope="module")
def ccd_with_spectra(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ccd-eis")
    record, _ = run_on_cell(folder, "ccd", {"preset": "Li6PS5Cl-flat", "seed": 3}, eis_at=["start", "plating", "end"], eis=SWEEP)
    assert record["status"] == "completed", record["error"]
    return record


def test_spectra_before_between_and_after_the_plating_steps_are_in_the_result(ccd_with_spectra):
    result = ccd_with_spectra["result"]
    assert result["ccd_mA_cm2"] == 1.0 and result["stopped_by"] == "short"
    spectra = result["impedance"]
    # the short ended cycle 2's plating: no spectrum after it, one at the end
    assert [s["at"] for s in spectra] == ["start", "plate", "end"]
    assert [s["label"] for s in spectra] == ["EIS before the first half cycle", "EIS after cycle 1: plate 0.5 mA/cm2", "EIS at the end"]
    assert all(s["points"] == 26 for s in spectra)
    fresh = SymmetricCell(SymmetricCellConfig(preset="Li6PS5Cl-flat", seed=3)).impedance_ohm(np.array([1e6, 10.0]))
    assert spectra[0]["high_frequency_real_ohm"] == pytest.approx(fresh[0].real, rel=0.02)
    assert spectra[0]["low_frequency_real_ohm"] == pytest.approx(fresh[1].real, rel=0.02)
    area = np.pi * 0.1**2
    assert spectra[0]["low_frequency_asr_ohm_cm2"] == pytest.approx(spectra[0]["low_frequency_real_ohm"] * area)
    # the short in parallel lowers the impedance measured after it
    assert spectra[2]["low_frequency_real_ohm"] < 0.7 * spectra[1]["low_frequency_real_ohm"]
    assert spectra[0]["time_s"] < spectra[1]["time_s"] < spectra[2]["time_s"]


def test_the_run_file_holds_each_sample_once_with_the_other_steps_columns_nan(ccd_with_spectra):
    with h5py.File(ccd_with_spectra["file"], "r") as f:
        data = {name: f["data"][name][:] for name in f["data"]}
        units = {name: f["data"][name].attrs["units"] for name in f["data"]}
    assert units == {"time_s": "s", "current_A": "A", "voltage_V": "V", "frequency_Hz": "Hz", "z_real_ohm": "Ohm", "z_imag_ohm": "Ohm"}
    spectrum_rows = np.isfinite(data["frequency_Hz"])
    assert spectrum_rows.sum() == 3 * 26
    for name in ("z_real_ohm", "z_imag_ohm"):
        np.testing.assert_array_equal(np.isfinite(data[name]), spectrum_rows)
    for name in ("current_A", "voltage_V"):
        np.testing.assert_array_equal(np.isfinite(data[name]), ~spectrum_rows)
    assert np.all(np.diff(data["time_s"]) > 0)


def test_analyze_export_read_both_kinds_from_the_one_file(ccd_with_spectra, tmp_path):
    path = ccd_with_spectra["file"]
    code, out, err = echemd("analyze", "ccd", path)
    assert code == 0, err
    assert json.loads(out)["ccd_mA_cm2"] == 1.0
    code, out, err = echemd("analyze", "eis", path)
    assert code == 2 and "holds 3 impedance spectra: choose one with --spectrum 1..3" in err
    totals = []
    for number in (1, 3):
        code, out, err = echemd("analyze", "eis", path, "--spectrum", number, "--circuit", "R0-p(R1,CPE1)")
        assert code == 0, err
        totals.append(sum(json.loads(out)["parameters"][name] for name in ("R0", "R1")))
    spectra = ccd_with_spectra["result"]["impedance"]
    assert totals[1] / totals[0] == pytest.approx(spectra[2]["low_frequency_real_ohm"] / spectra[0]["low_frequency_real_ohm"], rel=0.15)
    code, out, err = echemd("analyze", "eis", path, "--spectrum", "4")
    assert code == 2 and "--spectrum 4 is not one of 1..3" in err
    code, out, err = echemd("export", path, "--format", "dta", "-o", tmp_path / "run.DTA")
    assert code == 0, err
    dta = read_gamry(tmp_path / "run.DTA")
    assert list(dta.curves) == ["CURVE", "ZCURVE", "ZCURVE2", "ZCURVE3"]
    with h5py.File(path, "r") as f:
        chrono = int(np.isfinite(f["data/current_A"][:]).sum())
    assert len(dta.curves["CURVE"].rows) == chrono and all(len(dta.curves[n].rows) == 26 for n in ("ZCURVE", "ZCURVE2", "ZCURVE3"))


def test_a_sweep_the_potentiostat_cannot_make_is_refused_at_submission(tmp_path):
    daemon = Daemon(lab_config(tmp_path))
    try:
        with Client(daemon.control.endpoint) as client:
            with pytest.raises(RemoteError, match="outside the instrument's"):
                client.submit("ccd", "sim-pstat-1", diameter_mm=2.0, eis_at=["start"], eis={"start_Hz": 5e6})
            with pytest.raises(RemoteError, match="eis_at"):
                client.submit("ccd", "sim-pstat-1", diameter_mm=2.0, eis_at=["sometimes"])
            assert client.runs() == []
    finally:
        daemon.close()


def test_at_a_real_pace_the_spectra_and_the_verdict_are_those_of_the_fastest_clock(tmp_path):
    """2000x real time: the instrument delivers a few samples per poll; the run gives the same CCD,
    the same spectra, and landmarks within the noise of the maximum clock's."""
    cell = {"preset": "Li6PS5Cl-flat", "seed": 3}
    settings = dict(eis_at=["start", "plating", "end"], eis=SWEEP, capacity_mAh_cm2=0.05, max_plating_mA_cm2=2.0)
    paced, _ = run_on_cell(tmp_path / "paced", "ccd", cell, clock=2000.0, **settings)
    fastest, _ = run_on_cell(tmp_path / "fastest", "ccd", cell, **settings)
    assert paced["status"] == fastest["status"] == "completed"
    assert paced["result"]["ccd_mA_cm2"] == fastest["result"]["ccd_mA_cm2"] is not None
    spectra = [(s["label"], s["points"]) for s in paced["result"]["impedance"]]
    assert spectra == [(s["label"], s["points"]) for s in fastest["result"]["impedance"]] and len(spectra) >= 3
    for a, b in zip(paced["result"]["impedance"][:-1], fastest["result"]["impedance"][:-1]):  # (the end one: a short still collapsing)
        assert a["low_frequency_real_ohm"] == pytest.approx(b["low_frequency_real_ohm"], rel=0.02)
