"""Kill a run file's writer at every moment of its life, and check what a restarted daemon finds.

Each scenario is one life of a run file, run in a forked child:

- ``run``: create the file, append blocks (flushed), an event, close it (final status, result),
  optionally compressing it;
- ``recovery``: the daemon's start-up on a folder holding a killed writer's file (recovery to
  ``interrupted``, optionally compressing it).

The child carries a counter through every call that changes a file on disk (h5py opens, closes,
flushes, creations, writes, resizes, attribute writes and copies; the run writer's low-level
appends; ``os.replace``; ``os.fsync``) and kills itself (``os._exit``: no clean-up runs, like SIGKILL) just before or just after the
K-th one.  For every K the parent then checks:

1. right after the kill, every ``<run_id>.h5`` in the folder opens (SWMR mode) with its columns;
2. after the daemon's start-up recovery, every run file opens in plain read mode with a final
   status, no partial or pending file is left, and its samples are the first n written (all of
   them, with the result, once the child had closed the file);
3. the folder's submission record accounts for a run whose file the kill prevented.

``--sample N`` checks N kill points drawn with ``--seed`` (the test suite's sample); without it,
every point of every scenario (a few hundred kills).  POSIX only (fork).  Prints one line per
scenario and exits 1 listing the failures.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

from echemd.daemon import runfile
from echemd.daemon.runfile import RunFile, RunFileSettings
from echemd.daemon.runfile_reader import read_attrs
from echemd.daemon.recovery import recover_interrupted
from echemd.daemon.submissions import Submissions

COLUMNS = {"time_s": "s", "current_A": "A", "voltage_V": "V"}
BLOCKS, BLOCK = 3, 40
FINAL = {"completed", "aborted", "failed", "interrupted"}

#: (owner, name) of every call that changes a file on disk.
CALLS = [
    (os, "replace"), (os, "fsync"),
    (h5py.h5f, "open"), (h5py.h5f, "create"),
    (h5py.File, "flush"), (h5py.File, "close"),
    (h5py.Group, "create_group"), (h5py.Group, "create_dataset"), (h5py.Group, "copy"),
    (h5py.Dataset, "resize"), (h5py.Dataset, "__setitem__"),
    (h5py.AttributeManager, "__setitem__"),
    (runfile, "grow_to"), (runfile, "write_at"),  # (the writer's low-level appends)
]


def arm(kill_at: int) -> None:
    """In the child: count file-changing calls; die before (odd) or after (even) call kill_at // 2."""
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        if count == kill_at:
            os._exit(9)

    for owner, name in CALLS:
        original = getattr(owner, name)

        def wrapper(*args, __original=original, **kwargs):
            tick()
            result = __original(*args, **kwargs)
            tick()
            return result

        setattr(owner, name, wrapper)


def block(start: int) -> dict[str, np.ndarray]:
    t = np.arange(start, start + BLOCK, dtype=float)
    return {"time_s": t, "current_A": np.full(BLOCK, -1e-5), "voltage_V": -0.1 - 1e-4 * t}


def progress(folder: Path, step: str) -> None:
    with open(folder / "progress", "a") as f:
        f.write(step + "\n")


def life(folder: Path, compress: bool) -> None:
    """One run, start to end, as the daemon's worker drives its file."""
    submissions = Submissions(folder)
    submissions.add(run_id="r1", protocol="ccd", instrument="p", parameters={}, submitted="2026-12-02T00:00:00")
    progress(folder, "submitted")
    runfile = RunFile(folder / "r1.h5", run_id="r1", protocol="ccd", parameters={"area_cm2": 0.03}, instrument="p",
                      columns=COLUMNS, version="9.9", settings=RunFileSettings(3600.0, compress_on_close=compress, reserve_bytes=0))
    progress(folder, "created")
    for i in range(BLOCKS):
        runfile.append(block(i * BLOCK))
        with runfile._io_lock:
            runfile._write(flush=True)  # as the writer thread does, at a known moment
    runfile.add_event(1.0, "step", "plate")
    runfile.close("completed", {"ccd_mA_cm2": 1.5, "cycles": [1, 2]})
    progress(folder, "closed")
    submissions.ended("r1", "completed", "", "2026-12-02T00:01:00", in_file=True)


