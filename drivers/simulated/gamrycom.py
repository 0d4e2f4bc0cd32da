"""A simulated GamryCOM: the object model the Gamry driver uses, answering from the symmetric-cell physics.

It stands in for comtypes + the Gamry Framework so the real
:class:`~echemd.drivers.gamry.GamryPotentiostat` runs end to end without Windows or hardware.
Objects are created by ProgID (``GamryCOM.GamryDeviceList``, ``GamryCOM.GamryPC6Pstat``,
``GamryCOM.GamryPC5Pstat``, ``GamryCOM.GamryPstat`` (Reference 3000), ``GamryCOM.GamrySignalConst``, ``GamryCOM.GamryDtaqChrono``, ``GamryCOM.GamryDtaqOcv``,
``GamryCOM.GamryReadZ``); data acquisition advances only while events are pumped, and its events
(``_IGamryDtaqEvents_OnDataAvailable`` / ``OnDataDone``, ``_IGamryReadZEvents_OnDataDone``) reach
the sinks registered with :meth:`SimulatedGamryCOM.events`, as with ``comtypes.client.GetEvents``.

For tests: ``calls`` logs every method call in order as ``(object, method, args)``; ``fail_on``
names a method that raises :class:`SimulatedCOMError` (as comtypes raises COMError); ``hang_on``
names one that blocks until ``release`` is set (a hung COM server); ``interrupt_pump`` makes the
next ``pump_events`` raise KeyboardInterrupt (Ctrl+C reaching comtypes' PumpEvents); ``stall``
stops every acquisition from producing data or events.  Every call checks that it runs on the
thread that initialized COM, as the real apartment requires, and every object records a release
(its last reference dropped) on any other thread in ``released_off_thread``.

Like an instrument someone used before, a potentiostat object starts dirty: cathodic current
convention, a control level of 0.8 V and a 30 mV voltage-channel range left set.  What the cell
sees each time it goes on (``SetVoltage``'s level; in galvanostatic mode that level over the IE
resistor of the range, as a current) is kept in ``cell_on_levels``; Vf readings clip at
the voltage channel's range (overload flag set).  ``open_circuit_V`` offsets the cell's voltage
(a cell or reference whose open-circuit voltage is not 0).  Modelled, not taken from GamryCOM:
the IE resistor of a range is 1 V over its full-scale current, the voltage-channel ranges are
30 mV, 300 mV, 3 V and 12 V, and ReadZ applies the requested frequency rounded to 4 significant
digits (what ``Zfreq`` reports).
"""

from __future__ import annotations

import math
import threading
from types import SimpleNamespace

import numpy as np

from echemd.config.models import SymmetricCellConfig
from echemd.drivers.simulated.cell import SymmetricCell
from echemd.drivers.simulated.clock import SimClock

#: GamryCOM's type-library values (gcCELLSTATE, gcCTRLMODE, gcCHRONO_TYPE, gcREADZSTATUS), so a
#: driver that hard-codes a number, or confuses two enums, fails against the simulator as on a real
#: instrument.
CONSTANTS = SimpleNamespace(CellOff=0, CellOn=1, GstatMode=0, PstatMode=1, ChronoAmp=1, ChronoPot=3,
                            ReadZStatusOk=0, ReadZStatusRetry=1, ReadZStatusError=2, Cathodic=0, Anodic=1,
                            ReadZSpeedFast=0, ReadZSpeedNorm=1, ReadZSpeedLow=2)
#: IE ranges of an Interface 1010E: 10 pA * 10**k, k = 0..11 (10 pA .. 1 A full scale).
IE_RANGES_A = [1e-11 * 10**k for k in range(12)]
#: rms noise of the current reading, relative to the range's full scale.
IM_NOISE = 1e-5
#: Voltage-channel ranges, full scale V (modelled).
VCH_RANGES_V = [0.03, 0.3, 3.0, 12.0]
#: Bits of the Overload column (modelled: the simulator's own assignment).
OVERLOAD_CURRENT, OVERLOAD_VOLTAGE = 1, 2
E_FAIL = -2147467259  # 0x80004005


