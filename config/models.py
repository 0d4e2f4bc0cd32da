"""Pydantic models of the daemon configuration.

Units are in the field names (``_V``, ``_A``, ``_s``, ``_ohm``, ``_mA_cm2`` ...).  Every model
forbids unknown keys, so a typo in a TOML file fails at start instead of being ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from echemd.config.presets import CELL_PRESETS, JUNCTION_PRESETS


class StrictModel(BaseModel):
    """Base of every configuration model: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


ClockSpeed = Union[Literal["max"], Annotated[float, Field(gt=0)]]
"""Clock of a simulated instrument: 1 = real time, N = N times faster, "max" = as fast as possible."""

InstrumentName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]


class RunLimits(StrictModel):
    """Safety limits the daemon checks on every sample, whatever the protocol does; beyond one the
    run is aborted (instrument to its safe state) and the reason recorded as a `limit` event."""

    max_abs_voltage_V: float | None = Field(None, gt=0, description="largest |voltage| (or bias), V")
    max_abs_current_A: float | None = Field(None, gt=0, description="largest |current|, A")
    max_charge_C: float | None = Field(None, gt=0, description="largest charge passed in the run (integral of |I| dt), C")
    max_compliance_hits: int | None = Field(None, ge=0, description="most samples clamped at the compliance")
    max_duration_s: float | None = Field(None, gt=0, description="longest run, s of run time")
    on_violation: Literal["abort", "pause"] | None = Field(
        None, description="abort (default): fail the run, instrument safe; pause: hold as the protocol declares until resumed"
    )

    def tightened(self, other: "RunLimits | None") -> "RunLimits":
        """These limits, made stricter by ``other`` (a run's own limits can never loosen the lab's)."""
        if other is None:
            return self
        merged = {}
        for name in type(self).model_fields:
            mine, theirs = getattr(self, name), getattr(other, name)
            if name == "on_violation":
                merged[name] = theirs or mine
            else:
                merged[name] = theirs if mine is None else mine if theirs is None else min(mine, theirs)
        return type(self).model_validate(merged)


class InstrumentLimits(RunLimits):
    """Hard limits of one instrument in this lab; a run asking for more is refused at submit."""

    max_abs_voltage_V: float = Field(gt=0, description="largest |voltage| a run may apply or reach, V")
    max_abs_current_A: float = Field(gt=0, description="largest |current| a run may apply or draw, A")


def _apply_preset(presets: dict[str, dict[str, object]], data: object) -> object:
    """Fill a model's input from its named preset; explicit keys win."""
    if isinstance(data, dict) and data.get("preset") is not None:
        name = data["preset"]
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(presets)}")
        return {**presets[name], **data}
    return data


