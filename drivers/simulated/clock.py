"""The clock of a simulated instrument: real time, a speed factor, or as fast as possible."""

from __future__ import annotations

import math
import time

#: Real time between the blocks of an instrument whose consumer keeps up, s: as a driver polling a
#: real instrument's buffer every 10 ms.  It bounds how late a sample reaches the stream.
POLL_REAL_S = 0.01
#: Longest real time one block of samples may cover, s (a consumer that fell behind gets what was
#: acquired meanwhile, up to this).
MAX_BLOCK_REAL_S = 0.25
#: Most samples in one block.
MAX_BLOCK_SAMPLES = 2048
#: Longest simulated time one block may cover when the clock runs as fast as possible, s: a step
#: that a detector stops goes on at most this long in cell time after the sample that stopped it.
MAX_BLOCK_SIM_S = 60.0


class SimClock:
    """Maps simulated time (s) onto real time.

    ``speed`` is a factor (1.0 = real time, 3600 = one simulated hour per real second) or "max"
    (no waiting at all).  Call :meth:`anchor` when an acquisition starts, then :meth:`wait_until`
    before handing out the samples up to a simulated time.
    """

    def __init__(self, speed: float | str = "max") -> None:
        if speed != "max" and not (isinstance(speed, (int, float)) and speed > 0):
            raise ValueError(f"clock speed must be a positive factor or 'max', got {speed!r}")
        self.speed = speed
        self._sim0 = 0.0
        self._real0 = time.monotonic()

    @property
    def unlimited(self) -> bool:
        return self.speed == "max"

    def anchor(self, sim_time_s: float) -> None:
        self._sim0 = sim_time_s
        self._real0 = time.monotonic()

    def now_s(self) -> float:
        """Simulated time now, s (a paced clock only): the anchor plus the real time since, times the speed."""
        return self._sim0 + (time.monotonic() - self._real0) * float(self.speed)

    def block_size(self, sample_interval_s: float, remaining: int, from_time_s: float | None = None) -> int:
        """How many samples the next block should hold (at least 1, at most ``remaining``).

        At the "max" clock a block covers MAX_BLOCK_SIM_S of cell time.  At a paced clock it covers
        POLL_REAL_S of real time; when the consumer has fallen behind (``from_time_s``, the time of the
        last sample handed out, s, lags the clock), it holds every sample acquired since, up to
        MAX_BLOCK_REAL_S: larger blocks then cost less per sample, so a busy daemon catches up.
        """
        if self.unlimited:
            return self.max_block_size(sample_interval_s, remaining)
        speed = float(self.speed)
        block_sim_s = POLL_REAL_S * speed
        if from_time_s is not None:
            block_sim_s = min(max(block_sim_s, self.now_s() - from_time_s), MAX_BLOCK_REAL_S * speed)
        return _samples(block_sim_s, sample_interval_s, remaining)

    def acquired(self, sample_interval_s: float, remaining: int, from_time_s: float) -> int:
        """How many samples have been acquired since ``from_time_s`` (s, the last one handed out):
        what a read of the instrument's buffer gets now (0 to ``remaining``, at most a largest block).
        At the "max" clock: a largest block."""
        if self.unlimited:
            return self.max_block_size(sample_interval_s, remaining)
        acquired = math.floor((self.now_s() - from_time_s) / sample_interval_s + 1e-9)
        return max(0, min(acquired, self.max_block_size(sample_interval_s, remaining)))

    def real_time_of(self, sim_time_s: float) -> float:
        """The ``time.monotonic()`` (s) at which the clock reaches ``sim_time_s`` (-inf at the "max" clock: it is always there)."""
        if self.unlimited:
            return -math.inf
        return self._real0 + (sim_time_s - self._sim0) / float(self.speed)

    def max_block_size(self, sample_interval_s: float, remaining: int) -> int:
        """The most samples one block may hold (MAX_BLOCK_SIM_S at the "max" clock, else MAX_BLOCK_REAL_S)."""
        block_sim_s = MAX_BLOCK_SIM_S if self.unlimited else MAX_BLOCK_REAL_S * float(self.speed)
        return _samples(block_sim_s, sample_interval_s, remaining)

    def wait_until(self, sim_time_s: float) -> None:
        delay = self.real_time_of(sim_time_s) - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _samples(block_sim_s: float, sample_interval_s: float, remaining: int) -> int:
    """Samples in ``block_sim_s`` of cell time: at least 1, at most ``remaining`` and MAX_BLOCK_SAMPLES."""
    return max(1, min(remaining, math.floor(block_sim_s / sample_interval_s + 1e-9), MAX_BLOCK_SAMPLES))