class SimulatedCOMError(Exception):
    """What comtypes.COMError looks like: (hresult, text, details)."""


class SimulatedGamryCOM:
    """The backend the Gamry driver talks to: module constants, object factory, events, clock."""

    def __init__(self, cell: SymmetricCellConfig, clock: SimClock, device_label: str = "IFC1010-SIM") -> None:
        self.module = CONSTANTS
        self.cell = SymmetricCell(cell)
        self.rng = np.random.default_rng(cell.seed + 1)  # the instrument's own reading noise
        self.clock = clock
        self.device_label = device_label
        self.time_s = 0.0
        self.calls: list[tuple[str, str, tuple]] = []
        self.fail_on: str | None = None
        self.hang_on: str | None = None
        self.interrupt_pump = False
        self.stall = False
        self.open_circuit_V = 0.0
        self.cell_on_levels: list[float] = []  # what the cell saw each time it went on: V, or A in galvanostatic mode
        self.released_off_thread: list[str] = []
        self.release = threading.Event()
        self._wake = threading.Event()
        self._sinks: dict[int, object] = {}
        self._active: list[_Acquisition | ReadZ] = []  # what the pump advances
        self._thread: threading.Thread | None = None

    # --- backend interface -----------------------------------------------------------------
    def initialize(self) -> None:
        self._thread = threading.current_thread()
        self.calls.append(("com", "CoInitialize", ()))

    def uninitialize(self) -> None:
        self.calls.append(("com", "CoUninitialize", ()))

    def create(self, progid: str):
        self._check_thread()
        factory = {
            "GamryCOM.GamryDeviceList": DeviceList,
            "GamryCOM.GamryPC6Pstat": Pstat,
            "GamryCOM.GamryPC5Pstat": Pstat,
            "GamryCOM.GamryPstat": Pstat,
            "GamryCOM.GamrySignalConst": SignalConst,
            "GamryCOM.GamryDtaqChrono": DtaqChrono,
            "GamryCOM.GamryDtaqOcv": DtaqOcv,
            "GamryCOM.GamryReadZ": ReadZ,
        }.get(progid)
        if factory is None:
            raise SimulatedCOMError(E_FAIL, f"Invalid class string {progid}", None)
        return factory(self)

    def events(self, source, sink) -> "Connection":
        self._sinks[id(source)] = sink
        return Connection(self, source)

    def pump_events(self, timeout_s: float) -> None:
        """Advance every running acquisition by one block and deliver its events."""
        if self.interrupt_pump:
            self.interrupt_pump = False
            raise KeyboardInterrupt
        produced = False
        for acquisition in list(self._active) if not self.stall else ():
            produced |= acquisition.advance()
        if not produced:  # as PumpEvents: wait for something to happen, here a queued call
            self._wake.wait(timeout_s)
            self._wake.clear()

    def wake(self) -> None:
        self._wake.set()

    def now(self) -> float:
        return self.time_s

    # --- helpers for the objects -----------------------------------------------------------
    def record(self, kind: str, method: str, args: tuple) -> None:
        self._check_thread()
        self.calls.append((kind, method, args))
        if method == self.fail_on:
            raise SimulatedCOMError(E_FAIL, f"simulated failure in {kind}.{method}", None)
        if method == self.hang_on:
            self.release.wait()

    def fire(self, source, event: str, *args) -> None:
        sink = self._sinks.get(id(source))
        handler = getattr(sink, event, None)
        if handler is not None:
            handler(source, *args)

    def _check_thread(self) -> None:
        if self._thread is not None and threading.current_thread() is not self._thread:
            raise SimulatedCOMError(E_FAIL, "called from a thread that is not the COM apartment's", None)


class Connection:
    """Returned by events(); dropping it (``del``) disconnects the sink, as with comtypes."""

    def __init__(self, com: SimulatedGamryCOM, source) -> None:
        self._com, self._source = com, source

    def __del__(self) -> None:
        self._com._sinks.pop(id(self._source), None)


