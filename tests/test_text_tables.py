"""Tables from other software: EC-Lab text exports, CSVs with ';' or tabs, decimal commas, a
units row, and columns in other names and units give the same analysis as echemd's own CSV."""

import json

import h5py
import numpy as np
import pytest

from echemd.protocols.io.text_tables import detect_layout, meaning, named_columns
from test_analyze import ccd_csv, echemd

AREA_CM2 = 0.0314


def eclab_text(header_block: list[str], names: list[str], rows: np.ndarray, decimal_comma: bool = False) -> bytes:
    """An EC-Lab text export (.mpt): its first line, 'Nb header lines', the settings block, the
    column names, tab-separated rows; cp1252 as EC-Lab writes it."""
    lines = ["EC-Lab ASCII FILE", ""] + header_block + ["\t".join(names)]
    lines[1] = f"Nb header lines : {len(lines)}"
    body = ["\t".join(f"{x:.6E}" for x in row) for row in rows]
    if decimal_comma:
        body = [line.replace(".", ",") for line in body]
    return ("\r\n".join(lines + body) + "\r\n").encode("cp1252")


SETTINGS = ["", "Galvanostatic Cycling with Potential Limitation", "", "Run on channel : 3 (SN 0482)",
            "Electrode surface area : 0,031 cm²", "Reference electrode : Li/Li+", "Is (µA)            -15,7", ""]


def analyze(*args):
    code, out, err = echemd("analyze", *args)
    assert code == 0, err
    return json.loads(out)


def test_a_ccd_from_ec_lab_text_and_a_semicolon_csv_with_a_units_row_reads_as_echemds_csv(tmp_path):
    reference = tmp_path / "ccd.csv"
    ccd_csv(reference, short_after_s=300)
    t, i, v = np.loadtxt(reference, delimiter=",", skiprows=1).T
    expected = analyze("ccd", reference, "--area-cm2", AREA_CM2)

    mpt = tmp_path / "cell_C03.mpt"  # EC-Lab: mA, decimal comma, cp1252 header
    mpt.write_bytes(eclab_text(SETTINGS, ["mode", "time/s", "Ewe/V", "<I>/mA", "cycle number"],
                               np.column_stack([np.ones_like(t), t, v, i * 1e3, np.ones_like(t)]), decimal_comma=True))
    spreadsheet = tmp_path / "cell.csv"  # ';' and decimal commas, a units row, mV and µA
    rows = [f"{a:.6f};{b * 1e3:.6f};{c * 1e6:.6f}".replace(".", ",") for a, b, c in zip(t, v, i)]
    spreadsheet.write_text("\n".join(["Time;Potential;Current", "s;mV;µA", *rows]) + "\n", encoding="utf-8")
    for path in (mpt, spreadsheet):
        result = analyze("ccd", path, "--area-cm2", AREA_CM2)
        assert result["ccd_mA_cm2"] == expected["ccd_mA_cm2"] == 1.5 and result["short_rule"] == expected["short_rule"]
        assert result["short_detected_at_s"] == pytest.approx(expected["short_detected_at_s"], abs=1e-6)
        assert result["drop_mV"] == pytest.approx(expected["drop_mV"], rel=1e-4)


def test_an_ec_lab_impedance_loop_gives_one_result_per_spectrum(tmp_path):
    f = np.logspace(6, -1, 50)
    spectra = []
    for cycle, r1 in ((1, 100.0), (2, 150.0)):  # the interface grows between the two
        z = 20.0 + r1 / (1 + 1j * 2 * np.pi * f * r1 * 1e-6)
        spectra.append(np.column_stack([f, z.real, -z.imag, np.abs(z), np.degrees(np.angle(z)), np.full(f.size, cycle)]))
    mpt = tmp_path / "peis_C01.mpt"
    mpt.write_bytes(eclab_text(["", "Potentio Electrochemical Impedance Spectroscopy", ""],
                               ["freq/Hz", "Re(Z)/Ohm", "-Im(Z)/Ohm", "|Z|/Ohm", "Phase(Z)/deg", "cycle number"], np.vstack(spectra)))
    code, _, err = echemd("analyze", "eis", mpt, "--area-cm2", "1")
    assert code == 2 and "holds 2 impedance spectra" in err
    totals = [analyze("eis", mpt, "--area-cm2", "1", "--spectrum", str(n))["asr_ohm_cm2"]["total"] for n in (1, 2)]
    assert totals[0] == pytest.approx(120.0, rel=0.03) and totals[1] == pytest.approx(170.0, rel=0.03)


