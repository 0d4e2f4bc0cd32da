import json
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest

from echemd.daemon.runfile import MAX_PENDING_SAMPLES, RunFile, RunFileSettings, recover, rewrite_run_file
from echemd.daemon.runfile_reader import read_attrs, read_blocks

COLUMNS = {"time_s": "s", "current_A": "A", "voltage_V": "V"}


def new_runfile(path, flush_interval_s=0.0):
    return RunFile(path, run_id="r1", protocol="ccd", parameters={"area_cm2": 0.03}, instrument="p",
                   columns=COLUMNS, version="9.9", settings=RunFileSettings(flush_interval_s))


def block(start, n):
    t = np.arange(start, start + n, dtype=float)
    return {"time_s": t, "current_A": np.full(n, -1e-5), "voltage_V": -0.1 - 1e-4 * t}


def test_layout_attributes_and_units(tmp_path):
    path = tmp_path / "r1.h5"
    runfile = new_runfile(path)
    runfile.append(block(0, 5))
    runfile.add_event(4.0, "short", "dropped 2.3 mV")
    runfile.close("completed", {"ccd_mA_cm2": 1.5, "short_detected_at_s": None, "currents": [1, 2]})
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "completed" and f.attrs["protocol"] == "ccd" and f.attrs["instrument"] == "p"
        assert json.loads(f.attrs["parameters"]) == {"area_cm2": 0.03}
        assert f.attrs["echemd_version"] == "9.9" and f.attrs["finished"] > f.attrs["started"]
        assert {name: f["data"][name].attrs["units"] for name in f["data"]} == COLUMNS
        np.testing.assert_array_equal(f["data/time_s"][:], np.arange(5.0))
        assert f["events/kind"][0] == b"short" and f["events/message"][0] == b"dropped 2.3 mV" and f["events/time_s"][0] == 4.0
        assert f["result"].attrs["ccd_mA_cm2"] == 1.5 and "short_detected_at_s" not in f["result"].attrs
        np.testing.assert_array_equal(f["result/currents"][:], [1.0, 2.0])
    assert read_attrs(path)["result"]["short_detected_at_s"] is None


def test_a_run_file_is_never_overwritten(tmp_path):
    new_runfile(tmp_path / "r1.h5").close("completed")
    with pytest.raises(FileExistsError):
        new_runfile(tmp_path / "r1.h5")


def grown_to(dataset, n, timeout_s=5.0):
    """Refresh an SWMR reader's dataset until it holds n items (the writer thread writes within ms)."""
    deadline = time.monotonic() + timeout_s
    while dataset.shape != (n,) and time.monotonic() < deadline:
        time.sleep(0.005)
        dataset.refresh()
    return dataset.shape == (n,)


def test_an_swmr_reader_follows_the_run_while_it_is_written(tmp_path):
    path = tmp_path / "r1.h5"
    runfile = new_runfile(path, flush_interval_s=0.0)
    runfile.append(block(0, 100))
    with h5py.File(path, "r", libver="latest", swmr=True) as reader:
        voltage = reader["data/voltage_V"]
        assert reader.attrs["status"] == "running" and grown_to(voltage, 100)
        runfile.append(block(100, 50))
        assert grown_to(voltage, 150)
        np.testing.assert_array_equal(voltage[:], -0.1 - 1e-4 * np.arange(150.0))
    runfile.close("aborted")
    assert read_attrs(path)["status"] == "aborted"


def test_samples_a_fetch_wrote_are_still_flushed_in_time(tmp_path):
    """A fetch writes what waits (unflushed) to read it back: the writer must still flush it
    within the flush interval, though no block arrives after."""
    path = tmp_path / "r1.h5"
    runfile = new_runfile(path, flush_interval_s=0.2)
    runfile.append(block(0, 100))
    assert runfile.read_blocks(0, 1000)[1] == 1
    time.sleep(0.5)  # (the flush is due 0.1 s after the block)
    # read by another process (in this one HDF5 would share the writer's cache: it sees unflushed data)
    read = "import h5py, sys; print(h5py.File(sys.argv[1], 'r', libver='latest', swmr=True)['data/voltage_V'][:].tolist())"
    seen = subprocess.run([sys.executable, "-c", read, str(path)], capture_output=True, text=True, timeout=60, check=True).stdout
    assert json.loads(seen) == block(0, 100)["voltage_V"].tolist()
    runfile.close("completed")


@pytest.mark.parametrize("flush_interval_s", [0.0, 1.0], ids=["written-at-once", "batched"])
def test_blocks_are_rebuilt_as_streamed(tmp_path, flush_interval_s):
    path = tmp_path / "r1.h5"
    runfile = new_runfile(path, flush_interval_s)
    streamed = [runfile.append(block(start, n)) for start, n in ((0, 3), (3, 4), (7, 2))]
    assert [(b.seq, b.offset, len(b)) for b in streamed] == [(0, 0, 3), (1, 3, 4), (2, 7, 2)]
    live, count = runfile.read_blocks(1, max_samples=4)
    assert count == 3 and [b.seq for b in live] == [1]  # a second block would pass max_samples
    runfile.close("completed")
    with h5py.File(path, "r") as f:
        blocks, count = read_blocks(f, 0, max_samples=100)
    assert count == 3
    for got, sent in zip(blocks, streamed):
        assert (got.seq, got.offset, got.t0) == (sent.seq, sent.offset, sent.t0)
        for name in COLUMNS:
            np.testing.assert_array_equal(got.columns[name], sent.columns[name])
    assert runfile.read_blocks(2, 1)[0][0].offset == 7  # a closed run file is read from disk