class _ComObject:
    kind = "object"

    def __init__(self, com: SimulatedGamryCOM) -> None:
        self._com = com

    def __del__(self) -> None:
        thread = self._com._thread
        if thread is not None and threading.current_thread() is not thread and thread.is_alive():
            self._com.released_off_thread.append(self.kind)

    def _call(self, method: str, *args) -> None:
        self._com.record(self.kind, method, args)


class DeviceList(_ComObject):
    kind = "devices"

    def Count(self) -> int:
        self._call("Count")
        return 1

    def EnumSections(self) -> tuple[str, ...]:
        self._call("EnumSections")
        return (self._com.device_label,)


class Pstat(_ComObject):
    kind = "pstat"

    def __init__(self, com: SimulatedGamryCOM) -> None:
        super().__init__(com)
        self.opened = False
        self.cell_on = False
        self.ctrl_mode = CONSTANTS.PstatMode
        self.ie_range = len(IE_RANGES_A) - 1
        self.voltage_V = 0.8  # a previous user's level: what the cell would see if nobody set one
        self.vch_range = 0  # 30 mV: a previous user's
        self.signal: SignalConst | None = None
        # whatever the last user left: cathodic currents positive, so a driver that never sets the
        # convention applies every current with the wrong sign (plating becomes stripping)
        self.i_convention = CONSTANTS.Cathodic

    def Init(self, label: str) -> None:
        self._call("Init", label)
        if label != self._com.device_label:
            raise SimulatedCOMError(E_FAIL, f"no device {label!r}", None)

    def Open(self) -> None:
        self._call("Open")
        self.opened = True

    def Close(self) -> None:
        self._call("Close")
        self.opened = False
        self.cell_on = False

    def SetIConvention(self, convention: int) -> None:
        self._call("SetIConvention", convention)
        self.i_convention = convention

    @property
    def anodic_sign(self) -> float:
        """+1 when currents are anodic-positive (the cell's own convention), -1 when cathodic-positive."""
        return 1.0 if self.i_convention == CONSTANTS.Anodic else -1.0

    def SetCtrlMode(self, mode: int) -> None:
        self._call("SetCtrlMode", mode)
        self.ctrl_mode = mode

    def SetIERangeMode(self, auto: bool) -> None:
        self._call("SetIERangeMode", auto)

    def TestIERange(self, current_A: float) -> int:
        self._call("TestIERange", current_A)
        return next((k for k, full in enumerate(IE_RANGES_A) if abs(current_A) <= full), len(IE_RANGES_A) - 1)

    def SetIERange(self, index: int) -> None:
        self._call("SetIERange", index)
        self.ie_range = index

    def SetSignal(self, signal: "SignalConst") -> None:
        self._call("SetSignal", signal.kind)
        self.signal = signal

    def SetVoltage(self, voltage_V: float) -> None:
        """The control level: a potential (potentiostatic), or current x IE resistor (galvanostatic)."""
        self._call("SetVoltage", voltage_V)
        self.voltage_V = voltage_V

    def IEResistor(self, index: int) -> float:
        self._call("IEResistor", index)
        return 1.0 / IE_RANGES_A[index]

    def TestVchRange(self, voltage_V: float) -> int:
        self._call("TestVchRange", voltage_V)
        return next((k for k, full in enumerate(VCH_RANGES_V) if abs(voltage_V) <= full), len(VCH_RANGES_V) - 1)

    def SetVchRange(self, index: int) -> None:
        self._call("SetVchRange", index)
        self.vch_range = index

    def SetVchRangeMode(self, auto: bool) -> None:
        self._call("SetVchRangeMode", auto)

    def MeasureV(self) -> float:
        """The cell's voltage now (with the cell off: its open-circuit voltage)."""
        self._call("MeasureV")
        com = self._com
        return float(com.cell.galvanostatic(0.0, np.array([1e-3]))[-1]) + com.open_circuit_V

    def MeasureI(self) -> float:
        """The current the cell draws now, in the instrument's convention."""
        self._call("MeasureI")
        if not self.cell_on or self.ctrl_mode != CONSTANTS.PstatMode:
            return 0.0
        return self.anodic_sign * self._com.cell.current_at(self.voltage_V - self._com.open_circuit_V)

    def SetCell(self, state: int) -> None:
        self._call("SetCell", state)
        if state == CONSTANTS.CellOn and not self.opened:
            raise SimulatedCOMError(E_FAIL, "the potentiostat is not open", None)
        if state == CONSTANTS.CellOn and not self.cell_on:
            galvanostatic = self.ctrl_mode == CONSTANTS.GstatMode
            self._com.cell_on_levels.append(self.voltage_V * IE_RANGES_A[self.ie_range] if galvanostatic else self.voltage_V)
        self.cell_on = state == CONSTANTS.CellOn


