"""A process's acquisition loop: one thread that reads every polled acquisition of the process in turn.

An instrument's run has a thread of its own (its runner), which drives the protocol's plan.  While
a step acquires, that thread would wake for every block (a 1 kHz channel in 10 ms blocks: 100
times a second) and dozens of channels' threads would take turns on the one interpreter: most
of a host's CPU went to waking threads, not to the blocks (benchmarks/cpu_per_block.py).  An
acquisition that can be read without waiting (drivers.base.PolledAcquisition: a buffer polled,
as a driver polls an instrument's buffer) is handed to the loop instead: the runner's thread
waits once for the whole acquisition, and the loop's thread reads each such acquisition when it
is due, every due one in the same pass, and hands each block to the runner's ``take`` (which
records it, checks the limits and the stop conditions) on the loop's thread.

Acquisitions due within COALESCE_S of each other are read in one pass: the channels of a process
fall into step and the loop wakes about once per poll period, whatever their number.  Every other
acquisition (one whose reads block, such as a 2400's ``:READ?`` or a COM call) stays on its
runner's thread: the loop never calls anything that waits on an instrument.

The loop also owns the process's block turn (:attr:`turn`): whoever processes a block, the loop
or a runner's thread, holds it, so that blocks are processed one at a time in the order their
threads asked.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from echemd.drivers.base import Block, PolledAcquisition

#: Acquisitions due within this much of the earliest one are read in the same pass, s: half the
#: 10 ms period drivers poll their instruments' buffers at.
COALESCE_S = 0.005
#: Told each block; returns False to end the acquisition (a stop, a pause), or raises to end it with that error.
Take = Callable[[Block], bool]


@dataclass(eq=False)
class _Job:
    acquisition: PolledAcquisition
    take: Take
    due_s: float = -math.inf
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)


class AcquisitionLoop:
    """The process's acquisition loop (see the module docstring).  Thread-safe; its thread starts
    with the first acquisition and ends at :meth:`close`."""

    def __init__(self, name: str = "echemd-acquisition") -> None:
        self.turn = threading.Lock()
        self._name = name
        self._wakeup = threading.Condition()
        self._arrived: list[_Job] = []
        self._closed = False
        self._thread: threading.Thread | None = None

    def drive(self, acquisition: PolledAcquisition, take: Take) -> None:
        """Read ``acquisition`` on the loop, handing each block to ``take``, until its samples run
        out or ``take`` returns False; waits until then.  Raises what ``take`` or a read raised
        (here, on the caller's thread).  Closing the acquisition is the caller's business."""
        job = _Job(acquisition, take)
        with self._wakeup:
            if self._closed:
                raise RuntimeError("the acquisition loop is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._arrived.append(job)
            self._wakeup.notify()
        job.finished.wait()
        if job.error is not None:
            raise job.error

    def close(self) -> None:
        """Stop the loop's thread (after the acquisitions it is reading end: their runs are stopped first)."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        jobs: list[_Job] = []
        while True:
            with self._wakeup:
                jobs.extend(self._arrived)  # (each is read at once: its first read starts it)
                self._arrived.clear()
                if self._closed and not jobs:
                    return
                wait_s = min((job.due_s for job in jobs), default=math.inf) - time.monotonic()
                if wait_s > 0:
                    self._wakeup.wait(None if wait_s == math.inf else wait_s)
                    continue
            due_by = time.monotonic() + COALESCE_S
            for job in jobs:
                if job.due_s <= due_by:
                    self._read(job)
            jobs = [job for job in jobs if not job.finished.is_set()]

    def _read(self, job: _Job) -> None:
        """Read ``job``'s acquisition once: hand what it holds to ``take``; finish the job when it ends."""
        try:
            block = job.acquisition.poll()
            go_on = block is None or job.take(block)
            job.due_s = job.acquisition.due_at()
        except StopIteration:
            go_on = False
        except BaseException as exc:  # the runner's thread raises it (a limit, an abort, the instrument's error)
            job.error, go_on = exc, False
        if not go_on:
            job.finished.set()
