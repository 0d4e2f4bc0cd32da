"""One run's HDF5 file, written in SWMR mode as samples arrive.  See docs/data-format.md.

The whole structure (root attributes, one resizable dataset per column, the event log, the block
index of the stream) is created before SWMR starts; after that only datasets grow, so a reader
can follow the run and a crash leaves a valid file holding every flushed sample.  When the run
ends the SWMR file is closed and reopened once to set the final status and write the result.

Blocks and events are queued in memory and one writer thread for the whole process appends them
(one write per column) and flushes, half a flush interval after the oldest unflushed change, so no
sample stays unflushed longer than about 0.75 flush interval, even while no block arrives (a slow
instrument, a paused run).  A block is queued under a lock of its own, never held across an HDF5
call: the run's worker (which processes its block in turn with its process's other workers, see
Engine) never waits for the writer writing its file.  Why one thread: h5py serializes every HDF5
call behind one lock; dozens of worker threads writing their own files queue on it (and on the
GIL) and stall each other for seconds.  Why batches: an HDF5 append costs the same for 10 samples
as for 10,000, so instruments can deliver small blocks (low latency on the stream) cheaply.  A
worker writes itself only when more than MAX_PENDING_SAMPLES wait (the writer fell behind:
backpressure instead of memory growth).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from echemd.daemon import file_transitions
from echemd.daemon.disk_space import DEFAULT_RESERVE_BYTES, ensure_free
from echemd.daemon.file_transitions import current_path
from echemd.daemon.runfile_reader import RunFileReader, read_blocks
from echemd.daemon.stream import DataBlock, PackedBlocks
from echemd.daemon.vocabulary import FILE_STATUSES, RunStatus

CHUNK = 4096
#: Most samples a run file holds in memory before its worker writes them itself (~6 MB for 3 columns).
MAX_PENDING_SAMPLES = 262_144
#: The writer thread's period is a quarter of the shortest flush interval, but at least this, s.
MIN_WRITER_PERIOD_S = 0.005
EVENT_CHUNK = 64
KIND_DTYPE = "S32"
MESSAGE_DTYPE = "S1024"  # UTF-8, truncated: the full text is in the daemon's log
#: Room a new run file takes (its structure, first chunks), and HDF5's metadata beside a write, bytes.
NEW_FILE_BYTES, WRITE_OVERHEAD_BYTES = 256 * 1024, 64 * 1024
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFileSettings:
    """How the daemon writes run files (see DaemonConfig for each): flush and fsync periods (s),
    compression once the run has ended, and the free space no write may eat into (bytes)."""

    flush_interval_s: float = 0.5
    fsync_interval_s: float = 30.0
    compress_on_close: bool = False
    reserve_bytes: int = DEFAULT_RESERVE_BYTES


@dataclass(frozen=True)
class _Batch:
    """What one write takes off a run file's queue: blocks (columns by name) with their sample
    offsets, events (time, kind, message), and where each goes (sample, block and event counts
    before and after)."""

    blocks: list[dict[str, np.ndarray]]
    offsets: list[int]
    events: list[tuple[float, bytes, bytes]]
    start: int
    end: int
    blocks_start: int
    blocks_end: int
    events_end: int


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class RunFile:
    """Writer of ``<data_dir>/<run_id>.h5``.  Thread-safe: one writer thread, any number of readers."""

    def __init__(
        self,
        path: Path,
        *,
        run_id: str,
        protocol: str,
        parameters: Mapping[str, Any],
        instrument: str,
        columns: Mapping[str, str],
        version: str,
        settings: RunFileSettings,
        t0_unix_s: float | None = None,
        descriptions: Mapping[str, str] | None = None,
        attributes: Mapping[str, Any] | None = None,
        sparse: Collection[str] = (),
        nexus_plot: tuple[str, str] | None = None,
    ) -> None:
        """``columns``: name -> SI unit; ``descriptions``: name -> what a column holds, for those
        that need saying; ``attributes``: the protocol's record of the run's setup (root attributes);
        ``sparse``: columns a block may lack (its step does not measure them): NaN for its samples.  ``t0_unix_s``: the run's time zero, Unix time (s), by default now.
        ``nexus_plot``: the (signal, axis) columns NeXus viewers plot by default (see :func:`mark_nexus`).
        Raises OSError when the file cannot be created (nothing is left behind), FileExistsError
        when it exists."""
        self.settings = settings
        self.path = Path(path)
        self.run_id = run_id
        self.units = dict(columns)
        self.sparse = frozenset(sparse)
        self.t0 = time.time() if t0_unix_s is None else t0_unix_s
        self.flush_interval_s = settings.flush_interval_s
        self._lock = threading.Lock()  # the queue and the counts: held briefly, never across an HDF5 call
        self._io_lock = threading.Lock()  # the HDF5 file: taken before _lock, never while holding it
        self._closed = False
        self._n = 0  # samples received (written or pending)
        self._written = 0  # samples in the datasets
        self._blocks = 0  # blocks received
        self._blocks_written = 0
        self._events_written = 0
        self._pending: list[dict[str, np.ndarray]] = []
        self._pending_offsets: list[int] = []
        self._pending_events: list[tuple[float, bytes, bytes]] = []
        self._events = 0  # events received (written or pending)
        self._dirty_since: float | None = None  # when the oldest unflushed change arrived (monotonic)
        self._write_error: Exception | None = None  # why the writer could not write, once it failed
        self._last_fsync = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True)

        def build(f: h5py.File) -> None:
            f.attrs.update({
                "echemd_version": version,
                "run_id": run_id,
                "protocol": protocol,
                "parameters": json.dumps(dict(parameters)),
                "instrument": instrument,
                "started": utc_now(),
                "t0_unix_s": self.t0,
                "finished": "",
                "status": RunStatus.RUNNING.value,
                "error": "",
                **(attributes or {}),
            })
            data = f.create_group("data")
            for name, units in self.units.items():
                ds = data.create_dataset(name, shape=(0,), maxshape=(None,), dtype="<f8", chunks=(CHUNK,))
                ds.attrs["units"] = units
                if descriptions and descriptions.get(name):
                    ds.attrs["description"] = descriptions[name]
            mark_nexus(f, nexus_plot)
            events = f.create_group("events")
            events.create_dataset("time_s", shape=(0,), maxshape=(None,), dtype="<f8", chunks=(EVENT_CHUNK,)).attrs["units"] = "s"
            events.create_dataset("kind", shape=(0,), maxshape=(None,), dtype=KIND_DTYPE, chunks=(EVENT_CHUNK,))
            events.create_dataset("message", shape=(0,), maxshape=(None,), dtype=MESSAGE_DTYPE, chunks=(EVENT_CHUNK,))
            stream = f.create_group("stream")
            stream.create_dataset("block_offset", shape=(0,), maxshape=(None,), dtype="<i8", chunks=(EVENT_CHUNK,))
            f.create_group("result")

        ensure_free(self.path.parent, NEW_FILE_BYTES, settings.reserve_bytes)
        f = file_transitions.create(self.path, build)
        self._file = f
        self._data = {name: f["data"][name] for name in self.units}  # handles: no lookups per block
        self._index = f["stream/block_offset"]
        self._event_columns = [f["events"][name] for name in ("time_s", "kind", "message")]
        _WRITER.add(self)

    @property
    def n_samples(self) -> int:
        return self._n

    def append(self, columns: Mapping[str, np.ndarray]) -> DataBlock:
        """Queue one block (every column of the run) for writing; return it as the stream will carry it."""
        missing = set(self.units) - set(columns) - self.sparse
        if missing:
            raise ValueError(f"block lacks columns {sorted(missing)}")
        n = len(columns["time_s"])
        block_columns = {k: np.asarray(columns[k], dtype="<f8") if k in columns else np.full(n, np.nan) for k in self.units}
        with self._lock:
            self._check_writable()
            block = DataBlock(self.run_id, self._blocks, self._n, self.t0, block_columns, self.units)
            self._pending.append(block_columns)
            self._pending_offsets.append(self._n)
            self._n += n
            self._blocks += 1
            self._changed()
            backlog = self._n - self._written >= MAX_PENDING_SAMPLES
        if backlog:
            with self._io_lock:
                if self._file is not None:
                    self._write(flush=False)
        return block

    def add_event(self, time_s: float, kind: str, message: str) -> int:
        """Queue an event for writing; returns its index (the event's sequence number)."""
        with self._lock:
            self._check_writable()
            self._pending_events.append((time_s, kind.encode()[:32], message.encode()[:1024]))
            self._events += 1
            self._changed()
            return self._events - 1

    def read_blocks(self, from_seq: int, max_samples: int) -> tuple[PackedBlocks, int]:
        """Blocks from ``from_seq`` on (at least one, then up to ``max_samples`` samples) and the block count."""
        with self._io_lock:
            if self._file is not None:
                self._write(flush=False)
                return read_blocks(self._file, from_seq, max_samples, self._blocks_written, self._written)
        with RunFileReader(self.path) as closed:
            return closed.blocks(from_seq, max_samples)

    def flush_if_due(self) -> None:
        """Write and flush what waits once its oldest change is half a flush interval old; fsync
        (the data reaches the disk: survives a power cut) every fsync_interval_s.  A flush alone
        gets the data to the OS: it survives a crash of the daemon."""
        with self._io_lock:
            if self._file is None:
                return
            with self._lock:
                now = time.monotonic()
                if self._dirty_since is None or self._write_error is not None or now - self._dirty_since < self.flush_interval_s / 2:
                    return
            self._write(flush=True)
            if now - self._last_fsync >= self.settings.fsync_interval_s:
                os.fsync(self._file.id.get_vfd_handle())
                self._last_fsync = now

    def _write(self, flush: bool) -> None:
        """Write what is pending (and flush).  A failure is kept: the run's next block fails on it
        (see _check_writable) and the file takes nothing more.  I/O lock held."""
        with self._lock:
            if self._write_error is not None:
                raise OSError(f"writing the run file {self.path} failed before: {self._write_error}") from self._write_error
            batch = self._take_pending(flush)
        try:
            self._write_batch(batch)
            if flush:
                self._file.flush()
        except Exception as exc:
            with self._lock:
                self._write_error = exc
            self._shrink_to_written()
            raise
        with self._lock:
            self._written, self._blocks_written, self._events_written = batch.end, batch.blocks_end, batch.events_end

    def _shrink_to_written(self) -> None:
        """After a failed write: cut every dataset back to what was written, so that the extents a
        write grew before it failed never show (or get recovered) as samples of zeros.  Best effort:
        shrinking needs no new space, but the file may refuse everything by now.  I/O lock held."""
        sizes = [(dataset, self._written) for dataset in self._data.values()] + [(self._index, self._blocks_written)]
        sizes += [(dataset, self._events_written) for dataset in self._event_columns]
        for dataset, size in sizes:
            try:
                if len(dataset) > size:
                    dataset.resize((size,))
            except Exception as exc:
                log.warning("run file %s: cannot cut %s back to %d after a failed write: %s", self.path, dataset.name, size, exc)

    def _check_writable(self) -> None:
        """Raise if the file is closed, or if writing it failed (a full disk): the run then fails,
        its instrument goes safe, and the file keeps what was flushed before.  Lock held."""
        if self._closed:
            raise ValueError(f"run file {self.path} is closed")
        if self._write_error is not None:
            raise OSError(f"writing the run file {self.path} failed: {self._write_error}") from self._write_error

    def _changed(self) -> None:
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()

    def _take_pending(self, flush: bool) -> "_Batch":
        """Everything queued, taken off the queue for one write (flushed, when ``flush``: nothing
        is left unflushed then).  Lock held."""
        batch = _Batch(self._pending, self._pending_offsets, self._pending_events, self._written, self._n, self._blocks_written,
                       self._blocks, self._events)
        self._pending, self._pending_offsets, self._pending_events = [], [], []
        if flush:
            self._dirty_since = None
        return batch

    def _write_batch(self, batch: "_Batch") -> None:
        """Append a batch's blocks (one resize and one write per column) and events, if the disk
        keeps its reserve after them (see disk_space).  I/O lock held."""
        ensure_free(self.path.parent, 8 * ((batch.end - batch.start) * len(self._data) + batch.blocks_end - batch.blocks_start)
                    + (8 + 32 + 1024) * len(batch.events) + WRITE_OVERHEAD_BYTES, self.settings.reserve_bytes)
        if batch.blocks:
            for name, dataset in self._data.items():
                grow_to(dataset, batch.end)
                write_at(dataset, batch.start, np.concatenate([block[name] for block in batch.blocks]))
            grow_to(self._index, batch.blocks_end)
            write_at(self._index, batch.blocks_start, np.asarray(batch.offsets, dtype=np.int64))
        if batch.events:
            first = batch.events_end - len(batch.events)
            for dataset, values in zip(self._event_columns, zip(*batch.events)):
                dataset.resize((batch.events_end,))
                dataset[first:] = values

    def close(self, status: str, result: Mapping[str, Any] | None = None, error: str = "") -> None:
        """Flush and close; then set the final status, the finish time and the result (on a copy
        that replaces the file: see file_transitions), compressed if the file was opened so.

        Raises OSError when the file could not be completed (a full disk); it then holds every
        sample flushed before, and says ``running`` until recovery marks it."""
        if status not in FILE_STATUSES:
            raise ValueError(f"a run file cannot end {status!r}")
        status = RunStatus(status).value  # (a plain str for HDF5)
        _WRITER.discard(self)
        with self._io_lock:
            if self._file is None:
                return
            with self._lock:
                self._closed = True  # (a block or event queued from now on is refused)
                failure = self._write_error
            try:
                if failure is None:
                    self._write(flush=True)
            except Exception as exc:
                failure = exc
            finally:
                try:
                    self._file.close()
                except Exception as exc:  # a full disk: HDF5 could not write its metadata; the handle must still go
                    failure = failure or exc
                    _close_id(self._file)
                self._file = self._data = self._index = self._event_columns = None
                self._pending.clear()
                self._pending_events.clear()
            if failure is not None:  # what was flushed before stays; the file says why the rest is missing
                status, error = "failed", f"writing the run file failed: {type(failure).__name__}: {failure}"
            finished = utc_now()

            def final(target: h5py.File) -> None:
                target.attrs.update({"status": status, "finished": finished, "error": error})
                write_result(target["result"], result or {})

            try:
                self._end(final)
            except OSError as exc:  # the end waits for space: see finish_pending_ends
                _PENDING_ENDS[self.path] = (self, final)
                raise OSError(f"cannot write the end of the run into {self.path} now ({exc}); "
                              f"the daemon retries while it runs") from exc
            if failure is not None:
                raise OSError(error) from failure

    def _end(self, final: Callable[[h5py.File], None]) -> None:
        """Replace the closed file by its final copy (compressed if set; uncompressed if that fails)."""
        reserve = self.settings.reserve_bytes
        try:
            rewrite_run_file(self.path, compress=self.settings.compress_on_close, finish=final, reserve_bytes=reserve)
        except Exception:
            if not self.settings.compress_on_close:
                raise
            log.exception("run file %s: compression after the run failed; written uncompressed", self.path)
            rewrite_run_file(self.path, compress=False, finish=final, reserve_bytes=reserve)


#: Run files whose end could not be written (no space for the final copy), with how they ended.
_PENDING_ENDS: dict[Path, tuple[RunFile, Callable[[h5py.File], None]]] = {}


def finish_pending_ends() -> list[str]:
    """Write the ends that waited for space (see RunFile.close); returns the ids of the runs whose
    files now say how they ended."""
    finished = []
    for path, (runfile, final) in list(_PENDING_ENDS.items()):
        try:
            runfile._end(final)
        except OSError:
            continue
        del _PENDING_ENDS[path]
        finished.append(runfile.run_id)
        log.warning("run file %s: its end is written now that the disk has space", path)
    return finished


def _close_id(f: h5py.File) -> None:
    """Close a file whose regular close failed, releasing its descriptor (best effort)."""
    try:
        while f.id.valid:
            f.id.close()
    except Exception as exc:
        log.warning("run file %s: its handle could not be released: %s", f.filename, exc)


class _Writer:
    """The one thread of the process that writes and flushes every open run file (see the module's
    docstring); it ends when no run file is open."""

    def __init__(self) -> None:
        self._files: weakref.WeakSet[RunFile] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._running = False

    def add(self, runfile: RunFile) -> None:
        with self._lock:
            self._files.add(runfile)
            if not self._running:
                self._running = True
                threading.Thread(target=self._loop, name="echemd-runfile-writer", daemon=True).start()

    def discard(self, runfile: RunFile) -> None:
        with self._lock:
            self._files.discard(runfile)

    def _loop(self) -> None:
        while True:
            with self._lock:
                files = list(self._files)
                if not files:
                    self._running = False
                    return
            for runfile in files:
                try:
                    runfile.flush_if_due()
                except Exception:  # kept by the file: its run fails at its next block (logged once)
                    log.exception("run file %s: writing failed", runfile.path)
            time.sleep(max(MIN_WRITER_PERIOD_S, min(runfile.flush_interval_s for runfile in files) / 4))


_WRITER = _Writer()


def write_result(group: h5py.Group, result: Mapping[str, Any]) -> None:
    """The whole dict in attrs['json']; and readable key by key: see _write_values."""
    group.attrs["json"] = json.dumps(result)
    _write_values(group, result)


def _write_values(group: h5py.Group, values: Mapping[str, Any]) -> None:
    """Scalars become attributes (None left out), numeric lists datasets, mappings subgroups."""
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, (bool, int, float, str)):
            group.attrs[key] = value
        elif isinstance(value, Mapping):
            _write_values(group.create_group(key), value)
        elif isinstance(value, Sequence) and all(isinstance(x, (int, float)) and x is not None for x in value):
            group.create_dataset(key, data=np.asarray(value, dtype="<f8"))