class SignalConst(_ComObject):
    kind = "signal"

    def Init(self, pstat: Pstat, value: float, total_time_s: float, sample_period_s: float, mode: int) -> None:
        self._call("Init", value, total_time_s, sample_period_s, mode)
        self.pstat, self.value, self.total_time_s, self.sample_period_s, self.mode = pstat, value, total_time_s, sample_period_s, mode


class _Acquisition(_ComObject):
    """A Dtaq: produces points while running and events are pumped; Cook hands them out."""

    columns = ("Time",)

    def __init__(self, com: SimulatedGamryCOM) -> None:
        super().__init__(com)
        self.pstat: Pstat | None = None
        self.points: list[tuple] = []
        self.running = False
        self.elapsed_s = 0.0
        self.stop_above_V: float | None = None  # SetStopXMax
        self.stop_below_V: float | None = None  # SetStopXMin

    def Run(self, auto_run: bool) -> None:
        """Start acquiring (the argument is GamryCOM's AutoRun, not start/stop: only Stop() stops)."""
        self._call("Run", auto_run)
        if self.running:
            return
        signal = self.pstat.signal
        if signal is None:
            raise SimulatedCOMError(E_FAIL, "no signal set", None)
        self.signal, self.elapsed_s, self.running = signal, 0.0, True
        self._com.clock.anchor(self._com.time_s)
        self._com._active.append(self)

    def Stop(self) -> None:
        self._call("Stop")
        self._finish()

    def Cook(self, count: int) -> tuple[int, tuple]:
        self._call("Cook", count)
        taken, self.points = self.points[:count], self.points[count:]
        return len(taken), tuple(zip(*taken)) if taken else tuple(() for _ in self.columns)

    def _finish(self) -> None:
        if self in self._com._active:
            self._com._active.remove(self)
        if self.running:
            self.running = False
            self._com.fire(self, "_IGamryDtaqEvents_OnDataDone")

    def advance(self) -> bool:
        """Produce the points the clock says were acquired since the last ones; False when there
        was nothing to do.  Never waits: a pump returns within its timeout, as PumpEvents does,
        however long the sample period (the COM thread stays free for the driver's calls)."""
        if self.points:
            return False  # the instrument never runs ahead of a consumer that keeps up (as hardware in real time)
        com, signal = self._com, self.signal
        remaining = round((signal.total_time_s - self.elapsed_s) / signal.sample_period_s)
        if remaining <= 0:
            self._finish()
            return True
        n = com.clock.acquired(signal.sample_period_s, remaining, com.time_s)
        if n == 0:
            return False
        offsets = signal.sample_period_s * np.arange(1, n + 1, dtype=np.float64)
        rows = self._measure(offsets)
        com.time_s += float(offsets[-1])
        for offset, row in zip(offsets, rows):
            stopped = (self.stop_above_V is not None and row[0] > self.stop_above_V) or (
                self.stop_below_V is not None and row[0] < self.stop_below_V)
            self.points.append((self.elapsed_s + offset, *row, 1 if stopped else 0))
            if stopped:
                self.elapsed_s = signal.total_time_s
                break
        else:
            self.elapsed_s += float(offsets[-1])
        com.fire(self, "_IGamryDtaqEvents_OnDataAvailable")
        if self.elapsed_s >= signal.total_time_s - 1e-9:
            self._finish()
        return True

    def _measure(self, offsets: np.ndarray) -> list[tuple]:
        raise NotImplementedError


