"""A simulated potentiostat (Gamry Interface 1010E class) holding a :class:`SymmetricCell`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from echemd.config.models import SimulatedPotentiostatConfig
from echemd.drivers.base import DEFAULT_IMPEDANCE_GUESS_OHM, Block, Potentiostat, PotentiostatCapabilities
from echemd.drivers.simulated.cell import SymmetricCell
from echemd.drivers.simulated.clock import SimClock
from echemd.drivers.simulated.instrument import PacedPoints, PacedSamples, SimulatedInstrument

#: Interface 1010E: +-1 A (top range), +-12 V compliance, 10 us time base, EIS 10 uHz - 2 MHz.
CAPABILITIES = PotentiostatCapabilities(
    modes=frozenset({"galvanostatic", "potentiostatic", "open_circuit", "eis"}),
    max_current_A=1.0,
    max_voltage_V=12.0,
    min_sample_interval_s=1e-5,
    eis_min_frequency_Hz=1e-5,
    eis_max_frequency_Hz=2e6,
)
#: Cell time one impedance reading takes: this many periods of the frequency, at least EIS_MIN_S.
EIS_PERIODS, EIS_MIN_S = 2.0, 0.2


class SimulatedPotentiostat(SimulatedInstrument, Potentiostat):
    def __init__(self, config: SimulatedPotentiostatConfig, clock: SimClock | None = None) -> None:
        super().__init__(config.name, config.driver, clock or SimClock(config.clock))
        self.capabilities = CAPABILITIES
        self.cell = SymmetricCell(config.cell)
        self.electrodes = 3 if config.cell.reference_electrode else 2

    def galvanostatic(self, current_A: float, duration_s: float, sample_interval_s: float) -> Iterator[Block]:
        self.check_galvanostatic(current_A, sample_interval_s)

        def sample(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            compliance = self.capabilities.max_voltage_V
            voltage = np.clip(self.cell.galvanostatic(current_A, offsets), -compliance, compliance)
            return np.full(len(offsets), float(current_A)), voltage

        return self._chrono(sample, duration_s, sample_interval_s)

    def potentiostatic(self, voltage_V: float, duration_s: float, sample_interval_s: float) -> Iterator[Block]:
        self.check_potentiostatic(voltage_V, sample_interval_s)

        def sample(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            limit = self.capabilities.max_current_A
            current = np.clip(self.cell.potentiostatic(voltage_V, offsets), -limit, limit)
            return current, np.full(len(offsets), float(voltage_V))

        return self._chrono(sample, duration_s, sample_interval_s)

    def open_circuit(self, duration_s: float, sample_interval_s: float) -> Iterator[Block]:
        self.check_mode("open_circuit")
        self.check_sample_interval(sample_interval_s)
        return self._chrono(lambda offsets: (np.zeros(len(offsets)), self.cell.galvanostatic(0.0, offsets)), duration_s, sample_interval_s, cell_on=False)

    def eis(self, frequencies_Hz: np.ndarray, amplitude_V: float, dc_voltage_V: float | None,
            impedance_guess_ohm: float = DEFAULT_IMPEDANCE_GUESS_OHM) -> Iterator[Block]:
        """(The simulated potentiostat ranges ideally: ``impedance_guess_ohm`` changes nothing.)"""
        frequencies_Hz = np.asarray(frequencies_Hz, dtype=np.float64)
        self.check_eis(frequencies_Hz, amplitude_V, dc_voltage_V)
        return self._eis(frequencies_Hz, dc_voltage_V)

    def _eis(self, frequencies_Hz: np.ndarray, dc_voltage_V: float | None) -> PacedPoints:
        """One reading per frequency, each taking EIS_PERIODS of its periods (at least EIS_MIN_S)."""
        durations_s = np.maximum(EIS_MIN_S, EIS_PERIODS / frequencies_Hz)
        dc_current_A = 0.0 if dc_voltage_V is None else self.cell.current_at(dc_voltage_V)

        def make_block(start: int, times: np.ndarray) -> Block:
            frequencies = frequencies_Hz[start:start + len(times)]
            z = np.array([self.cell.measure_impedance(float(f), dc_current_A, float(d)) for f, d in zip(frequencies, durations_s[start:])])
            return Block({"time_s": times, "frequency_Hz": frequencies, "z_real_ohm": z.real, "z_imag_ohm": z.imag})

        return PacedPoints(self, durations_s, make_block)

    def _chrono(self, sample: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], duration_s: float, sample_interval_s: float,
                cell_on: bool = True) -> PacedSamples:
        """Blocks of (time_s, current_A, voltage_V) from ``sample(offsets)`` paced by the clock.

        The cell model is computed a largest block at a time and handed out in the (smaller) blocks
        the clock allows, as an instrument's buffer fills while its driver polls it: one cell
        computation serves many 10 ms blocks.  A step stopped early leaves the cell up to one largest
        block further along than the samples handed out (as a real cell plates on until switched off).
        """
        total = max(1, round(duration_s / sample_interval_s))
        ahead = _ComputedAhead(sample, sample_interval_s, total, self.clock)

        def make_block(start: int, times: np.ndarray) -> Block:  # (the samples come in order: ``ahead`` keeps its place)
            current, voltage = ahead.take(len(times))
            return Block({"time_s": times, "current_A": current, "voltage_V": voltage})

        return PacedSamples(self, total, sample_interval_s, make_block, output_on=cell_on)


class _ComputedAhead:
    """A chrono acquisition's samples, computed a largest block ahead of those handed out."""

    def __init__(self, sample: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], sample_interval_s: float, total: int,
                 clock: SimClock) -> None:
        self.sample = sample
        self.sample_interval_s = sample_interval_s
        self.total = total
        self.clock = clock
        self.computed = 0
        self.current = self.voltage = np.empty(0)  # computed, not yet handed out

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n`` samples' (current_A, voltage_V)."""
        ready = len(self.voltage)
        if ready < n:
            more = max(n - ready, self.clock.max_block_size(self.sample_interval_s, self.total - self.computed))
            new_current, new_voltage = self.sample(self.sample_interval_s * np.arange(1, more + 1, dtype=np.float64))
            self.current, self.voltage = np.concatenate([self.current, new_current]), np.concatenate([self.voltage, new_voltage])
            self.computed += more
        taken = self.current[:n], self.voltage[:n]
        self.current, self.voltage = self.current[n:], self.voltage[n:]
        return taken