def test_what_cannot_be_read_exits_2_saying_what_was_found_and_what_is_needed(tmp_path):
    mpr = tmp_path / "run.mpr"
    mpr.write_bytes(b"BIO-LOGIC MODULAR FILE\x1a" + bytes(range(200)))  # the binary format's magic
    code, out, err = echemd("analyze", "eis", mpr, "--area-cm2", "1")
    assert code == 2 and out == "" and "EC-Lab binary file (.mpr)" in err and ".mpt" in err and "Traceback" not in err
    odd = tmp_path / "odd.csv"
    odd.write_text("Zeit;Spannung;Strom\n0;1;2\n", encoding="utf-8")
    code, out, err = echemd("analyze", "ccd", odd, "--area-cm2", "1")
    assert code == 2 and "'Zeit', 'Spannung', 'Strom'" in err and "needed: time_s, current_A, voltage_V" in err


@pytest.mark.parametrize("cell, unit_row, column, factor", [
    ("<I>/mA", "", "current_A", 1e-3),
    ("Ewe/V", "", "voltage_V", 1.0),
    ("-Im(Z)/Ohm", "", "z_imag_ohm", -1.0),
    ("Im(Z)", "", "z_imag_ohm", 1.0),
    ("-Z'' (kΩ)", "", "z_imag_ohm", -1e3),
    ("freq/mHz", "", "frequency_Hz", 1e-3),
    ("Frequency (MHz)", "", "frequency_Hz", 1e6),
    ("Time [min]", "", "time_s", 60.0),
    ("Zreal", "ohm", "z_real_ohm", 1.0),
    ("voltage_mV", "", "voltage_V", 1e-3),
    ("current_A", "", "current_A", 1.0),
    ("Current (µA)", "", "current_A", 1e-6),
])
def test_column_names_and_units_are_read_as_instrument_software_writes_them(cell, unit_row, column, factor):
    found = meaning(cell, unit_row)
    assert found is not None and found.column == column and found.factor == pytest.approx(factor)


@pytest.mark.parametrize("cell", ["|Z|/Ohm", "Phase(Z)/deg", "Ewe/furlong", "Q-Qo/mA.h"])
def test_columns_echemd_does_not_use_are_left_alone(cell):
    assert meaning(cell) is None


