"""Delimited text tables from other software, read into echemd's columns in SI units.

What a lab brings to ``echemd analyze``: CSV from echemd's own export or a spreadsheet, with
``,``, ``;`` or tab between cells and a decimal point or comma; BioLogic EC-Lab text exports
(``.mpt``: ``EC-Lab ASCII FILE``, ``Nb header lines : N``, tab-separated, cp1252, decimal comma
in some locales); tables with a units row under the header.  Each column's name says what it
holds and in what unit, in one of the ways instrument software writes it:

- ``time/s``, ``Ewe/V``, ``<I>/mA``, ``freq/Hz``, ``Re(Z)/Ohm``, ``-Im(Z)/Ohm`` (EC-Lab);
- ``Time (s)``, ``Potential [mV]``, ``Z' (Ω)``, ``-Z'' (Ω)`` (Autolab, spreadsheets);
- ``time_s``, ``voltage_V``, ``current_A``, ``z_imag_ohm`` (echemd);
- a bare name (``Freq``, ``Zreal``) with its unit in a units row, or none (then SI).

A leading ``-`` means the column holds the negated quantity (``-Im(Z)``); SI prefixes are read
case-sensitively (``mHz`` is not ``MHz``).  An EC-Lab ``cycle number`` (or ``z cycle``) column
becomes ``spectrum``, so a GEIS/PEIS loop's spectra are told apart.  A table that lacks a
quantity raises UnreadableFile naming the columns found and the ones needed.  Where a name is
none of these (``Zeit [min]``, ``Spannung``), the reader says which column is which: ``--column
voltage_V=Spannung@mV`` (a header cell, exactly as written, and its unit when the cell does not
say it: see :func:`named_columns`).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

import numpy as np

#: What each echemd column may be called (lower case; <>, spaces and a leading '-' stripped first).
NAMES = {
    "time_s": ("time_s", "time", "t", "elapsed time", "test time", "total time"),
    "voltage_V": ("voltage_v", "ewe", "ecell", "e", "ewe-ece", "voltage", "potential", "u", "v", "e we", "working electrode"),
    "current_A": ("current_a", "i", "current", "im"),
    "bias_V": ("bias_v", "bias", "vbias", "sample bias"),
    "frequency_Hz": ("frequency_hz", "freq", "frequency", "f"),
    "z_real_ohm": ("z_real_ohm", "re(z)", "z'", "zreal", "z real", "zre", "z_real", "real"),
    "z_imag_ohm": ("z_imag_ohm", "im(z)", "z''", "z\"", "zimag", "z imag", "zim", "z_imag", "imag", "imaginary"),
    "spectrum": ("cycle number", "z cycle", "cycle"),
}
#: Each echemd column's SI unit, as units are written for it.
SI_UNITS = {"time_s": "s", "voltage_V": "V", "current_A": "A", "bias_V": "V", "frequency_Hz": "Hz", "z_real_ohm": "Ohm", "z_imag_ohm": "Ohm",
            "spectrum": ""}
PREFIXES = {"": 1.0, "k": 1e3, "M": 1e6, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "μ": 1e-6, "n": 1e-9, "p": 1e-12}
TIME_UNITS = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0}
OHMS = ("ohm", "Ohm", "OHM", "Ω", "ohms")
#: Lines read to find a table's layout (an EC-Lab settings block runs to ~100).
HEAD_LINES = 400
NUMBER = re.compile(r"^[-+]?(\d+([.,]\d*)?|[.,]\d+)([eE][-+]?\d+)?$")
UNIT_IN_NAME = re.compile(r"^(?P<name>.*?)\s*(?:/\s*(?P<slash>[^/()\[\]]+)|\((?P<paren>[^()]*)\)|\[(?P<bracket>[^\[\]]*)\])\s*$")


class TableLayoutError(ValueError):
    """The text is not a table echemd can read, or lacks a column it needs (the message says which)."""


@dataclass(frozen=True)
class ColumnMeaning:
    column: str  # the echemd column
    factor: float  # value in the file x factor = value in SI


@dataclass(frozen=True)
class TableLayout:
    """Where a text table's numbers are and what they mean, from its first lines."""

    delimiter: str
    decimal: str  # "." or ","
    skip_lines: int  # lines before the first row of numbers (settings block, header, units row)
    columns: dict[str, tuple[int, float]]  # echemd column -> (index in a row, factor to SI)