class SymmetricCellConfig(StrictModel):
    """A Li|solid electrolyte|Li symmetric cell, as held by a simulated potentiostat.

    Name a ``preset`` (see echemd.config.presets; default Li6PS5Cl-flat) and override what differs.
    Areal quantities are per electrode area.
    """

    preset: str = Field("Li6PS5Cl-flat", description="named preset the other values default to")
    area_cm2: float = Field(gt=0, description="electrode area, cm2")
    thickness_um: float = Field(gt=0, description="electrolyte thickness, um")
    bulk_conductivity_mS_cm: float = Field(gt=0, description="bulk (grain) ionic conductivity, mS/cm")
    grain_boundary_asr_ohm_cm2: float = Field(ge=0, description="grain-boundary resistance, Ohm cm2")
    grain_boundary_capacitance_uF_cm2: float = Field(gt=0, description="grain-boundary capacitance, uF/cm2")
    interface_asr_ohm_cm2: float = Field(ge=0, description="Li|electrolyte interface resistance (both sides), Ohm cm2")
    interface_capacitance_uF_cm2: float = Field(gt=0, description="interface capacitance, uF/cm2")
    exchange_current_mA_cm2: float = Field(gt=0, description="exchange current density of each Li electrode, mA/cm2")
    charge_transfer_capacitance_uF_cm2: float = Field(gt=0, description="double-layer (charge-transfer arc) capacitance, uF/cm2")
    warburg_asr_ohm_cm2: float = Field(0.0, ge=0, description="finite-length diffusion resistance (0 = none), Ohm cm2")
    warburg_time_s: float = Field(10.0, gt=0, description="diffusion time constant of the finite Warburg, s")
    inductance_nH: float = Field(0.0, ge=0, description="cable inductance, nH")
    temperature_C: float = Field(25.0, gt=-100, lt=300, description="cell temperature, degC")
    nucleation_overshoot_mV: float = Field(8.0, ge=0, description="extra plating overpotential at the start of plating at 1 mA/cm2, mV")
    nucleation_charge_mAh_cm2: float = Field(0.001, gt=0, description="plated charge over which the overshoot decays (1/e), mAh/cm2")
    void_onset_mA_cm2: float = Field(gt=0, description="stripping current density above which voids grow (at whichever electrode strips), mA/cm2")
    void_growth_per_mAh_cm2: float = Field(0.5, ge=0, description="contact area lost per mAh/cm2 stripped per mA/cm2 above the onset")
    void_healing_per_mAh_cm2: float = Field(5.0, ge=0, description="rate (per mAh/cm2 plated) at which lost contact recovers")
    min_contact_fraction: float = Field(0.2, gt=0, le=1, description="contact area never falls below this fraction")
    critical_current_mA_cm2: float = Field(gt=0, description="median critical current density (local), mA/cm2")
    critical_current_spread: float = Field(ge=0, lt=1, description="relative spread of the critical current between cells (seeded)")
    dendrite_charge_mAh_cm2: float = Field(gt=0, description="overdrive charge, integral of (j_local - j_critical) dt, for a dendrite to cross the cell, mAh/cm2"
    )
    penetration_resistance_fraction: float = Field(
        0.0, ge=0, lt=1, description="fraction of the bulk resistance a growing dendrite removes before it shorts"
    )
    short_kind: Literal["hard", "soft"] = Field("hard", description="hard: collapses to short_resistance_ohm; soft: to a fluctuating fraction of the cell's")
    short_resistance_ohm: float = Field(2.0, gt=0, description="final resistance of a hard short, Ohm")
    soft_short_fraction: float = Field(0.3, gt=0, description="final soft-short resistance as a fraction of the cell's DC resistance")
    short_collapse_s: float = Field(15.0, gt=0, description="time constant of the short's resistance collapse, s")
    reference_electrode: bool = Field(
        False, description="a Li reference electrode in the electrolyte, wired to the potentiostat's reference lead: "
        "the measured voltage is then the working electrode's against it (three-electrode); false: reference and counter leads "
        "on the counter electrode (two-electrode, the measured voltage is the cell's)")
    reference_position: float = Field(
        0.5, gt=0, lt=1, description="fraction of the electrolyte's resistance between the working and the reference electrode")
    noise_V: float = Field(50e-6, ge=0, description="rms voltage measurement noise, V")
    mains_pickup_V: float = Field(20e-6, ge=0, description="amplitude of the mains hum on the voltage reading (aliased by the sampling), V")
    mains_Hz: float = Field(50.0, gt=0, description="mains frequency, Hz")
    drift_V_per_sqrt_h: float = Field(50e-6, ge=0, description="random-walk drift of the voltage reading, V/sqrt(h)")
    eis_noise: float = Field(0.002, ge=0, description="relative rms noise of impedance readings")
    seed: int = Field(0, ge=0, description="seed of the cell's random numbers (critical current, noise, drift)")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: object) -> object:
        if isinstance(data, dict):
            data = {"preset": "Li6PS5Cl-flat", **data}
        return _apply_preset(CELL_PRESETS, data)


