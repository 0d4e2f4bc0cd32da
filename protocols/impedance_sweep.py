"""An impedance sweep as a step any potentiostat protocol can take (the eis protocol, spectra
between the half cycles of a CCD), and a spectrum's model-free landmarks."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from echemd.config.models import InstrumentLimits
from echemd.drivers.base import DEFAULT_IMPEDANCE_GUESS_OHM, Instrument, InstrumentRefused
from echemd.protocols.base import Column, Impedance, ProtocolRefused

#: The columns of an impedance spectrum (besides ``time_s``).
IMPEDANCE_COLUMNS = (Column("frequency_Hz", "Hz"), Column("z_real_ohm", "Ohm"), Column("z_imag_ohm", "Ohm"))


class ImpedanceSweep(BaseModel):
    """A potentiostatic frequency sweep, high to low, at the open-circuit voltage (or a DC bias)."""

    model_config = ConfigDict(extra="forbid")

    start_Hz: float = Field(1e6, gt=0, description="first (highest) frequency, Hz")
    end_Hz: float = Field(0.1, gt=0, description="last (lowest) frequency, Hz")
    points_per_decade: int = Field(10, ge=1, le=100)
    amplitude_mV_rms: float = Field(10.0, gt=0, le=1000, description="AC amplitude, mV rms")
    impedance_guess_ohm: float = Field(DEFAULT_IMPEDANCE_GUESS_OHM, gt=0, le=1e12,
                                       description="|Z| expected, Ohm: sets the starting current range (the instrument adjusts it per frequency)")

    @model_validator(mode="after")
    def _high_to_low(self) -> "ImpedanceSweep":
        if self.end_Hz >= self.start_Hz:
            raise ValueError("end_Hz must be below start_Hz (the sweep runs from high to low frequency)")
        return self

    def frequencies_Hz(self) -> np.ndarray:
        decades = math.log10(self.start_Hz / self.end_Hz)
        count = max(2, int(round(decades * self.points_per_decade)) + 1)
        return np.logspace(math.log10(self.start_Hz), math.log10(self.end_Hz), count)

    def step(self, label: str, dc_bias_V: float | None = None) -> Impedance:
        return Impedance(self.frequencies_Hz(), self.amplitude_mV_rms * 1e-3, dc_bias_V, label=label,
                         impedance_guess_ohm=self.impedance_guess_ohm)

    def check(self, name: str, instrument: Instrument, limits: InstrumentLimits, dc_bias_V: float | None = None) -> None:
        """Refuse (ProtocolRefused), before anything is applied, a sweep the instrument or the lab's limits cannot run."""
        if abs(dc_bias_V or 0.0) + self.amplitude_mV_rms * 1e-3 * math.sqrt(2) > limits.max_abs_voltage_V:
            raise ProtocolRefused(f"{instrument.name}: DC bias plus AC peak exceeds the configured limit max_abs_voltage_V = {limits.max_abs_voltage_V:g} V")
        try:
            instrument.check_eis(self.frequencies_Hz(), self.amplitude_mV_rms * 1e-3, dc_bias_V)
        except InstrumentRefused as exc:
            raise ProtocolRefused(str(exc)) from exc


def landmarks(columns: Mapping[str, np.ndarray], area_cm2: float | None = None) -> dict:
    """A spectrum's model-free landmarks: points, high- and low-frequency real parts (Ohm), the
    largest -Z'' (Ohm) and its frequency (Hz), and with an area the low-frequency ASR (Ohm cm2)."""
    z = columns["z_real_ohm"] + 1j * columns["z_imag_ohm"]
    found = {
        "points": int(len(z)),
        "high_frequency_real_ohm": float(z.real[0]),
        "low_frequency_real_ohm": float(z.real[-1]),
        "max_minus_imag_ohm": float(np.max(-z.imag)),
        "frequency_at_max_minus_imag_Hz": float(columns["frequency_Hz"][int(np.argmax(-z.imag))]),
    }
    if area_cm2 is not None:
        found["low_frequency_asr_ohm_cm2"] = found["low_frequency_real_ohm"] * area_cm2
    return found