#: Which of a table's columns is which, as the reader said: {echemd column: (header cell, unit or None)}.
Named = dict[str, tuple[str, str | None]]


def named_columns(options: list[str] | None) -> Named:
    """``--column NAME=HEADER[@UNIT]`` options as {echemd column: (header cell, unit or None)}.

    NAME is an echemd column (time_s, voltage_V, current_A, bias_V, frequency_Hz, z_real_ohm,
    z_imag_ohm, spectrum); HEADER the table's header cell exactly as written (a leading ``-``: it
    holds the negated quantity, as everywhere); UNIT the cell's unit when neither the cell (``I/mA``,
    ``Zeit [min]``) nor a units row says it (otherwise SI).  Raises ValueError for an unknown NAME, a
    NAME given twice, or an option without ``=``."""
    named: Named = {}
    for option in options or ():
        column, equals, header = option.partition("=")
        column = column.strip()
        if not equals or not header.strip():
            raise ValueError(f"--column {option!r}: give NAME=HEADER, e.g. voltage_V='Ewe/V' or current_A='Strom@mA'")
        if column not in SI_UNITS:
            raise ValueError(f"--column {option!r}: {column!r} is not an echemd column; one of {', '.join(SI_UNITS)}")
        if column in named:
            raise ValueError(f"--column {column} is given twice")
        header, at, unit = header.rpartition("@") if "@" in header else (header, "", "")
        named[column] = (header.strip(), unit.strip() if at else None)
    return named


def detect_layout(lines: list[str], source: str, needed: tuple[str, ...],
                  named: Named | None = None) -> TableLayout:
    """A table's layout from its first lines (enough to hold its header and some rows), with the
    columns ``named`` by the reader (:func:`named_columns`) taken as said; raises TableLayoutError
    naming the columns found and the ones needed."""
    start = 0
    if lines and lines[0].strip().startswith("EC-Lab ASCII FILE"):
        found = re.match(r"\s*Nb header lines\s*:\s*(\d+)", lines[1]) if len(lines) > 1 else None
        if found is None:
            raise TableLayoutError(f"{source}: an EC-Lab text file without its 'Nb header lines : N' line")
        start = int(found[1]) - 1
    while start < len(lines) and (not lines[start].strip() or lines[start].startswith("#")):  # (echemd's export: what the run was)
        start += 1
    if start >= len(lines):
        raise TableLayoutError(f"{source}: no table")
    delimiter = "\t" if "\t" in lines[start] else ";" if ";" in lines[start] else ","
    header = [cell.strip() for cell in next(csv.reader([lines[start]], delimiter=delimiter))]
    skip = start + 1
    following = next((line for line in lines[skip:] if line.strip()), "")
    cells = [cell.strip() for cell in next(csv.reader([following], delimiter=delimiter))] if following else []
    units = cells if cells and not any(NUMBER.match(cell) for cell in cells if cell) else None
    if units is not None:
        skip = lines.index(following, skip) + 1
    meanings = {k: m for k, cell in enumerate(header) if (m := meaning(cell, units[k] if units and k < len(units) else ""))}
    found_columns = {m.column: (k, m.factor) for k, m in sorted(meanings.items(), reverse=True)}  # (the first of two wins)
    for column, (cell, unit) in (named or {}).items():
        if cell not in header:
            raise TableLayoutError(f"{source}: --column {column}={cell}: no such column among {', '.join(repr(c) for c in header if c)}")
        k = header.index(cell)
        found_columns[column] = (k, _named_factor(source, column, cell, unit, units[k] if units and k < len(units) else ""))
    missing = [name for name in needed if name not in found_columns]
    if missing:
        raise TableLayoutError(f"{source}: no {', '.join(missing)} column among {', '.join(repr(c) for c in header if c)}; "
                               f"needed: {', '.join(needed)} (as e.g. time/s, Ewe/V, <I>/mA, freq/Hz, Re(Z)/Ohm, -Im(Z)/Ohm, "
                               "or time_s, voltage_V, current_A)")
    sample = [line for line in lines[skip:skip + 50] if line.strip()]
    decimal = "," if delimiter != "," and any("," in line for line in sample) else "."
    wanted = {name: found_columns[name] for name in (*needed, "spectrum") if name in found_columns}
    return TableLayout(delimiter, decimal, skip, wanted)


