"""The data stream's wire format (ZeroMQ PUB), shared by the publisher and the client.

Every message is three frames ``[topic, header, payload]``:

- topic ``run.<run_id>.<kind>`` with kind ``data``, ``event`` or ``status``; ``daemon.heartbeat``;
- header: UTF-8 JSON with ``run_id``, ``seq`` (per run and kind, from 0, no gaps), ``t0`` (run start,
  Unix time, s), ``columns``, ``units``, ``dtype``, ``n`` and ``offset`` (index of the block's first
  sample in the run); event and status headers carry their fields instead of columns;
- payload: for data, the columns one after the other, each ``n`` little-endian float64 values
  (``numpy.frombuffer(payload, "<f8").reshape(len(columns), n)``); empty for the other kinds.

Nothing is ever pickled.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

DTYPE = "<f8"
HEARTBEAT_TOPIC = b"daemon.heartbeat"


def run_topic(run_id: str, kind: str = "") -> bytes:
    """Topic (or, with kind="", the subscription prefix of every topic) of a run."""
    return f"run.{run_id}.{kind}".encode()


@dataclass(frozen=True)
class DataBlock:
    """A block of a run's samples as streamed or fetched: columns (SI, float64) and where they sit."""

    run_id: str
    seq: int
    offset: int
    t0: float
    columns: Mapping[str, np.ndarray]
    units: Mapping[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


@dataclass(frozen=True)
class Notice:
    """An event or status message of a run (``kind`` is "event" or "status"), or a heartbeat."""

    kind: str
    header: Mapping[str, Any]


def encode_data(block: DataBlock) -> list[bytes]:
    names = tuple(block.columns)
    n = len(block)
    fixed = _fixed_header(block.run_id, block.t0, names, tuple(block.units.get(name, "") for name in names))
    header = b'{"seq": %d, "offset": %d, "n": %d, ' % (block.seq, block.offset, n) + fixed
    payload = b"".join(np.asarray(block.columns[name], dtype=DTYPE).tobytes() for name in names)
    return [run_topic(block.run_id, "data"), header, payload]


@functools.lru_cache(maxsize=1024)
def _fixed_header(run_id: str, t0: float, names: tuple[str, ...], units: tuple[str, ...]) -> bytes:
    """The part of a data header that stays the same for every block of a run (JSON, without its "{")."""
    return json.dumps({"run_id": run_id, "t0": t0, "columns": list(names), "units": list(units), "dtype": DTYPE}).encode()[1:]


def encode_notice(run_id: str, kind: str, header: Mapping[str, Any]) -> list[bytes]:
    return [run_topic(run_id, kind), json.dumps({"run_id": run_id, **header}).encode(), b""]


def encode_heartbeat(header: Mapping[str, Any]) -> list[bytes]:
    return [HEARTBEAT_TOPIC, json.dumps(header).encode(), b""]


class PackedBlocks(Sequence[DataBlock]):
    """Consecutive blocks of a run as a binary fetch sends them, packed: ``frames``, one array per
    column name holding the values of every block that has that column, one block after the other
    (little-endian float64), and ``described``, each block's ``seq``, ``offset``, ``t0``, ``units``,
    ``n`` and ``columns`` (name -> [frame index, index of the block's first value in that frame]).
    A sequence of its blocks: DataBlocks whose columns are views of the frames, made when asked for.

    A handful of frames instead of one per column of each block: ZeroMQ spends ~15 us on a frame,
    whatever its size.  The frames are sent as they are: packing copies nothing, and a fetch that
    reads a run's columns whole hands them on."""

    def __init__(self, run_id: str, described: Sequence[Mapping[str, Any]], frames: Sequence[Any]) -> None:
        """``frames``: arrays or buffers (as received: the first after a reply's JSON frame at index
        0).  ``described`` may also give a column as the index of a frame of its own (the reply of
        a daemon before packed replies)."""
        self.run_id = run_id
        self.described = described
        self.frames = [np.frombuffer(frame, dtype=DTYPE) if not isinstance(frame, np.ndarray) else frame for frame in frames]

    @classmethod
    def of_columns(cls, run_id: str, t0: float, units: Mapping[str, str], first_seq: int, offsets: Sequence[int],
                   columns: Mapping[str, np.ndarray]) -> "PackedBlocks":
        """Blocks ``first_seq`` on of a run of which ``columns`` hold the samples ``offsets[0]`` up to
        ``offsets[-1]``; block k holds ``offsets[k]`` up to ``offsets[k + 1]`` and every column (a run
        file's layout).  The columns become the frames (no copy when they are float64 already)."""
        names = list(columns)
        units = {name: units.get(name, "") for name in names}
        starts = [int(offset) for offset in offsets]
        described = [{"seq": first_seq + k, "offset": start, "t0": t0, "units": units, "n": stop - start,
                      "columns": {name: [frame, start - starts[0]] for frame, name in enumerate(names)}}
                     for k, (start, stop) in enumerate(zip(starts[:-1], starts[1:]))]
        return cls(run_id, described, [np.ascontiguousarray(columns[name], dtype=DTYPE) for name in names])

    def __len__(self) -> int:
        return len(self.described)

    @overload
    def __getitem__(self, index: int) -> DataBlock: ...

    @overload
    def __getitem__(self, index: slice) -> list[DataBlock]: ...

    def __getitem__(self, index: int | slice) -> DataBlock | list[DataBlock]:
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self)))]
        described = self.described[index]
        n = described.get("n", 0)

        def column(where: int | Sequence[int]) -> np.ndarray:
            if isinstance(where, int):
                return self.frames[where]
            frame, start = where
            return self.frames[frame][start:start + n]

        return DataBlock(self.run_id, described["seq"], described["offset"], described["t0"],
                         {name: column(where) for name, where in described["columns"].items()}, described["units"])


def decode(frames: list[bytes]) -> DataBlock | Notice:
    """Decode one stream message; raises ValueError on a malformed one."""
    if len(frames) != 3:
        raise ValueError(f"a stream message has 3 frames, got {len(frames)}")
    topic, raw_header, payload = frames
    header = json.loads(raw_header)
    if topic == HEARTBEAT_TOPIC:
        return Notice("heartbeat", header)
    kind = topic.decode().rsplit(".", 1)[-1]
    if kind != "data":
        return Notice(kind, header)
    if header.get("dtype") != DTYPE:
        raise ValueError(f"unsupported dtype {header.get('dtype')!r}")
    names, n = header["columns"], header["n"]
    values = np.frombuffer(payload, dtype=DTYPE)
    if values.size != len(names) * n:
        raise ValueError(f"payload holds {values.size} values, header says {len(names)} x {n}")
    values = values.reshape(len(names), n)
    return DataBlock(
        run_id=header["run_id"],
        seq=header["seq"],
        offset=header["offset"],
        t0=header["t0"],
        columns={name: values[i] for i, name in enumerate(names)},
        units=dict(zip(names, header["units"])),
    )