class TipJunctionConfig(StrictModel):
    """A c-AFM junction Li|LLZO|Pt tip (or Au pad), as held by a simulated sourcemeter (bias on the tip vs Li).

    The filament triggering bias depends on the distance d of the tip to the nearest grain boundary:
    V_t(d) = V_gb * interior_ratio ** (1 - exp(-d / grain_boundary_reach_nm)).  Grains are a seeded
    Voronoi map of ``grain_size_nm``; the tip starts at ``tip_x_nm``, ``tip_y_nm`` (moved onto the
    nearest grain boundary unless ``tip_on_grain_boundary`` is false).
    """

    preset: str | None = Field(None, description="named preset (LLZO-tip, LLZO-pad)")
    electrode: Literal["tip", "pad"] = "tip"
    contact_radius_nm: float = Field(20.0, gt=0, description="tip radius or pad radius, nm")
    triggering_bias_V: float = Field(-0.12, lt=0, description="filament triggering bias at a grain boundary, V vs Li/Li+")
    interior_ratio: float = Field(78.0, ge=1, description="triggering bias deep in a grain / at a grain boundary (-9.4 V: within a 10 V sweep)")
    grain_boundary_reach_nm: float = Field(40.0, gt=0, description="distance over which the grain boundary lowers the triggering bias, nm")
    grain_size_nm: float = Field(1000.0, gt=0, description="mean grain size of the Voronoi grain map, nm")
    tip_x_nm: float = Field(0.0, description="where the tip starts on the grain map, nm")
    tip_y_nm: float = 0.0
    tip_on_grain_boundary: bool = Field(True, description="start on the grain boundary nearest (tip_x_nm, tip_y_nm)")
    off_resistance_ohm: float = Field(1e10, gt=0, description="junction resistance without a filament, at small bias, Ohm")
    off_nonlinearity_V: float = Field(2.5, gt=0, description="without a filament I = (V0/R_off) sinh(V/V0): electronic leakage that grows faster than ohmic, V0 in V")
    filament_resistance_ohm: float = Field(1e5, gt=0, description="resistance of a formed filament, Ohm")
    set_bias_V: float = Field(-0.15, lt=0, description="set bias the memristive cycling settles to, V (sets within the paper's -0.2 V)")
    set_settle_cycles: float = Field(5.0, gt=0, description="cycles over which the set bias moves from triggering to set_bias_V")
    reset_bias_V: float = Field(1.0, gt=0, description="bias at which the filament dissolves, V")
    reset_probability: float = Field(1.0, ge=0, le=1, description="chance a reset sweep dissolves every filament")
    bias_jitter_V: float = Field(0.01, ge=0, description="cycle-to-cycle rms jitter of set and reset biases, V")
    noise_A: float = Field(1e-12, ge=0, description="rms current noise floor, A")
    relative_noise: float = Field(0.01, ge=0, description="relative rms current noise")
    seed: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: object) -> object:
        return _apply_preset(JUNCTION_PRESETS, data)


METADATA_KEY = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
MetadataValue = Union[str, bool, int, float]


class RunMetadata(BaseModel):
    """What a lab records about a run besides its parameters: the sample, who ran it, the cell.

    The named fields are the ones every lab has (units in their names); any other key (letters,
    digits, underscores; up to 64 characters) may hold a string, number or boolean of the lab's
    own.  Stored in the run file (``metadata`` attribute, JSON), reported by ``status`` and
    ``runs``, searchable (``echemd runs --sample ...``).  Numbers must be finite.
    """

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    sample: str | None = Field(None, max_length=200, description="sample id, e.g. LPSCl-07")
    operator: str | None = Field(None, max_length=200, description="who ran it")
    notes: str | None = Field(None, max_length=4000, description="free text")
    cell: str | None = Field(None, max_length=200, description="cell id or assembly, e.g. Swagelok-3")
    electrolyte: str | None = Field(None, max_length=200, description="solid electrolyte, e.g. Li6PS5Cl")
    thickness_um: float | None = Field(None, gt=0, description="electrolyte thickness, um")
    area_cm2: float | None = Field(None, gt=0, description="electrode area, cm2 (for the record; protocols take their own)")
    stack_pressure_MPa: float | None = Field(None, ge=0, description="stack pressure, MPa")
    temperature_C: float | None = Field(None, gt=-273.15, description="cell temperature, degC")
    pretreatment: str | None = Field(None, max_length=1000, description="e.g. 'annealed 2 h at 400 C in Ar'")

    @model_validator(mode="after")
    def _lab_keys(self) -> "RunMetadata":
        import math
        import re

        for key, value in (self.model_extra or {}).items():
            if not re.match(METADATA_KEY, key):
                raise ValueError(f"metadata key {key!r}: letters, digits and underscores, starting with a letter, up to 64")
            if not isinstance(value, (str, bool, int, float)):
                raise ValueError(f"metadata {key!r}: a string, number or boolean, not {type(value).__name__}")
            if isinstance(value, str) and len(value) > 1000:
                raise ValueError(f"metadata {key!r}: longer than 1000 characters")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"metadata {key!r}: not a finite number")
        return self

    def given(self) -> dict[str, MetadataValue]:
        """The values set (named and the lab's own), JSON-ready."""
        return self.model_dump(mode="json", exclude_none=True)