def test_a_block_is_flushed_on_time_even_when_no_other_block_follows(tmp_path):
    """Blocks are queued; the writer thread writes and flushes them within ~0.75 flush interval."""
    path = tmp_path / "r1.h5"
    runfile = new_runfile(path, flush_interval_s=0.4)
    runfile.append(block(0, 10))  # the first block of a batch: kept in memory for now
    appended = time.monotonic()
    with h5py.File(path, "r", libver="latest", swmr=True) as reader:
        voltage = reader["data/voltage_V"]
        while voltage.shape != (10,) and time.monotonic() - appended < 5:
            time.sleep(0.01)
            voltage.refresh()
        waited = time.monotonic() - appended
        assert voltage.shape == (10,), "the pending block was never written"
        np.testing.assert_array_equal(voltage[:], -0.1 - 1e-4 * np.arange(10.0))
    assert waited < 0.4 + 0.2  # 0.75 x 0.4 s by design; 0.2 s slack for a loaded machine
    runfile.close("completed")
    assert read_attrs(path)["n_samples"] == 10


def test_a_worker_writes_itself_when_the_writer_falls_behind(tmp_path):
    runfile = new_runfile(tmp_path / "r1.h5", flush_interval_s=60.0)  # the writer thread waits 30 s
    runfile.append(block(0, 10))
    runfile.add_event(5.0, "step", "plate")
    assert runfile._data["time_s"].shape == (0,)  # queued
    runfile.append(block(10, MAX_PENDING_SAMPLES))  # backpressure: written by the caller, now
    assert runfile._data["time_s"].shape == (10 + MAX_PENDING_SAMPLES,) and runfile._index[:].tolist() == [0, 10]
    assert runfile._event_columns[1][:].tolist() == [b"step"]
    runfile.close("completed")


def test_long_event_messages_are_truncated_not_lost(tmp_path):
    runfile = new_runfile(tmp_path / "r1.h5")
    runfile.add_event(0.0, "error", "x" * 5000)
    runfile.close("failed", error="boom")
    with h5py.File(tmp_path / "r1.h5", "r") as f:
        assert len(f["events/message"][0]) == 1024 and f.attrs["error"] == "boom"


def test_a_closed_run_is_compressed_to_a_quarter_with_the_same_content(tmp_path):
    rng = np.random.default_rng(1)
    n = 50_000
    t = np.arange(1, n + 1) * 1e-3
    columns = {"time_s": t, "current_A": np.full(n, -1.57e-5), "voltage_V": -0.05 - 1e-3 * np.log1p(t) + rng.normal(0, 2e-4, n)}
    sizes = {}
    for compress in (False, True):
        path = tmp_path / f"r{compress:d}.h5"
        runfile = RunFile(path, run_id="r1", protocol="ccd", parameters={}, instrument="p", columns=COLUMNS, version="9.9",
                          settings=RunFileSettings(0.5, compress_on_close=compress))
        for start in range(0, n, 250):
            runfile.append({name: values[start : start + 250] for name, values in columns.items()})
        runfile.add_event(1.0, "step", "plate")
        runfile.close("completed", {"ccd_mA_cm2": 1.5})
        sizes[compress] = path.stat().st_size
        with h5py.File(path, "r") as f:
            assert (f["data/voltage_V"].compression == "gzip") is compress and f["data/voltage_V"].shuffle is compress
            for name, values in columns.items():
                np.testing.assert_array_equal(f["data"][name][:], values)
                assert f["data"][name].attrs["units"] == COLUMNS[name]
            assert f["stream/block_offset"][:].tolist() == list(range(0, n, 250)) and f["events/kind"][:].tolist() == [b"step"]
            assert f.attrs["status"] == "completed" and f["result"].attrs["ccd_mA_cm2"] == 1.5
    assert sizes[True] < 0.5 * sizes[False]  # noisy float64 data: ~3-4x smaller
    assert not list(tmp_path.glob("*.rewriting"))


def test_recovery_keeps_the_gap_free_prefix_and_can_compress(tmp_path):
    path = tmp_path / "r1.h5"
    runfile = new_runfile(path, flush_interval_s=0.0)
    runfile.append(block(0, 100))
    runfile.append(block(100, 50))
    runfile.flush_if_due()
    with runfile._lock:  # the daemon dies between two column writes: voltage is one block behind
        runfile._data["time_s"].resize((200,))
        runfile._data["current_A"].resize((200,))
        runfile._file.flush()
        runfile._file.close()  # no status, no result: as a killed writer leaves it
        runfile._file = None
    assert recover(path, compress=True) == 150
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "interrupted" and f["data/voltage_V"].compression == "gzip"
        assert [len(f["data"][c]) for c in COLUMNS] == [150, 150, 150] and f["stream/block_offset"][:].tolist() == [0, 100]
        np.testing.assert_array_equal(f["data/time_s"][:], np.arange(150.0))
    rewrite_run_file(path, compress=True)  # compressing again changes nothing
    assert read_attrs(path)["n_samples"] == 150


