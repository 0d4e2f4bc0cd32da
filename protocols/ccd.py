"""Critical current density (CCD) of a Li|SSE|Li symmetric cell by stepped-current plating/stripping.

Methods (after the Li|Li6PS5Cl|Li studies in DESIGN.md section 3): each cycle plates Li on the
working electrode at a current density that rises by a fixed increment per cycle, then strips it
at a fixed current density, each half cycle passing the same areal capacity (or lasting the same
time).  A dendrite that shorts the cell shows as a drop of the plating polarization; the CCD is the
plating current density of the step in which the drop (>= 2 mV by default) began.

Parameters are in lab units (mA/cm2, mAh/cm2, cm2 or mm); they are converted to SI once.
"""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from echemd.config.models import InstrumentLimits
from echemd.drivers.base import Instrument
from echemd.protocols.base import Event, Galvanostatic, Plan, ProtocolDefinition
from echemd.protocols.plating_base import CHRONO_COLUMNS, PlatingParameters, check_plating


class CCDParameters(PlatingParameters):
    plating_start_mA_cm2: float = Field(0.5, gt=0, description="plating current density of the first cycle, mA/cm2")
    plating_increment_mA_cm2: float = Field(0.5, gt=0, description="rise of the plating current density per cycle, mA/cm2")
    stripping_mA_cm2: float = Field(0.2, gt=0, description="stripping current density (every cycle), mA/cm2")
    capacity_mAh_cm2: float | None = Field(0.2, gt=0, description="areal capacity of each half cycle, mAh/cm2 (or give half_cycle_s)")
    half_cycle_s: float | None = Field(None, gt=0, description="duration of each half cycle, s (instead of a capacity)")
    max_plating_mA_cm2: float = Field(3.0, gt=0, description="last plating current density tried, mA/cm2")
    stop_on_short: bool = Field(True, description="end the run at the first short (else record it and go on)")

    @model_validator(mode="after")
    def _consistent(self) -> "CCDParameters":
        if self.half_cycle_s is not None and "capacity_mAh_cm2" in self.model_fields_set:
            raise ValueError("give capacity_mAh_cm2 or half_cycle_s, not both")
        if self.max_plating_mA_cm2 < self.plating_start_mA_cm2:
            raise ValueError(
                f"max_plating_mA_cm2 ({self.max_plating_mA_cm2}) is below plating_start_mA_cm2 ({self.plating_start_mA_cm2})"
            )
        shortest_plating_s = self.duration_s(self.max_plating_mA_cm2)
        if shortest_plating_s <= self.detection_time_s():
            raise ValueError(
                f"the plating step at max_plating_mA_cm2 lasts {shortest_plating_s:.4g} s, not longer than settle_s + "
                f"smoothing_samples * sample_interval_s = {self.detection_time_s():.4g} s: the detector would never see it"
            )
        return self

    def duration_s(self, density_mA_cm2: float) -> float:
        """Duration of a half cycle at ``density_mA_cm2``, s."""
        if self.half_cycle_s is not None:
            return self.half_cycle_s
        return self.capacity_mAh_cm2 / density_mA_cm2 * 3600.0

    def plating_densities_mA_cm2(self) -> list[float]:
        """The plating current densities of every cycle, mA/cm2."""
        count = math.floor((self.max_plating_mA_cm2 - self.plating_start_mA_cm2) / self.plating_increment_mA_cm2 + 1e-9) + 1
        return [round(self.plating_start_mA_cm2 + k * self.plating_increment_mA_cm2, 9) for k in range(count)]


def check(params: CCDParameters, instrument: Instrument, limits: InstrumentLimits) -> None:
    check_plating("ccd", params, max(params.max_plating_mA_cm2, params.stripping_mA_cm2), instrument, limits)


def plan(params: CCDParameters) -> Plan:
    strip_mA_cm2 = params.stripping_mA_cm2
    last_passed, first_short = None, None
    for cycle, plate_mA_cm2 in enumerate(params.plating_densities_mA_cm2(), start=1):
        plating = yield Galvanostatic(
            current_A=-params.current_A(plate_mA_cm2),
            duration_s=params.duration_s(plate_mA_cm2),
            sample_interval_s=params.sample_interval_s,
            label=f"cycle {cycle}: plate {plate_mA_cm2:g} mA/cm2",
            stops=params.stops(detect=first_short is None),
            keep_samples=False,
        )
        stop = plating.stop
        if stop is not None and stop.reason == "voltage_limit":
            yield Event("limit", f"|V| reached {abs(stop.details['voltage_V']):.3f} V while plating {plate_mA_cm2:g} mA/cm2")
            return _result(first_short or (None, last_passed, None, None), "voltage_limit", cycle)
        if stop is not None:
            yield Event("short", f"plating voltage dropped {stop.details['drop_mV']:.2f} mV at {stop.time_s:.1f} s "
                        f"while plating {plate_mA_cm2:g} mA/cm2: CCD = {plate_mA_cm2:g} mA/cm2")
            first_short = (plate_mA_cm2, last_passed, stop.time_s, stop.details["drop_mV"])
            if params.stop_on_short:
                return _result(first_short, "short", cycle)

        stripping = yield Galvanostatic(
            current_A=params.current_A(strip_mA_cm2),
            duration_s=params.duration_s(strip_mA_cm2),
            sample_interval_s=params.sample_interval_s,
            label=f"cycle {cycle}: strip {strip_mA_cm2:g} mA/cm2",
            stops=params.stops(detect=False),
            keep_samples=False,
        )
        if stripping.stop is not None:
            yield Event("limit", f"|V| reached {abs(stripping.stop.details['voltage_V']):.3f} V while stripping")
            return _result(first_short or (None, last_passed, None, None), "voltage_limit", cycle)
        if first_short is None:
            last_passed = plate_mA_cm2
    cycles = len(params.plating_densities_mA_cm2())
    return _result(first_short or (None, last_passed, None, None), "short" if first_short else "max_current", cycles)


def _result(short: tuple, stopped_by: str, cycles: int) -> dict:
    ccd, last_passed, detected_at_s, drop_mV = short
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
    columns=CHRONO_COLUMNS,
    plan=plan,
    check=check,
    pause_hold='open_circuit',
    planned_steps=lambda p: 2 * len(p.plating_densities_mA_cm2()),
)
