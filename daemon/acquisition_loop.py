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

Whoever reads a polled acquisition (the loop, or a runner's thread: :func:`read_on_this_thread`)
asks its run at least every CHECK_S whether it was interrupted (an abort, a pause), not only when
samples come: a step sampled once a minute stops within CHECK_S of its abort, not at its next
sample.  The samples acquired until then are read once more and handed over before it ends.

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
#: A read not due for longer asks its run this often whether it was interrupted, s.
CHECK_S = 0.1
#: Told each block; returns False to end the acquisition (a stop, a pause), or raises to end it with that error.
Take = Callable[[Block], bool]
#: True once the acquisition's run wants it to end (aborted, paused): it is read once more, then ends.
Interrupted = Callable[[], bool]


def never() -> bool:
    return False


@dataclass(eq=False)
class _Job:
    acquisition: PolledAcquisition
    take: Take
    interrupted: Interrupted = never
    due_s: float = -math.inf
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    def read(self, last: bool) -> None:
        """Read the acquisition once: hand what it holds to ``take``; finish the job when it ends
        (its samples ran out, ``take`` said so or raised, a read raised, or this is the ``last`` read)."""
        try:
            block = self.acquisition.poll()
            go_on = (block is None or self.take(block)) and not last
            self.due_s = self.acquisition.due_at()
        except StopIteration:
            go_on = False
        except BaseException as exc:  # the runner's thread raises it (a limit, an abort, the instrument's error)
            self.error, go_on = exc, False
        if not go_on:
            self.finished.set()


def read_on_this_thread(acquisition: PolledAcquisition, take: Take, interrupted: Interrupted = never,
                        wake: threading.Event | None = None) -> None:
    """Read ``acquisition`` as the loop would, on the caller's thread: when due, or when
    ``interrupted`` (asked at least every CHECK_S, and at once when ``wake`` is set).  Raises what
    ``take`` or a read raised.  Closing the acquisition is the caller's business."""
    job = _Job(acquisition, take, interrupted)
    wake = wake if wake is not None else threading.Event()
    while not job.finished.is_set():
        last = job.interrupted()
        wait_s = job.due_s - time.monotonic()
        if last or wait_s <= 0:
            job.read(last)
        else:
            wake.wait(min(wait_s, CHECK_S))
    if job.error is not None:
        raise job.error


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

    def drive(self, acquisition: PolledAcquisition, take: Take, interrupted: Interrupted = never) -> None:
        """Read ``acquisition`` on the loop, handing each block to ``take``, until its samples run
        out, ``take`` returns False or ``interrupted`` says so (asked at every pass, at least every
        CHECK_S); waits until then.  Raises what ``take`` or a read raised (here, on the caller's
        thread).  Closing the acquisition is the caller's business."""
        job = _Job(acquisition, take, interrupted)
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
                if wait_s > 0:  # (then a pass that reads the jobs now due or interrupted, if any)
                    self._wakeup.wait(None if wait_s == math.inf else min(wait_s, CHECK_S))
            due_by = time.monotonic() + COALESCE_S
            for job in jobs:
                last = job.interrupted()
                if last or job.due_s <= due_by:
                    job.read(last)
            jobs = [job for job in jobs if not job.finished.is_set()]