def test_a_block_is_queued_while_the_writer_is_writing_the_same_file(tmp_path, monkeypatch):
    """The run's worker never waits for an HDF5 call on its file: in the daemon it processes its
    block in turn with every other channel, which would all wait behind the writer."""
    runfile = new_runfile(tmp_path / "r1.h5", flush_interval_s=0.0)
    writing, release = threading.Event(), threading.Event()
    original = runfile._write_batch

    def slow_disk(batch):
        writing.set()
        release.wait(10)
        original(batch)

    monkeypatch.setattr(runfile, "_write_batch", slow_disk)
    runfile.append(block(0, 100))
    # what the writer thread does, in a thread of the test's own (the process's writer thread serves
    # every run file the suite's process left open: under load it was once not there within 5 s)
    threading.Thread(target=runfile.flush_if_due, daemon=True).start()
    assert writing.wait(5)  # a write is inside HDF5
    queued = threading.Event()
    worker = threading.Thread(target=lambda: (runfile.append(block(100, 50)), runfile.add_event(0.1, "step", "next"), queued.set()))
    worker.start()
    try:
        assert queued.wait(2), "the block waited for the writer"
    finally:
        release.set()
        worker.join(10)
    runfile.close("completed")
    with h5py.File(tmp_path / "r1.h5", "r") as f:
        np.testing.assert_array_equal(f["data/time_s"][:], np.arange(150.0))
        np.testing.assert_array_equal(f["stream/block_offset"][:], [0, 100])
        assert [bytes(kind) for kind in f["events/kind"][:]] == [b"step"]


def test_fetches_while_the_worker_appends_and_the_writer_writes_see_every_block_as_streamed(tmp_path):
    """Three threads on one run file, as in a running daemon: the run's worker appending small
    blocks, the writer thread writing all the time, and fetches from a client: every block a fetch
    returns is the block as streamed (its seq, offset and samples), and the file ends whole."""
    path = tmp_path / "r1.h5"
    runfile = new_runfile(path, flush_interval_s=0.0)
    sizes = np.random.default_rng(7).integers(1, 40, 1500)
    appended = threading.Event()
    problems: list[str] = []

    def fetch_all_the_time():
        try:
            fetch_until_appended()
        except Exception as exc:
            problems.append(repr(exc))

    def fetch_until_appended():
        rng = np.random.default_rng(8)
        while not appended.is_set():
            n_blocks = runfile.read_blocks(0, 1)[1]
            if not n_blocks:
                continue
            blocks, count = runfile.read_blocks(int(rng.integers(0, n_blocks)), int(rng.integers(1, 500)))
            for b in blocks:
                expected = block(b.offset, len(b))
                if b.seq >= count or not np.array_equal(b.columns["time_s"], expected["time_s"]) \
                        or not np.array_equal(b.columns["voltage_V"], expected["voltage_V"]):
                    problems.append(f"block {b.seq} at {b.offset} ({len(b)} samples) of {count}")

    fetcher = threading.Thread(target=fetch_all_the_time)
    fetcher.start()
    try:
        start = 0
        for k, n in enumerate(sizes):
            streamed = runfile.append(block(start, int(n)))
            assert (streamed.seq, streamed.offset) == (k, start)
            start += int(n)
    finally:
        appended.set()
        fetcher.join(30)
    runfile.close("completed")
    assert not problems, problems[:5]
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["data/time_s"][:], np.arange(float(sizes.sum())))
        np.testing.assert_array_equal(f["stream/block_offset"][:], np.concatenate([[0], np.cumsum(sizes)[:-1]]))


def test_a_failed_write_fails_the_next_block_and_the_file_says_why(tmp_path, monkeypatch):
    path = tmp_path / "r1.h5"
    runfile = new_runfile(path, flush_interval_s=0.0)
    runfile.append(block(0, 100))
    assert runfile.read_blocks(0, 1000)[1] == 1  # written

    def disk_full(batch):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runfile, "_write_batch", disk_full)
    with pytest.raises(OSError, match="No space left on device"):  # the writer thread meets the full disk
        for start in range(100, 100_000, 50):  # within ms: a block soon after fails
            runfile.append(block(start, 50))
            time.sleep(0.01)
    with pytest.raises(OSError, match="No space left on device"):  # and every later one
        runfile.add_event(1.0, "step", "next")
    with pytest.raises(OSError, match="writing the run file failed"):
        runfile.close("completed")
    attrs = read_attrs(path)
    assert attrs["status"] == "failed" and "No space left" in attrs["error"] and attrs["n_samples"] == 100
