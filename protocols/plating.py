"""Variants of the CCD test on the same machinery (parameters, detector, safety limit).

- ``ccd-ramp``: the plating current density rises linearly (as a fine staircase) from 0 to a
  maximum (0 -> 3 mA/cm2 in the LLZO studies); one detector watches the whole ramp, so the CCD is
  the current density at which the polarization began to fall.
- ``plate-until-short``: galvanostatic plating at one current density until the cell shorts or a
  time limit (Li3PS4 at 0.8 mA/cm2 shorts after ~3.2 h).
- ``cycling``: long-term plating/stripping at one current density with short detection in every
  half cycle (LLZO with a polymer layer cycles at 0.8 mA/cm2 for > 1000 h).
"""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from echemd.daemon.vocabulary import EventKind, HoldMode
from echemd.protocols.base import Event, Galvanostatic, Plan, Presentation, ProtocolDefinition, Stop
from echemd.protocols.plating_base import (CHRONO_COLUMNS, PlatingParameters, check_plating, planned_samples, plating_attributes, short_fields,
                                            short_message)


# --- ramp ---------------------------------------------------------------------------------------
class RampParameters(PlatingParameters):
    start_mA_cm2: float = Field(0.0, ge=0, description="plating current density at the start, mA/cm2")
    end_mA_cm2: float = Field(3.0, gt=0, description="plating current density at the end, mA/cm2")
    rate_mA_cm2_per_h: float = Field(1.0, gt=0, description="ramp rate, mA/cm2 per hour")
    step_mA_cm2: float = Field(0.01, gt=0, description="staircase step of the ramp, mA/cm2")

    @model_validator(mode="after")
    def _rising(self) -> "RampParameters":
        if self.end_mA_cm2 <= self.start_mA_cm2:
            raise ValueError("end_mA_cm2 must exceed start_mA_cm2")
        if self.step_s < self.sample_interval_s:
            raise ValueError(f"each staircase step lasts {self.step_s:.3g} s, shorter than one sample interval")
        return self

    def planned_duration_s(self) -> float:
        return len(self.densities_mA_cm2()) * self.step_s

    @property
    def step_s(self) -> float:
        return self.step_mA_cm2 / self.rate_mA_cm2_per_h * 3600.0

    def densities_mA_cm2(self) -> list[float]:
        count = math.ceil((self.end_mA_cm2 - self.start_mA_cm2) / self.step_mA_cm2 - 1e-9)
        return [round(min(self.start_mA_cm2 + (k + 1) * self.step_mA_cm2, self.end_mA_cm2), 9) for k in range(count)]


def ramp_plan(params: RampParameters) -> Plan:
    monitor = params.monitor()
    watch = monitor.watch(params.sample_interval_s, "ramp")  # one watch for the whole ramp: it settles once, at the start
    for density in params.densities_mA_cm2():
        step = yield Galvanostatic(-params.current_A(density), params.step_s, params.sample_interval_s,
                                   label=f"ramp: plate {density:g} mA/cm2", stops=params.stops(watch), keep_samples=False)
        stop = step.stop
        if stop is not None and stop.reason == "voltage_limit":
            yield Event(EventKind.LIMIT, f"|V| reached {abs(stop.details['voltage_V']):.3f} V at {density:g} mA/cm2")
            return _ramp_result(None, None, "voltage_limit", density)
        if stop is not None:
            yield Event(EventKind.SHORT, short_message(stop, f"{density:g} mA/cm2"))
            ccd = None if stop.details["shorted_from_start"] else density
            return _ramp_result(ccd, stop, "short", density)
    return _ramp_result(None, None, "max_current", params.end_mA_cm2)


def _ramp_result(ccd: float | None, stop: Stop | None, stopped_by: str, reached: float) -> dict:
    return {"ccd_mA_cm2": ccd, **short_fields(stop), "stopped_by": stopped_by, "reached_mA_cm2": reached}



CCD_RAMP = ProtocolDefinition(
    name="ccd-ramp", title="Critical current density by a linear plating current ramp", instrument_kind="potentiostat",
    parameters=RampParameters, columns=CHRONO_COLUMNS, plan=ramp_plan,
    check=lambda p, instrument, limits: check_plating("ccd-ramp", p, p.end_mA_cm2, instrument, limits),
    presentation=Presentation("plating", "CHRONOP", "ccd_mA_cm2"),
    pause_hold=HoldMode.OPEN_CIRCUIT,
    planned_steps=lambda p: len(p.densities_mA_cm2()),
    run_attributes=plating_attributes,
    planned_samples=planned_samples,
)


# --- plating until short ------------------------------------------------------------------------
class PlateUntilShortParameters(PlatingParameters):
    current_mA_cm2: float = Field(0.8, gt=0, description="plating current density, mA/cm2")
    max_hours: float = Field(10.0, gt=0, description="give up after this long, h")

    def planned_duration_s(self) -> float:
        return self.max_hours * 3600.0


