"""What every simulated instrument shares: a clock, an open/closed state and an instrument time."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from echemd.drivers.base import Block, DriverError, PolledAcquisition
from echemd.drivers.simulated.clock import POLL_REAL_S, SimClock


class SimulatedInstrument:
    """Mixin for simulated drivers; ``output_on`` is the cell switch / output relay."""

    def __init__(self, name: str, driver: str, clock: SimClock) -> None:
        self.name = name
        self.driver = driver
        self.clock = clock
        self.output_on = False
        self._open = False
        self._time_s = 0.0  # instrument clock, s

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        self.safe_state()
        self._open = False

    def safe_state(self) -> None:
        self.output_on = False

    @property
    def time_s(self) -> float:
        """Instrument clock, s.  At a paced clock it runs on between acquisitions, as a real
        instrument's does, so a run's ``t0 + time_s`` is each sample's wall-clock time; at the "max"
        clock it moves only with the samples."""
        return self._time_s if self.clock.unlimited else max(self._time_s, self.clock.now_s())

    def describe(self) -> dict:
        return {**super().describe(), "clock": self.clock.speed}

    def _start_acquisition(self, output_on: bool = True) -> None:
        """Check the instrument is open, anchor the clock and switch the output on (or leave it off)."""
        if not self._open:
            raise DriverError(f"{self.name} is not open")
        self._time_s = self.time_s
        self.clock.anchor(self._time_s)
        self.output_on = output_on

    def _advance(self, times_s) -> None:
        """Wait (per the clock) until the last of ``times_s`` and move the instrument time there."""
        self.clock.wait_until(float(times_s[-1]))
        self._time_s = float(times_s[-1])


class PacedSamples(PolledAcquisition):
    """``total`` samples every ``sample_interval_s`` on a simulated instrument, paced by its clock.

    ``make_block(start, times_s)`` makes the block of samples ``start`` to ``start + len(times_s)``
    of the acquisition (``times_s``: their instrument times, s), in order.  The acquisition starts (the clock anchored, the output switched on unless
    ``output_on`` is False) at its first read or :meth:`due_at`.  Iterating waits for each block:
    one poll period (POLL_REAL_S) of real time, or everything acquired since the last block when
    the consumer fell behind (SimClock.block_size); :meth:`poll` hands out at once what the clock
    says has been acquired.  The blocks' sizes differ between the two, never the samples.
    """

    def __init__(self, instrument: SimulatedInstrument, total: int, sample_interval_s: float,
                 make_block: Callable[[int, np.ndarray], Block], output_on: bool = True) -> None:
        self.instrument = instrument
        self.clock = instrument.clock
        self.total = total
        self.sample_interval_s = sample_interval_s
        self.make_block = make_block
        self.output_on = output_on
        self.done = 0  # samples handed out
        self._started = self._closed = False

    def __next__(self) -> Block:
        self._start()
        if self._ended():
            raise StopIteration
        return self._hand_out(self._block_size())

    def poll(self) -> Block | None:
        self._start()
        if self._ended():
            raise StopIteration
        n = self._acquired()
        return self._hand_out(n) if n else None

    def due_at(self) -> float:
        self._start()
        if self.clock.unlimited or self._ended():
            return -math.inf
        return self.clock.real_time_of(self._due_s())

    def _block_size(self) -> int:
        """How many samples the next block waited for holds."""
        return self.clock.block_size(self.sample_interval_s, self.total - self.done, self.instrument._time_s)

    def _acquired(self) -> int:
        """How many samples the clock says were acquired since the last one handed out."""
        return self.clock.acquired(self.sample_interval_s, self.total - self.done, self.instrument._time_s)

    def _due_s(self) -> float:
        """The instrument time (s) by which a poll period of samples (at least one) will be there."""
        return self.instrument._time_s + max(POLL_REAL_S * float(self.clock.speed), self.sample_interval_s)

    def _times(self, n: int) -> np.ndarray:
        """The instrument times (s) of the next ``n`` samples."""
        return self.instrument._time_s + self.sample_interval_s * np.arange(1, n + 1, dtype=np.float64)

    def close(self) -> None:
        if self._started and not self._closed:
            self.instrument.output_on = False
        self._closed = True

    def _start(self) -> None:
        if not self._started and not self._closed:
            self.instrument._start_acquisition(self.output_on)
            self._started = True

    def _ended(self) -> bool:
        if self.done >= self.total and not self._closed:
            self.close()
        return self._closed

    def _hand_out(self, n: int) -> Block:
        """The next ``n`` samples, once the clock has reached the last of them (an error ends the acquisition)."""
        try:
            times = self._times(n)
            block = self.make_block(self.done, times)
            self.instrument._advance(times)
        except BaseException:
            self.close()
            raise
        self.done += n
        return block


class PacedPoints(PacedSamples):
    """Points that each take a time of their own on a simulated instrument (``durations_s``, s:
    an impedance reading takes a few periods of its frequency), paced by its clock.  Iterated, a
    block is one point, waited for; polled, the points completed by now (none while one is being
    measured: a run asked to stop meanwhile ends without waiting for it)."""

    def __init__(self, instrument: SimulatedInstrument, durations_s: np.ndarray, make_block: Callable[[int, np.ndarray], Block]) -> None:
        super().__init__(instrument, len(durations_s), float(np.min(durations_s)), make_block)
        self.durations_s = np.asarray(durations_s, dtype=np.float64)

    def _block_size(self) -> int:
        return 1

    def _acquired(self) -> int:
        if self.clock.unlimited:
            return 1
        return int(np.searchsorted(self._times(self.total - self.done), self.clock.now_s() + 1e-9, side="right"))

    def _due_s(self) -> float:
        return self.instrument._time_s + float(self.durations_s[self.done])

    def _times(self, n: int) -> np.ndarray:
        return self.instrument._time_s + np.cumsum(self.durations_s[self.done:self.done + n])
