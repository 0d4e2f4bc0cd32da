"""A simulated potentiostat (Gamry Interface 1010E class) holding a :class:`SymmetricCell`."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from echemd.config.models import SimulatedPotentiostatConfig
from echemd.drivers.base import Block, Potentiostat, PotentiostatCapabilities
from echemd.drivers.simulated.cell import SymmetricCell
from echemd.drivers.simulated.clock import SimClock
from echemd.drivers.simulated.instrument import SimulatedInstrument

#: Interface 1010E: +-1 A (top range), +-12 V compliance, 10 ms fastest sampling in chrono modes.
CAPABILITIES = PotentiostatCapabilities(
    modes=frozenset({"galvanostatic"}),
    max_current_A=1.0,
    max_voltage_V=12.0,
    min_sample_interval_s=0.01,
)


class SimulatedPotentiostat(SimulatedInstrument, Potentiostat):
    def __init__(self, config: SimulatedPotentiostatConfig, clock: SimClock | None = None) -> None:
        super().__init__(config.name, config.driver, clock or SimClock(config.clock))
        self.capabilities = CAPABILITIES
        self.cell = SymmetricCell(config.cell)

    def galvanostatic(self, current_A: float, duration_s: float, sample_interval_s: float) -> Iterator[Block]:
        self.check_galvanostatic(current_A, sample_interval_s)
        total = max(1, round(duration_s / sample_interval_s))
        self._start_acquisition()
        try:
            done = 0
            while done < total:
                n = self.clock.block_size(sample_interval_s, total - done)
                offsets = sample_interval_s * np.arange(1, n + 1, dtype=np.float64)
                compliance = self.capabilities.max_voltage_V
                voltage = np.clip(self.cell.galvanostatic(current_A, offsets), -compliance, compliance)
                times = self._time_s + offsets
                self._advance(times)
                done += n
                yield Block({"time_s": times, "current_A": np.full(n, float(current_A)), "voltage_V": voltage})
        finally:
            self.output_on = False