def recover(path: Path, compress: bool = False, status: str = "interrupted", error: str = "", finished: str = "",
            reserve_bytes: int = DEFAULT_RESERVE_BYTES) -> int:
    """Turn the file of a run whose daemon died into a closed, readable file with status ``status``
    (by default ``interrupted``; a run that had ended but could not write its end says how it ended).

    A writer that was killed leaves its SWMR file marked as open for writing, so it can only be read
    in SWMR mode.  Its content is copied into a fresh file, cut to the gap-free prefix every column
    holds, which then replaces it.  Returns the number of samples kept.
    """
    kept = 0

    def ended(target: h5py.File) -> None:
        nonlocal kept
        kept = n = len(target["data/time_s"])
        offsets = target["stream/block_offset"]
        keep = offsets[:]
        keep = keep[keep < n] if n else keep[:0]
        offsets.resize((len(keep),))
        offsets[:] = keep
        target.attrs["status"] = RunStatus(status).value
        target.attrs["finished"] = finished
        target.attrs["error"] = error or f"the daemon stopped mid-run; recovered {n} samples at {utc_now()}"

    rewrite_run_file(path, compress=compress, finish=ended, gap_free=True, reserve_bytes=reserve_bytes)
    return kept


#: Samples copied at a time when a run file is rewritten (bounded memory for runs of any length).
COPY_SLICE = 1 << 20


