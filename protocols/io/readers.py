"""Readers for the files `echemd analyze` takes: echemd run files (HDF5), Gamry EXPLAIN files (DTA), CSV.

Each reader returns a :class:`Table`: named float columns in SI units plus what the file says
about itself (e.g. the electrode area).  They are tolerant where real files are messy: Gamry files
come as cp1252 or UTF-8 with CR LF or LF endings, may use decimal commas, may hold several tables
(OCVCURVE then ZCURVE) or an aborted curve whose last row is cut short, and hand-edited rows may use
spaces instead of tabs.  Anything they cannot read raises :class:`UnreadableFile` saying why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from echemd.daemon.errors import EchemdError
from echemd.protocols.io.text_tables import HEAD_LINES, NUMBER, Named, TableLayout, TableLayoutError, detect_layout, read_layout

#: Bytes of a text table read to find its layout and encoding.
HEAD_BYTES = 1 << 18


class UnreadableFile(EchemdError):
    """The file is missing, of an unknown kind, or lacks what the analysis needs."""


@dataclass
class Table:
    columns: dict[str, np.ndarray]
    source: str
    area_cm2: float | None = None
    metadata: dict = field(default_factory=dict)

    def require(self, *names: str) -> tuple[np.ndarray, ...]:
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise UnreadableFile(f"{self.source}: no {', '.join(missing)} column (has: {', '.join(self.columns)})")
        return tuple(self.columns[n] for n in names)

    def spectrum(self, number: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frequency (Hz), Z' and Z'' (Ohm) of the file's impedance spectrum, or of its ``number``-th
        (from 1) where it holds several (runs of rows with a frequency, apart from other steps'
        rows, or told apart by a ``spectrum`` column: an EC-Lab loop's cycle number)."""
        frequency, z_real, z_imag = self.require("frequency_Hz", "z_real_ohm", "z_imag_ohm")
        spans = spectrum_spans(frequency, self.columns.get("spectrum"))
        if not spans:
            raise UnreadableFile(f"{self.source}: no impedance readings")
        if number is None and len(spans) > 1:
            raise UnreadableFile(f"{self.source} holds {len(spans)} impedance spectra: choose one with --spectrum 1..{len(spans)}")
        if number is not None and not 1 <= number <= len(spans):
            raise UnreadableFile(f"{self.source} holds {len(spans)} impedance spectra: --spectrum {number} is not one of 1..{len(spans)}")
        span = spans[(number or 1) - 1]
        return frequency[span], z_real[span], z_imag[span]


