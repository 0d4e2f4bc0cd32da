"""Potentiostatic EIS of a cell: a frequency sweep, high to low.

Frequencies are log-spaced with ``points_per_decade``, anchored at both ends (the first is
``start_Hz``, the last ``end_Hz``).  The AC amplitude is given in mV rms; the DC bias in V, or none
for open circuit (a symmetric Li cell rests at 0 V).  A sweep outside the instrument's frequency
range is refused before anything is applied.

The result gives the spectrum's model-free landmarks, the equivalent-circuit fit of ``circuit``
(impedance.py syntax; data-driven initial guesses), the Kramers-Kronig residuals and, with an
area, area-specific resistances and capacitances (see :func:`~echemd.protocols.analysis.analyze_eis`).
A fit that fails does not fail the run: the spectrum is recorded and ``fit_error`` says why.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from echemd.config.models import InstrumentLimits
from echemd.drivers.base import DEFAULT_IMPEDANCE_GUESS_OHM, Instrument, InstrumentRefused, Potentiostat
from echemd.protocols.analysis import analyze_eis
from echemd.protocols.base import Column, Impedance, Plan, ProtocolDefinition, ProtocolRefused


class EISParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_Hz: float = Field(1e6, gt=0, description="first (highest) frequency, Hz")
    end_Hz: float = Field(0.1, gt=0, description="last (lowest) frequency, Hz")
    points_per_decade: int = Field(10, ge=1, le=100)
    amplitude_mV_rms: float = Field(10.0, gt=0, le=1000, description="AC amplitude, mV rms")
    dc_bias_V: float | None = Field(None, description="DC bias, V; none: at the open-circuit voltage measured just before")
    impedance_guess_ohm: float = Field(DEFAULT_IMPEDANCE_GUESS_OHM, gt=0, le=1e12,
                                       description="|Z| expected, Ohm: sets the starting current range (the instrument adjusts it per frequency)")
    area_cm2: float | None = Field(None, gt=0, description="electrode area for area-specific values, cm2")
    thickness_mm: float | None = Field(None, gt=0, le=100, description="electrolyte thickness, mm: tells bulk from grain-boundary arcs (capacitance over the cell constant)")
    symmetric: bool = Field(True, description="both electrodes alike (Li|SE|Li): an electrode arc holds two interfaces, reported per interface (R x A / 2)")
    circuit: str | None = Field("R0-p(R1,CPE1)-p(R2,CPE2)", max_length=200, description="equivalent circuit to fit (impedance.py syntax); none: no fit")

    @model_validator(mode="after")
    def _high_to_low(self) -> "EISParameters":
        if self.end_Hz >= self.start_Hz:
            raise ValueError("end_Hz must be below start_Hz (the sweep runs from high to low frequency)")
        return self

    def frequencies_Hz(self) -> np.ndarray:
        decades = math.log10(self.start_Hz / self.end_Hz)
        count = max(2, int(round(decades * self.points_per_decade)) + 1)
        return np.logspace(math.log10(self.start_Hz), math.log10(self.end_Hz), count)


def check(params: EISParameters, instrument: Instrument, limits: InstrumentLimits) -> None:
    if not isinstance(instrument, Potentiostat):
        raise ProtocolRefused(f"eis needs a potentiostat; {instrument.name} is a {instrument.kind}")
    if abs(params.dc_bias_V or 0.0) + params.amplitude_mV_rms * 1e-3 * math.sqrt(2) > limits.max_abs_voltage_V:
        raise ProtocolRefused(f"{instrument.name}: DC bias plus AC peak exceeds the configured limit max_abs_voltage_V = {limits.max_abs_voltage_V:g} V")
    try:
        instrument.check_eis(params.frequencies_Hz(), params.amplitude_mV_rms * 1e-3, params.dc_bias_V)
    except InstrumentRefused as exc:
        raise ProtocolRefused(str(exc)) from exc


def plan(params: EISParameters) -> Plan:
    frequencies = params.frequencies_Hz()
    spectrum = yield Impedance(frequencies, params.amplitude_mV_rms * 1e-3, params.dc_bias_V,
                               label=f"EIS {params.start_Hz:g} -> {params.end_Hz:g} Hz, {params.amplitude_mV_rms:g} mV rms",
                               impedance_guess_ohm=params.impedance_guess_ohm)
    z = spectrum.columns["z_real_ohm"] + 1j * spectrum.columns["z_imag_ohm"]
    result = {
        "points": int(len(z)),
        "high_frequency_real_ohm": float(z.real[0]),
        "low_frequency_real_ohm": float(z.real[-1]),
        "max_minus_imag_ohm": float(np.max(-z.imag)),
        "frequency_at_max_minus_imag_Hz": float(spectrum.columns["frequency_Hz"][int(np.argmax(-z.imag))]),
    }
    if params.area_cm2 is not None:
        result["low_frequency_asr_ohm_cm2"] = result["low_frequency_real_ohm"] * params.area_cm2
    if params.circuit:
        try:
            result.update(analyze_eis(spectrum.columns["frequency_Hz"], z.real, z.imag, params.circuit, params.area_cm2,
                                      params.thickness_mm / 10 if params.thickness_mm else None, params.symmetric))
        except Exception as exc:  # noqa: BLE001 - an analysis problem never fails a measured run: every point is recorded
            result["fit_error"] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
    return result


EIS = ProtocolDefinition(
    name="eis",
    title="Potentiostatic EIS frequency sweep",
    instrument_kind="potentiostat",
    parameters=EISParameters,
    columns=(Column("time_s", "s"), Column("frequency_Hz", "Hz"), Column("z_real_ohm", "Ohm"), Column("z_imag_ohm", "Ohm")),
    plan=plan,
    check=check,
    pause_hold=None,
    planned_steps=lambda p: 1,
)
