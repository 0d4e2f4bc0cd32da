"""Critical current density (CCD) of a Li|SSE|Li symmetric cell by stepped-current plating/stripping.

Methods (after the Li|Li6PS5Cl|Li CCD studies; see docs/science.md): each cycle plates Li on the
working electrode at a current density that rises by a fixed increment per cycle, then strips it
at a fixed current density, each half cycle passing the same areal capacity (or lasting the same
time).  A dendrite that shorts the cell shows as a fall of the polarization (see shorts.py: every
half cycle is watched); the CCD is the plating current density of the step in which the short began.

Options labs use: conditioning cycles at a low current density before the staircase (they form a
stable interface; a short there means the cell had no CCD to measure), and a rest at open circuit
after every half cycle (the open-circuit voltage is recorded: it tells interface relaxation from
a short, which pulls it to zero).

Parameters are in lab units (mA/cm2, mAh/cm2, cm2 or mm); they are converted to SI once.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from echemd.config.models import InstrumentLimits
from echemd.drivers.base import Instrument
from echemd.daemon.vocabulary import EventKind, HoldMode
from echemd.protocols.base import Event, Galvanostatic, OpenCircuit, Plan, Presentation, ProtocolDefinition, Stop, StepOutcome
from echemd.protocols.impedance_sweep import IMPEDANCE_COLUMNS, ImpedanceSweep, landmarks
from echemd.protocols.plating_base import (CHRONO_COLUMNS, HalfCycleParameters, check_plating, planned_samples, plating_attributes, short_fields,
                                            short_message, staircase)
from echemd.protocols.analysis.shorts import ShortMonitor, ShortWatch

#: Per-step figures of a CCD result (``steps``: one list per key, a value per half cycle).
#: ``stage``: "conditioning" or "ccd"; ``ocv_after_mV``: open-circuit voltage at the end of the rest
#: that followed the half cycle (None without rests).
STEP_KEYS = ("label", "stage", "phase", "current_density_mA_cm2", "duration_s", "charge_mAh_cm2", "polarization_mV", "asr_ohm_cm2",
             "rise_percent", "ocv_after_mV")


class CCDParameters(HalfCycleParameters):
    plating_start_mA_cm2: float = Field(0.5, gt=0, description="plating current density of the first cycle, mA/cm2")
    plating_increment_mA_cm2: float = Field(0.5, gt=0, description="rise of the plating current density per cycle, mA/cm2")
    stripping_mA_cm2: float = Field(0.2, gt=0, description="stripping current density (every cycle), mA/cm2")
    max_plating_mA_cm2: float = Field(3.0, gt=0, description="last plating current density tried, mA/cm2")
    stop_on_short: bool = Field(True, description="end the run at the first short (else record it and go on)")
    conditioning_cycles: int = Field(0, ge=0, le=1000, description="plating/stripping cycles at conditioning_mA_cm2 before the staircase")
    conditioning_mA_cm2: float = Field(0.1, gt=0, description="current density of the conditioning cycles (both half cycles), mA/cm2")
    rest_s: float = Field(0.0, ge=0, description="rest at open circuit after every half cycle, s (0: none); its voltage is recorded")
    eis_at: list[Literal["start", "plating", "stripping", "end"]] = Field(
        default_factory=list, description="when to measure an impedance spectrum (at open circuit, after the rest): before the first half "
        "cycle, after every plating or stripping half cycle, at the end (after a short too); recorded in the same run file")
    eis: ImpedanceSweep = Field(default_factory=lambda: ImpedanceSweep(end_Hz=1.0), description="the spectra's frequency sweep")

    @model_validator(mode="after")
    def _consistent(self) -> "CCDParameters":
        if 0 < self.rest_s < self.sample_interval_s:
            raise ValueError(f"rest_s ({self.rest_s:g} s) is shorter than one sample interval ({self.sample_interval_s:g} s)")
        if self.max_plating_mA_cm2 < self.plating_start_mA_cm2:
            raise ValueError(
                f"max_plating_mA_cm2 ({self.max_plating_mA_cm2}) is below plating_start_mA_cm2 ({self.plating_start_mA_cm2})"
            )
        self.check_detectable(self.max_plating_mA_cm2, "max_plating_mA_cm2")
        return self

    def plating_densities_mA_cm2(self) -> list[float]:
        """The plating current densities of every cycle of the staircase, mA/cm2."""
        return staircase(self.plating_start_mA_cm2, self.plating_increment_mA_cm2, self.max_plating_mA_cm2)

    def half_cycles(self) -> Iterator["HalfCycle"]:
        """Every half cycle the run may make, in order: conditioning, then the staircase."""
        for cycle in range(1, self.conditioning_cycles + 1):
            for phase in ("plate", "strip"):
                yield HalfCycle("conditioning", cycle, phase, self.conditioning_mA_cm2, None)
        for cycle, plating in enumerate(self.plating_densities_mA_cm2(), start=1):
            yield HalfCycle("ccd", cycle, "plate", plating, plating)
            yield HalfCycle("ccd", cycle, "strip", self.stripping_mA_cm2, plating)

    def planned_duration_s(self) -> float:
        return sum(self.duration_s(half.density_mA_cm2) + self.rest_s for half in self.half_cycles())

    def planned_steps(self) -> int:
        cycles = self.conditioning_cycles + len(self.plating_densities_mA_cm2())
        per_half_cycle = 1 + (self.rest_s > 0)
        spectra = ("start" in self.eis_at) + ("end" in self.eis_at) + cycles * (("plating" in self.eis_at) + ("stripping" in self.eis_at))
        return 2 * cycles * per_half_cycle + spectra


@dataclass(frozen=True)
class HalfCycle:
    """One half cycle of a CCD run: its stage ("conditioning" or "ccd"), cycle number in that stage,
    phase ("plate" or "strip"), current density (mA/cm2) and the plating current density of its
    staircase cycle (None while conditioning)."""

    stage: str
    cycle: int
    phase: str
    density_mA_cm2: float
    plating_mA_cm2: float | None

    @property
    def label(self) -> str:
        name = "conditioning" if self.stage == "conditioning" else "cycle"
        return f"{name} {self.cycle}: {self.phase} {self.density_mA_cm2:g} mA/cm2"


def check(params: CCDParameters, instrument: Instrument, limits: InstrumentLimits) -> None:
    conditioning = params.conditioning_mA_cm2 if params.conditioning_cycles else 0.0
    check_plating("ccd", params, max(params.max_plating_mA_cm2, params.stripping_mA_cm2, conditioning), instrument, limits)
    if params.eis_at:
        params.eis.check("ccd", instrument, limits)


class HalfCycleLog:
    """Per-step figures of a run's half cycles (``steps``, see STEP_KEYS) and the charge plated and stripped."""

    def __init__(self) -> None:
        self.steps: dict[str, list] = {key: [] for key in STEP_KEYS}
        self.charge_mAh_cm2 = {"plate": 0.0, "strip": 0.0}

    def add(self, watch: ShortWatch, stage: str, phase: str, density_mA_cm2: float | None) -> dict:
        """Note a finished half cycle as its ``watch`` saw it; returns its figures."""
        noted = {"label": watch.label, "stage": stage, "phase": phase, "current_density_mA_cm2": density_mA_cm2,
                 **watch.step_record(), "ocv_after_mV": None}
        self.charge_mAh_cm2[phase] += noted["charge_mAh_cm2"]
        for key in STEP_KEYS:
            self.steps[key].append(noted[key])
        return noted

    def rest(self, ocv_V: float) -> None:
        """Note the open-circuit voltage (V) at the end of the rest after the latest half cycle."""
        if self.steps["ocv_after_mV"]:
            self.steps["ocv_after_mV"][-1] = ocv_V * 1e3

    def result(self) -> dict:
        return {"plated_mAh_cm2": self.charge_mAh_cm2["plate"], "stripped_mAh_cm2": self.charge_mAh_cm2["strip"], "steps": self.steps}


