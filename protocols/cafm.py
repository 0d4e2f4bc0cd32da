"""c-AFM bias sweeps on a sourcemeter: where a Li filament is triggered under the tip.

Methods (after the LLZO c-AFM study; see docs/science.md): the bias on the tip (vs the Li
counter electrode) is swept cyclically from ``start_V`` to the negative vertex, on to the positive
vertex and back to the start, ``cycles`` times, at ``rate_V_s`` in steps of ``step_V``, with the
current limited to ``compliance_A`` (1 mA for a tip).  The filament triggering bias of each sweep is
where the junction's conductance surges above its initial (ionically blocking) value.

Per cycle the result gives the triggering bias, the R^2 of a straight line through the back scan
(an ohmic filament gives a linear back scan) and, with more than one cycle, the on/off ratio (see
:func:`~echemd.protocols.analysis.analyze_cafm`).  Memristor cycling is its own protocol
(:mod:`echemd.protocols.memristor`).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from echemd.config.models import InstrumentLimits
from echemd.drivers.base import Instrument
from echemd.protocols.base import Column, Plan, Presentation, ProtocolDefinition, ProtocolRefused, VoltageSweep
from echemd.protocols.analysis.records import analyze_cafm


class CAFMSweepParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_V: float = Field(0.0, description="bias where each cycle starts and ends, V vs Li/Li+")
    negative_vertex_V: float = Field(-0.5, lt=0, description="most negative bias, V")
    positive_vertex_V: float = Field(0.0, ge=0, description="most positive bias, V (0: no positive excursion)")
    step_V: float = Field(0.005, gt=0, le=1.0, description="bias step, V")
    rate_V_s: float = Field(0.5, gt=0, description="sweep rate, V/s")
    cycles: int = Field(1, ge=1, le=10_000)
    compliance_A: float = Field(1e-3, gt=0, description="current compliance, A")
    surge_factor: float = Field(100.0, gt=1, description="conductance rise over the initial one that marks triggering")
    site_label: str = Field("", max_length=64, description="name of the spot under the tip")
    site_x_nm: float | None = Field(None, description="tip position, nm")
    site_y_nm: float | None = None
    distance_to_grain_boundary_nm: float | None = Field(None, ge=0, description="from the topography, nm")

    @model_validator(mode="after")
    def _start_between_vertices(self) -> "CAFMSweepParameters":
        if not self.negative_vertex_V <= self.start_V <= self.positive_vertex_V:
            raise ValueError("start_V must lie between negative_vertex_V and positive_vertex_V")
        return self

    @property
    def dwell_s(self) -> float:
        return self.step_V / self.rate_V_s

    def cycle_biases_V(self) -> np.ndarray:
        """One cycle: start -> negative vertex -> positive vertex -> start, V."""
        legs = [(self.start_V, self.negative_vertex_V), (self.negative_vertex_V, self.positive_vertex_V), (self.positive_vertex_V, self.start_V)]
        points = [self.start_V]
        for a, b in legs:
            n = int(round(abs(b - a) / self.step_V))
            points.extend(np.linspace(a, b, n + 1)[1:] if n else [])
        return np.asarray(points)


def check_sweep(name: str, largest_V: float, compliance_A: float, dwell_s: float, instrument: Instrument, limits: InstrumentLimits) -> None:
    """Refuse, before the tip is touched, a sweep beyond the lab's limits or faster than the instrument."""
    if largest_V > limits.max_abs_voltage_V:
        raise ProtocolRefused(f"{instrument.name}: a {largest_V:g} V bias exceeds the configured limit max_abs_voltage_V = {limits.max_abs_voltage_V:g} V")
    if compliance_A > limits.max_abs_current_A:
        raise ProtocolRefused(f"{instrument.name}: compliance {compliance_A:g} A exceeds the configured limit max_abs_current_A = {limits.max_abs_current_A:g} A")
    fastest = instrument.capabilities.min_sample_interval_s
    if dwell_s < fastest:
        raise ProtocolRefused(f"{instrument.name}: step_V / rate_V_s = {dwell_s:g} s per point is faster than the instrument's {fastest:g} s")


def check(params: CAFMSweepParameters, instrument: Instrument, limits: InstrumentLimits) -> None:
    largest = max(abs(params.negative_vertex_V), abs(params.positive_vertex_V))
    check_sweep("cafm-sweep", largest, params.compliance_A, params.dwell_s, instrument, limits)


def plan(params: CAFMSweepParameters) -> Plan:
    biases = params.cycle_biases_V()
    bias, current, hits = [], [], 0
    for cycle in range(1, params.cycles + 1):
        sweep = yield VoltageSweep(biases, params.compliance_A, params.dwell_s, label=f"cycle {cycle}: {params.start_V:g} -> {params.negative_vertex_V:g} -> {params.positive_vertex_V:g} V")
        bias.append(sweep.columns["bias_V"])
        current.append(sweep.columns["current_A"])
        hits += int(sweep.columns["compliance"].sum())
    result = analyze_cafm(np.concatenate(bias), np.concatenate(current), params.surge_factor)
    return {**result, "compliance_hits": hits, "site_label": params.site_label, "cycles": params.cycles}


#: What a sourcemeter sweep records (c-AFM and memristor protocols).
SWEEP_COLUMNS = (
    Column("time_s", "s"),
    Column("bias_V", "V", "programmed source voltage; where compliance is 1 the terminal voltage is lower (the source limits the current)"),
    Column("current_A", "A", "measured current; NaN where the reading overflowed its range"),
    Column("compliance", "1", "1 where the reading hit the current compliance, its measurement range or overflowed; else 0"),
)

def summary(result: dict) -> str:
    """Triggering bias per sweep, the back scans' linearity and the on/off ratio, in one line."""
    biases = ", ".join("none" if b is None else f"{b:+.3f} V" for b in result.get("triggering_bias_V", []))
    on_off = result.get("on_off") or []
    return f"triggering bias per sweep: {biases}; back scan R^2 >= {min(result.get('ohmic_r2') or [0]):.4f}; on/off ~{(on_off or [0])[-1]:.1e}"


CAFM_SWEEP = ProtocolDefinition(
    name="cafm-sweep",
    title="c-AFM cyclic bias sweep: filament triggering bias",
    instrument_kind="sourcemeter",
    parameters=CAFMSweepParameters,
    columns=SWEEP_COLUMNS,
    plan=plan,
    check=check,
    presentation=Presentation("sweep", "CV", "triggering_bias_V", summary=summary),
    planned_steps=lambda p: p.cycles,
)
