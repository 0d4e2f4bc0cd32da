"""A SCPI-level Keithley 2400: a pymeasure adapter that parses the commands and answers from the c-AFM physics.

It lets the real :class:`~echemd.drivers.keithley2400.Keithley2400Sourcemeter` run end to end
without hardware.  It understands the subset of the 2400's SCPI the driver and pymeasure use (long
or short forms, ``;``-joined commands), keeps an error queue (``-113`` undefined header, ``-222``
out of range, ``+803`` output disabled), clamps readings at the compliance and flags them in the
status word, limits the output to the over-voltage protection level, and takes the time a real
sweep takes on the configured clock.  A ``:READ?`` with the output off gets no answer: the next
read times out, as VISA would.  For fault tests, ``fault`` = "timeout" makes every read time out
and "unplugged" makes every write and read fail as a lost connection.

Like a 2400 on a shared bench, it does not start clean (see :meth:`dirty`): what the manual says
each setting does, it does here, so a driver that trusts the last user's state fails:

- ``:FORM:ELEM`` chooses the elements of each reading; ``:ARM:COUN`` x ``:TRIG:COUN`` readings
  answer one ``:READ?``;
- a reading takes the source delay plus NPLC power-line cycles, times 3 with autozero on
  (``:SYST:AZER``: signal, reference and zero), times the filter count with the repeat filter on
  (``:SENS:AVER``); a ``:READ?`` that takes longer than the VISA timeout (``connection.timeout``,
  ms) times out;
- with current autorange off, a current beyond the fixed range reads +9.9E37 with status bit 16
  (range compliance);
- the timestamp wraps to 0 after 99,999.999 s, and with ``:SYST:TIME:RES:AUTO ON`` restarts at
  every ``:READ?``; ``*RST`` does not change either (it is a system setting, like the clock).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from pymeasure.adapters import Adapter
from pyvisa.constants import StatusCode
from pyvisa.errors import VisaIOError

from echemd.config.models import Keithley2400Config
from echemd.drivers.simulated.clock import SimClock
from echemd.drivers.simulated.junction import TipJunction

STATUS_COMPLIANCE, STATUS_RANGE_COMPLIANCE = 1 << 3, 1 << 16
OVERFLOW = 9.9e37
TIMESTAMP_WRAP_S = 100_000.0
#: The elements a reading can hold, in the order the 2400 sends them.
ALL_ELEMENTS = ("VOLT", "CURR", "RES", "TIME", "STAT")
VOWELS = set("AEIOU")


@dataclass
class VisaSession:
    """The part of a pyvisa resource the driver uses: its timeout, ms (a read waits that long)."""

    timeout: int

    def close(self) -> None:
        pass


def short_form(header: str) -> str:
    """Canonical SCPI short form of a header, e.g. ':SOURce:VOLTage:PROTection?' -> 'SOUR:VOLT:PROT?'."""
    query = header.endswith("?")
    nodes = []
    for node in header.strip(":?").upper().split(":"):
        if len(node) > 4:
            node = node[:3] if node[3] in VOWELS else node[:4]
        nodes.append(node)
    return ":".join(nodes) + ("?" if query else "")


class SimulatedKeithley2400Adapter(Adapter):
    def __init__(self, config: Keithley2400Config) -> None:
        super().__init__()
        self.junction = TipJunction(config.junction)
        self.clock = SimClock(config.clock)
        self.line_frequency_Hz = config.line_frequency_Hz
        self.time_s = 0.0  # instrument clock since power-on, s
        self.time_zero_s = 0.0
        self.commands: list[str] = []  # every command received, for tests
        self._replies: list[str] = []
        self._errors: list[tuple[int, str]] = []
        self.fault: str | None = None
        self.connection = VisaSession(timeout=int(config.timeout_s * 1000))
        self._read_takes_s = 0.0
        self.timestamp_reset_per_read = False
        self.reset()
        self.dirty()

    def reset(self) -> None:
        """``*RST``: the 2400's reset defaults (the timestamp and its auto reset are left as they are)."""
        self.elements = set(ALL_ELEMENTS)
        self.output = False
        self.source_function = "VOLT"
        self.voltage_mode = "FIX"
        self.voltage = 0.0
        self.voltage_range = 21.0
        self.voltage_list: list[float] = []
        self.trigger_count = 1
        self.arm_count = 1
        self.delay_s = 0.001
        self.compliance_A = 105e-6
        self.ovp_V = 210.0
        self.nplc = 1.0
        self.autozero = True
        self.filter_on, self.filter_count = False, 10
        self.current_autorange, self.current_range_A = True, 105e-6

    def dirty(self) -> None:
        """What a previous user (or pymeasure 0.15's ``measure_current``) may have left."""
        self.elements = {"CURR"}
        self.voltage = 2.0
        self.arm_count = 2
        self.filter_on, self.filter_count = True, 10
        self.current_autorange, self.current_range_A = False, 1.05e-6
        self.timestamp_reset_per_read = True

    # --- adapter interface -----------------------------------------------------------------
    def _write(self, command: str, **kwargs) -> None:
        if self.fault == "unplugged":
            raise VisaIOError(StatusCode.error_connection_lost)
        for part in command.split(";"):
            if part.strip():
                self.commands.append(part.strip())
                self._execute(part.strip())

    def _read(self, **kwargs) -> str:
        if self.fault == "unplugged":
            raise VisaIOError(StatusCode.error_connection_lost)
        if self.fault == "timeout":
            self._replies.clear()
            raise VisaIOError(StatusCode.error_timeout)
        if not self._replies:
            raise VisaIOError(StatusCode.error_timeout)
        takes_s, self._read_takes_s = self._read_takes_s, 0.0
        if takes_s > self.connection.timeout / 1000:  # the readings were not done when VISA gave up
            self._replies.clear()
            raise VisaIOError(StatusCode.error_timeout)
        return self._replies.pop(0)

    # --- SCPI --------------------------------------------------------------------------------
    def _execute(self, text: str) -> None:
        header, _, argument = text.partition(" ")
        key = short_form(header)
        argument = argument.strip()
        handler = COMMANDS.get(key)
        if handler is None:
            self._errors.append((-113, "Undefined header"))
            return
        try:
            reply = handler(self, argument)
        except ValueError:
            self._errors.append((-222, "Parameter data out of range"))
            return
        if reply is not None:
            self._replies.append(reply)

    def _number(self, argument: str, low: float, high: float) -> float:
        value = float(argument)
        if not low <= value <= high:
            raise ValueError(argument)
        return value

    def _read_points(self) -> str | None:
        if not self.output:
            self._errors.append((803, "Output disabled"))
            return None
        biases = self.voltage_list if self.voltage_mode == "LIST" else [self.voltage]
        conversion_s = self.nplc / self.line_frequency_Hz * (3 if self.autozero else 1) * (self.filter_count if self.filter_on else 1)
        per_point = self.delay_s + conversion_s
        self.clock.anchor(self.time_s)
        if self.timestamp_reset_per_read:
            self.time_zero_s = self.time_s
        started_s = self.time_s
        values = []
        for k in range(self.arm_count * self.trigger_count):
            bias = float(np.clip(biases[k % len(biases)], -self.ovp_V, self.ovp_V))
            raw = self.junction.current(bias)
            current = float(np.clip(raw, -self.compliance_A, self.compliance_A))
            status = STATUS_COMPLIANCE if abs(raw) >= self.compliance_A else 0
            if not self.current_autorange and abs(current) > self.current_range_A * 1.05:
                current, status = OVERFLOW, status | STATUS_RANGE_COMPLIANCE
            self.time_s += per_point
            reading = dict(zip(ALL_ELEMENTS, (bias, current, bias / current if current else 9.91e37, self._timestamp(), status)))
            values += [(name, reading[name]) for name in ALL_ELEMENTS if name in self.elements]
        self._read_takes_s = self.time_s - started_s
        self.clock.wait_until(self.time_s)
        return ",".join(f"{v:.6E}" if name != "STAT" else f"{int(v):d}" for name, v in values)

    def _timestamp(self) -> float:
        """What the 2400 reports: seconds since the last timestamp reset, wrapping at 99,999.999 s."""
        return (self.time_s - self.time_zero_s) % TIMESTAMP_WRAP_S

    def _set_elements(self, argument: str) -> None:
        names = [short_form(name.strip()) for name in argument.split(",")]
        if not names or any(name not in ALL_ELEMENTS for name in names):
            raise ValueError(argument)
        self.elements = set(names)  # the 2400 sends them in its own order, whatever the order asked

    def _set_list(self, argument: str) -> None:
        values = [float(v) for v in argument.split(",")]
        if not 1 <= len(values) <= 100 or any(abs(v) > self.voltage_range * 1.05 for v in values):
            raise ValueError(argument)
        self.voltage_list = values

    def _error(self) -> str:
        code, message = self._errors.pop(0) if self._errors else (0, "No error")
        return f'{code},"{message}"'


