"""Memristive cycling of a c-AFM junction: set, read, reset, read, for hundreds of cycles.

Methods (after the LLZO c-AFM study; see docs/science.md): each cycle sweeps the tip bias from 0
to the set limit (filament forms: low-resistance state, LRS) and back, reads the current at a
small read bias, sweeps to the reset limit (filament dissolves: high-resistance state, HRS) and
back, and reads again.  The result gives, per cycle, the set bias (where the conductance surged),
the LRS and HRS read currents and their ratio (on/off).  A tip reaches ~1e5 for > 200 cycles; a
500 um Au pad stays below 10 and hardly resets.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from echemd.config.models import InstrumentLimits
from echemd.drivers.base import Instrument
from echemd.protocols.base import Plan, Presentation, ProtocolDefinition, VoltageSweep
from echemd.protocols.cafm import SWEEP_COLUMNS, check_sweep
from echemd.protocols.analysis.detection import find_triggering_bias


class MemristorParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    set_limit_V: float = Field(-0.2, lt=0, description="most negative bias of the set sweep, V (the c-AFM memristor study's -0.2 V)")
    reset_limit_V: float = Field(1.0, gt=0, description="most positive bias of the reset sweep, V (the study's +1 V)")
    read_V: float = Field(0.1, description="read bias, V (between the set and reset thresholds)")
    step_V: float = Field(0.01, gt=0, le=0.5, description="bias step of the sweeps, V")
    rate_V_s: float = Field(1.0, gt=0, description="sweep rate, V/s")
    cycles: int = Field(200, ge=1, le=100_000)
    compliance_A: float = Field(1e-3, gt=0, description="current compliance, A")
    surge_factor: float = Field(100.0, gt=1)
    site_label: str = Field("", max_length=64)

    @model_validator(mode="after")
    def _read_between(self) -> "MemristorParameters":
        if not self.set_limit_V < self.read_V < self.reset_limit_V:
            raise ValueError("read_V must lie between set_limit_V and reset_limit_V")
        return self

    @property
    def dwell_s(self) -> float:
        return self.step_V / self.rate_V_s

    def leg(self, limit_V: float) -> np.ndarray:
        n = max(1, int(round(abs(limit_V) / self.step_V)))
        out = np.linspace(0.0, limit_V, n + 1)
        return np.concatenate([out, out[-2::-1]])


def check(params: MemristorParameters, instrument: Instrument, limits: InstrumentLimits) -> None:
    largest = max(abs(params.set_limit_V), abs(params.reset_limit_V))
    check_sweep("memristor", largest, params.compliance_A, params.dwell_s, instrument, limits)


def plan(params: MemristorParameters) -> Plan:
    set_leg, reset_leg = params.leg(params.set_limit_V), params.leg(params.reset_limit_V)
    read = np.array([params.read_V])
    cycle_biases = np.concatenate([set_leg, read, reset_leg, read])
    lrs_at, hrs_at = len(set_leg), len(cycle_biases) - 1
    set_bias, lrs, hrs = [], [], []
    for cycle in range(1, params.cycles + 1):
        sweep = yield VoltageSweep(cycle_biases, params.compliance_A, params.dwell_s, label=f"cycle {cycle}: set, read, reset, read")
        current = sweep.columns["current_A"]
        set_bias.append(find_triggering_bias(set_leg, current[: len(set_leg)], params.surge_factor))
        lrs.append(float(current[lrs_at]))
        hrs.append(float(current[hrs_at]))
    on_off = [abs(on / off) if off else None for on, off in zip(lrs, hrs)]
    valid = [r for r in on_off if r is not None]
    return {
        "set_bias_V": set_bias,
        "lrs_current_A": lrs,
        "hrs_current_A": hrs,
        "on_off": on_off,
        "median_on_off": float(np.median(valid)) if valid else None,
        "cycles": params.cycles,
        "site_label": params.site_label,
    }


MEMRISTOR = ProtocolDefinition(
    name="memristor",
    title="Memristive set/reset cycling of a c-AFM junction",
    instrument_kind="sourcemeter",
    parameters=MemristorParameters,
    columns=SWEEP_COLUMNS,
    plan=plan,
    check=check,
    presentation=Presentation("sweep", "CV", "median_on_off"),
    planned_steps=lambda p: p.cycles,
)