def killed_writer(folder: Path) -> None:
    """A folder as a killed daemon leaves it: a run file open for writing, mid-run."""
    pid = os.fork()
    if pid == 0:
        try:
            submissions = Submissions(folder)
            submissions.add(run_id="r1", protocol="ccd", instrument="p", parameters={}, submitted="2026-12-02T00:00:00")
            runfile = RunFile(folder / "r1.h5", run_id="r1", protocol="ccd", parameters={}, instrument="p",
                              columns=COLUMNS, version="9.9", settings=RunFileSettings(3600.0, reserve_bytes=0))
            for i in range(BLOCKS):
                runfile.append(block(i * BLOCK))
                with runfile._io_lock:
                    runfile._write(flush=True)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def startup(folder: Path, compress: bool) -> None:
    recover_interrupted(folder, Submissions(folder), RunFileSettings(compress_on_close=compress))
    progress(folder, "recovered")


SCENARIOS = {
    "run": lambda folder: life(folder, compress=False),
    "run+compress": lambda folder: life(folder, compress=True),
    "recovery": lambda folder: startup(folder, compress=False),
    "recovery+compress": lambda folder: startup(folder, compress=True),
}


def prepare(name: str, folder: Path) -> None:
    if name.startswith("recovery"):
        killed_writer(folder)


def run_child(name: str, folder: Path, kill_at: int) -> bool:
    """Run the scenario with a kill at point kill_at; True when the child died there."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            arm(kill_at)
            SCENARIOS[name](folder)
        except BaseException:  # pragma: no cover - reported by the parent as a failure
            import traceback
            traceback.print_exc()
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 3:
        raise AssertionError("the scenario raised (see above)")
    return code == 9


def check(folder: Path) -> None:
    """The checks 1-3 of the module's docstring; raises AssertionError naming what is wrong."""
    steps = (folder / "progress").read_text().split() if (folder / "progress").exists() else []
    path = folder / "r1.h5"
    for run_file in folder.glob("*.h5"):  # 1. readable right after the kill
        attrs = read_attrs(run_file)
        assert attrs["n_samples"] >= 0
    if "created" in steps:
        assert path.exists(), "the run file vanished after its creation"
    recover_interrupted(folder, Submissions(folder))  # 2. the next daemon's start-up
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith((".creating", ".rewriting", ".ready"))]
    assert not leftovers, f"left behind: {leftovers}"
    submissions = {record.run_id: record for record in Submissions(folder).records()}
    if not path.exists():  # 3. killed before the file took its name: the submission record accounts for the run
        assert "created" not in steps
        assert "submitted" not in steps or submissions["r1"].status == "queued"
        return
    assert "r1" not in submissions, "a run with a complete file keeps a submission record"
    with h5py.File(path, "r") as f:
        status = str(f.attrs["status"])
        assert status in FINAL, status
        t = f["data/time_s"][:]
        assert all(len(f["data"][c]) == len(t) for c in COLUMNS)
        np.testing.assert_array_equal(t, np.arange(len(t), dtype=float))
        if "closed" in steps:
            assert status == "completed" and len(t) == BLOCKS * BLOCK and f["result"].attrs["ccd_mA_cm2"] == 1.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, help="check this many kill points in all (default: every one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # recovery's warnings are expected here
    rng = random.Random(args.seed)
    failures: list[str] = []
    points: dict[str, list[int]] = {name: [] for name in SCENARIOS}
    with tempfile.TemporaryDirectory() as scratch:
        counts = {name: count_points(name, Path(scratch) / "count") for name in SCENARIOS}
        everything = [(name, k) for name in SCENARIOS for k in range(1, counts[name] + 1)]
        chosen = everything if args.sample is None else rng.sample(everything, min(args.sample, len(everything)))
        for name, k in chosen:
            folder = Path(scratch) / f"{name}-{k}"
            folder.mkdir()
            prepare(name, folder)
            died = run_child(name, folder, k)
            try:
                assert died, "the scenario ended before the kill point"
                check(folder)
            except Exception as exc:
                failures.append(f"{name} killed at point {k}: {type(exc).__name__}: {exc}")
            shutil.rmtree(folder, ignore_errors=True)
            points[name].append(k)
    for name in SCENARIOS:
        print(f"{name}: {counts[name]} kill points, {len(points[name])} checked, "
              f"{sum(f.startswith(name + ' ') for f in failures)} failed")
    for failure in failures:
        print("FAIL", failure)
    return 1 if failures else 0


def count_points(name: str, folder: Path) -> int:
    """The number of kill points of a scenario: its file-changing calls, before and after each."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    prepare(name, folder)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        count = 0

        def counted(original):
            def wrapper(*args, **kwargs):
                nonlocal count
                count += 1
                result = original(*args, **kwargs)
                count += 1
                return result
            return wrapper

        for owner, attr in CALLS:
            setattr(owner, attr, counted(getattr(owner, attr)))
        SCENARIOS[name](folder)
        os.write(write, str(count).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        return int(pipe.read())


if __name__ == "__main__":
    sys.exit(main())