class CCDVerdict:
    """The CCD result, built as the half cycles end: one code path for the live plan and `analyze ccd`.

    A short found while plating belongs to that plating step; one first seen while stripping began
    in the plating step before it (plating grows dendrites; its collapse may finish only after the
    current reversed).  A cell found shorted from its very first step, or while conditioning, has
    no CCD (``ccd_mA_cm2`` None; ``shorted_at_start`` or ``shorted_in_conditioning`` true).
    ``last_passed_mA_cm2`` is the last plating density whose plating and stripping both ended
    without a short.
    """

    def __init__(self, monitor: ShortMonitor) -> None:
        self.monitor = monitor
        self.last_passed: float | None = None
        self.short: dict | None = None
        self.log = HalfCycleLog()

    def half_cycle(self, plating_mA_cm2: float | None, phase: str, stop: Stop | None, watch: ShortWatch | None = None,
                   density_mA_cm2: float | None = None, stage: str = "ccd") -> bool:
        """Note a finished half cycle (``phase`` "plate" or "strip") of the cycle plating at
        ``plating_mA_cm2`` (None while conditioning), at ``density_mA_cm2`` (its own current
        density), as its ``watch`` saw it; True when it holds the run's first short."""
        if watch is not None:
            self.log.add(watch, stage, phase, density_mA_cm2)
        if self.short is None and stop is not None and stop.reason == "short":
            at_start = bool(stop.details["shorted_from_start"])
            conditioning = stage == "conditioning"
            self.short = {"ccd_mA_cm2": None if at_start or conditioning else plating_mA_cm2, **short_fields(stop),
                          "short_phase": phase, "shorted_at_start": at_start, "shorted_in_conditioning": conditioning}
            if watch is not None:  # how far into the step, and how much Li it had moved, when the short began
                into_s = stop.details["onset_s"] - watch.started_s
                self.short["short_time_into_step_s"] = into_s
                self.short["short_capacity_mAh_cm2"] = (density_mA_cm2 or 0.0) * into_s / 3600
            return True
        if self.short is None and phase == "strip" and plating_mA_cm2 is not None:
            self.last_passed = plating_mA_cm2
        return False

    def result(self) -> dict:
        """ccd_mA_cm2, last_passed_mA_cm2, short_detected_at_s, drop_mV, short_rule, short_phase,
        shorted_at_start, suspect_short (evidence of a short no rule caught, or None) and the
        criterion's settings (``detection``)."""
        short = self.short or {"ccd_mA_cm2": None, **short_fields(None), "short_phase": None, "shorted_at_start": False,
                               "shorted_in_conditioning": False, "short_time_into_step_s": None, "short_capacity_mAh_cm2": None}
        suspect = self.monitor.suspect() if self.short is None else None
        return {**short, "last_passed_mA_cm2": None if suspect else self.last_passed, "suspect_short": suspect,
                **self.log.result(), "detection": self.monitor.criterion.model_dump()}


