"""Reading a run file: the one place outside its writer (runfile.py) that knows the file's layout.

A :class:`RunFileReader` opens a closed run file, or one being written (SWMR), and gives its
attributes, parameters, metadata and result decoded, its columns (whole, or in chunks for records
too long to hold), its events, and its stream blocks.  The daemon (records, fetch), the analyses,
plots and exports all read run files through it.

Columns are cut to the prefix every column holds: a writer killed during a flush can leave one
column's new extent written and another's not (recovery keeps the same prefix).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from echemd.daemon.file_transitions import current_path
from echemd.daemon.stream import PackedBlocks


class RunFileReader:
    """An open run file (a context manager).  Raises what h5py raises on a file that is not one
    (OSError), KeyError on an HDF5 file without a run's layout."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.file = h5py.File(current_path(self.path), "r", libver="latest", swmr=True)

    def __enter__(self) -> "RunFileReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    # --- what the run was ------------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        """The root attributes as plain Python values (JSON-encoded ones still encoded)."""
        return {key: (value.item() if hasattr(value, "item") else value) for key, value in self.file.attrs.items()}

    @property
    def protocol(self) -> str:
        return str(self.file.attrs.get("protocol", ""))

    @property
    def parameters(self) -> dict[str, Any]:
        return json.loads(self.file.attrs.get("parameters", "{}"))

    @property
    def metadata(self) -> dict[str, Any]:
        return json.loads(self.file.attrs.get("metadata", "{}"))

    @property
    def result(self) -> dict[str, Any] | None:
        return json.loads(self.file["result"].attrs.get("json", "null")) if "result" in self.file else None

    @property
    def area_cm2(self) -> float | None:
        """The electrode area its parameters give (``area_cm2``, or a ``diameter_mm`` disc), cm2."""
        parameters = self.parameters
        if parameters.get("area_cm2") is not None:
            return float(parameters["area_cm2"])
        return float(np.pi * (parameters["diameter_mm"] / 20) ** 2) if parameters.get("diameter_mm") else None

    def record(self) -> dict[str, Any]:
        """The root attributes, the result decoded and the samples written (``n_samples``)."""
        return {**self.attrs, "result": self.result, "n_samples": len(self.file["data/time_s"])}

    # --- its data --------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """The data columns, ``time_s`` first."""
        return sorted(self.file.get("data", {}), key=lambda name: name != "time_s")

    @property
    def units(self) -> dict[str, str]:
        return {name: str(self.file["data"][name].attrs.get("units", "")) for name in self.names}

    @property
    def n_samples(self) -> int:
        """Samples every column holds."""
        return min((len(column) for column in self.file.get("data", {}).values()), default=0)

    def columns(self, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """The columns ``names`` (by default all, ``time_s`` first), whole."""
        n = self.n_samples
        return {name: self.file["data"][name][:n] for name in (self.names if names is None else names)}

    def chunks(self, names: list[str], rows: int) -> Iterator[tuple[np.ndarray, ...]]:
        """The columns ``names``, ``rows`` at a time (memory that does not grow with the record)."""
        data = [self.file["data"][name] for name in names]
        n = self.n_samples
        for start in range(0, n, rows):
            yield tuple(column[start:min(start + rows, n)] for column in data)

    def events(self) -> list[tuple[float, str, str]]:
        """(time_s, kind, message) of every event."""
        events = self.file["events"]
        return [(float(t), k.decode(), m.decode()) for t, k, m in zip(events["time_s"][:], events["kind"][:], events["message"][:])]

    def blocks(self, from_seq: int, max_samples: int) -> tuple[PackedBlocks, int]:
        """The stream's blocks from ``from_seq`` on (see :func:`read_blocks`)."""
        return read_blocks(self.file, from_seq, max_samples)


def read_attrs(path: str | Path) -> dict[str, Any]:
    """The root attributes, result and sample count of a closed (or SWMR-readable) run file."""
    with RunFileReader(path) as run:
        return run.record()


def read_blocks(f: h5py.File, from_seq: int, max_samples: int, n_blocks: int | None = None, n_samples: int | None = None) -> tuple[PackedBlocks, int]:
    """Rebuild the stream's blocks ``from_seq`` onwards from an open run file: at least one, then
    as many as fit in ``max_samples``; and the number of blocks.  One read per column, which the
    blocks share (packed as a fetch sends them)."""
    index = f["stream/block_offset"]
    data = f["data"]
    names = list(data)
    n_blocks = len(index) if n_blocks is None else n_blocks
    n_samples = len(data["time_s"]) if n_samples is None else n_samples
    run_id = str(f.attrs["run_id"])
    if from_seq >= n_blocks:
        return PackedBlocks(run_id, [], []), n_blocks
    offsets = np.append(index[from_seq:n_blocks], n_samples)
    fits = int(np.searchsorted(offsets, offsets[0] + max_samples, side="right")) - 1  # blocks wholly within max_samples
    offsets = offsets[:max(1, fits) + 1]
    lo, hi = int(offsets[0]), int(offsets[-1])
    units = {name: str(data[name].attrs["units"]) for name in names}
    return PackedBlocks.of_columns(run_id, float(f.attrs["t0_unix_s"]), units, from_seq, offsets,
                                   {name: data[name][lo:hi] for name in names}), n_blocks
