"""Pydantic models of the daemon configuration.

Units are in the field names (``_V``, ``_A``, ``_s``, ``_ohm``, ``_mA_cm2`` ...).  Every model
forbids unknown keys, so a typo in a TOML file fails at start instead of being ignored.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StrictModel(BaseModel):
    """Base of every configuration model: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


ClockSpeed = Union[Literal["max"], Annotated[float, Field(gt=0)]]
"""Clock of a simulated instrument: 1 = real time, N = N times faster, "max" = as fast as possible."""

InstrumentName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]


class InstrumentLimits(StrictModel):
    """Hard limits of one instrument in this lab; a run asking for more is refused at submit."""

    max_abs_voltage_V: float = Field(gt=0, description="largest |voltage| a run may apply or reach, V")
    max_abs_current_A: float = Field(gt=0, description="largest |current| a run may apply or draw, A")


class SymmetricCellConfig(StrictModel):
    """A Li|solid electrolyte|Li symmetric cell, as held by a simulated potentiostat.

    Defaults describe Li|Li6PS5Cl|Li with 2 mm diameter Li discs (flat interface, CCD ~1 mA/cm2).
    """

    area_cm2: float = Field(math.pi * 0.1**2, gt=0, description="electrode area, cm2")
    ohmic_asr_ohm_cm2: float = Field(35.0, gt=0, description="bulk + interface ohmic ASR, Ohm cm2")
    exchange_current_mA_cm2: float = Field(0.5, gt=0, description="exchange current density of each Li electrode, mA/cm2")
    temperature_C: float = Field(25.0, gt=-100, lt=300, description="cell temperature, degC")
    polarization_time_constant_s: float = Field(
        20.0, gt=0, description="time constant of the charge-transfer polarization after a current step, s"
    )
    critical_current_mA_cm2: float = Field(1.1, gt=0, description="plating current density above which dendrites grow, mA/cm2")
    incubation_charge_mAh_cm2: float = Field(
        0.01, ge=0, description="plating charge above the critical current before the dendrite shorts the cell, mAh/cm2"
    )
    short_resistance_ohm: float = Field(2.0, gt=0, description="final resistance of the short, Ohm")
    short_collapse_s: float = Field(15.0, gt=0, description="time constant of the short's resistance collapse, s")
    noise_V: float = Field(50e-6, ge=0, description="rms voltage measurement noise, V")
    seed: int = Field(0, ge=0, description="seed of the cell's random numbers (noise)")


class TipJunctionConfig(StrictModel):
    """A c-AFM junction Li|LLZO|Pt tip, as held by a simulated sourcemeter (bias on the tip vs Li)."""

    triggering_bias_V: float = Field(-0.12, lt=0, description="bias at which a Li filament forms, V vs Li/Li+")
    off_resistance_ohm: float = Field(1e10, gt=0, description="junction resistance before the filament forms, Ohm")
    filament_resistance_ohm: float = Field(2e3, gt=0, description="resistance of a formed filament, Ohm")
    reset_bias_V: float = Field(1.0, gt=0, description="bias at which the filament dissolves, V")
    noise_A: float = Field(1e-12, ge=0, description="rms current measurement noise, A")
    seed: int = Field(0, ge=0)


class _InstrumentBase(StrictModel):
    name: InstrumentName
    limits: InstrumentLimits


class SimulatedPotentiostatConfig(_InstrumentBase):
    """A simulated potentiostat (Gamry Interface 1010E class) holding a symmetric cell."""

    driver: Literal["simulated-potentiostat"]
    clock: ClockSpeed = "max"
    cell: SymmetricCellConfig = SymmetricCellConfig()


class SimulatedSourcemeterConfig(_InstrumentBase):
    """A simulated sourcemeter (Keithley 2400 semantics) holding a c-AFM tip junction."""

    driver: Literal["simulated-sourcemeter"]
    clock: ClockSpeed = "max"
    junction: TipJunctionConfig = TipJunctionConfig()


InstrumentConfig = Annotated[
    Union[SimulatedPotentiostatConfig, SimulatedSourcemeterConfig],
    Field(discriminator="driver"),
]


class DaemonConfig(StrictModel):
    """Everything `echemd serve` needs: endpoints, where run files go, and the instruments."""

    control_endpoint: str = Field("tcp://127.0.0.1:5710", description="ZeroMQ ROUTER endpoint for control requests")
    publish_endpoint: str = Field("tcp://127.0.0.1:5711", description="ZeroMQ PUB endpoint for the data stream")
    data_dir: Path = Field(Path("echemd-data"), description="folder of the run files (relative to the working directory)")
    flush_interval_s: float = Field(0.5, gt=0, le=1.0, description="run files are flushed at least this often, s")
    instruments: list[InstrumentConfig] = Field(min_length=1)

    @field_validator("control_endpoint", "publish_endpoint")
    @classmethod
    def _zmq_endpoint(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("expected a ZeroMQ endpoint such as 'tcp://127.0.0.1:5710' or 'ipc:///tmp/echemd'")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> "DaemonConfig":
        names = [instrument.name for instrument in self.instruments]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"instrument names must be unique; repeated: {', '.join(duplicated)}")
        return self

    def instrument(self, name: str) -> SimulatedPotentiostatConfig | SimulatedSourcemeterConfig:
        for instrument in self.instruments:
            if instrument.name == name:
                return instrument
        raise KeyError(name)
