"""Readers and `echemd analyze` on every file in ../shared/data/external that fits, and on our own runs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from echemd.protocols.analysis.records import analyze_cafm, analyze_ccd, constant_current_steps, sweeps
from echemd.protocols.io.readers import read_gamry

EXTERNAL = Path(__file__).resolve().parent / "data" / "external"  # copies of ../shared/data/external, LICENSE files beside


def echemd(*args):
    done = subprocess.run([sys.executable, "-m", "echemd.daemon.cli", *map(str, args)], capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


# --- Gamry EXPLAIN reader -------------------------------------------------------------------------
def test_reference_3000_file_two_tables_cp1252():
    dta = read_gamry(EXTERNAL / "impedancepy_exampleDataGamry.DTA")
    assert dta.tag == "EISPOT" and list(dta.curves) == ["OCVCURVE", "ZCURVE"]
    assert dta.quantity("AREA") == 1.0 and dta.quantity("VAC") == 10.0
    z = dta.curves["ZCURVE"]
    assert len(z.rows) == 72 and z.columns[:5] == ["Pt", "Time", "Freq", "Zreal", "Zimag"]
    assert z.column("Freq")[0] == pytest.approx(200015.6) and z.column("Zimag")[-1] == pytest.approx(-6635.557)
    assert z.units[:8] == ["#", "s", "Hz", "ohm", "ohm", "V", "ohm", "°"]  # the phase unit is byte 0xB0: decoded as cp1252


def test_hand_edited_utf8_and_crlf_files():
    eis = read_gamry(EXTERNAL / "gamryparser_eispot_data.dta")  # UTF-8, rows re-typed with spaces
    assert eis.curves["ZCURVE"].column("Freq").tolist() == [10000, 5000, 1000, 500.1, 100, 50, 10, 5, 1, 0.5]
    ocp = read_gamry(EXTERNAL / "gamryparser_ocp_data.dta")  # CR LF
    assert ocp.tag == "CORPOT" and "CURVE" in ocp.curves and ocp.quantity("SAMPLETIME") == 5.0
    cv = read_gamry(EXTERNAL / "gamryparser_cv_data.dta")
    assert [name for name in cv.curves if name.startswith("CURVE")][:2] == ["CURVE1", "CURVE2"]


def test_decimal_commas_and_an_aborted_curve(tmp_path):
    text = (EXTERNAL / "impedancepy_exampleDataGamry.DTA").read_bytes().decode("cp1252")
    head, _, table = text.partition("ZCURVE\tTABLE")
    lines = table.splitlines()
    rows = [line.replace(".", ",") for line in lines[3:8]] + [lines[8][:12]]  # commas; the last row cut short
    path = tmp_path / "aborted.DTA"
    path.write_bytes((head + "ZCURVE\tTABLE\t72\n" + "\n".join(lines[1:3] + rows) + "\n").encode("cp1252"))
    curve = read_gamry(path).curves["ZCURVE"]
    assert curve.truncated and len(curve.rows) == 5
    assert curve.column("Freq")[0] == pytest.approx(200015.6)


# --- analyze, every fitting file ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["impedancepy_exampleData.csv", "impedancepy_exampleDataGamry.DTA", "gamryparser_eispot_data.dta"])
def test_analyze_eis_handles_every_spectrum(name):
    code, out, err = echemd("analyze", "eis", EXTERNAL / name, "--area-cm2", "0.5")
    assert code == 0, err
    result = json.loads(out)
    assert result["circuit"] == "R0-p(R1,CPE1)-p(R2,CPE2)" and set(result["parameters"]) >= {"R0", "R1", "R2"}
    assert set(result["kk"]) >= {"rms_residual_percent", "valid"} and "asr_ohm_cm2" in result


@pytest.mark.parametrize("name", ["gamryparser_chronoa_data.dta", "gamryparser_cv_data.dta"])
def test_analyze_ccd_and_cafm_read_gamry_curves(name):
    code, out, err = echemd("analyze", "ccd", EXTERNAL / name, "--area-cm2", "1", "--plating-sign", "negative")
    assert code == 0, err
    assert set(json.loads(out)) >= {"ccd_mA_cm2", "last_passed_mA_cm2", "short_detected_at_s", "drop_mV", "plating_sign"}
    code, out, err = echemd("analyze", "cafm", EXTERNAL / name)
    assert code == 0, err
    assert "triggering_bias_V" in json.loads(out)


def test_analyze_ccd_refuses_a_record_whose_plating_direction_it_cannot_tell():
    # chronoamperometry: no current rises step by step in either direction
    code, out, err = echemd("analyze", "ccd", EXTERNAL / "gamryparser_chronoa_data.dta", "--area-cm2", "1")
    assert code == 2 and out == "" and "--plating-sign" in err and "anodic-positive" in err


@pytest.mark.parametrize(("kind", "name", "message"), [
    ("eis", "gamryparser_ocp_data.dta", "no ZCURVE table"),
    ("ccd", "gamryparser_ocp_data.dta", "no CURVE table of T, Vf and Im"),
    ("ccd", "impedancepy_exampleData.csv", "needs a header naming time_s, current_A, voltage_V"),
    ("eis", "LICENSE-impedance.py.txt", "no frequency_Hz, z_real_ohm, z_imag_ohm column among"),
    ("eis", "does-not-exist.csv", "no such file"),
])
def test_unreadable_files_exit_2_with_the_reason(kind, name, message):
    code, out, err = echemd("analyze", kind, EXTERNAL / name, "--area-cm2", "1")
    assert code == 2 and out == "" and message in err


def ccd_csv(path, short_after_s: float, plating_sign: float = -1.0) -> float:
    """A CCD record (plate j, strip 0.2 mA/cm2, 0.2 mAh/cm2, 1 s samples) whose polarization collapses
    (30 s time constant) ``short_after_s`` into the 1.5 mA/cm2 plating step; returns the onset time."""
    area, t, i, v, now, onset = 0.0314, [], [], [], 0.0, None
    for j in (0.5, 1.0, 1.5):
        for current, duration in ((-j, 0.2 / j * 3600), (0.2, 3600)):
            ts = now + np.arange(1.0, duration + 1)
            vs = np.full(ts.size, 0.1 * current)
            if j == 1.5 and current < 0:
                k = int(short_after_s)
                onset = ts[k]
                vs[k:] *= np.exp(-(ts[k:] - ts[k]) / 30)
            sign = plating_sign if current < 0 else -plating_sign
            t.append(ts), i.append(np.full(ts.size, sign * abs(current) * area * 1e-3)), v.append(sign * np.abs(vs))
            now = ts[-1]
    np.savetxt(path, np.column_stack([np.concatenate(t), np.concatenate(i), np.concatenate(v)]), delimiter=",",
               header="time_s,current_A,voltage_V", comments="")
    return onset


def test_analyze_ccd_of_a_csv_recovers_the_short(tmp_path):
    path = tmp_path / "ccd.csv"
    onset = ccd_csv(path, short_after_s=300)
    code, out, err = echemd("analyze", "ccd", path, "--area-cm2", 0.0314)
    result = json.loads(out)
    assert code == 0 and result["ccd_mA_cm2"] == 1.5 and result["last_passed_mA_cm2"] == 1.0
    assert result["short_rule"] == "drop" and result["plating_sign"] == "negative"
    assert 0 < result["short_detected_at_s"] - onset < 20 and result["drop_mV"] >= 2.0
    code, _, err = echemd("analyze", "ccd", path)
    assert code == 2 and "--area-cm2" in err


def test_a_short_inside_the_settle_time_is_found_by_the_cells_history(tmp_path):
    path = tmp_path / "ccd.csv"
    onset = ccd_csv(path, short_after_s=40)  # the drop rule is still waiting for the step to settle
    result = json.loads(echemd("analyze", "ccd", path, "--area-cm2", 0.0314)[1])
    assert result["ccd_mA_cm2"] == 1.5 and result["short_rule"] == "collapse"
    assert 0 < result["short_detected_at_s"] - onset < 40  # half the polarization is gone after 21 s


def test_analyze_ccd_finds_the_plating_direction_in_the_opposite_sign_convention(tmp_path):
    path = tmp_path / "cycler.csv"
    onset = ccd_csv(path, short_after_s=300, plating_sign=+1.0)  # plating exported as positive current
    code, out, err = echemd("analyze", "ccd", path, "--area-cm2", 0.0314)
    result = json.loads(out)
    assert code == 0, err
    assert result["plating_sign"] == "positive" and result["ccd_mA_cm2"] == 1.5 and result["last_passed_mA_cm2"] == 1.0
    assert 0 < result["short_detected_at_s"] - onset < 20
    code, out, err = echemd("analyze", "ccd", path, "--area-cm2", 0.0314, "--settle-s", "100", "--settle-max-s", "50")
    assert code == 2 and out == "" and "settle_max_s (50 s) is shorter than settle_s (100 s)" in err
    code, out, err = echemd("analyze", "ccd", path, "--area-cm2", 0.0314, "--confirm-s", "-1")
    assert code == 2 and "--confirm-s: Input should be greater than or equal to 0" in err
    # told the wrong convention, it judges the stripping steps as plating: no CCD, and it says which it used
    wrong = json.loads(echemd("analyze", "ccd", path, "--area-cm2", 0.0314, "--plating-sign", "negative")[1])
    assert wrong["plating_sign"] == "negative" and wrong["ccd_mA_cm2"] != 1.5


def test_analyze_our_own_run_files(tmp_path):
    from echemd.config import load_default_config
    from echemd.daemon.client import Client
    from echemd.daemon.service import Daemon

    config = load_default_config().model_copy(update={"control_endpoint": "tcp://127.0.0.1:*", "publish_endpoint": "tcp://127.0.0.1:*", "data_dir": tmp_path})
    daemon = Daemon(config)
    try:
        with Client(daemon.control.endpoint) as client:
            ccd = client.wait(client.submit("ccd", "sim-pstat-1", diameter_mm=2.0), timeout_s=60)
            cafm = client.wait(client.submit("cafm-sweep", "sim-smu-1", cycles=3, positive_vertex_V=1.0), timeout_s=60)
            eis = client.wait(client.submit("eis", "sim-pstat-2", end_Hz=0.1, area_cm2=0.0314159), timeout_s=60)
    finally:
        daemon.close()
    code, out, err = echemd("analyze", "ccd", ccd["file"])  # the area comes from the file's parameters
    assert code == 0, err
    live, offline = ccd["result"], json.loads(out)
    assert offline["ccd_mA_cm2"] == live["ccd_mA_cm2"] and offline["short_detected_at_s"] == live["short_detected_at_s"]
    code, out, err = echemd("analyze", "cafm", cafm["file"])
    result = json.loads(out)
    assert result["triggering_bias_V"] == cafm["result"]["triggering_bias_V"] and len(result["on_off"]) == 3
    assert all(r2 > 0.999 for r2 in result["ohmic_r2"]) and min(result["on_off"]) > 1e4
    code, out, err = echemd("analyze", "eis", eis["file"])
    assert code == 0 and json.loads(out)["asr_ohm_cm2"]["total"] == pytest.approx(
        eis["result"]["low_frequency_real_ohm"] * 0.0314159, rel=0.05)


# --- pure functions -------------------------------------------------------------------------------
def test_steps_and_sweeps_are_segmented():
    current = np.array([-1, -1, -1.005, 0.2, 0.2, -2, -2, 0.0, 0.0])
    assert [(s.start, s.stop) for s in constant_current_steps(current)] == [(0, 3), (3, 5), (5, 7), (7, 9)]
    bias = np.concatenate([np.linspace(0, -1, 11), np.linspace(-1, 1, 21), np.linspace(1, 0, 11)] * 3)
    found = sweeps(bias)
    assert len(found) == 3 and found[0].start == 0 and found[-1].stop == bias.size
    assert all(a.stop == b.start for a, b in zip(found, found[1:]))  # contiguous
    assert all(bias[s].min() == -1.0 and bias[s][0] >= 0 for s in found)  # each starts at or above 0 and holds a vertex


def test_cafm_analysis_on_a_synthetic_memristor():
    bias = np.concatenate([np.linspace(0, -0.5, 101), np.linspace(-0.5, 1.0, 301), np.linspace(1.0, 0, 201)])
    on = (bias <= -0.2) | ((np.arange(bias.size) > 60) & (np.arange(bias.size) < 101 + 240))  # set at -0.2 V, reset near +0.7 V
    current = np.where(on, bias / 1e4, bias / 1e10)
    result = analyze_cafm(bias, current)
    assert result["triggering_bias_V"] == [pytest.approx(-0.2, abs=0.006)]
    assert result["ohmic_r2"][0] > 0.9999


def test_ccd_analysis_needs_an_area():
    with pytest.raises(ValueError, match="electrode area"):
        analyze_ccd([0, 1], [0, 0], [0, 0], area_cm2=0)


@pytest.mark.parametrize(("args", "message"), [
    (["--area-cm2", "-1"], "--area-cm2: expected a positive number, got '-1'"),
    (["--circuit", "R0-p(R1,C1"], "bad circuit 'R0-p(R1,C1': its parentheses do not balance"),
    (["--circuit", "R0-p(R1,Q1)"], "unknown circuit element 'Q1'"),
])
def test_bad_eis_analysis_input_exits_2_with_the_reason(args, message):
    code, out, err = echemd("analyze", "eis", EXTERNAL / "impedancepy_exampleDataGamry.DTA", *args)
    assert code == 2 and out == "" and message in err and "Traceback" not in err