class DtaqChrono(_Acquisition):
    """Chronopotentiometry (galvanostatic) or chronoamperometry (potentiostatic)."""

    kind = "dtaq-chrono"
    columns = ("Time", "Vf", "Vu", "Im", "Q", "Vsig", "Ach", "IERange", "Overload", "StopTest")  # as public Gamry drivers list them

    def Init(self, pstat: Pstat, dtaq_type: int) -> None:
        self._call("Init", dtaq_type)
        self.pstat, self.dtaq_type = pstat, dtaq_type
        self.charge_C = 0.0

    def SetStopXMax(self, enable: bool, value: float) -> None:
        """Stop when the measured voltage rises above ``value`` (one-sided, as GamryCOM's)."""
        self._call("SetStopXMax", enable, value)
        self.stop_above_V = value if enable else None

    def SetStopXMin(self, enable: bool, value: float) -> None:
        """Stop when the measured voltage falls below ``value``."""
        self._call("SetStopXMin", enable, value)
        self.stop_below_V = value if enable else None

    def _measure(self, offsets: np.ndarray) -> list[tuple]:
        pstat, cell, value = self.pstat, self._com.cell, self.signal.value
        full_scale = IE_RANGES_A[pstat.ie_range]
        n = len(offsets)
        if not pstat.cell_on:
            voltage, current = cell.galvanostatic(0.0, offsets), np.zeros(n)
        elif pstat.ctrl_mode == CONSTANTS.GstatMode:  # setpoint and Im in the instrument's convention
            applied = float(np.clip(value, -full_scale, full_scale))  # no more than the range delivers
            voltage = cell.galvanostatic(pstat.anodic_sign * applied, offsets)
            current = applied + self._com.rng.normal(0.0, IM_NOISE * full_scale, n)
        else:
            current = pstat.anodic_sign * cell.potentiostatic(value, offsets)
            voltage = value + self._com.rng.normal(0.0, cell.config.noise_V, n)
        voltage = np.asarray(voltage, dtype=np.float64) + self._com.open_circuit_V
        vch_full_scale = VCH_RANGES_V[pstat.vch_range]
        overload = (np.abs(current) > full_scale) * OVERLOAD_CURRENT | (np.abs(voltage) > vch_full_scale) * OVERLOAD_VOLTAGE
        current = np.clip(current, -full_scale, full_scale)
        voltage = np.clip(voltage, -vch_full_scale, vch_full_scale)  # the reading, not the cell
        charge = self.charge_C + np.cumsum(current) * self.signal.sample_period_s
        self.charge_C = float(charge[-1]) if len(charge) else self.charge_C
        return [(v, v, i, q, value, 0.0, pstat.ie_range, int(o)) for v, i, q, o in zip(voltage, current, charge, overload)]


class DtaqOcv(_Acquisition):
    """Open-circuit voltage (the cell stays off)."""

    kind = "dtaq-ocv"
    columns = ("Time", "Vf", "Vm", "Vsig", "Ach", "Overload", "StopTest")

    def Init(self, pstat: Pstat) -> None:
        self._call("Init")
        self.pstat = pstat

    def _measure(self, offsets: np.ndarray) -> list[tuple]:
        vch_full_scale = VCH_RANGES_V[self.pstat.vch_range]
        voltage = np.asarray(self._com.cell.galvanostatic(0.0, offsets), dtype=np.float64) + self._com.open_circuit_V
        return [(min(max(v, -vch_full_scale), vch_full_scale), v, 0.0, 0.0, OVERLOAD_VOLTAGE * int(abs(v) > vch_full_scale)) for v in voltage]


