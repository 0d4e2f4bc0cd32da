"""What every Li plating protocol shares: the electrode, sampling, the safety limit and the short detector.

Parameters are in lab units (mA/cm2, mAh/cm2, cm2 or mm, mV); :class:`PlatingParameters` converts
them to SI once (``current_A``, ``monitor()``).  Plating Li on the working electrode is a negative
current.
"""

from __future__ import annotations

import math

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from echemd.config.models import InstrumentLimits
from echemd.drivers.base import Instrument, InstrumentRefused
from echemd.protocols.base import Column, ProtocolRefused, Stop, StopCondition
from echemd.protocols.analysis.detection import VoltageLimit
from echemd.protocols.analysis.shorts import ShortDetection, ShortMonitor, ShortWatch, smoothing_samples

CHRONO_COLUMNS = (
    Column("time_s", "s"),
    Column("current_A", "A"),
    Column("voltage_V", "V", "working electrode against the reference lead: the counter electrode (two electrodes, the cell "
                             "voltage) or a reference electrode (three electrodes); the run's electrodes attribute says which"),
)
#: What the voltage is, by electrode configuration (the run file's ``voltage_measured`` attribute).
VOLTAGE_MEASURED = {2: "working vs counter electrode (cell voltage)", 3: "working vs reference electrode"}


class PlatingParameters(ShortDetection):
    """The electrode, sampling and safety limit of a plating protocol, and the short criterion's parameters
    (its model configuration too: extra keys and non-finite numbers are refused)."""

    ALTERNATIVES: ClassVar[tuple[frozenset[str], ...]] = (frozenset({"area_cm2", "diameter_mm"}),)

    area_cm2: float | None = Field(None, gt=0, le=10_000, description="electrode area, cm2 (or give diameter_mm)")
    diameter_mm: float | None = Field(None, gt=0, le=1_000, description="electrode diameter, mm (or give area_cm2)")
    sample_interval_s: float = Field(1.0, gt=0, description="time between samples, s")
    voltage_limit_V: float = Field(1.0, gt=0, description="|V| beyond which the run stops (safety), V")
    electrodes: Literal[2, 3] = Field(
        2, description="2: reference and counter leads on the counter electrode (the voltage is the cell's); 3: the reference "
        "lead on a reference electrode (the voltage, the polarization and the short criterion are the working electrode's)")

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

    def monitor(self) -> ShortMonitor:
        """A short monitor for one run of these parameters (the cell's history lives in it)."""
        return ShortMonitor(self.detection(), self.electrode_area_cm2)

    def stops(self, watch: ShortWatch | None = None) -> tuple[StopCondition, ...]:
        """The step's stop conditions: the safety limit, and the short watch where one is given."""
        return (VoltageLimit(self.voltage_limit_V),) + ((watch,) if watch is not None else ())

    def planned_duration_s(self) -> float:
        """The longest the run can last (every step to its end), s."""
        raise NotImplementedError

    def detection_time_s(self) -> float:
        """Shortest step in which a short can be seen at all, s."""
        return self.settle_s + smoothing_samples(self.smoothing_s, self.sample_interval_s) * self.sample_interval_s + self.confirm_s


class HalfCycleParameters(PlatingParameters):
    """Plating parameters of protocols whose half cycles pass an areal capacity, or last a time."""

    ALTERNATIVES: ClassVar[tuple[frozenset[str], ...]] = PlatingParameters.ALTERNATIVES + (frozenset({"capacity_mAh_cm2", "half_cycle_s"}),)

    capacity_mAh_cm2: float | None = Field(0.2, gt=0, description="areal capacity of each half cycle, mAh/cm2 (or give half_cycle_s)")
    half_cycle_s: float | None = Field(None, gt=0, description="duration of each half cycle, s (instead of a capacity)")

    @model_validator(mode="after")
    def _one_half_cycle_size(self):
        if self.half_cycle_s is not None and "capacity_mAh_cm2" in self.model_fields_set:
            raise ValueError("give capacity_mAh_cm2 or half_cycle_s, not both")
        if self.half_cycle_s is None and self.capacity_mAh_cm2 is None:
            raise ValueError("give capacity_mAh_cm2 or half_cycle_s")
        return self

    def duration_s(self, density_mA_cm2: float) -> float:
        """Duration of a half cycle at ``density_mA_cm2``, s."""
        if self.half_cycle_s is not None:
            return self.half_cycle_s
        return self.capacity_mAh_cm2 / density_mA_cm2 * 3600.0

    def check_detectable(self, fastest_mA_cm2: float, name: str) -> None:
        """Raise ValueError when the half cycle at ``fastest_mA_cm2`` (``name``d) is too short for the detector."""
        shortest_s = self.duration_s(fastest_mA_cm2)
        if shortest_s <= self.detection_time_s():
            raise ValueError(
                f"the half cycle at {name} lasts {shortest_s:.4g} s, not longer than settle_s + "
                f"the smoothing window + confirm_s = {self.detection_time_s():.4g} s: the detector would never see it"
            )


def staircase(start: float, increment: float, end: float) -> list[float]:
    """Current densities from ``start`` by ``increment`` up to ``end`` (included where it falls on a step), mA/cm2."""
    count = math.floor((end - start) / increment + 1e-9) + 1
    return [round(start + k * increment, 9) for k in range(count)]


def check_plating(name: str, params: PlatingParameters, largest_mA_cm2: float, instrument: Instrument, limits: InstrumentLimits) -> None:
    """Refuse, before anything is applied, what the instrument or the lab's limits cannot run."""
    if instrument.electrodes is not None and instrument.electrodes != params.electrodes:
        raise ProtocolRefused(
            f"{instrument.name} is wired with {instrument.electrodes} electrodes, the run asks for electrodes = {params.electrodes}"
        )
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


def planned_samples(params: PlatingParameters) -> int:
    """The most samples a plating run records: its longest duration over the sample interval."""
    return math.ceil(params.planned_duration_s() / params.sample_interval_s)


def plating_attributes(params: PlatingParameters) -> dict[str, object]:
    """The run file's record of how the cell was wired (root attributes)."""
    return {"electrodes": params.electrodes, "voltage_measured": VOLTAGE_MEASURED[params.electrodes]}


def short_fields(stop: Stop | None) -> dict:
    """What every plating result says of a short: when, how large, which rule."""
    if stop is None or stop.reason != "short":
        return {"short_detected_at_s": None, "drop_mV": None, "short_rule": None}
    return {"short_detected_at_s": stop.time_s, "drop_mV": stop.details["drop_mV"], "short_rule": stop.details["rule"]}


def short_message(stop: Stop, where: str) -> str:
    return (f"short ({stop.details['rule']} rule) at {stop.time_s / 3600:.3f} h, {where}: polarization "
            f"{stop.details['polarization_mV']:.3g} mV, fell {stop.details['drop_mV']:.3g} mV")
