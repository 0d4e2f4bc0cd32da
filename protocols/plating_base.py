"""What every Li plating protocol shares: the electrode, sampling, the safety limit and the short detector.

Parameters are in lab units (mA/cm2, mAh/cm2, cm2 or mm, mV); :class:`PlatingParameters` converts
them to SI once (``current_A``, ``detector()``).  Plating Li on the working electrode is a negative
current.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator

from echemd.config.models import InstrumentLimits
from echemd.drivers.base import Instrument, InstrumentRefused, Potentiostat
from echemd.protocols.base import Column, ProtocolRefused, StopCondition
from echemd.protocols.detection import VoltageDropDetector, VoltageLimit

CHRONO_COLUMNS = (Column("time_s", "s"), Column("current_A", "A"), Column("voltage_V", "V"))


class PlatingParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    area_cm2: float | None = Field(None, gt=0, description="electrode area, cm2 (or give diameter_mm)")
    diameter_mm: float | None = Field(None, gt=0, description="electrode diameter, mm (or give area_cm2)")
    drop_threshold_mV: float = Field(2.0, gt=0, description="plating voltage drop that marks a short, mV")
    settle_s: float = Field(60.0, ge=0, description="start of each plating step ignored by the detector, s")
    smoothing_samples: int = Field(15, ge=1, le=1001, description="running-median window of the detector, samples (odd)")
    drop_window_s: float | None = Field(300.0, gt=0, description="a drop counts when it happens within this time, s (none: since the settle time)")
    sample_interval_s: float = Field(1.0, gt=0, description="time between samples, s")
    voltage_limit_V: float = Field(1.0, gt=0, description="|V| beyond which the run stops (safety), V")

    @model_validator(mode="after")
    def _odd_window(self):
        if self.smoothing_samples % 2 == 0:
            raise ValueError(f"smoothing_samples must be odd (got {self.smoothing_samples})")
        return self

    @model_validator(mode="after")
    def _one_electrode_size(self):
        if (self.area_cm2 is None) == (self.diameter_mm is None):
            raise ValueError("give exactly one of area_cm2 and diameter_mm")
        return self

    @property
    def electrode_area_cm2(self) -> float:
        if self.area_cm2 is not None:
            return self.area_cm2
        return math.pi * (self.diameter_mm / 20.0) ** 2  # mm diameter -> cm radius

    def current_A(self, density_mA_cm2: float) -> float:
        return density_mA_cm2 * self.electrode_area_cm2 * 1e-3

    def detector(self) -> VoltageDropDetector:
        return VoltageDropDetector(self.drop_threshold_mV * 1e-3, self.settle_s, self.smoothing_samples, self.drop_window_s)

    def stops(self, detect: bool = True, detector: VoltageDropDetector | None = None) -> tuple[StopCondition, ...]:
        limit = (VoltageLimit(self.voltage_limit_V),)
        return limit + ((detector or self.detector(),) if detect else ())

    def detection_time_s(self) -> float:
        """Shortest step in which a drop can be seen at all, s."""
        return self.settle_s + self.smoothing_samples * self.sample_interval_s


def check_plating(name: str, params: PlatingParameters, largest_mA_cm2: float, instrument: Instrument, limits: InstrumentLimits) -> None:
    """Refuse, before anything is applied, what the instrument or the lab's limits cannot run."""
    if not isinstance(instrument, Potentiostat):
        raise ProtocolRefused(f"{name} needs a potentiostat; {instrument.name} is a {instrument.kind}")
    largest_A = params.current_A(largest_mA_cm2)
    if largest_A > limits.max_abs_current_A:
        raise ProtocolRefused(
            f"{instrument.name}: the largest current {largest_A:.4g} A exceeds the configured limit "
            f"max_abs_current_A = {limits.max_abs_current_A:.4g} A"
        )
    if params.voltage_limit_V > limits.max_abs_voltage_V:
        raise ProtocolRefused(
            f"{instrument.name}: voltage_limit_V = {params.voltage_limit_V:g} V exceeds the configured limit "
            f"max_abs_voltage_V = {limits.max_abs_voltage_V:g} V"
        )
    try:
        instrument.check_galvanostatic(largest_A, params.sample_interval_s)
    except InstrumentRefused as exc:
        raise ProtocolRefused(str(exc)) from exc
