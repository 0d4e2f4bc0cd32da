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
from collections.abc import Mapping
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