def spectrum_spans(frequency_Hz: np.ndarray, labels: np.ndarray | None = None) -> list[slice]:
    """The rows of each impedance spectrum in a frequency column: runs of finite values (other
    steps' rows are NaN), cut again where ``labels`` (a spectrum number per row) changes."""
    measured = np.isfinite(np.asarray(frequency_Hz, dtype=np.float64)).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], measured, [0]])))
    spans = [slice(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
    if labels is None:
        return spans
    cut = []
    for span in spans:
        changes = span.start + 1 + np.flatnonzero(np.diff(np.asarray(labels[span])))
        bounds = [span.start, *changes.tolist(), span.stop]
        cut += [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    return cut


# --- Gamry EXPLAIN (.DTA) -------------------------------------------------------------------------
@dataclass
class GamryCurve:
    name: str
    columns: list[str]
    units: list[str]
    rows: list[list[str]]
    truncated: bool = False

    def column(self, name: str) -> np.ndarray:
        k = self.columns.index(name)
        return np.array([_number(row[k]) for row in self.rows], dtype=np.float64)


@dataclass
class GamryFile:
    tag: str
    header: dict[str, list[str]]
    curves: dict[str, GamryCurve]

    def quantity(self, key: str) -> float | None:
        values = self.header.get(key)
        return _number(values[1]) if values and len(values) > 1 else None


def _number(text: str) -> float:
    text = text.strip()
    if NUMBER.match(text):
        return float(text.replace(",", "."))
    raise ValueError(text)


def read_gamry(path: Path) -> GamryFile:
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252")
    lines = text.splitlines()
    if not lines or lines[0].strip().upper() != "EXPLAIN":
        raise UnreadableFile(f"{path}: not a Gamry EXPLAIN file (its first line is not EXPLAIN)")
    header: dict[str, list[str]] = {}
    curves: dict[str, GamryCurve] = {}
    i = 1
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line[0] in " \t":
            i += 1
            continue
        fields = line.split("\t")
        key = fields[0].strip()
        if len(fields) > 1 and fields[1].strip() == "TABLE":
            curve, i = _read_table(key, lines, i + 1, declared=int(fields[2]) if len(fields) > 2 and fields[2].strip().isdigit() else None)
            curves[key] = curve
            continue
        header[key] = [f.strip() for f in fields[1:]]
        i += 1
    return GamryFile(header.get("TAG", [""])[0], header, curves)


def _read_table(name: str, lines: list[str], i: int, declared: int | None) -> tuple[GamryCurve, int]:
    columns = [c.strip() for c in lines[i].strip("\r\n").split("\t") if c.strip()]
    units = [u.strip() for u in lines[i + 1].strip("\r\n").split("\t")[1:]] if i + 1 < len(lines) else []
    rows, truncated, i = [], False, i + 2
    while i < len(lines) and lines[i][:1] in (" ", "\t") and lines[i].strip():
        fields = lines[i].split()
        if len(fields) >= len(columns) and NUMBER.match(fields[0]):
            rows.append(fields[: len(columns)])
        else:
            truncated = True  # a row cut short: an aborted curve
        i += 1
    if declared is not None and len(rows) < declared:
        truncated = True
    return GamryCurve(name, columns, units, rows, truncated), i


# --- what `analyze` needs, by kind ---------------------------------------------------------------
EIS_COLUMNS = ("frequency_Hz", "z_real_ohm", "z_imag_ohm")
CCD_COLUMNS = ("time_s", "current_A", "voltage_V")
CAFM_COLUMNS = ("time_s", "bias_V", "current_A")


def read_table(path: str | Path, kind: str, named: Named | None = None) -> Table:
    """The columns ``kind`` ('eis', 'ccd' or 'cafm') needs, from an HDF5, DTA or CSV file; ``named``:
    which of a text table's columns is which, where its names do not say (text_tables.named_columns)."""
    path = Path(path)
    form = _file_form(path, named)
    try:
        if form == "hdf5":
            return _from_hdf5(path)
        if form == "gamry":
            return _from_gamry(path, kind)
        return _from_text(path, kind, named)
    except UnreadableFile:
        raise
    except TableLayoutError as exc:
        raise UnreadableFile(str(exc)) from exc
    except (OSError, ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
        raise UnreadableFile(f"{path}: cannot read it as a {kind} file: {exc}") from exc


def hdf5_ccd_chunks(path: str | Path, rows: int) -> tuple[Callable[[], Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]], Table]:
    """A run file's (time_s, current_A, voltage_V), ``rows`` at a time, read afresh at each call of
    the first value returned (for analyses of records too long to hold), and the file's Table
    without its columns (its area and parameters)."""
    from echemd.daemon.runfile_reader import RunFileReader

    path = Path(path)
    with RunFileReader(path) as run:
        missing = [name for name in CCD_COLUMNS if name not in run.names]
        if missing:
            raise UnreadableFile(f"{path}: no {', '.join(missing)} column (has: {', '.join(run.names)})")
        described = _run_table(run, path, columns=False)

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        with RunFileReader(path) as run:
            yield from run.chunks(list(CCD_COLUMNS), rows)

    return chunks, described


def _from_hdf5(path: Path) -> Table:
    from echemd.daemon.runfile_reader import RunFileReader

    with RunFileReader(path) as run:
        return _run_table(run, path, columns=True)


def _run_table(run, path: Path, columns: bool) -> Table:
    """An open run file (RunFileReader) as a Table: its columns (or none), area and parameters."""
    return Table(run.columns() if columns else {}, str(path), run.area_cm2, {"protocol": run.protocol, "parameters": run.parameters})


def _file_form(path: Path, named: Named | None = None) -> str:
    """What a file is, from its first bytes: 'hdf5', 'gamry' (EXPLAIN) or 'text'; raises
    UnreadableFile for a missing file, for an EC-Lab binary file, and for columns ``named`` in a
    file that is no text table (its columns are known)."""
    if not path.is_file():
        raise UnreadableFile(f"{path}: no such file")
    with path.open("rb") as handle:
        start = handle.read(8)
    if start.startswith(b"BIO-LOGI"):
        raise UnreadableFile(f"{path}: a BioLogic EC-Lab binary file (.mpr): echemd reads EC-Lab's text export (.mpt: in EC-Lab, "
                             "Experiment > Export as Text), not the binary format")
    form = "hdf5" if start.startswith(b"\x89HDF") else "gamry" if start.upper().startswith(b"EXPLAIN") else "text"
    if named and form != "text":
        raise UnreadableFile(f"{path}: --column names a text table's columns; this is a {'run file' if form == 'hdf5' else 'Gamry file'}, "
                             "whose columns echemd knows")
    return form


def _from_gamry(path: Path, kind: str) -> Table:
    dta = read_gamry(path)
    area = dta.quantity("AREA")
    if kind == "eis":
        curve = dta.curves.get("ZCURVE")
        if curve is None:
            raise UnreadableFile(f"{path}: a Gamry {dta.tag or '?'} file with no ZCURVE table: not an impedance spectrum")
        columns = dict(zip(EIS_COLUMNS, (curve.column("Freq"), curve.column("Zreal"), curve.column("Zimag"))))
    else:
        curve = next((c for name, c in dta.curves.items() if name.startswith("CURVE")), None)
        if curve is None or not {"T", "Vf", "Im"} <= set(curve.columns):
            raise UnreadableFile(f"{path}: a Gamry {dta.tag or '?'} file with no CURVE table of T, Vf and Im")
        rows = [c for name, c in sorted(dta.curves.items()) if name.startswith("CURVE")]
        t = np.concatenate([c.column("T") for c in rows])
        v = np.concatenate([c.column("Vf") for c in rows])
        i = np.concatenate([c.column("Im") for c in rows])
        columns = {"time_s": t, "current_A": i, "voltage_V": v} if kind == "ccd" else {"time_s": t, "bias_V": v, "current_A": i}
    return Table(columns, str(path), area, {"tag": dta.tag, "truncated": any(c.truncated for c in dta.curves.values())})


def _from_text(path: Path, kind: str, named: Named | None = None) -> Table:
    """A delimited text table (CSV, EC-Lab .mpt, ...: see text_tables.py), UTF-8 or cp1252."""
    layout, encoding = _text_layout(path, kind, named)
    if layout is None:  # no header: impedance.py's f, Re Z, Im Z
        data = np.loadtxt(path, delimiter=",", ndmin=2)
        return Table(dict(zip(EIS_COLUMNS, data.T)), str(path))
    return Table(read_layout(path, layout, encoding=encoding), str(path))


def _text_layout(path: Path, kind: str, named: Named | None = None) -> tuple[TableLayout | None, str]:
    """A text table's layout (None for impedance.py's header-less three columns) and encoding,
    from its first HEAD_BYTES."""
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    if len(head) == HEAD_BYTES:
        head = head.rsplit(b"\n", 1)[0]  # (no character cut in two)
    try:
        text, encoding = head.decode("utf-8-sig"), "utf-8-sig"
    except UnicodeDecodeError:
        text, encoding = head.decode("cp1252", errors="replace"), "cp1252"  # (EC-Lab and Windows spreadsheets)
    needed = {"eis": EIS_COLUMNS, "ccd": CCD_COLUMNS, "cafm": CAFM_COLUMNS}[kind]
    first = next((line for line in text.splitlines() if line.strip() and not line.startswith("#")), "")
    cells = [cell.strip() for cell in first.split(",")]
    if cells and all(NUMBER.match(cell) for cell in cells):
        if kind != "eis" or len(cells) != 3:
            raise UnreadableFile(f"{path}: a {kind} table needs a header naming {', '.join(needed)}")
        return None, encoding
    return detect_layout(text.splitlines()[:HEAD_LINES], str(path), needed, named), encoding


def ccd_chunks(path: str | Path, rows: int, named: Named | None = None) -> tuple[Callable[[], Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]], Table]:
    """Any file ``analyze ccd`` reads as (time_s, current_A, voltage_V), ``rows`` at a time, read
    afresh at each call of the first value returned, and its Table (area, parameters): run files
    and text tables in chunks (memory that does not grow with the record), Gamry files whole."""
    path = Path(path)
    form = _file_form(path, named)
    if form == "hdf5":
        return hdf5_ccd_chunks(path, rows)
    if form == "gamry":
        table = read_table(path, "ccd")
        whole = table.require(*CCD_COLUMNS)
        return (lambda: iter([whole])), table
    try:
        layout, encoding = _text_layout(path, "ccd", named)
    except TableLayoutError as exc:
        raise UnreadableFile(str(exc)) from exc

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for part in read_layout(path, layout, rows, encoding):
            yield tuple(part[name] for name in CCD_COLUMNS)

    return chunks, Table({}, str(path))