def plan(params: CCDParameters) -> Plan:
    monitor = params.monitor()
    verdict = CCDVerdict(monitor)
    spectra: list[dict] = []
    if "start" in params.eis_at:
        spectra.append((yield from _spectrum(params, "start", "before the first half cycle")))
    stopped_by, cycles = yield from _half_cycles(params, verdict, spectra)
    if "end" in params.eis_at:
        spectra.append((yield from _spectrum(params, "end", "at the end")))
    result = {**verdict.result(), "stopped_by": stopped_by, "cycles": cycles, "electrodes": params.electrodes}
    if params.eis_at:
        result["impedance"] = spectra
    if result["suspect_short"] is not None:
        yield Event(EventKind.SUSPECT_SHORT, result["suspect_short"]["reason"])
    return result


def _half_cycles(params: CCDParameters, verdict: CCDVerdict, spectra: list[dict]) -> Generator[Any, StepOutcome, tuple[str, int]]:
    """Run the half cycles (each followed by its rest and spectrum, where asked) until the last or a
    stop; returns why it stopped and the staircase cycles begun."""
    cycles = 0
    after = {"plate": "plating" in params.eis_at, "strip": "stripping" in params.eis_at}
    for half in params.half_cycles():
        cycles += half.stage == "ccd" and half.phase == "plate"
        watch = verdict.monitor.watch(params.sample_interval_s, half.label) if verdict.short is None else None  # (after a short: not judged)
        outcome = yield Galvanostatic(
            current_A=params.current_A(half.density_mA_cm2) * (-1.0 if half.phase == "plate" else 1.0),
            duration_s=params.duration_s(half.density_mA_cm2),
            sample_interval_s=params.sample_interval_s,
            label=half.label,
            stops=params.stops(watch),
            keep_samples=False,
        )
        stop = outcome.stop
        if stop is not None and stop.reason == "voltage_limit":
            yield Event(EventKind.LIMIT, f"|V| reached {abs(stop.details['voltage_V']):.3f} V ({half.label})")
            return "voltage_limit", cycles
        if verdict.half_cycle(half.plating_mA_cm2, half.phase, stop, watch, half.density_mA_cm2, half.stage):
            yield Event(EventKind.SHORT, short_message(stop, half.label))
            if params.stop_on_short or half.stage == "conditioning":
                return "short", cycles
        if params.rest_s > 0:
            rest = yield OpenCircuit(params.rest_s, params.sample_interval_s, f"{half.label}: rest at open circuit")
            if rest.n_samples:
                verdict.log.rest(float(rest.columns["voltage_V"][-1]))
        if after[half.phase]:
            spectra.append((yield from _spectrum(params, half.phase, f"after {half.label}")))
    return ("short" if verdict.short else "max_current"), cycles


def _spectrum(params: CCDParameters, at: str, where: str) -> Generator[Any, StepOutcome, dict]:
    """Measure an impedance spectrum at open circuit; returns its landmarks, labelled."""
    label = f"EIS {where}"
    outcome = yield params.eis.step(label)
    return {"at": at, "label": label, "time_s": float(outcome.columns["time_s"][0]) if outcome.n_samples else None,
            **(landmarks(outcome.columns, params.electrode_area_cm2) if outcome.n_samples else {"points": 0})}


def _hours(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.3f} h"


def _millivolts(millivolts: float | None) -> str:
    return "-" if millivolts is None else f"{millivolts:.2f} mV"


CCD = ProtocolDefinition(
    name="ccd",
    title="Critical current density by stepped-current plating/stripping",
    instrument_kind="potentiostat",
    parameters=CCDParameters,
    columns=CHRONO_COLUMNS,
    plan=plan,
    check=check,
    presentation=Presentation("plating", "CHRONOP", "ccd_mA_cm2", summary=lambda r: (
        f"CCD = {r.get('ccd_mA_cm2')} mA/cm2 (last passed {r.get('last_passed_mA_cm2')} mA/cm2), short detected at "
        f"{_hours(r.get('short_detected_at_s'))}, drop {_millivolts(r.get('drop_mV'))}")),
    pause_hold=HoldMode.OPEN_CIRCUIT,
    planned_steps=CCDParameters.planned_steps,
    run_attributes=plating_attributes,
    planned_samples=planned_samples,
    extra_columns=lambda p: IMPEDANCE_COLUMNS if p.eis_at else (),
)
