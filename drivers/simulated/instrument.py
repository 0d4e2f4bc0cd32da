"""What every simulated instrument shares: a clock, an open/closed state and an instrument time."""

from __future__ import annotations

from echemd.drivers.base import DriverError
from echemd.drivers.simulated.clock import SimClock


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
