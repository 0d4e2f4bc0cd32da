"""Keithley 2400 SourceMeter as the electrochemical unit of a c-AFM: source V, measure I, list sweeps.

The SCPI lives in :class:`CAFMKeithley2400`, pymeasure's Keithley2400 with the few settings it
lacks declared the same way.  :class:`Keithley2400Sourcemeter` is the echemd driver on top.

Facts this driver is built around (docs/drivers.md says what each was checked against):

- pymeasure 0.16's ``current``/``voltage`` properties send ``:MEASure:<f>?``, which resets that
  function's settings, compliance included: this driver never reads through them.  It configures
  explicitly, reads with ``:READ?``, and reads the compliance back before the output goes on.
- The 2400's over-voltage protection cannot be set below 20 V: the configured voltage limit (10 V
  for c-AFM tips) is enforced here, in software, before anything is applied.
- A sweep runs in hardware: list mode, up to 100 points per list and one ``:READ?`` per list, with
  the VISA timeout stretched to cover it; each point's status word flags compliance (bit 3) and
  range compliance (bit 16); an overflow reading (+9.9E37) is recorded as NaN and flagged.
- Nothing is taken from the last user: every sweep starts with ``*RST``, then sets explicitly what
  the sweep relies on whether or not ``*RST`` covers it (reading elements, one arm, no filter,
  autozero on, current autorange on, no timestamp reset per trigger); every list must return
  exactly its points; the idle source level (held before and between lists) is 0 V.
- The 2400's timestamp wraps to 0 after 99,999.999 s (27.8 h): the driver unwraps it, so run time
  keeps increasing over multi-day runs.
- ``bias_V`` is the programmed source voltage: while a point is in compliance (the ``compliance``
  column) the terminal voltage is lower, the 2400 then limiting the current.
- The output goes off on completion, on abort (closing the acquisition) and on any exception.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
from pymeasure.instruments import Instrument
from pymeasure.instruments.keithley import Keithley2400
from pymeasure.instruments.validators import strict_discrete_set, strict_range

from echemd.config.models import SIMULATED_ADDRESS, Keithley2400Config
from echemd.drivers.base import Block, DriverError, InstrumentRefused, Sourcemeter, SourcemeterCapabilities

log = logging.getLogger(__name__)

#: Points in one source list of the 2400.
LIST_POINTS = 100
#: Bits of the 2400's status word: a reading hit compliance (3), or range compliance (16: the
#: reading is beyond its measurement range).
STATUS_COMPLIANCE, STATUS_RANGE_COMPLIANCE = 1 << 3, 1 << 16
#: What the 2400 sends for a reading beyond its range, A.
OVERFLOW = 9.9e37
#: Elements of every reading, set explicitly at configure time (pymeasure 0.15 changes them to
#: current alone in measure_current; never trust what the last user left).
ELEMENTS = ("VOLT", "CURR", "RES", "TIME", "STAT")
#: Lowest over-voltage protection level of the 2400, V.
MIN_OVP_V = 20.0
#: The timestamp's period: it wraps to 0 after 99,999.999 s, s.
TIMESTAMP_WRAP_S = 100_000.0
#: Conversions per reading with autozero on (the signal, the reference and the zero): what one
#: reading costs in power-line cycles is this times NPLC.
AUTOZERO_CONVERSIONS = 3
CAPABILITIES = SourcemeterCapabilities(max_voltage_V=210.0, max_compliance_A=1.05, min_sample_interval_s=0.002)


class CAFMKeithley2400(Keithley2400):
    """pymeasure's Keithley2400 plus list sweeps, over-voltage protection and the timestamp."""

    source_voltage_mode = Instrument.control(
        ":SOUR:VOLT:MODE?", ":SOUR:VOLT:MODE %s", "Voltage source mode: 'fixed' or 'list'.",
        validator=strict_discrete_set, values={"fixed": "FIX", "list": "LIST"}, map_values=True,
    )
    source_voltage_list = Instrument.setting(
        ":SOUR:LIST:VOLT %s", "Voltages of the source list, V (up to 100).",
        set_process=lambda values: ",".join(f"{v:.6g}" for v in values),
    )
    sweep_points = Instrument.control(
        ":TRIG:COUN?", ":TRIG:COUN %d", "Readings per :READ? (trigger count, 1 to 2500).",
        validator=strict_range, values=[1, 2500], cast=int,
    )
    over_voltage_protection = Instrument.control(
        ":SOUR:VOLT:PROT?", ":SOUR:VOLT:PROT %g", "Over-voltage protection level, V (20 to 210).",
        validator=strict_range, values=[MIN_OVP_V, 210],
    )
    sense_function = Instrument.setting(
        ":SENS:FUNC %s", "Function measured: 'current'.", validator=strict_discrete_set, values={"current": "'CURR'"}, map_values=True,
    )
    timestamp = Instrument.measurement(":SYST:TIME?", "Seconds since the timestamp was reset.")

    def reset_timestamp(self) -> None:
        self.write(":SYST:TIME:RES")

    reading_elements = Instrument.setting(
        ":FORM:ELEM %s", "Elements of each reading, in the 2400's order.", set_process=lambda names: ",".join(names),
    )
    timestamp_reset_per_trigger = Instrument.setting(
        ":SYST:TIME:RES:AUTO %d", "Whether the timestamp restarts at every :READ? (never wanted: one time base per run).",
        validator=strict_discrete_set, values={True: 1, False: 0}, map_values=True,
    )
    arm_layer_count = Instrument.setting(
        ":ARM:COUN %d", "Arm layer count (readings per :READ? = arm x trigger count).", validator=strict_range, values=[1, 2500],
    )
    current_autorange = Instrument.setting(
        ":SENS:CURR:RANG:AUTO %d", "Whether the current measurement range follows the reading.",
        validator=strict_discrete_set, values={True: 1, False: 0}, map_values=True,
    )

    def read_points(self, points: int) -> np.ndarray:
        """Trigger the configured ``points`` readings; an (n, 5) array of voltage, current, resistance,
        time, status.  Anything but exactly ``points`` x 5 values is refused (another reading layout)."""
        values = np.asarray(self.values(":READ?"), dtype=np.float64)
        if values.size != points * len(ELEMENTS):
            raise DriverError(
                f"the 2400 returned {values.size} values for {points} readings, not {points * len(ELEMENTS)} "
                f"({', '.join(ELEMENTS)} each): another reading layout is set")
        return values.reshape(-1, len(ELEMENTS))


