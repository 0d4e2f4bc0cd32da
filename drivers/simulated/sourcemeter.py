"""A simulated sourcemeter with Keithley 2400 semantics (source V, measure I, compliance) on a :class:`TipJunction`."""

from __future__ import annotations

import numpy as np

from echemd.config.models import SimulatedSourcemeterConfig
from echemd.drivers.base import Block, InstrumentRefused, Sourcemeter, SourcemeterCapabilities
from echemd.drivers.simulated.clock import SimClock
from echemd.drivers.simulated.instrument import PacedSamples, SimulatedInstrument
from echemd.drivers.simulated.junction import TipJunction

#: Keithley 2400: +-210 V source range, 1.05 A compliance, ~2 ms per reading at 0.01 NPLC.
CAPABILITIES = SourcemeterCapabilities(max_voltage_V=210.0, max_compliance_A=1.05, min_sample_interval_s=0.002)


class SimulatedSourcemeter(SimulatedInstrument, Sourcemeter):
    def __init__(self, config: SimulatedSourcemeterConfig, clock: SimClock | None = None) -> None:
        super().__init__(config.name, config.driver, clock or SimClock(config.clock))
        self.capabilities = CAPABILITIES
        self.voltage_limit_V = config.limits.max_abs_voltage_V  # software limit (a 2400's OVP starts at 20 V)
        self.junction = TipJunction(config.junction)

    def place_tip(self, x_nm: float, y_nm: float) -> float:
        """Simulator only: move the tip to a fresh spot of the sample; returns its distance to a grain boundary, nm."""
        self.junction.place(x_nm, y_nm)
        return self.junction.distance_nm

    def voltage_sweep(self, biases_V: np.ndarray, compliance_A: float, dwell_s: float) -> PacedSamples:
        biases_V = np.asarray(biases_V, dtype=np.float64)
        caps = self.capabilities
        largest = np.abs(biases_V).max(initial=0.0)
        if largest > min(caps.max_voltage_V, self.voltage_limit_V):
            raise InstrumentRefused(
                f"{self.name}: |bias| {largest:.4g} V exceeds the voltage limit {self.voltage_limit_V:g} V "
                f"(source range {caps.max_voltage_V:g} V)"
            )
        if not 0 < compliance_A <= caps.max_compliance_A:
            raise InstrumentRefused(f"{self.name}: compliance must be in (0, {caps.max_compliance_A}] A")
        if dwell_s < caps.min_sample_interval_s:
            raise InstrumentRefused(f"{self.name}: dwell {dwell_s} s is shorter than {caps.min_sample_interval_s} s")
        def make_block(start: int, times: np.ndarray) -> Block:
            bias = biases_V[start : start + len(times)]
            raw = np.array([self.junction.current(float(v)) for v in bias])
            return Block({
                "time_s": times,
                "bias_V": bias.copy(),
                "current_A": np.clip(raw, -compliance_A, compliance_A),
                "compliance": (np.abs(raw) >= compliance_A).astype(np.float64),
            })

        return PacedSamples(self, len(biases_V), dwell_s, make_block)