class ReadZ(_ComObject):
    """One impedance reading per Measure(); OnDataDone(status) when it is ready, status a
    gcREADZSTATUS.  As the real ReadZ, it answers ReadZStatusRetry (and no reading) when the
    reading needs another current range than the one set: it switches, and the caller measures
    again.  A reading averages the most cycles SetCycleLim allows (at least 0.2 s): Measure returns
    at once, and OnDataDone comes once the clock has run that long, while events are pumped.  The
    DC current is the one the cell draws at the control level (nothing at its open-circuit voltage)."""

    kind = "readz"

    def Init(self, pstat: Pstat) -> None:
        self._call("Init")
        self.pstat = pstat
        self._z = complex(math.nan, math.nan)
        self._frequency = math.nan
        self.settings: dict[str, object] = {}
        self.cycle_limits = (2, 4)

    def _setting(self, name: str, *values) -> None:
        self._call(name, *values)
        self.settings[name] = values[0] if len(values) == 1 else values

    def SetSpeed(self, speed: int) -> None:
        self._setting("SetSpeed", speed)

    def SetGain(self, gain: float) -> None:
        self._setting("SetGain", gain)

    def SetINoise(self, noise: float) -> None:
        self._setting("SetINoise", noise)

    def SetVNoise(self, noise: float) -> None:
        self._setting("SetVNoise", noise)

    def SetIENoise(self, noise: float) -> None:
        self._setting("SetIENoise", noise)

    def SetZmod(self, impedance_ohm: float) -> None:
        self._setting("SetZmod", impedance_ohm)

    def SetIdc(self, current_A: float) -> None:
        self._setting("SetIdc", current_A)

    def SetCycleLim(self, least: int, most: int) -> None:
        self._setting("SetCycleLim", least, most)
        self.cycle_limits = (least, most)

    def Measure(self, frequency_Hz: float, amplitude_V: float) -> None:
        self._call("Measure", frequency_Hz, amplitude_V)
        com, pstat = self._com, self.pstat
        if not pstat.cell_on:
            raise SimulatedCOMError(E_FAIL, "cell is off", None)
        if com.stall:
            return  # no OnDataDone: the instrument stopped answering
        applied_Hz = float(f"{frequency_Hz:.4g}")
        dc_current_A = com.cell.current_at(pstat.voltage_V - com.open_circuit_V)
        duration = max(0.2, self.cycle_limits[1] / applied_Hz)
        com.clock.anchor(com.time_s)
        z = com.cell.measure_impedance(applied_Hz, dc_current_A, duration)
        peak_A = abs(dc_current_A) + amplitude_V * math.sqrt(2) / abs(z)
        needed = next((k for k, full in enumerate(IE_RANGES_A) if peak_A <= full), len(IE_RANGES_A) - 1)
        # Measure returns at once; the reading is done (OnDataDone, while events are pumped) once
        # the clock has run its duration
        self._reading = (com.time_s + duration, needed, z, applied_Hz)
        com._active.append(self)

    def advance(self) -> bool:
        """Finish the reading once its time has come (False until then); a reading the cell was
        switched off during is abandoned, without an event."""
        com, pstat = self._com, self.pstat
        done_s, needed, z, applied_Hz = self._reading
        if pstat.cell_on and not com.clock.unlimited and com.clock.now_s() < done_s:
            return False
        com._active.remove(self)
        if not pstat.cell_on:
            return False
        com.time_s = done_s
        if needed != pstat.ie_range:
            pstat.ie_range = needed
            com.fire(self, "_IGamryReadZEvents_OnDataDone", CONSTANTS.ReadZStatusRetry)
        else:
            self._z, self._frequency = z, applied_Hz
            com.fire(self, "_IGamryReadZEvents_OnDataDone", CONSTANTS.ReadZStatusOk)
        return True

    def Zreal(self) -> float:
        self._call("Zreal")
        return self._z.real

    def Zimag(self) -> float:
        self._call("Zimag")
        return self._z.imag

    def Zfreq(self) -> float:
        self._call("Zfreq")
        return self._frequency