def mark_nexus(f: h5py.File, plot: tuple[str, str] | None) -> None:
    """Make a new run file a NeXus tree that h5web, silx and NeXpy plot with no echemd installed:
    the root an NXroot whose ``default`` is ``entry``, an NXentry ``entry`` whose ``data`` is a link
    to ``/data``, and ``/data`` an NXdata with ``signal`` and ``axes`` (``plot``: those columns,
    when the run records them).  The layout echemd reads is unchanged."""
    data = f["data"]
    f.attrs.update({"NX_class": "NXroot", "default": "entry"})
    data.attrs["NX_class"] = "NXdata"
    if plot is not None and all(name in data for name in plot):
        data.attrs.update({"signal": plot[0], "axes": plot[1]})
    entry = f.create_group("entry")
    entry.attrs.update({"NX_class": "NXentry", "default": "data"})
    entry["data"] = h5py.SoftLink("/data")


def rewrite_run_file(path: Path, compress: bool = False, finish: Callable[[h5py.File], None] | None = None, gap_free: bool = False,
                     reserve_bytes: int = DEFAULT_RESERVE_BYTES) -> bool:
    """Replace run file ``path`` by a copy (see file_transitions.rewrite; returns its answer):
    data columns compressed if asked (byte shuffle + deflate level 1: about 4x smaller on
    electrochemical data, readable by any HDF5 reader; running files are never compressed, since
    every flush would rewrite the chunk being filled), cut to the samples every column holds if
    ``gap_free``, then amended by ``finish``.  Raises OSError (ENOSPC) first when the copy would not leave the
    disk its reserve (see disk_space)."""
    ensure_free(path.parent, current_path(path).stat().st_size + WRITE_OVERHEAD_BYTES, reserve_bytes)

    def write_copy(target: h5py.File) -> None:
        with h5py.File(current_path(path), "r", libver="latest", swmr=True) as source:
            columns = source["data"]
            n = min((len(columns[c]) for c in columns), default=0) if gap_free else None
            target.attrs.update(dict(source.attrs))
            for name in source:
                if name != "data" or (n is None and not compress):  # whole: HDF5 copies the chunks as they are
                    source.copy(source[name], target, name)
            if "data" not in target:
                data = target.create_group("data")
                data.attrs.update(dict(columns.attrs))  # (NeXus: NX_class, signal, axes)
                options = {"shuffle": True, "compression": "gzip", "compression_opts": 1} if compress else {}
                for column, dataset in columns.items():
                    size = len(dataset) if n is None else n
                    copy = data.create_dataset(column, shape=(size,), maxshape=(None,), dtype=dataset.dtype, chunks=(CHUNK,), **options)
                    for start in range(0, size, COPY_SLICE):
                        copy[start : min(size, start + COPY_SLICE)] = dataset[start : min(size, start + COPY_SLICE)]
                    copy.attrs.update(dict(dataset.attrs))
        if finish is not None:
            finish(target)

    return file_transitions.rewrite(path, write_copy)


# A run's columns grow at every flush: by h5py's low-level calls, the same HDF5 operations as
# ``resize`` and a slice assignment without their Python selection machinery (~150 -> ~45 us per
# column, paid for every column of every run at every flush, on the thread that also runs the
# engines).  (Module functions: benchmarks/crash_points.py kills a writer around each.)


def grow_to(dataset: h5py.Dataset, size: int) -> None:
    """Extend the 1-D ``dataset`` to ``size`` elements."""
    dataset.id.set_extent((size,))


def write_at(dataset: h5py.Dataset, start: int, values: np.ndarray) -> None:
    """``dataset[start:start + len(values)] = values`` (converted to the dataset's dtype)."""
    file_space = dataset.id.get_space()
    file_space.select_hyperslab((start,), (len(values),))
    dataset.id.write(h5py.h5s.create_simple((len(values),)), file_space, np.ascontiguousarray(values, dtype=dataset.dtype))
