"""echemd runs as bluesky event-model documents: a closed run file, or a live run from its stream.

A run becomes one bluesky run: ``start`` (the protocol as ``plan_name``, its parameters, the
instrument, echemd's run id and the run's metadata: sample, operator, cell ...), one ``descriptor``
of the ``primary`` stream (one data key per column, with its SI unit), ``event_page`` documents
holding every sample once (one event per sample; its time and timestamps are the sample's wall
clock time, ``t0 + time_s``), and ``stop`` (exit_status success / abort / fail and the reason, the
number of events).  Documents are composed by the ``event-model`` package (bluesky's own), so any
bluesky callback (LiveTable, BestEffortCallback, a Tiled or Kafka writer, suitcase serializers)
takes them as it takes a RunEngine's.  A NaN sample (a column its step does not measure) is None.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

#: A bluesky callback: called with each document's name and the document.
Callback = Callable[[str, dict], Any]
#: Rows per event page when a closed file is exported.
PAGE_ROWS = 10_000
#: How an echemd run's end reads as a bluesky stop's exit_status.
EXIT_STATUS = {"completed": "success", "aborted": "abort", "interrupted": "abort", "failed": "fail"}
#: Start-document keys event-model reserves (a metadata key of the same name is kept under ``echemd_metadata``).
RESERVED = frozenset({"uid", "time", "scan_id", "plan_name", "plan_type", "detectors", "hints", "project_name", "group", "owner"})


class RunDocuments:
    """Composes one echemd run's documents, in order: :meth:`start`, :meth:`pages`..., :meth:`stop`."""

    def __init__(self, record: Mapping[str, Any], units: Mapping[str, str], t0: float | None = None) -> None:
        """``record``: the run as the control API or a run file reports it (run_id, protocol,
        instrument, parameters, metadata); ``units``: its columns and their SI units; ``t0``: the
        run's time zero (Unix s), the start document's time."""
        import event_model

        metadata = dict(record.get("metadata") or {})
        start = {"plan_name": str(record["protocol"]), "echemd_run_id": str(record["run_id"]),
                 "instrument": str(record["instrument"]), "detectors": [str(record["instrument"])],
                 "parameters": dict(record.get("parameters") or {}), "echemd_file": str(record.get("file", "")),
                 **{key: value for key, value in metadata.items() if key not in RESERVED}}
        if any(key in RESERVED for key in metadata):
            start["echemd_metadata"] = metadata
        self.names = list(units)
        self._bundle = event_model.compose_run(metadata=start, time=t0)
        data_keys = {name: {"dtype": "number", "shape": [], "source": f"echemd:{record['instrument']}:{name}", "units": unit}
                     for name, unit in units.items()}
        self._descriptor = self._bundle.compose_descriptor(name="primary", data_keys=data_keys, time=t0,
                                                           hints={str(record["instrument"]): {"fields": self.names}})
        self._seq = 0

    def start(self) -> list[tuple[str, dict]]:
        """The start and descriptor documents."""
        return [("start", self._bundle.start_doc), ("descriptor", self._descriptor.descriptor_doc)]

    def page(self, t0: float, columns: Mapping[str, np.ndarray]) -> tuple[str, dict]:
        """One event page of samples (``columns`` as a block or a run file holds them; ``t0``: the
        run's time zero, Unix s)."""
        n = len(columns["time_s"])
        times = (t0 + np.asarray(columns["time_s"], dtype=np.float64)).tolist()
        data = {name: _json_numbers(columns[name]) for name in self.names}
        page = self._descriptor.compose_event_page(data=data, timestamps={name: times for name in self.names},
                                                   seq_num=list(range(self._seq + 1, self._seq + n + 1)), time=times, validate=False)
        self._seq += n
        return "event_page", page

    def stop(self, status: str, error: str = "", finished: str = "") -> tuple[str, dict]:
        """The stop document of a run that ended ``status`` (``finished``: when, ISO 8601)."""
        exit_status = EXIT_STATUS.get(status, "fail")
        when = datetime.fromisoformat(finished).timestamp() if finished else None
        return "stop", self._bundle.compose_stop(exit_status=exit_status, reason=error if exit_status != "success" else "", time=when)


def file_documents(run_file: str | Path, page_rows: int = PAGE_ROWS) -> Iterator[tuple[str, dict]]:
    """A closed run file's documents, read ``page_rows`` at a time."""
    from echemd.daemon.runfile_reader import RunFileReader

    with RunFileReader(run_file) as run:
        record = {**run.record(), "parameters": run.parameters, "metadata": run.metadata, "file": str(run_file)}
        t0, names = float(record["t0_unix_s"]), run.names
        documents = RunDocuments(record, run.units, t0)
        yield from documents.start()
        for chunk in run.chunks(names, page_rows):
            yield documents.page(t0, dict(zip(names, chunk)))
        yield documents.stop(str(record["status"]), str(record.get("error", "")), str(record.get("finished", "")))


def live_documents(client, run_id: str) -> Iterator[tuple[str, dict]]:
    """A run's documents as it runs: start once its first block arrives (its columns known), an
    event page per block of the stream (every sample once, gaps repaired by fetch), stop at its end.
    ``client``: an echemd Client."""
    documents: RunDocuments | None = None
    record = client.status(run_id)
    for block in client.subscribe(run_id):
        if documents is None:
            documents = RunDocuments(record, block.units, block.t0)
            yield from documents.start()
        yield documents.page(block.t0, block.columns)
    record = client.wait(run_id)
    if documents is None:  # ended without a sample
        documents = RunDocuments(record, {"time_s": "s"})
        yield from documents.start()
    yield documents.stop(record["status"], record.get("error", ""), record.get("finished", ""))


def feed(documents: Iterator[tuple[str, dict]], *callbacks: Callback) -> int:
    """Hand every document to every callback, in order; returns how many documents."""
    count = 0
    for name, doc in documents:
        for callback in callbacks:
            callback(name, doc)
        count += 1
    return count


def export_bluesky(run_file: str | Path, out: str | Path) -> Path:
    """Write a run file's documents to ``out``: one JSON ``[name, document]`` per line."""
    with open(out, "w", encoding="utf-8") as handle:
        for name, doc in file_documents(run_file):
            handle.write(json.dumps([name, doc], allow_nan=False) + "\n")
    return Path(out)


def _json_numbers(values: np.ndarray) -> list[float | None]:
    """A column as JSON numbers: NaN (not measured) -> None."""
    values = np.asarray(values, dtype=np.float64)
    listed = values.tolist()
    if not np.isnan(values).any():
        return listed
    return [None if value != value else value for value in listed]

