"""Critical current density (CCD) of a Li|SSE|Li symmetric cell by stepped-current plating/stripping.

Methods (after the Li|Li6PS5Cl|Li studies in docs/ and DESIGN.md section 3): each cycle plates Li
on the working electrode at a current density that rises by a fixed increment per cycle, then
strips it at a fixed current density, each half cycle passing the same areal capacity.  A
dendrite that shorts the cell shows as a drop of the plating polarization; the CCD is the plating
current density of the step in which the drop (>= 2 mV by default) began.

Parameters are in lab units (mA/cm2, mAh/cm2, cm2 or mm); they are converted to SI once, here.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator

from echemd.config.models import InstrumentLimits
from echemd.drivers.base import Instrument, InstrumentRefused, Potentiostat
from echemd.protocols.base import Column, Event, Galvanostatic, Plan, ProtocolDefinition, ProtocolRefused
from echemd.protocols.detection import VoltageDropDetector, VoltageLimit


class CCDParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    area_cm2: float | None = Field(None, gt=0, description="electrode area, cm2 (or give diameter_mm)")
    diameter_mm: float | None = Field(None, gt=0, description="electrode diameter, mm (or give area_cm2)")
    plating_start_mA_cm2: float = Field(0.5, gt=0, description="plating current density of the first cycle, mA/cm2")
    plating_increment_mA_cm2: float = Field(0.5, gt=0, description="rise of the plating current density per cycle, mA/cm2")
    stripping_mA_cm2: float = Field(0.2, gt=0, description="stripping current density (every cycle), mA/cm2")
    capacity_mAh_cm2: float = Field(0.2, gt=0, description="areal capacity of each half cycle, mAh/cm2")
    max_plating_mA_cm2: float = Field(3.0, gt=0, description="last plating current density tried, mA/cm2")
    drop_threshold_mV: float = Field(2.0, gt=0, description="plating voltage drop that marks a short, mV")
    settle_s: float = Field(60.0, ge=0, description="start of each plating step ignored by the detector, s")
    smoothing_samples: int = Field(15, ge=1, le=1001, description="running-median window of the detector, samples")
    drop_window_s: float | None = Field(300.0, gt=0, description="a drop counts when it happens within this time, s (none: since the settle time)")
    sample_interval_s: float = Field(1.0, gt=0, description="time between samples, s")
    voltage_limit_V: float = Field(1.0, gt=0, description="|V| beyond which the run stops (safety), V")

    @model_validator(mode="after")
    def _consistent(self) -> "CCDParameters":
        if (self.area_cm2 is None) == (self.diameter_mm is None):
            raise ValueError("give exactly one of area_cm2 and diameter_mm")
        if self.max_plating_mA_cm2 < self.plating_start_mA_cm2:
            raise ValueError(
                f"max_plating_mA_cm2 ({self.max_plating_mA_cm2}) is below plating_start_mA_cm2 ({self.plating_start_mA_cm2})"
            )
        shortest_plating_s = self.capacity_mAh_cm2 / self.max_plating_mA_cm2 * 3600.0
        needed_s = self.settle_s + self.smoothing_samples * self.sample_interval_s
        if shortest_plating_s <= needed_s:
            raise ValueError(
                f"the plating step at max_plating_mA_cm2 lasts {shortest_plating_s:.4g} s, not longer than settle_s + "
                f"smoothing_samples * sample_interval_s = {needed_s:.4g} s: the detector would never see it"
            )
        return self

    @property
    def electrode_area_cm2(self) -> float:
        if self.area_cm2 is not None:
            return self.area_cm2
        return math.pi * (self.diameter_mm / 20.0) ** 2  # mm diameter -> cm radius

    def plating_densities_mA_cm2(self) -> list[float]:
        """The plating current densities of every cycle, mA/cm2."""
        count = math.floor((self.max_plating_mA_cm2 - self.plating_start_mA_cm2) / self.plating_increment_mA_cm2 + 1e-9) + 1
        return [round(self.plating_start_mA_cm2 + k * self.plating_increment_mA_cm2, 9) for k in range(count)]


def check(params: CCDParameters, instrument: Instrument, limits: InstrumentLimits) -> None:
    """Refuse, before anything is applied, a CCD the instrument or the lab's limits cannot run."""
    if not isinstance(instrument, Potentiostat):
        raise ProtocolRefused(f"ccd needs a potentiostat; {instrument.name} is a {instrument.kind}")
    area = params.electrode_area_cm2
    largest_A = max(params.max_plating_mA_cm2, params.stripping_mA_cm2) * area * 1e-3
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


def plan(params: CCDParameters) -> Plan:
    area = params.electrode_area_cm2
    strip_mA_cm2 = params.stripping_mA_cm2
    last_passed = None
    for cycle, plate_mA_cm2 in enumerate(params.plating_densities_mA_cm2(), start=1):
        plating = yield Galvanostatic(
            current_A=-plate_mA_cm2 * area * 1e-3,
            duration_s=params.capacity_mAh_cm2 / plate_mA_cm2 * 3600.0,
            sample_interval_s=params.sample_interval_s,
            label=f"cycle {cycle}: plate {plate_mA_cm2:g} mA/cm2",
            stops=(
                VoltageLimit(params.voltage_limit_V),
                VoltageDropDetector(params.drop_threshold_mV * 1e-3, params.settle_s, params.smoothing_samples, params.drop_window_s),
            ),
        )
        if plating.stop is not None:
            stop = plating.stop
            if stop.reason == "voltage_drop":
                yield Event("short", f"plating voltage dropped {stop.details['drop_mV']:.2f} mV at {stop.time_s:.1f} s "
                            f"while plating {plate_mA_cm2:g} mA/cm2: CCD = {plate_mA_cm2:g} mA/cm2")
                return _result(plate_mA_cm2, last_passed, stop.time_s, stop.details["drop_mV"], "short", cycle)
            yield Event("limit", f"|V| reached {abs(stop.details['voltage_V']):.3f} V while plating {plate_mA_cm2:g} mA/cm2")
            return _result(None, last_passed, None, None, "voltage_limit", cycle)

        stripping = yield Galvanostatic(
            current_A=strip_mA_cm2 * area * 1e-3,
            duration_s=params.capacity_mAh_cm2 / strip_mA_cm2 * 3600.0,
            sample_interval_s=params.sample_interval_s,
            label=f"cycle {cycle}: strip {strip_mA_cm2:g} mA/cm2",
            stops=(VoltageLimit(params.voltage_limit_V),),
        )
        if stripping.stop is not None:
            yield Event("limit", f"|V| reached {abs(stripping.stop.details['voltage_V']):.3f} V while stripping")
            return _result(None, last_passed, None, None, "voltage_limit", cycle)
        last_passed = plate_mA_cm2
    return _result(None, last_passed, None, None, "max_current", len(params.plating_densities_mA_cm2()))


def _result(ccd, last_passed, detected_at_s, drop_mV, stopped_by, cycles) -> dict:
    return {
        "ccd_mA_cm2": ccd,
        "last_passed_mA_cm2": last_passed,
        "short_detected_at_s": detected_at_s,
        "drop_mV": drop_mV,
        "stopped_by": stopped_by,
        "cycles": cycles,
    }


CCD = ProtocolDefinition(
    name="ccd",
    title="Critical current density by stepped-current plating/stripping",
    instrument_kind="potentiostat",
    parameters=CCDParameters,
    columns=(Column("time_s", "s"), Column("current_A", "A"), Column("voltage_V", "V")),
    plan=plan,
    check=check,
)
