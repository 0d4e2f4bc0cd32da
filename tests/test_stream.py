import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from echemd.daemon.stream import DataBlock, Notice, decode, encode_data, encode_heartbeat, encode_notice


def test_data_block_round_trip_is_exact_and_raw_little_endian():
    columns = {"time_s": np.array([1.0, 2.0]), "voltage_V": np.array([-0.1234567890123, 1e-300])}
    frames = encode_data(DataBlock("r1", 4, 10, 1700000000.5, columns, {"time_s": "s", "voltage_V": "V"}))
    assert frames[0] == b"run.r1.data"
    header = json.loads(frames[1])
    assert header == {"run_id": "r1", "seq": 4, "offset": 10, "t0": 1700000000.5, "columns": ["time_s", "voltage_V"],
                      "units": ["s", "V"], "dtype": "<f8", "n": 2}
    assert frames[2] == np.array([1.0, 2.0, -0.1234567890123, 1e-300], dtype="<f8").tobytes()
    block = decode(frames)
    assert (block.seq, block.offset, block.units["voltage_V"]) == (4, 10, "V")
    np.testing.assert_array_equal(block.columns["voltage_V"], columns["voltage_V"])


def test_notices_and_heartbeat():
    event = decode(encode_notice("r1", "event", {"seq": 0, "kind": "short", "message": "m"}))
    assert event == Notice("event", {"run_id": "r1", "seq": 0, "kind": "short", "message": "m"})
    assert decode(encode_heartbeat({"time": 1.0})).kind == "heartbeat"


def test_malformed_messages_raise():
    frames = encode_data(DataBlock("r1", 0, 0, 0.0, {"time_s": np.arange(3.0)}))
    with pytest.raises(ValueError, match="payload holds 2 values"):
        decode([frames[0], frames[1], frames[2][:16]])
    with pytest.raises(ValueError, match="3 frames"):
        decode(frames[:2])


