"""Export a run file to what other tools open: CSV (spreadsheets) and Gamry EXPLAIN .DTA (Echem Analyst).

CSV: a few ``#`` lines saying what the run was (id, protocol, instrument, start, status, its
parameters and metadata as JSON, each column's unit), one header line of column names carrying
their SI units, time first (``time_s,current_A,voltage_V``), then one row per sample.  Spreadsheets
and pandas (``comment="#"``) skip the ``#`` lines; echemd's own reader does too.  DTA: Gamry's EXPLAIN layout in cp1252 with CRLF line ends, Gamry's own table
and column names and units (CURVE with Pt, T, Vf, Im for time-domain runs; ZCURVE with Pt, Time,
Freq, Zreal, Zimag, Zsig, Zmod, Zphz for EIS), a TAG by kind (CHRONOP for galvanostatic plating,
CV for bias sweeps, EISPOT for impedance) and the run's identity and parameters in the notes.  A
run holding both (a CCD with spectra between its half cycles) gives its time-domain rows as CURVE
and its spectra as ZCURVE, ZCURVE2, ... in the order measured.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import numpy as np

from echemd.daemon.runfile_reader import RunFileReader
from echemd.protocols.io.readers import spectrum_spans



def export_csv(run_file: str | Path, out: str | Path) -> Path:
    with RunFileReader(run_file) as run:
        attrs, columns, units = run.attrs, run.columns(), run.units
    names = list(columns)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        for key in ("run_id", "protocol", "instrument", "started", "finished", "status", "error"):
            handle.write(f"# {key}: {attrs.get(key, '')}\n")
        for key in ("parameters", "metadata"):
            handle.write(f"# {key}: {attrs.get(key, '{}')}\n")
        handle.write(f"# units: {json.dumps(units)}\n")
        writer = csv.writer(handle)
        writer.writerow(names)
        writer.writerows(zip(*(columns[n].tolist() for n in names)))
    return Path(out)


def export_dta(run_file: str | Path, out: str | Path) -> Path:
    with RunFileReader(run_file) as run:
        attrs, columns, protocol, parameters, area, metadata = run.attrs, run.columns(), run.protocol, run.parameters, run.area_cm2, run.metadata
    started = datetime.fromisoformat(str(attrs.get("started"))) if attrs.get("started") else datetime.now()
    lines = [
        "EXPLAIN",
        f"TAG\t{_dta_tag(protocol)}",
        f"TITLE\tLABEL\techemd {protocol}\tTest &Identifier",
        f"DATE\tLABEL\t{started.month}/{started.day}/{started.year}\tDate",
        f"TIME\tLABEL\t{started:%H:%M:%S}\tTime",
        f"NOTES\tNOTES\t{2 if metadata else 1}\t&Notes...",
        f"\techemd run {attrs.get('run_id')} ({protocol}, status {attrs.get('status')}); parameters {json.dumps(parameters)}",
        *([f"\tmetadata {json.dumps(metadata, ensure_ascii=False)}"] if metadata else []),
        f"PSTAT\tPSTAT\t{attrs.get('instrument', '')}\tPotentiostat",
    ]
    if area:
        lines.append(f"AREA\tQUANT\t{area:.5E}\t&Area (cm^2)")
    if "current_A" in columns:  # (in a run with spectra too, the rows that are not theirs)
        rows = ~np.isfinite(columns["frequency_Hz"]) if "frequency_Hz" in columns else slice(None)
        lines += _curve_table({name: values[rows] for name, values in columns.items()})
    for k, span in enumerate(spectrum_spans(columns["frequency_Hz"]) if "frequency_Hz" in columns else []):
        lines += _eis_table({name: values[span] for name, values in columns.items()}, "ZCURVE" if k == 0 else f"ZCURVE{k + 1}")
    text = "\r\n".join(lines) + "\r\n"
    Path(out).write_bytes(text.encode("cp1252", errors="replace"))  # (Echem Analyst reads cp1252: a character it lacks becomes '?')
    return Path(out)


def _curve_table(columns: dict[str, np.ndarray]) -> list[str]:
    t = columns["time_s"]
    vf = columns.get("voltage_V", columns.get("bias_V"))
    im = columns["current_A"]
    over = columns.get("compliance", np.zeros(len(t)))
    rows = [f"\t{k}\t{t[k]:.9g}\t{vf[k]:.9E}\t{im[k]:.9E}\t{'..........c' if over[k] else '...........'}" for k in range(len(t))]
    return [f"CURVE\tTABLE\t{len(t)}", "\tPt\tT\tVf\tIm\tOver", "\t#\ts\tV vs. Ref.\tA\tbits", *rows]


def _eis_table(columns: dict[str, np.ndarray], name: str = "ZCURVE") -> list[str]:
    t, f, zr, zi = (columns[n] for n in ("time_s", "frequency_Hz", "z_real_ohm", "z_imag_ohm"))
    modulus, phase = np.hypot(zr, zi), np.degrees(np.arctan2(zi, zr))
    rows = [f"\t{k}\t{t[k]:.9g}\t{f[k]:.9g}\t{zr[k]:.9g}\t{zi[k]:.9g}\t1\t{modulus[k]:.9g}\t{phase[k]:.9g}" for k in range(len(t))]
    return [f"{name}\tTABLE\t{len(t)}", "\tPt\tTime\tFreq\tZreal\tZimag\tZsig\tZmod\tZphz", "\t#\ts\tHz\tohm\tohm\tV\tohm\t\u00b0", *rows]


#: Export formats and the suffix of the file each writes by default.
FORMATS = {"csv": ".csv", "dta": ".DTA", "bluesky": ".jsonl", "bdf": ".bdf.csv"}


def export(run_file: str | Path, fmt: str, out: str | Path | None = None) -> Path:
    """Write ``run_file`` as ``fmt`` (FORMATS: 'csv', Gamry 'dta', 'bluesky' event-model documents,
    one JSON [name, document] per line, or a Battery Data Format 'bdf' table with its JSON sidecar)
    next to it (or to ``out``); returns the path."""
    run_file = Path(run_file)
    target = Path(out) if out else run_file.with_suffix(FORMATS[fmt])
    if fmt == "bluesky":
        from echemd.daemon.bluesky import export_bluesky

        return export_bluesky(run_file, target)
    if fmt == "bdf":
        from echemd.protocols.io.bdf import export_bdf

        return export_bdf(run_file, target)
    return export_csv(run_file, target) if fmt == "csv" else export_dta(run_file, target)


def _dta_tag(protocol: str) -> str:
    """The Gamry TAG of a run's protocol (CHRONOP for a protocol this echemd does not know: a plating run of an older one)."""
    from echemd.protocols import PROTOCOLS

    return PROTOCOLS[protocol].presentation.dta_tag if protocol in PROTOCOLS else "CHRONOP"