class _InstrumentBase(StrictModel):
    name: InstrumentName
    limits: InstrumentLimits
    metadata: RunMetadata = Field(default_factory=RunMetadata, description="metadata every run on this instrument starts from "
                                  "(the cell it holds, say); a run's own values override these")
    defaults: dict[str, Any] = Field(default_factory=dict, description="protocol parameters a run on this instrument takes when it "
                                     "does not give them (e.g. diameter_mm = 2), for the protocols that have them")


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


SIMULATED_ADDRESS = "simulated"


class Keithley2400Config(_InstrumentBase):
    """A Keithley 2400 SourceMeter through pymeasure over pyvisa.

    ``address`` is a VISA resource string (``GPIB0::24::INSTR``, ``ASRL/dev/ttyUSB0::INSTR``,
    ``TCPIP0::192.0.2.5::1234::SOCKET``), or ``simulated`` for echemd's SCPI-level simulator
    answering from ``junction`` on ``clock``.  ``limits.max_abs_voltage_V`` is enforced in software
    (the 2400's own over-voltage protection cannot be set below 20 V).
    """

    driver: Literal["keithley2400"]
    address: str = Field(min_length=1)
    visa_library: str = Field("", description="pyvisa backend, e.g. '@py' for pyvisa-py; empty: the system's VISA")
    timeout_s: float = Field(5.0, gt=0, description="VISA timeout of ordinary queries (sweeps extend it), s")
    nplc: float = Field(0.1, ge=0.01, le=10, description="integration time, power-line cycles")
    line_frequency_Hz: Literal[50, 60] = Field(50, description="mains frequency, Hz")
    clock: ClockSpeed = "max"
    junction: TipJunctionConfig = TipJunctionConfig()


class GamryConfig(_InstrumentBase):
    """A Gamry potentiostat (Interface 1010E class, Reference 600/3000) through GamryCOM.

    Needs Windows with the Gamry Framework and the ``comtypes`` package.  ``address`` is the
    device label as the Gamry Framework lists it (e.g. ``IFC1010-12345``), empty for the first
    device, or ``simulated`` for echemd's simulated GamryCOM answering from ``cell`` on ``clock``.
    The capability fields default to an Interface 1010E; set them for other models.
    """

    driver: Literal["gamry"]
    address: str = ""
    pstat_class: str = Field("GamryCOM.GamryPC6Pstat", description="ProgID of the potentiostat object: GamryCOM.GamryPC6Pstat "
                             "(Interface 1010, Reference 600+), GamryCOM.GamryPC5Pstat (Reference 600), GamryCOM.GamryPstat (Reference 3000)")
    com_timeout_s: float = Field(30.0, gt=0, description="a COM call taking longer means the COM server hung, s")
    acquisition_grace_s: float = Field(30.0, gt=0, description="an acquisition (or one impedance frequency) still without its data "
                                       "this long after it should have ended fails the run with the cell off, s")
    max_current_A: float = Field(1.0, gt=0, description="largest current range, A")
    max_voltage_V: float = Field(12.0, gt=0, description="compliance voltage, V")
    min_sample_interval_s: float = Field(1e-5, gt=0, description="fastest sampling, s")
    eis_min_frequency_Hz: float = Field(1e-5, gt=0)
    eis_max_frequency_Hz: float = Field(2e6, gt=0)
    clock: ClockSpeed = "max"
    cell: SymmetricCellConfig = SymmetricCellConfig()


InstrumentConfig = Annotated[
    Union[SimulatedPotentiostatConfig, SimulatedSourcemeterConfig, Keithley2400Config, GamryConfig],
    Field(discriminator="driver"),
]


class SecurityConfig(StrictModel):
    """CURVE encryption and authentication of both sockets (make keys with `echemd keys`)."""

    server_secret_key: Path = Field(description="the daemon's secret key file (NAME.key_secret)")
    authorized_clients: Path = Field(description="folder of the public key files (*.key) of the clients allowed in")


LOOPBACK_HOSTS = ("127.", "localhost", "[::1]", "::1")
#: ZeroMQ transports that never leave this machine.
LOCAL_TRANSPORTS = ("ipc", "inproc")


#: What an alert can be raised on: a run's events, and how a run ended.
ALERT_TRIGGERS = ("short", "suspect_short", "voiding", "limit", "overload", "completed", "failed", "aborted", "interrupted")