def _setter(attribute: str, low: float, high: float, cast=float):
    def handler(adapter: SimulatedKeithley2400Adapter, argument: str) -> None:
        setattr(adapter, attribute, cast(adapter._number(argument, low, high)))

    return handler


def _getter(attribute: str, fmt: str = "{:.6E}"):
    return lambda adapter, argument: fmt.format(getattr(adapter, attribute))


def _choice(attribute: str, choices: dict[str, object]):
    def handler(adapter: SimulatedKeithley2400Adapter, argument: str) -> None:
        key = argument.strip("'\"").upper()
        key = next((k for k in choices if re.fullmatch(k, key)), None)
        if key is None:
            raise ValueError(argument)
        setattr(adapter, attribute, choices[key])

    return handler


COMMANDS = {
    "*IDN?": lambda a, _: "KEITHLEY INSTRUMENTS INC.,MODEL 2400,echemd-simulated,C32",
    "*RST": lambda a, _: a.reset(),
    "*CLS": lambda a, _: a._errors.clear(),
    "SYST:ERR?": lambda a, _: a._error(),
    "STAT:QUE:CLE": lambda a, _: a._errors.clear(),
    "STAT:PRES": lambda a, _: None,
    "SYST:TIME?": lambda a, _: f"{a._timestamp():.6E}",
    "SYST:TIME:RES": lambda a, _: setattr(a, "time_zero_s", a.time_s),
    "SYST:TIME:RES:AUTO": _choice("timestamp_reset_per_read", {"1|ON": True, "0|OFF": False}),
    "SYST:AZER": _choice("autozero", {"1|ON": True, "0|OFF": False}),
    "SYST:AZER:STAT": _choice("autozero", {"1|ON": True, "0|OFF": False}),
    "SENS:AVER": _choice("filter_on", {"1|ON": True, "0|OFF": False}),
    "SENS:AVER:STAT": _choice("filter_on", {"1|ON": True, "0|OFF": False}),
    "SENS:AVER:COUN": _setter("filter_count", 1, 100, cast=int),
    "ARM:COUN": _setter("arm_count", 1, 2500, cast=int),
    "FORM:ELEM": lambda a, arg: a._set_elements(arg),
    "OUTP": _choice("output", {"1|ON": True, "0|OFF": False}),
    "OUTP?": lambda a, _: "1" if a.output else "0",
    "SOUR:FUNC": _choice("source_function", {"VOLT(AGE)?": "VOLT"}),
    "SOUR:FUNC?": lambda a, _: a.source_function,
    "SOUR:VOLT:MODE": _choice("voltage_mode", {"FIX(ED)?": "FIX", "LIST": "LIST"}),
    "SOUR:VOLT:MODE?": lambda a, _: a.voltage_mode,
    "SOUR:VOLT": _setter("voltage", -210.0, 210.0),
    "SOUR:VOLT:LEV": _setter("voltage", -210.0, 210.0),
    "SOUR:VOLT:RANG": lambda a, arg: setattr(a, "voltage_range", 0.21 if abs(float(arg)) <= 0.21 else 2.1 if abs(float(arg)) <= 2.1 else 21.0 if abs(float(arg)) <= 21 else 210.0),
    "SOUR:VOLT:PROT": _setter("ovp_V", 20.0, 210.0),
    "SOUR:VOLT:PROT?": _getter("ovp_V"),
    "SOUR:LIST:VOLT": lambda a, arg: a._set_list(arg),
    "SOUR:DEL": _setter("delay_s", 0.0, 9999.999),
    "SENS:FUNC": _choice("sense_function", {"CURR(ENT)?(:DC)?": "CURR"}),
    "SENS:CURR:PROT": _setter("compliance_A", 1e-9, 1.05),
    "SENS:CURR:PROT?": _getter("compliance_A"),
    "SENS:CURR:NPLC": _setter("nplc", 0.01, 10.0),
    "SENS:CURR:RANG:AUTO": _choice("current_autorange", {"1|ON": True, "0|OFF": False}),
    "SENS:CURR:RANG": _setter("current_range_A", -1.05, 1.05),
    "TRIG:COUN": _setter("trigger_count", 1, 2500, cast=int),
    "TRIG:COUN?": _getter("trigger_count", "{:d}"),
    "READ?": lambda a, _: a._read_points(),
}