def test_publisher_forwards_every_threads_messages_in_order_and_drains_on_close():
    import threading

    import zmq

    from echemd.daemon.client import Subscription
    from echemd.daemon.publisher import Publisher

    context = zmq.Context()
    publisher = Publisher.bound(context, "tcp://127.0.0.1:*")
    columns = {"time_s": np.arange(20_000.0), "voltage_V": np.ones(20_000)}  # 320 kB blocks keep the proxy busy
    with Subscription(context, publisher.endpoint, b"run.") as subscription:
        subscription.wait_connected()

        def send(run_id):
            for seq in range(25):
                publisher.data(DataBlock(run_id, seq, 20_000 * seq, 0.0, columns))

        threads = [threading.Thread(target=send, args=(f"r{k}",)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        publisher.close()  # right after the last send: what was sent still goes out
        publisher.close()  # and a second close is harmless
        received = {}
        while (message := subscription.receive(1.0)) is not None:
            if isinstance(message, DataBlock):
                received.setdefault(message.run_id, []).append(message.seq)
    context.term()
    assert received == {f"r{k}": list(range(25)) for k in range(4)}


def test_a_client_script_loads_neither_hdf5_nor_pydantic_nor_the_protocols():
    """A lab's client (submit, subscribe, fetch) needs pyzmq and numpy only (not even the daemon's ZAP thread and its asyncio)."""
    import subprocess
    import sys

    code = ("import sys, echemd.daemon.client; "
            "print(sorted(m for m in ('h5py', 'pydantic', 'scipy', 'echemd.protocols', 'echemd.config', 'zmq.auth.thread') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"



def test_a_runs_messages_keep_their_order_whichever_of_its_threads_sends_them():
    """A run's blocks are sent by the acquisition loop's thread, its start and end by its runner's
    thread, which waits for the loop in between: the end must be read after the last block.  A
    run's lane keeps that order (with a socket per thread, as before lanes, "ended" was read
    first: ZeroMQ orders each socket's messages, not two sockets')."""
    import queue
    import threading

    import zmq

    from echemd.daemon.outbox import Outbox

    context = zmq.Context()
    outbox = Outbox(context, "test")
    tasks = queue.SimpleQueue()

    def loop():  # a thread that lives on, as the acquisition loop does
        while (task := tasks.get()) is not None:
            task[0]()
            task[1].set()

    def on_loop(task):
        done = threading.Event()
        tasks.put((task, done))
        done.wait()

    threading.Thread(target=loop, daemon=True).start()
    outbox.send([b"started"], lane="r0")
    on_loop(lambda: outbox.send([b"block 0"], lane="r0"))
    assert [outbox.pull.recv(), outbox.pull.recv()] == [b"started", b"block 0"]
    on_loop(lambda: [outbox.send([b"block %d" % k], lane="r0") for k in range(1, 100)])
    outbox.send([b"ended"], lane="r0")
    received = []
    while outbox.pull.poll(1000):
        received.append(outbox.pull.recv())
    tasks.put(None)
    outbox.close()
    context.term()
    assert received == [b"block %d" % k for k in range(1, 100)] + [b"ended"]


def test_a_subscription_to_several_runs_gets_theirs_and_no_other():
    import zmq

    from echemd.daemon.client import Subscription
    from echemd.daemon.publisher import Publisher
    from echemd.daemon.stream import run_topic

    context = zmq.Context()
    publisher = Publisher.bound(context, "tcp://127.0.0.1:*")
    try:
        with Subscription(context, publisher.endpoint, [run_topic("r1", "data"), run_topic("r3")]) as subscription:
            subscription.wait_connected()
            for seq in range(3):
                for run_id in ("r1", "r2", "r3", "r10"):
                    publisher.data(DataBlock(run_id, seq, 10 * seq, 0.0, {"time_s": np.arange(10.0)}))
                    publisher.notice(run_id, "event", {"seq": seq, "kind": "step"})
            received = {}
            while (message := subscription.receive(0.5)) is not None:
                if isinstance(message, DataBlock):
                    received.setdefault(message.run_id, []).append(message.seq)
                elif message.kind != "heartbeat":
                    received.setdefault(message.header["run_id"], []).append(message.kind)
    finally:
        publisher.close()
        context.destroy(linger=0)
    # r1: its data only (not its events, nor r10's: "run.r1.data" is no prefix of r10's topics); r3: everything, in order
    assert received == {"r1": [0, 1, 2], "r3": [0, "event", 1, "event", 2, "event"]}


@given(st.lists(st.integers(0, 40), min_size=1, max_size=12), st.integers(0, 10_000))
def test_packed_blocks_come_back_as_they_were_for_any_partition(sizes, first_offset):
    """Whatever the blocks' sizes (empty ones too) and where they start in the run, the blocks a
    client unpacks from packed columns are the slices of those columns, and packing copied nothing."""
    from echemd.daemon.stream import PackedBlocks

    rng = np.random.default_rng(len(sizes))
    offsets = first_offset + np.concatenate([[0], np.cumsum(sizes)])
    columns = {name: rng.normal(size=sum(sizes)) for name in ("time_s", "voltage_V", "current_A")}
    units = {"time_s": "s", "voltage_V": "V", "current_A": "A"}
    packed = PackedBlocks.of_columns("r1", 1.5e9, units, 7, offsets, columns)
    assert len(packed.frames) == 3 and all(frame is columns[name] for frame, name in zip(packed.frames, columns))
    wire = json.loads(json.dumps(packed.described))  # (as a client gets them)
    again = PackedBlocks("r1", wire, [frame.tobytes() for frame in packed.frames])
    assert [(b.seq, b.offset, b.t0, dict(b.units), len(b)) for b in again] == \
        [(7 + k, int(offsets[k]), 1.5e9, units, n) for k, n in enumerate(sizes)]
    for k, block in enumerate(again):
        start = int(offsets[k] - first_offset)
        assert list(block.columns) == list(columns)
        assert all(np.array_equal(block.columns[name], columns[name][start:start + sizes[k]]) for name in columns)
    assert again[-1].seq == 6 + len(sizes) and [b.seq for b in again[1:]] == [b.seq for b in list(again)[1:]]


def test_unpacking_reads_blocks_with_columns_of_their_own():
    """A later block may have other columns (an EIS step after a plating one): each column name
    has its frame, and a block names the frames it has values in."""
    from echemd.daemon.stream import PackedBlocks

    frames = [np.arange(5.0).tobytes(), np.ones(2).tobytes(), np.full(3, 7.0).tobytes()]
    described = [{"seq": 0, "offset": 0, "t0": 1.0, "units": {"time_s": "s", "voltage_V": "V"}, "n": 2, "columns": {"time_s": [0, 0], "voltage_V": [1, 0]}},
                 {"seq": 1, "offset": 2, "t0": 1.0, "units": {"time_s": "s", "frequency_Hz": "Hz"}, "n": 3, "columns": {"time_s": [0, 2], "frequency_Hz": [2, 0]}}]
    blocks = list(PackedBlocks("r1", described, frames))
    assert [b.columns["time_s"].tolist() for b in blocks] == [[0.0, 1.0], [2.0, 3.0, 4.0]]
    assert list(blocks[1].columns) == ["time_s", "frequency_Hz"] and blocks[1].columns["frequency_Hz"].tolist() == [7.0] * 3


def test_unpacking_reads_a_reply_with_a_frame_per_column_of_each_block_too():
    from echemd.daemon.stream import PackedBlocks

    frames = [np.arange(3.0).tobytes(), np.ones(3).tobytes(), np.arange(2.0).tobytes(), np.zeros(2).tobytes()]
    described = [{"seq": 0, "offset": 0, "t0": 1.0, "units": {"time_s": "s", "voltage_V": "V"}, "columns": {"time_s": 0, "voltage_V": 1}},
                 {"seq": 1, "offset": 3, "t0": 1.0, "units": {"time_s": "s", "voltage_V": "V"}, "columns": {"time_s": 2, "voltage_V": 3}}]
    blocks = list(PackedBlocks("r1", described, frames))
    assert [b.columns["time_s"].tolist() for b in blocks] == [[0.0, 1.0, 2.0], [0.0, 1.0]] and blocks[1].columns["voltage_V"].tolist() == [0.0, 0.0]
