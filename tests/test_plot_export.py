"""Plots and exports of real run files; exports read back by independent readers."""

import csv
import json
import subprocess
import sys

import gamry_parser
import h5py
import numpy as np
import pytest

from echemd.config import load_default_config
from echemd.daemon.client import Client
from echemd.daemon.service import Daemon
from echemd.protocols.io.plots import run_figure

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    config = load_default_config().model_copy(update={"control_endpoint": "tcp://127.0.0.1:*", "publish_endpoint": "tcp://127.0.0.1:*", "data_dir": folder})
    daemon = Daemon(config)
    try:
        with Client(daemon.control.endpoint) as client:
            ids = {"ccd": client.submit("ccd", "sim-pstat-1", diameter_mm=2.0, metadata={"sample": "LPSCl-07", "operator": "ana"}),
                   "eis": client.submit("eis", "sim-pstat-2", end_Hz=0.1, area_cm2=0.0314),
                   "cafm-sweep": client.submit("cafm-sweep", "sim-smu-1", cycles=2, positive_vertex_V=1.0)}
            return {kind: client.wait(run_id, timeout_s=60)["file"] for kind, run_id in ids.items()}
    finally:
        daemon.close()


def echemd(*args):
    return subprocess.run([sys.executable, "-m", "echemd.daemon.cli", *map(str, args)], capture_output=True, text=True, timeout=120)


def test_the_ccd_figure_shows_current_density_and_every_half_cycles_polarization_and_asr(run_files):
    import matplotlib.pyplot as plt

    with h5py.File(run_files["ccd"], "r") as f:
        result = json.loads(f["result"].attrs["json"])
        current_A = f["data/current_A"][:]
    figure = run_figure(run_files["ccd"])
    try:
        voltage, current, per_step = figure.axes[:3]
        assert current.get_ylabel() == "current density (mA/cm2)"
        area = np.pi * 0.1**2  # the 2 mm disc
        np.testing.assert_allclose(current.lines[0].get_ydata(), current_A * 1e3 / area)
        plating, stripping = per_step.lines[:2]
        steps = result["steps"]
        phases = np.array(steps["phase"])
        np.testing.assert_allclose(plating.get_ydata(), np.array(steps["polarization_mV"])[phases == "plate"])
        np.testing.assert_allclose(stripping.get_ydata(), np.array(steps["polarization_mV"])[phases == "strip"])
        asr_axis = figure.axes[3]
        np.testing.assert_allclose(asr_axis.lines[0].get_ydata(), steps["asr_ohm_cm2"])
        assert result["stopped_by"] == "short" and per_step.lines[-1].get_xdata()[0] == len(steps["label"])  # the short's half cycle
        inset = voltage.child_axes[0]  # the short, zoomed: the 10 minutes before it was found
        lo, hi = inset.lines[0].get_xdata()[[0, -1]] * 3600
        assert lo == pytest.approx(result["short_detected_at_s"] - 600, abs=1.5) and hi <= result["short_detected_at_s"] + 60
        assert [text.get_text() for text in current.texts] == [label.split(": ")[-1] for label in steps["label"]]  # each step labelled
    finally:
        plt.close(figure)


