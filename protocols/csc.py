"""Critical stripping current (CSC) of a Li|SSE|Li symmetric cell: stepped stripping current.

Methods (after the Li6PS5Cl critical-stripping-current studies; see docs/science.md): each cycle
strips Li from the working electrode at a current density that rises by a fixed increment per
cycle, then plates it back at a fixed, low current density, each half cycle passing the same areal
capacity (or lasting the same time).  Stripping faster than Li reaches the interface (by creep and
diffusion) leaves voids: the contact area shrinks, the local current density and the polarization
rise through the half cycle instead of staying flat, and dendrites grow on the next plating.  The
CSC is the stripping current density of the first half cycle whose polarization rose by more than
``void_rise_percent`` from the end of its settle time to its end (whether or not it went on to
the voltage limit: a limit reached with no such rise is the cell's resistance, not voiding, and
ends the run without a CSC).  Every half cycle is also watched for shorts (see shorts.py), as in
the CCD test.

Parameters are in lab units (mA/cm2, mAh/cm2, cm2 or mm, %); they are converted to SI once.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from echemd.config.models import InstrumentLimits
from echemd.drivers.base import Instrument
from echemd.daemon.vocabulary import EventKind, HoldMode
from echemd.protocols.base import Event, Galvanostatic, Plan, Presentation, ProtocolDefinition
from echemd.protocols.ccd import HalfCycleLog
from echemd.protocols.plating_base import (CHRONO_COLUMNS, HalfCycleParameters, check_plating, planned_samples, plating_attributes, short_fields,
                                            short_message, staircase)


class CSCParameters(HalfCycleParameters):
    stripping_start_mA_cm2: float = Field(0.1, gt=0, description="stripping current density of the first cycle, mA/cm2")
    stripping_increment_mA_cm2: float = Field(0.1, gt=0, description="rise of the stripping current density per cycle, mA/cm2")
    max_stripping_mA_cm2: float = Field(2.0, gt=0, description="last stripping current density tried, mA/cm2")
    plating_mA_cm2: float = Field(0.1, gt=0, description="current density at which the stripped Li is plated back (every cycle), mA/cm2")
    capacity_mAh_cm2: float | None = Field(0.1, gt=0, description="areal capacity of each half cycle, mAh/cm2 (or give half_cycle_s)")
    void_rise_percent: float = Field(10.0, gt=0, description="a stripping half cycle whose polarization rose by more than this "
                                     "(from the end of its settle time to its end) is voiding, %")
    stop_on_voiding: bool = Field(True, description="end the run at the first voiding half cycle (else record it and go on)")

    @model_validator(mode="after")
    def _consistent(self) -> "CSCParameters":
        if self.max_stripping_mA_cm2 < self.stripping_start_mA_cm2:
            raise ValueError(f"max_stripping_mA_cm2 ({self.max_stripping_mA_cm2}) is below stripping_start_mA_cm2 "
                             f"({self.stripping_start_mA_cm2})")
        self.check_detectable(self.max_stripping_mA_cm2, "max_stripping_mA_cm2")
        return self

    def planned_duration_s(self) -> float:
        return sum(self.duration_s(stripping) + self.duration_s(self.plating_mA_cm2) for stripping in self.stripping_densities_mA_cm2())

    def stripping_densities_mA_cm2(self) -> list[float]:
        """The stripping current densities of every cycle, mA/cm2."""
        return staircase(self.stripping_start_mA_cm2, self.stripping_increment_mA_cm2, self.max_stripping_mA_cm2)


def check(params: CSCParameters, instrument: Instrument, limits: InstrumentLimits) -> None:
    check_plating("csc", params, max(params.max_stripping_mA_cm2, params.plating_mA_cm2), instrument, limits)


def plan(params: CSCParameters) -> Plan:
    monitor = params.monitor()
    log = HalfCycleLog()
    found: dict = {"critical_stripping_mA_cm2": None, "voiding_rise_percent": None}
    last_passed = None

    def result(stopped_by: str, cycles: int, stop=None) -> dict:
        suspect = monitor.suspect() if stopped_by != "short" else None
        return {**found, "last_passed_stripping_mA_cm2": last_passed, **short_fields(stop), "suspect_short": suspect, **log.result(),
                "detection": monitor.criterion.model_dump(), "stopped_by": stopped_by, "cycles": cycles, "electrodes": params.electrodes}

    densities = params.stripping_densities_mA_cm2()
    for cycle, stripping in enumerate(densities, start=1):
        for phase, density in (("strip", stripping), ("plate", params.plating_mA_cm2)):
            label = f"cycle {cycle}: {phase} {density:g} mA/cm2"
            watch = monitor.watch(params.sample_interval_s, label)
            outcome = yield Galvanostatic(
                current_A=params.current_A(density) * (1.0 if phase == "strip" else -1.0),
                duration_s=params.duration_s(density),
                sample_interval_s=params.sample_interval_s,
                label=label,
                stops=params.stops(watch),
                keep_samples=False,
            )
            figures = log.add(watch, "csc", phase, density)
            stop = outcome.stop
            if stop is not None and stop.reason == "short":
                yield Event(EventKind.SHORT, short_message(stop, label))
                return result("short", cycle, stop)
            limit = stop is not None and stop.reason == "voltage_limit"
            if limit:
                yield Event(EventKind.LIMIT, f"|V| reached {abs(stop.details['voltage_V']):.3f} V ({label})")
            if phase == "plate":
                if limit:
                    return result("voltage_limit", cycle)
                continue
            rise = figures["rise_percent"]
            voiding = rise is not None and rise > params.void_rise_percent
            if voiding and found["critical_stripping_mA_cm2"] is None:
                found.update(critical_stripping_mA_cm2=stripping, voiding_rise_percent=rise)
                yield Event(EventKind.VOIDING, f"{label}: polarization rose {rise:.3g} % (threshold {params.void_rise_percent:g} %)")
            if limit:
                return result("voiding" if voiding else "voltage_limit", cycle)
            if voiding and params.stop_on_voiding:
                return result("voiding", cycle)
            if found["critical_stripping_mA_cm2"] is None:
                last_passed = stripping
    return result("voiding" if found["critical_stripping_mA_cm2"] is not None else "max_current", len(densities))


CSC = ProtocolDefinition(
    name="csc",
    title="Critical stripping current by stepped-current stripping",
    instrument_kind="potentiostat",
    parameters=CSCParameters,
    columns=CHRONO_COLUMNS,
    plan=plan,
    check=check,
    presentation=Presentation("plating", "CHRONOP", "critical_stripping_mA_cm2"),
    pause_hold=HoldMode.OPEN_CIRCUIT,
    planned_steps=lambda p: 2 * len(p.stripping_densities_mA_cm2()),
    run_attributes=plating_attributes,
    planned_samples=planned_samples,
)
