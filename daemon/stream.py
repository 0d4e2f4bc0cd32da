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
from typing import Any

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


def pack_blocks(blocks: Sequence[DataBlock]) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Blocks as a fetch sends them with binary frames, packed: one frame per column name holding
    the values of every block that has it, one block after the other (little-endian float64); and
    a description of each block (``seq``, ``offset``, ``t0``, ``units``, ``n``, and ``columns``:
    name -> [frame index, index of the block's first value in that frame]).  A few frames instead
    of one per column of each block: ZeroMQ spends ~15 us on a frame, whatever its size."""
    frame_of: dict[str, int] = {}  # column name -> its frame
    pieces: list[list[np.ndarray]] = []  # each frame's values, block by block
    filled: list[int] = []  # values in each frame so far
    described = []
    for block in blocks:
        columns = {}
        for name, values in block.columns.items():
            frame = frame_of.setdefault(name, len(frame_of))
            if frame == len(pieces):
                pieces.append([])
                filled.append(0)
            columns[name] = [frame, filled[frame]]
            pieces[frame].append(values)
            filled[frame] += len(values)
        described.append({"seq": block.seq, "offset": block.offset, "t0": block.t0, "units": dict(block.units), "n": len(block), "columns": columns})
    return described, [np.ascontiguousarray(np.concatenate(frame), dtype=DTYPE) for frame in pieces]


def unpack_blocks(run_id: str, described: Sequence[Mapping[str, Any]], frames: Sequence[Any]) -> list[DataBlock]:
    """The blocks of a fetch's binary reply (``frames``: buffers, the first after the JSON one at
    index 0), packed (see :func:`pack_blocks`) or not (a column is then the index of a frame of its
    own); views of the frames, no copy."""
    arrays = [np.frombuffer(frame, dtype=DTYPE) for frame in frames]

    def column(where: int | Sequence[int], n: int) -> np.ndarray:
        if isinstance(where, int):
            return arrays[where]
        frame, start = where
        return arrays[frame][start:start + n]

    return [DataBlock(run_id, d["seq"], d["offset"], d["t0"], {name: column(where, d.get("n", 0)) for name, where in d["columns"].items()}, d["units"])
            for d in described]


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
