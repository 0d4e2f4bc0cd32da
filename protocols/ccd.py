"""Critical current density (CCD) of a Li|SSE|Li symmetric cell by stepped-current plating/stripping.

Methods (after the Li|Li6PS5Cl|Li CCD studies; see docs/science.md): each cycle plates Li on the
working electrode at a current density that rises by a fixed increment per cycle, then strips it
at a fixed current density, each half cycle passing the same areal capacity (or lasting the same
time).  A dendrite that shorts the cell shows as a fall of the polarization (see shorts.py: every
half cycle is watched); the CCD is the plating current density of the step in which the short began.

Parameters are in lab units (mA/cm2, mAh/cm2, cm2 or mm); they are converted to SI once.
"""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from echemd.config.models import InstrumentLimits
from echemd.drivers.base import Instrument
from echemd.protocols.base import Event, Galvanostatic, Plan, ProtocolDefinition, Stop
from echemd.protocols.plating_base import CHRONO_COLUMNS, PlatingParameters, check_plating, short_fields, short_message
from echemd.protocols.shorts import ShortMonitor, ShortWatch

#: Per-step figures of a CCD result (``steps``: one list per key, a value per half cycle).
STEP_KEYS = ("label", "phase", "current_density_mA_cm2", "duration_s", "charge_mAh_cm2", "polarization_mV", "asr_ohm_cm2")


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
        if self.half_cycle_s is None and self.capacity_mAh_cm2 is None:
            raise ValueError("give capacity_mAh_cm2 or half_cycle_s")
        if self.max_plating_mA_cm2 < self.plating_start_mA_cm2:
            raise ValueError(
                f"max_plating_mA_cm2 ({self.max_plating_mA_cm2}) is below plating_start_mA_cm2 ({self.plating_start_mA_cm2})"
            )
        shortest_plating_s = self.duration_s(self.max_plating_mA_cm2)
        if shortest_plating_s <= self.detection_time_s():
            raise ValueError(
                f"the plating step at max_plating_mA_cm2 lasts {shortest_plating_s:.4g} s, not longer than settle_s + "
                f"the smoothing window + confirm_s = {self.detection_time_s():.4g} s: the detector would never see it"
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


class CCDVerdict:
    """The CCD result, built as the half cycles end: one code path for the live plan and `analyze ccd`.

    A short found while plating belongs to that plating step; one first seen while stripping began
    in the plating step before it (plating grows dendrites; its collapse may finish only after the
    current reversed).  A cell found shorted from its very first step has no CCD (``ccd_mA_cm2``
    None, ``shorted_at_start`` true).  ``last_passed_mA_cm2`` is the last plating density whose
    plating and stripping both ended without a short.
    """

    def __init__(self, monitor: ShortMonitor) -> None:
        self.monitor = monitor
        self.last_passed: float | None = None
        self.short: dict | None = None
        self.steps: dict[str, list] = {key: [] for key in STEP_KEYS}
        self.charge_mAh_cm2 = {"plate": 0.0, "strip": 0.0}

    def half_cycle(self, plating_mA_cm2: float | None, phase: str, stop: Stop | None, watch: ShortWatch | None = None,
                   density_mA_cm2: float | None = None) -> bool:
        """Note a finished half cycle (``phase`` "plate" or "strip") of the cycle plating at
        ``plating_mA_cm2``, at ``density_mA_cm2`` (its own current density), as its ``watch``
        saw it; True when it holds the run's first short."""
        if watch is not None:
            record = watch.step_record()
            self.charge_mAh_cm2[phase] += record["charge_mAh_cm2"]
            for key, value in {"label": watch.label, "phase": phase, "current_density_mA_cm2": density_mA_cm2, **record}.items():
                self.steps[key].append(value)
        if self.short is None and stop is not None and stop.reason == "short":
            at_start = bool(stop.details["shorted_from_start"])
            self.short = {"ccd_mA_cm2": None if at_start else plating_mA_cm2, **short_fields(stop), "short_phase": phase,
                          "shorted_at_start": at_start}
            if watch is not None:  # how far into the step, and how much Li it had moved, when the short began
                into_s = stop.details["onset_s"] - watch.started_s
                self.short["short_time_into_step_s"] = into_s
                self.short["short_capacity_mAh_cm2"] = (density_mA_cm2 or 0.0) * into_s / 3600
            return True
        if self.short is None and phase == "strip":
            self.last_passed = plating_mA_cm2
        return False

    def result(self) -> dict:
        """ccd_mA_cm2, last_passed_mA_cm2, short_detected_at_s, drop_mV, short_rule, short_phase,
        shorted_at_start, suspect_short (evidence of a short no rule caught, or None) and the
        criterion's settings (``detection``)."""
        short = self.short or {"ccd_mA_cm2": None, **short_fields(None), "short_phase": None, "shorted_at_start": False,
                               "short_time_into_step_s": None, "short_capacity_mAh_cm2": None}
        suspect = self.monitor.suspect() if self.short is None else None
        return {**short, "last_passed_mA_cm2": None if suspect else self.last_passed, "suspect_short": suspect,
                "plated_mAh_cm2": self.charge_mAh_cm2["plate"], "stripped_mAh_cm2": self.charge_mAh_cm2["strip"],
                "steps": self.steps, "detection": self.monitor.criterion.model_dump()}


def plan(params: CCDParameters) -> Plan:
    strip_mA_cm2 = params.stripping_mA_cm2
    monitor = params.monitor()
    verdict = CCDVerdict(monitor)
    densities = params.plating_densities_mA_cm2()
    for cycle, plate_mA_cm2 in enumerate(densities, start=1):
        for phase, density in (("plate", plate_mA_cm2), ("strip", strip_mA_cm2)):
            label = f"cycle {cycle}: {phase} {density:g} mA/cm2"
            watch = monitor.watch(params.sample_interval_s, label) if verdict.short is None else None  # (after a short: not judged)
            outcome = yield Galvanostatic(
                current_A=params.current_A(density) * (-1.0 if phase == "plate" else 1.0),
                duration_s=params.duration_s(density),
                sample_interval_s=params.sample_interval_s,
                label=label,
                stops=params.stops(watch),
                keep_samples=False,
            )
            stop = outcome.stop
            if stop is not None and stop.reason == "voltage_limit":
                yield Event("limit", f"|V| reached {abs(stop.details['voltage_V']):.3f} V ({label})")
                return _result(verdict, "voltage_limit", cycle)
            if verdict.half_cycle(plate_mA_cm2, phase, stop, watch, density):
                yield Event("short", short_message(stop, label))
                if params.stop_on_short:
                    return _result(verdict, "short", cycle)
    result = _result(verdict, "short" if verdict.short else "max_current", len(densities))
    if result["suspect_short"] is not None:
        yield Event("suspect_short", result["suspect_short"]["reason"])
    return result


def _result(verdict: CCDVerdict, stopped_by: str, cycles: int) -> dict:
    return {**verdict.result(), "stopped_by": stopped_by, "cycles": cycles}


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