def read_layout(source, layout: TableLayout, chunk_rows: int | None = None, encoding: str = "utf-8"):
    """The table's columns in SI (a dict of arrays), or, with ``chunk_rows``, an iterator of such
    dicts ``chunk_rows`` rows at a time.  ``source``: a path or a file-like object."""
    import pandas as pd

    names = list(layout.columns)
    indices = [layout.columns[name][0] for name in names]
    frames = pd.read_csv(source, sep=layout.delimiter, decimal=layout.decimal, skiprows=layout.skip_lines, header=None, usecols=indices,
                         comment="#", skip_blank_lines=True, encoding=encoding, chunksize=chunk_rows, engine="c", on_bad_lines="skip")

    def columns(frame) -> dict[str, np.ndarray]:
        return {name: pd.to_numeric(frame[index], errors="coerce").to_numpy(dtype=np.float64) * layout.columns[name][1]
                for name, index in zip(names, indices)}

    return (columns(frame) for frame in frames) if chunk_rows else columns(frames)


def meaning(cell: str, unit_row: str = "") -> ColumnMeaning | None:
    """What a header cell holds: its echemd column and the factor to SI; None when not known."""
    sign, name, unit = _split_cell(cell)
    unit = (unit or unit_row).strip()
    key = name.replace("<", "").replace(">", "").strip().lower()
    for column, names in NAMES.items():
        if key in names:
            factor = _to_si(unit, SI_UNITS[column]) if unit and column != "spectrum" else 1.0
            return None if factor is None else ColumnMeaning(column, sign * factor)
    for column, si in SI_UNITS.items():  # echemd's own NAME_UNIT: time_s, voltage_V, voltage_mV ...
        base = column.rsplit("_", 1)[0].lower()
        if si and key.startswith(base + "_"):
            factor = _to_si(name.strip()[len(base) + 1:], si)
            if factor is not None:
                return ColumnMeaning(column, sign * factor)
    return None


def _split_cell(cell: str) -> tuple[float, str, str]:
    """A header cell as (sign, name, unit): a leading '-' is a negated quantity (-1.0); the unit is
    what follows a '/' or sits in () or [] at the end ('' when none; the Z of Re(Z) is the name's)."""
    text = cell.strip().strip('"')
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("-").strip()
    match = UNIT_IN_NAME.match(text)
    if match and (match["paren"] or "").strip().lower() == "z":  # Re(Z), Im(Z): part of the name
        match = None
    return (sign, match["name"], match["slash"] or match["paren"] or match["bracket"] or "") if match else (sign, text, "")


def _named_factor(source: str, column: str, cell: str, unit: str | None, unit_row: str) -> float:
    """The factor to SI of a header cell the reader said holds ``column``: the unit given, else the
    cell's own (``/mA``, ``(s)``, ``[min]``), else the units row's, else SI; a leading '-' negates."""
    sign, _, own = _split_cell(cell)
    unit = (unit if unit is not None else own or unit_row).strip()
    if column == "spectrum" or not unit:
        return sign
    factor = _to_si(unit, SI_UNITS[column])
    if factor is None:
        raise TableLayoutError(f"{source}: --column {column}: {unit!r} is not a unit of {SI_UNITS[column]} "
                               f"(say it with @UNIT, e.g. {column}={cell}@m{SI_UNITS[column]})")
    return sign * factor


def _to_si(unit: str, si: str) -> float | None:
    """The factor from ``unit`` to ``si`` (s, V, A, Hz, Ohm); None when ``unit`` is not one of it."""
    unit = unit.strip()
    if si == "s":
        return TIME_UNITS.get(unit)
    bases = OHMS if si == "Ohm" else (si, si.lower(), si.upper())
    for base in bases:
        if unit.endswith(base) and unit[: len(unit) - len(base)] in PREFIXES:
            return PREFIXES[unit[: len(unit) - len(base)]]
    return None