def test_the_eis_figure_is_in_ohm_cm2_with_a_marker_at_each_decade(run_files):
    import matplotlib.pyplot as plt

    with h5py.File(run_files["eis"], "r") as f:
        z_real = f["data/z_real_ohm"][:]
    figure = run_figure(run_files["eis"])
    try:
        nyquist = figure.axes[0]
        assert nyquist.get_xlabel() == "Z' (Ohm cm2)" and nyquist.get_ylabel() == "-Z'' (Ohm cm2)"
        np.testing.assert_allclose(nyquist.lines[0].get_xdata(), z_real * 0.0314)
        labels = [text.get_text() for text in nyquist.texts]
        decades = ["100 mHz", "1 Hz", "10 Hz", "100 Hz", "1 kHz", "10 kHz", "100 kHz", "1 MHz"]
        assert labels == [label for label in decades if label in labels] and {"100 mHz", "100 Hz", "1 kHz"} <= set(labels)
        points = [complex(*text.xy) for text in nyquist.texts]  # labelled points stay apart (no pile of labels)
        span = np.ptp(nyquist.lines[0].get_xdata())
        assert all(abs(a - b) >= 0.04 * span for k, a in enumerate(points) for b in points[:k])
        with h5py.File(run_files["eis"], "r") as f:
            result = json.loads(f["result"].attrs["json"])
            frequency, z_imag = f["data/frequency_Hz"][:], f["data/z_imag_ohm"][:]
        fit = [line for line in nyquist.lines if line.get_label().startswith("fit ")]
        assert [line.get_label() for line in fit] == [f"fit {result['circuit']}"] and nyquist.get_legend() is not None
        # the fit line follows the data: at the data's deepest point its -Z'' is within 10 % of it
        deepest = np.max(-z_imag) * 0.0314
        assert np.max(fit[0].get_ydata()) == pytest.approx(deepest, rel=0.1)
        residuals = figure.axes[2]
        assert residuals.get_ylabel() == "Kramers-Kronig residual (% of |Z|)" and residuals.get_legend() is not None
        real, imag = residuals.lines[:2]
        assert (real.get_label(), imag.get_label()) == ("real", "imag")
        np.testing.assert_allclose(real.get_xdata(), frequency)
        assert np.all(np.abs(real.get_ydata()) < 5) and np.all(np.abs(imag.get_ydata()) < 5)  # a steady simulated cell: small, in %
    finally:
        plt.close(figure)


def test_the_cafm_figure_draws_each_cycle_in_its_own_colour_in_microamps(run_files):
    import matplotlib.pyplot as plt

    from matplotlib.colors import same_color

    figure = run_figure(run_files["cafm-sweep"])
    try:
        linear = figure.axes[0]
        cycles = [line for line in linear.lines if line.get_label().startswith("cycle")]
        assert [line.get_label() for line in cycles] == ["cycle 1", "cycle 2"]
        assert tuple(cycles[0].get_color()) != tuple(cycles[1].get_color()) and linear.get_ylabel() == "current (µA)"
        with h5py.File(run_files["cafm-sweep"], "r") as f:
            triggers = [t for t in json.loads(f["result"].attrs["json"])["triggering_bias_V"] if t is not None]
        assert triggers  # the simulated junction forms a filament in each sweep
        for axis in figure.axes[:2]:  # each triggering bias marked on both panels
            marks = [line.get_xdata()[0] for line in axis.lines if same_color(line.get_color(), "tab:red")]
            assert marks == pytest.approx(triggers)
    finally:
        plt.close(figure)


@pytest.mark.parametrize("kind", ["ccd", "eis", "cafm-sweep"])
def test_plot_writes_a_png(run_files, kind, tmp_path):
    out = tmp_path / f"{kind}.png"
    done = echemd("plot", run_files[kind], "-o", out)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(PNG) and out.stat().st_size > 20_000


@pytest.mark.parametrize("kind", ["ccd", "eis", "cafm-sweep"])
def test_csv_export_round_trips(run_files, kind, tmp_path):
    out = tmp_path / "run.csv"
    assert echemd("export", run_files[kind], "--format", "csv", "-o", out).returncode == 0
    with open(out, newline="") as handle:
        lines = handle.read().splitlines()
    said = dict(line[2:].split(": ", 1) for line in lines if line.startswith("# "))
    rows = list(csv.reader(line for line in lines if not line.startswith("#")))
    with h5py.File(run_files[kind], "r") as f:
        names = sorted(f["data"], key=lambda name: name != "time_s")  # time first
        assert rows[0] == names and rows[0][0] == "time_s"
        assert said["run_id"] == f.attrs["run_id"] and said["protocol"] == kind and said["status"] == "completed"
        assert json.loads(said["parameters"]) == json.loads(f.attrs["parameters"]) and json.loads(said["metadata"]) == json.loads(f.attrs["metadata"])
        assert json.loads(said["units"]) == {name: f["data"][name].attrs["units"] for name in names}
        for k, name in enumerate(names):
            np.testing.assert_array_equal(np.array([float(r[k]) for r in rows[1:]]), f["data"][name][:])