def plate_plan(params: PlateUntilShortParameters) -> Plan:
    label = f"plate {params.current_mA_cm2:g} mA/cm2 until short"
    monitor = params.monitor()
    step = yield Galvanostatic(-params.current_A(params.current_mA_cm2), params.max_hours * 3600, params.sample_interval_s,
                               label=label, stops=params.stops(monitor.watch(params.sample_interval_s, label)), keep_samples=False)
    stop = step.stop
    elapsed_s = step.n_samples * params.sample_interval_s
    if stop is not None and stop.reason == "short":
        yield Event(EventKind.SHORT, short_message(stop, label))
        hours = stop.time_s / 3600
        at_start = bool(stop.details["shorted_from_start"])
        return {**short_fields(stop), "time_to_short_h": None if at_start else hours, "shorted_at_start": at_start,
                "charge_to_short_mAh_cm2": None if at_start else hours * params.current_mA_cm2, "stopped_by": "short"}
    if stop is not None:
        yield Event(EventKind.LIMIT, f"|V| reached {abs(stop.details['voltage_V']):.3f} V")
    suspect = monitor.suspect()
    if suspect is not None:
        yield Event(EventKind.SUSPECT_SHORT, suspect["reason"])
    return {**short_fields(None), "time_to_short_h": None, "charge_to_short_mAh_cm2": None, "shorted_at_start": False,
            "stopped_by": "voltage_limit" if stop is not None else "time_limit", "plated_h": elapsed_s / 3600, "suspect_short": suspect}


PLATE_UNTIL_SHORT = ProtocolDefinition(
    name="plate-until-short", title="Galvanostatic plating until a short", instrument_kind="potentiostat",
    parameters=PlateUntilShortParameters, columns=CHRONO_COLUMNS, plan=plate_plan,
    check=lambda p, instrument, limits: check_plating("plate-until-short", p, p.current_mA_cm2, instrument, limits),
    presentation=Presentation("plating", "CHRONOP", "time_to_short_h"),
    pause_hold=HoldMode.OPEN_CIRCUIT,
    planned_steps=lambda p: 1,
    run_attributes=plating_attributes,
    planned_samples=planned_samples,
)


# --- long-term cycling --------------------------------------------------------------------------
class CyclingParameters(PlatingParameters):
    current_mA_cm2: float = Field(0.8, gt=0, description="plating and stripping current density, mA/cm2")
    capacity_mAh_cm2: float = Field(0.4, gt=0, description="areal capacity of each half cycle, mAh/cm2")
    cycles: int = Field(100, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _long_enough(self) -> "CyclingParameters":
        if self.half_cycle_s <= self.detection_time_s():
            raise ValueError(f"a half cycle lasts {self.half_cycle_s:.4g} s: too short for the detector's {self.detection_time_s():.4g} s")
        return self

    def planned_duration_s(self) -> float:
        return 2 * self.cycles * self.half_cycle_s

    @property
    def half_cycle_s(self) -> float:
        return self.capacity_mAh_cm2 / self.current_mA_cm2 * 3600.0


def cycling_plan(params: CyclingParameters) -> Plan:
    current = params.current_A(params.current_mA_cm2)
    monitor = params.monitor()
    for cycle in range(1, params.cycles + 1):
        for name, sign in (("plate", -1.0), ("strip", 1.0)):
            label = f"cycle {cycle}: {name} {params.current_mA_cm2:g} mA/cm2"
            half = yield Galvanostatic(sign * current, params.half_cycle_s, params.sample_interval_s,
                                       label=label, stops=params.stops(monitor.watch(params.sample_interval_s, label)), keep_samples=False)
            stop = half.stop
            if stop is not None:
                short = stop.reason == "short"
                if short:
                    yield Event(EventKind.SHORT, short_message(stop, label))
                else:
                    yield Event(EventKind.LIMIT, f"|V| reached {abs(stop.details['voltage_V']):.3f} V ({label})")
                return {"cycles_completed": cycle - 1, **short_fields(stop), "short_cycle": cycle if short else None,
                        "stopped_by": "short" if short else "voltage_limit", "hours": stop.time_s / 3600, "suspect_short": None}
    suspect = monitor.suspect()
    if suspect is not None:
        yield Event(EventKind.SUSPECT_SHORT, suspect["reason"])
    return {"cycles_completed": params.cycles, **short_fields(None), "short_cycle": None, "stopped_by": "cycles",
            "hours": params.cycles * 2 * params.half_cycle_s / 3600, "suspect_short": suspect}


CYCLING = ProtocolDefinition(
    name="cycling", title="Long-term plating/stripping at a fixed current with short detection", instrument_kind="potentiostat",
    parameters=CyclingParameters, columns=CHRONO_COLUMNS, plan=cycling_plan,
    check=lambda p, instrument, limits: check_plating("cycling", p, p.current_mA_cm2, instrument, limits),
    presentation=Presentation("plating", "CHRONOP", "cycles_completed"),
    pause_hold=HoldMode.OPEN_CIRCUIT,
    planned_steps=lambda p: 2 * p.cycles,
    run_attributes=plating_attributes,
    planned_samples=planned_samples,
)