class UnwrappedTimestamp:
    """The 2400's timestamp made monotonic: each wrap (a reading earlier than the one before by more
    than half the period) adds TIMESTAMP_WRAP_S.  Feed it every timestamp read, in order."""

    def __init__(self) -> None:
        self._last_s = 0.0
        self._offset_s = 0.0

    def unwrap(self, stamps_s: np.ndarray) -> np.ndarray:
        stamps_s = np.asarray(stamps_s, dtype=np.float64)
        if stamps_s.size == 0:
            return stamps_s
        wraps = np.cumsum(np.diff(stamps_s, prepend=self._last_s) < -TIMESTAMP_WRAP_S / 2)
        unwrapped = stamps_s + self._offset_s + TIMESTAMP_WRAP_S * wraps
        self._last_s, self._offset_s = float(stamps_s[-1]), self._offset_s + TIMESTAMP_WRAP_S * float(wraps[-1])
        return unwrapped


class Keithley2400Sourcemeter(Sourcemeter):
    """The echemd driver.  ``adapter`` replaces the VISA connection (tests, the SCPI simulator)."""

    driver = "keithley2400"

    def __init__(self, config: Keithley2400Config, adapter=None) -> None:
        self.config = config
        self.name = config.name
        self.capabilities = CAPABILITIES
        self.voltage_limit_V = config.limits.max_abs_voltage_V
        if adapter is None and config.address == SIMULATED_ADDRESS:
            from echemd.drivers.simulated.keithley2400_scpi import SimulatedKeithley2400Adapter

            adapter = SimulatedKeithley2400Adapter(config)
        self._adapter = adapter  # kept across reconnections; None: a VISA connection per open()
        self.smu: CAFMKeithley2400 | None = None
        self._clock = UnwrappedTimestamp()

    # --- life cycle ------------------------------------------------------------------------
    def open(self) -> None:
        try:
            adapter = self._adapter if self._adapter is not None else self._make_adapter()
            self.smu = CAFMKeithley2400(adapter)
            self.smu.source_enabled = False
            self.smu.clear()  # the error queue of whoever used it before
            self.smu.reset_timestamp()
            self._clock = UnwrappedTimestamp()
            self._check_errors("opening")
        except DriverError:
            raise
        except Exception as exc:
            raise DriverError(f"{self.name}: cannot reach the Keithley 2400 at {self.config.address}: {exc}") from exc

    def _make_adapter(self):
        from pymeasure.adapters import VISAAdapter

        return VISAAdapter(self.config.address, visa_library=self.config.visa_library, timeout=int(self.config.timeout_s * 1000))

    def close(self) -> None:
        if self.smu is None:
            return
        try:
            self.safe_state()
        finally:
            if self._adapter is None:
                self.smu.adapter.close()
            self.smu = None

    def safe_state(self) -> None:
        if self.smu is not None:
            self.smu.source_enabled = False

    @property
    def time_s(self) -> float:
        """Seconds since the instrument was opened, on the 2400's clock (unwrapped)."""
        return float(self._clock.unwrap(np.array([float(self._smu.timestamp)]))[0])

    @property
    def _smu(self) -> CAFMKeithley2400:
        if self.smu is None:
            raise DriverError(f"{self.name} is not open")
        return self.smu

    # --- acquisition -----------------------------------------------------------------------
    def voltage_sweep(self, biases_V: np.ndarray, compliance_A: float, dwell_s: float) -> Iterator[Block]:
        biases_V = np.asarray(biases_V, dtype=np.float64)
        self._check_sweep(biases_V, compliance_A, dwell_s)
        return self._sweep(biases_V, compliance_A, dwell_s)

    def _check_sweep(self, biases_V: np.ndarray, compliance_A: float, dwell_s: float) -> None:
        largest = float(np.abs(biases_V).max(initial=0.0))
        if largest > self.voltage_limit_V:
            raise InstrumentRefused(f"{self.name}: |bias| {largest:.4g} V exceeds the voltage limit {self.voltage_limit_V:g} V")
        if not 0 < compliance_A <= min(self.capabilities.max_compliance_A, self.config.limits.max_abs_current_A):
            raise InstrumentRefused(
                f"{self.name}: compliance {compliance_A:.4g} A must be > 0 and <= the limit {self.config.limits.max_abs_current_A:g} A"
            )
        if dwell_s < self.capabilities.min_sample_interval_s:
            raise InstrumentRefused(f"{self.name}: dwell {dwell_s:g} s is shorter than {self.capabilities.min_sample_interval_s:g} s")

    def _sweep(self, biases_V: np.ndarray, compliance_A: float, dwell_s: float) -> Iterator[Block]:
        smu = self._smu
        try:
            self._configure(biases_V, compliance_A, dwell_s)
            smu.source_enabled = True
            for start in range(0, len(biases_V), LIST_POINTS):
                chunk = biases_V[start : start + LIST_POINTS]
                smu.source_voltage_list = chunk
                smu.sweep_points = len(chunk)
                reading_s = AUTOZERO_CONVERSIONS * self.config.nplc / self.config.line_frequency_Hz
                self._set_timeout(len(chunk) * (dwell_s + reading_s) + self.config.timeout_s)
                points = smu.read_points(len(chunk))
                self._check_errors("sweeping")
                status = points[:, 4].astype(np.int64)
                overflow = np.abs(points[:, 1]) >= OVERFLOW
                yield Block({
                    "time_s": self._clock.unwrap(points[:, 3]),
                    "bias_V": points[:, 0],
                    "current_A": np.where(overflow, np.nan, points[:, 1]),  # never +9.9E37 A as a current
                    "compliance": ((status & (STATUS_COMPLIANCE | STATUS_RANGE_COMPLIANCE) != 0) | overflow).astype(np.float64),
                })
        finally:
            self._set_timeout(self.config.timeout_s)
            smu.source_enabled = False

    def _configure(self, biases_V: np.ndarray, compliance_A: float, dwell_s: float) -> None:
        """From ``*RST``: source V, measure I, compliance set and read back; list mode.  The output
        stays off (``*RST`` turns it off)."""
        smu = self._smu
        smu.reset()
        smu.reading_elements = ELEMENTS
        smu.timestamp_reset_per_trigger = False
        smu.arm_layer_count = 1
        smu.filter_enabled = False
        smu.auto_zero_enabled = True
        smu.source_mode = "voltage"
        smu.sense_function = "current"
        smu.current_autorange = True
        smu.compliance_current = compliance_A
        read_back = float(smu.compliance_current)
        if not np.isclose(read_back, compliance_A, rtol=1e-6, atol=0.0):
            raise DriverError(f"{self.name}: compliance set to {compliance_A:g} A but the 2400 reports {read_back:g} A")
        smu.source_voltage_range = float(np.abs(biases_V).max(initial=0.0)) or 0.2
        smu.source_voltage = 0.0  # the level the terminals hold before the first list and between lists
        smu.over_voltage_protection = MIN_OVP_V
        smu.current_nplc = self.config.nplc
        smu.source_delay = dwell_s
        smu.source_voltage_mode = "list"
        self._check_errors("configuring")

    def _set_timeout(self, seconds: float) -> None:
        connection = getattr(self._smu.adapter, "connection", None)
        if connection is not None and hasattr(connection, "timeout"):
            connection.timeout = int(seconds * 1000)

    def _check_errors(self, doing: str) -> None:
        errors = self._smu.check_errors()
        if errors:
            raise DriverError(f"{self.name}: the 2400 reported errors while {doing}: " + "; ".join(f"{int(e[0])} {e[1]}" for e in errors))