class AlertConfig(StrictModel):
    """A command the daemon runs when one of ``on`` happens to a run (``[[alerts]]``), to page someone.

    The command is run without a shell, in the background (a slow or failing command never holds
    a run up; its failure is logged), with the run in its environment: ECHEMD_ALERT (what
    happened), ECHEMD_RUN_ID, ECHEMD_PROTOCOL, ECHEMD_INSTRUMENT, ECHEMD_STATUS, ECHEMD_MESSAGE
    (the event's message, or the run's error), ECHEMD_SAMPLE, ECHEMD_FILE and, when the run ended,
    ECHEMD_RESULT (its result, JSON).  ``interrupted``: a run whose instrument host died, or that the
    next daemon found interrupted (and recovered) at its start.
    """

    on: list[Literal[ALERT_TRIGGERS]] = Field(min_length=1, description="events (short, suspect_short, voiding, limit, overload) "
                                              "and run ends (completed, failed, aborted, interrupted) that raise it")
    command: list[str] = Field(min_length=1, description="the program and its arguments, e.g. [\"/usr/local/bin/page\", \"battery-lab\"]")
    timeout_s: float = Field(60.0, gt=0, description="a command still running after this long is killed, s")


class DaemonConfig(StrictModel):
    """Everything `echemd serve` needs: endpoints, where run files go, and the instruments."""

    control_endpoint: str = Field("tcp://127.0.0.1:5710", description="ZeroMQ ROUTER endpoint for control requests")
    publish_endpoint: str = Field("tcp://127.0.0.1:5711", description="ZeroMQ PUB endpoint for the data stream")
    data_dir: Path = Field(Path("echemd-data"), description="folder of the run files (relative to the working directory)")
    flush_interval_s: float = Field(0.5, gt=0, le=1.0, description="run files are flushed at least this often, s")
    fsync_interval_s: float = Field(30.0, gt=0, description="run files are also fsynced (to the disk, not just the OS) this often, s")
    compress_closed_runs: bool = Field(True, description="when a run ends, rewrite its file with compressed data columns (shuffle + deflate: ~4x smaller)")
    disk_reserve_mb: float = Field(64.0, ge=0, description="free space (MiB) no run-file write may eat into: a run that would fails as 'disk full' instead")
    max_run_size_gb: float = Field(20.0, gt=0, description="a run projected to record more than this (its longest duration over its "
                                   "sample interval, 8 bytes per value) is refused unless submitted with allow_large, GB")
    instruments: list[InstrumentConfig] = Field(min_length=1)
    security: SecurityConfig | None = Field(None, description="CURVE keys; required to bind anything but loopback")
    alerts: list[AlertConfig] = Field(default_factory=list, description="commands run on chosen events (see AlertConfig)")
    instrument_hosts: int | None = Field(
        None, ge=0, description="processes the instruments run in (each owns its instruments, runs their protocols and writes their "
                                "run files); by default as many as the machine has cores, at most one per instrument; 0: every "
                                "instrument in the daemon's own process (one interpreter: for debugging, or a machine with one core)")

    @field_validator("control_endpoint", "publish_endpoint")
    @classmethod
    def _zmq_endpoint(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("expected a ZeroMQ endpoint such as 'tcp://127.0.0.1:5710' or 'ipc:///tmp/echemd'")
        transport, _, address = value.partition("://")
        return f"{transport.lower()}://{address}"  # ZeroMQ knows its transports in lower case only

    @model_validator(mode="after")
    def _loopback_unless_encrypted(self) -> "DaemonConfig":
        for endpoint in (self.control_endpoint, self.publish_endpoint):
            transport, _, address = endpoint.partition("://")
            local = transport in LOCAL_TRANSPORTS or (transport == "tcp" and address.lower().startswith(LOOPBACK_HOSTS))
            if self.security is None and not local:
                raise ValueError(
                    f"{endpoint} is reachable from other machines: give a [security] table with CURVE keys "
                    "(echemd keys) or bind 127.0.0.1"
                )
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> "DaemonConfig":
        names = [instrument.name for instrument in self.instruments]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"instrument names must be unique; repeated: {', '.join(duplicated)}")
        return self

    def instrument(self, name: str) -> SimulatedPotentiostatConfig | SimulatedSourcemeterConfig | Keithley2400Config | GamryConfig:
        for instrument in self.instruments:
            if instrument.name == name:
                return instrument
        raise KeyError(name)