def test_plot_draws_files_from_other_software_as_analyze_reads_them(tmp_path):
    """The figure's data are the file's, in the figure's units (what is drawn is read back, not just PNG bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    f = np.logspace(5, -1, 40)
    z = 20.0 + 100.0 / (1 + 1j * 2 * np.pi * f * 100.0 * 1e-6)
    mpt = tmp_path / "peis.mpt"
    mpt.write_bytes(eclab_text([""], ["freq/Hz", "Re(Z)/Ohm", "-Im(Z)/Ohm"], np.column_stack([f, z.real, -z.imag])))
    drawn = []
    real_savefig = plt.Figure.savefig

    def keep(figure, *args, **kwargs):
        drawn.append(figure)
        return real_savefig(figure, *args, **kwargs)

    plt.Figure.savefig = keep
    try:
        from echemd.protocols.io.plots import plot_table

        out = plot_table(mpt, tmp_path / "peis.png", area_cm2=0.5)
    finally:
        plt.Figure.savefig = real_savefig
    nyquist = drawn[0].axes[0]
    x, y = nyquist.lines[0].get_data()
    np.testing.assert_allclose(x, z.real * 0.5, rtol=1e-5)  # Ohm cm2 (the file holds 7 digits)
    np.testing.assert_allclose(y, -z.imag * 0.5, rtol=1e-5)  # -Z'' up
    assert out.read_bytes()[:4] == b"\x89PNG" and "Ohm cm2" in nyquist.get_xlabel()

    reference = tmp_path / "ccd.csv"
    ccd_csv(reference, short_after_s=300)
    code, out_text, err = echemd("plot", reference, "-o", tmp_path / "ccd.png", "--area-cm2", AREA_CM2)
    assert code == 0 and (tmp_path / "ccd.png").read_bytes()[:4] == b"\x89PNG", err
    code, _, err = echemd("plot", tmp_path / "ccd.png", "-o", tmp_path / "x.png")
    assert code == 2 and "cannot plot it" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["csv", "mpt"])
def test_a_text_table_read_in_chunks_gives_the_whole_records_answer(tmp_path, kind):
    """analyze ccd reads text tables in chunks (memory flat with length): any chunk size, the same verdict."""
    from echemd.protocols.analysis import records
    from echemd.protocols.io.readers import ccd_chunks

    path = tmp_path / "ccd.csv"
    ccd_csv(path, short_after_s=300)
    if kind == "mpt":
        t, i, v = np.loadtxt(path, delimiter=",", skiprows=1).T
        path = tmp_path / "ccd.mpt"
        path.write_bytes(eclab_text(SETTINGS, ["time/s", "Ewe/V", "<I>/mA"], np.column_stack([t, v, i * 1e3]), decimal_comma=True))
    answers = []
    for rows in (997, 10_000, 10**7):
        chunks, _ = ccd_chunks(path, rows)
        assert max(len(part[0]) for part in chunks()) <= rows
        answers.append(records.analyze_ccd_chunks(chunks, area_cm2=AREA_CM2))
    assert answers[0] == answers[1] == answers[2] and answers[0]["ccd_mA_cm2"] == 1.5


def test_columns_whose_names_echemd_does_not_know_are_named_by_the_reader(tmp_path):
    reference = tmp_path / "ccd.csv"
    ccd_csv(reference, short_after_s=300)
    t, i, v = np.loadtxt(reference, delimiter=",", skiprows=1).T
    expected = analyze("ccd", reference, "--area-cm2", AREA_CM2)
    german = tmp_path / "zelle.csv"  # names echemd does not know; a voltage in mV that nothing in the file says, a current in µA
    rows = [f"{a:.6f};{b * 1e3:.6f};{c * 1e6:.6f}".replace(".", ",") for a, b, c in zip(t, v, i)]
    german.write_text("\n".join(["Zeit [s];Spannung;Strom/µA", *rows]) + "\n", encoding="utf-8")
    code, _, err = echemd("analyze", "ccd", german, "--area-cm2", AREA_CM2)
    assert code == 2 and "no time_s, current_A, voltage_V column among 'Zeit [s]', 'Spannung', 'Strom/µA'" in err

    named = ["--column", "time_s=Zeit [s]", "--column", "voltage_V=Spannung@mV", "--column", "current_A=Strom/µA"]
    result = analyze("ccd", german, "--area-cm2", AREA_CM2, *named)
    assert result["ccd_mA_cm2"] == expected["ccd_mA_cm2"] == 1.5 and result["short_rule"] == expected["short_rule"]
    assert result["short_detected_at_s"] == pytest.approx(expected["short_detected_at_s"], abs=1e-6)
    assert result["drop_mV"] == pytest.approx(expected["drop_mV"], rel=1e-4)
    assert result["plated_mAh_cm2"] == pytest.approx(expected["plated_mAh_cm2"], rel=1e-6)
    code, out, err = echemd("plot", german, "-o", tmp_path / "zelle.png", "--kind", "ccd", "--area-cm2", AREA_CM2, *named)
    assert code == 0 and (tmp_path / "zelle.png").stat().st_size > 10_000, err

    run_file = tmp_path / "run.h5"
    h5py.File(run_file, "w").close()
    for options, message in ((["--column", "voltage_V=Volt"], "--column voltage_V=Volt: no such column among 'Zeit [s]', 'Spannung'"),
                             (["--column", "voltage_V=Spannung@furlong"], "'furlong' is not a unit of V"),
                             (["--column", "potential=Spannung"], "'potential' is not an echemd column; one of time_s, voltage_V"),
                             (["--column", "voltage_V=Spannung", "--column", "voltage_V=Spannung@mV"], "--column voltage_V is given twice"),
                             (["--column", "voltage_V"], "give NAME=HEADER")):
        code, _, err = echemd("analyze", "ccd", german, "--area-cm2", AREA_CM2, *options)
        assert code == 2 and message in err, (options, err)
    for verb in (["analyze", "ccd"], ["plot", "-o", tmp_path / "run.png"]):
        code, _, err = echemd(*verb, run_file, "--column", "voltage_V=Spannung")
        assert code == 2 and "--column names a text table's columns" in err, err


@pytest.mark.parametrize("option, unit_row, factor", [("time_s=Zeit [min]", "", 60.0), ("time_s=Zeit", "h", 3600.0), ("time_s=Zeit", "", 1.0),
                                                      ("current_A=-Strom@mA", "", -1e-3), ("z_imag_ohm=Im(Z)", "", 1.0),
                                                      ("voltage_V=Spannung (mV)@V", "", 1.0)])
def test_a_named_column_takes_its_unit_from_the_option_the_header_or_the_units_row(option, unit_row, factor):
    named = named_columns([option])
    column, (cell, _) = next(iter(named.items()))
    lines = [f"{cell};x", f"{unit_row};" if unit_row else "1;2", "1;2"]
    layout = detect_layout(lines, "t.csv", (column,), named)
    assert layout.columns[column] == (0, factor)