def read_with_gamry_parser(path):
    """(header, first curve's columns) as gamry-parser reads a DTA file: its 1.x ``read`` (Python >= 3.12;
    polars, and each technique's column units checked) or its 0.4 ``GamryParser`` (pandas)."""
    if hasattr(gamry_parser, "read"):
        experiment = gamry_parser.read(path)
        return experiment.header, {name: experiment.curves[0][name].to_numpy() for name in experiment.curves[0].columns}
    parser = gamry_parser.GamryParser()
    parser.load(filename=str(path))
    curve = parser.get_curve_data(0)
    return parser.get_header(), {name: curve[name].to_numpy() for name in curve.columns}


@pytest.mark.parametrize(("kind", "columns"), [("ccd", {"T": "time_s", "Vf": "voltage_V", "Im": "current_A"}),
                                               ("cafm-sweep", {"T": "time_s", "Vf": "bias_V", "Im": "current_A"}),
                                               ("eis", {"Freq": "frequency_Hz", "Zreal": "z_real_ohm", "Zimag": "z_imag_ohm"})])
def test_dta_export_opens_in_gamry_parser(run_files, kind, columns, tmp_path):
    out = tmp_path / "run.DTA"
    assert echemd("export", run_files[kind], "--format", "dta", "-o", out).returncode == 0
    raw = out.read_bytes()
    assert raw.startswith(b"EXPLAIN\r\n")
    raw.decode("cp1252")
    header, curve = read_with_gamry_parser(out)
    with h5py.File(run_files[kind], "r") as f:
        for gamry, ours in columns.items():
            np.testing.assert_allclose(np.asarray(curve[gamry], dtype=float), f["data"][ours][:], rtol=1e-8)
    assert header["TAG"] == {"ccd": "CHRONOP", "cafm-sweep": "CV", "eis": "EISPOT"}[kind]
    if kind == "ccd":  # the run's metadata in the NOTES (two lines, as the count says)
        assert b'NOTES\tNOTES\t2\t' in raw and b'\r\n\tmetadata {"sample": "LPSCl-07", "operator": "ana"}\r\n' in raw


def test_plot_and_export_refuse_files_that_are_not_runs(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    done = echemd("plot", bogus, "-o", tmp_path / "x.png")  # (not a run, nor a table plot reads)
    assert done.returncode == 2 and "cannot plot it: neither an impedance spectrum" in done.stderr and "'hello'" in done.stderr
    done = echemd("export", tmp_path / "missing.h5", "--format", "csv")
    assert done.returncode == 2 and "no such file" in done.stderr


@pytest.mark.parametrize("kind, signal, axis", [("ccd", "voltage_V", "time_s"), ("cafm-sweep", "current_A", "bias_V"),
                                                ("eis", "z_real_ohm", "frequency_Hz")])
def test_run_files_are_nexus_trees_a_viewer_plots_without_echemd(run_files, kind, signal, axis):
    """nexusformat (NeXpy's library) reads a closed, compressed run file as NXroot -> NXentry ->
    NXdata with its signal and axis, and the data are the run's."""
    from nexusformat.nexus import nxload

    path = run_files[kind]
    root = nxload(str(path))
    entry = root[root.attrs["default"]]
    data = entry[entry.attrs["default"]]
    assert root.nxclass == "NXroot" and entry.nxclass == "NXentry" and data.nxclass == "NXdata"
    assert data.nxsignal.nxname == signal and [a.nxname for a in data.nxaxes] == [axis]
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(data.nxsignal.nxvalue, f["data"][signal][:])
        assert str(data.nxsignal.attrs["units"]) == str(f["data"][signal].attrs["units"])
