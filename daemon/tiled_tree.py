"""A daemon's data folder as a Tiled tree: every run file, a running one included, readable column
by column over HTTP by Tiled's client (or any HTTP client), with no echemd on the reader's side.

Serve it with Tiled's own server (``pip install "echemd[tiled]"``) and a configuration file
naming this tree::

    # tiled.yml
    trees:
      - path: /
        tree: echemd.daemon.tiled_tree:runs
        args: {directory: /srv/echemd-data}
    authentication: {single_user_api_key: KEY}   # KEY: letters and digits, e.g. `openssl rand -hex 32`

    TILED_HDF5_SWMR_DEFAULT=1 tiled serve config tiled.yml --host 0.0.0.0 --port 8000

``TILED_HDF5_SWMR_DEFAULT=1`` is Tiled's switch for opening HDF5 files in single-writer-multiple-
reader mode everywhere: without it Tiled cannot open a file the daemon is writing, and
:func:`runs` refuses to start.  Then ``column = tiled.client.from_uri("http://lab-pc:8000",
api_key=KEY)["RUN_ID"]["data"]["voltage_V"]``, and ``column.read()`` for a finished run.

A run file is opened afresh at every request, so a running run reads as far as its last flush
(the daemon's flush interval, 0.5 s by default) and a finished one as it was closed; a run being
compressed at its end reads from whichever copy is complete.  A running run's column grows between
looking it up and reading it, which Tiled's ``read()`` refuses (the length no longer matches): read
it as ``column[:column.shape[0]]`` (the samples written when it was looked up: samples are only
ever appended), and look it up again for more.  Tiled is not an echemd dependency (the ``tiled``
extra): this module is imported by Tiled's server.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path

from tiled.adapters import hdf5 as tiled_hdf5
from tiled.adapters.hdf5 import HDF5Adapter
from tiled.adapters.mapping import MapAdapter

from echemd.daemon.file_transitions import current_path


class RunFiles(Mapping):
    """The run files of a data folder by run id (file name without ``.h5``), newest content first
    opened at each lookup."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(path.stem for path in self.directory.glob("*.h5")))

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*.h5"))

    def __getitem__(self, run_id: str) -> HDF5Adapter:
        path = self.directory / f"{run_id}.h5"
        if "/" in run_id or not path.is_file():
            raise KeyError(run_id)
        return HDF5Adapter.from_uris(current_path(path).as_uri(), swmr=True)


def runs(directory: str) -> MapAdapter:
    """The Tiled tree of the run files in ``directory`` (a daemon's data folder); clients are told
    to ask again rather than cache (runs appear and grow)."""
    folder = Path(directory)
    if not tiled_hdf5.SWMR_DEFAULT:
        raise RuntimeError("start Tiled's server with TILED_HDF5_SWMR_DEFAULT=1 in its environment: without it Tiled "
                           "cannot open the run files the daemon is writing")
    if not folder.is_dir():
        raise ValueError(f"{directory} is not a folder: give the daemon's data folder (data_dir)")
    return MapAdapter(RunFiles(folder), metadata={"echemd": "run files", "directory": str(folder.resolve())},
                      entries_stale_after=timedelta(0), metadata_stale_after=timedelta(0), must_revalidate=True)
