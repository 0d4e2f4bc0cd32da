"""Gamry potentiostats (Interface 1010E class, Reference 600/3000) through GamryCOM.

Everything COM runs on one :class:`~echemd.drivers.comthread.ComThread`, which owns the apartment
and pumps events while idle; an acquisition is polled on its run's own thread (a ``Cook``, or a
look at ReadZ's reading, every POLL_S), which hands each COM call to it, and its run is asked
between polls whether it was aborted or paused.  Chrono signals (``GamrySignalConst`` +
``GamryDtaqChrono``) do galvanostatic (ChronoPot, with the configured voltage limit as the stop
condition) and potentiostatic (ChronoAmp) holds; ``GamryDtaqOcv`` the open-circuit voltage;
``GamryReadZ`` one impedance reading per frequency, set up as Gamry's own Potentiostatic EIS
script does.  Before the cell goes on,
everything it will see is this run's: the IE range for the step's largest current (auto-ranging
off), the voltage-channel range for the voltage limit, and the starting level (``SetVoltage``: the
potential, or in galvanostatic mode the current times the range's IE resistor).  The cell goes off
when every acquisition closes, on abort, on any error, and on Ctrl+C (on the COM thread).
COM objects are released on the COM thread.  A COM call that does not return within
``com_timeout_s`` abandons the COM thread: that run fails, and the next run starts a fresh thread
and reconnects; an acquisition whose data stop coming fails ``acquisition_grace_s`` after it should
have ended.

Assumptions checked only against public drivers and the simulated GamryCOM (docs/drivers.md):
``Cook`` returns ``(count, data)`` with ``data[column][point]``; the column orders (TIME ...
OCV_OVERLOAD below); ReadZ amplitudes are V rms.
"""

from __future__ import annotations

import abc
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from echemd.config.models import SIMULATED_ADDRESS, GamryConfig
from echemd.drivers.base import (DEFAULT_IMPEDANCE_GUESS_OHM, Block, DriverError, DriverUnavailable, InstrumentRefused, PolledAcquisition, Potentiostat,
                                 PotentiostatCapabilities)
from echemd.drivers.comthread import ComHung, ComThread, ComThreadEnded

log = logging.getLogger(__name__)

GAMRYCOM_TYPELIB = ("{BD962F0D-A990-4823-9CF5-284D1CDD9C6D}", 1, 0)
COOK_POINTS = 1024
POLL_S = 0.05
#: Passes of ReadZ at one frequency before giving up: each Retry is ReadZ adjusting its gain or range.
READZ_MAX_PASSES = 10
#: Columns of a cooked point: chrono Time, Vf, Vu, Im, Q, Vsig, Ach, IERange, Overload, StopTest; OCV
#: Time, Vf, Vm, Vsig, Ach, Overload, StopTest (as public Gamry drivers list them).
TIME, VF, IM, CHRONO_OVERLOAD, OCV_OVERLOAD = 0, 1, 3, 8, 5


def readz_cycle_limits(frequency_Hz: float) -> tuple[int, int]:
    """(least, most) cycles ReadZ averages at a frequency: more at high frequency (noise), fewer
    at low frequency (time); the ladder public Gamry drivers use."""
    for above_Hz, cycles in ((3e4, (10, 20)), (1e3, (8, 12)), (30.0, (4, 8)), (1.0, (3, 6))):
        if frequency_Hz > above_Hz:
            return cycles
    return (2, 4)


class ComObjects:
    """The COM objects of one acquisition.  The worker thread holds only this; :meth:`release`
    runs on the COM thread, so the last reference to each object goes there (COM objects must be
    released in their apartment)."""

    def __init__(self, **objects: Any) -> None:
        self.__dict__.update(objects)

    def release(self) -> None:
        self.__dict__.clear()


class ComtypesBackend:
    """The real thing: comtypes and the Gamry Framework's GamryCOM server (Windows only)."""

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise DriverUnavailable(
                "the gamry driver needs Windows with the Gamry Framework (GamryCOM) installed, and the comtypes "
                "package (pip install comtypes); on this machine use address = \"simulated\" or another driver"
            )
        try:
            import comtypes
            import comtypes.client as client
        except ImportError as exc:
            raise DriverUnavailable("the gamry driver needs the comtypes package: pip install comtypes") from exc
        try:
            self.module = client.GetModule(list(GAMRYCOM_TYPELIB))
        except Exception as exc:
            raise DriverUnavailable(f"GamryCOM is not registered on this machine (install the Gamry Framework): {exc}") from exc
        self._comtypes, self._client = comtypes, client
        self._t0 = time.monotonic()

    def initialize(self) -> None:
        self._comtypes.CoInitialize()

    def uninitialize(self) -> None:
        self._comtypes.CoUninitialize()

    def create(self, progid: str):
        return self._client.CreateObject(progid)

    def events(self, source, sink):
        return self._client.GetEvents(source, sink)

    def pump_events(self, timeout_s: float) -> None:
        self._client.PumpEvents(timeout_s)

    def wake(self) -> None:
        """PumpEvents cannot be interrupted from Python: a call waits up to one pump interval."""

    def now(self) -> float:
        return time.monotonic() - self._t0


class _Sink:
    """Event sink for a Dtaq or ReadZ: data available, acquisition done (set on the COM thread)."""

    def __init__(self) -> None:
        self.available = threading.Event()
        self.done = threading.Event()
        self.status: int | None = None  # ReadZ: the gcREADZSTATUS of the last reading

    def _IGamryDtaqEvents_OnDataAvailable(self, this) -> None:
        self.available.set()

    def _IGamryDtaqEvents_OnDataDone(self, this) -> None:
        self.done.set()

    def _IGamryReadZEvents_OnDataDone(self, this, status) -> None:
        self.status = int(status)
        self.done.set()


class GamryPotentiostat(Potentiostat):
    driver = "gamry"

    def __init__(self, config: GamryConfig, backend=None) -> None:
        self.config = config
        self.name = config.name
        if backend is None and config.address == SIMULATED_ADDRESS:
            from echemd.drivers.simulated.clock import SimClock
            from echemd.drivers.simulated.gamrycom import SimulatedGamryCOM

            backend = SimulatedGamryCOM(config.cell, SimClock(config.clock))
        self.backend = backend if backend is not None else ComtypesBackend()
        self.G = self.backend.module
        self.capabilities = PotentiostatCapabilities(
            modes=frozenset({"galvanostatic", "potentiostatic", "open_circuit", "eis"}),
            max_current_A=config.max_current_A,
            max_voltage_V=config.max_voltage_V,
            min_sample_interval_s=config.min_sample_interval_s,
            eis_min_frequency_Hz=config.eis_min_frequency_Hz,
            eis_max_frequency_Hz=config.eis_max_frequency_Hz,
        )
        self._com: ComThread | None = None
        self._pstat: Any = None

    # --- life cycle ------------------------------------------------------------------------
    def open(self) -> None:
        if self._com is None or not self._com.usable:
            self._com = ComThread(self.backend, f"echemd-gamry-{self.name}", self.config.com_timeout_s, on_interrupt=self._cell_off_now)
            self._pstat = None
        self._call(self._open_pstat)

    def _cell_off_now(self) -> None:
        """On the COM thread, after Ctrl+C reached it: the cell off, before anything else."""
        if self._pstat is not None:
            self._pstat.SetCell(self.G.CellOff)

    def _open_pstat(self):
        label = self.config.address if self.config.address not in ("", SIMULATED_ADDRESS) else None
        if label is None:
            sections = self.backend.create("GamryCOM.GamryDeviceList").EnumSections()
            if not sections:
                raise DriverError(f"{self.name}: the Gamry Framework lists no potentiostat")
            label = sections[0]
        pstat = self.backend.create(self.config.pstat_class)
        pstat.Init(label)  # the device's section name, as the Gamry Framework lists it
        pstat.Open()
        pstat.SetCell(self.G.CellOff)
        pstat.SetIConvention(self.G.Anodic)  # echemd's convention; never the last user's
        self._pstat = pstat  # (assigned here: the COM object's references live on the COM thread)

    def close(self) -> None:
        if self._com is None:
            return
        try:
            if self._pstat is not None and self._com.usable:
                self._call(self._close_pstat)
        finally:
            self._com.stop(release=self._release_pstat)
            self._com = None

    def _close_pstat(self) -> None:
        self._pstat.SetCell(self.G.CellOff)
        self._pstat.Close()

    def _release_pstat(self) -> None:
        self._pstat = None

    def safe_state(self) -> None:
        if self._pstat is not None and self._com is not None and self._com.usable:
            self._call(self._set_cell_off)

    def _set_cell_off(self) -> None:
        self._pstat.SetCell(self.G.CellOff)

    @property
    def time_s(self) -> float:
        return self.backend.now()

    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run on the COM thread; COM errors and hangs become DriverError."""
        if self._com is None:
            raise DriverError(f"{self.name} is not open")
        try:
            return self._com.call(function, *args)
        except (DriverError, InstrumentRefused):
            raise
        except (ComHung, ComThreadEnded) as exc:
            raise DriverError(f"{self.name}: {exc}") from exc
        except Exception as exc:
            raise DriverError(f"{self.name}: GamryCOM error: {exc}") from exc

    # --- acquisitions ----------------------------------------------------------------------
    def galvanostatic(self, current_A: float, duration_s: float, sample_interval_s: float) -> Iterator[Block]:
        self.check_galvanostatic(current_A, sample_interval_s)
        return self._chrono(self.G.GstatMode, self.G.ChronoPot, current_A, abs(current_A), duration_s, sample_interval_s)

    def potentiostatic(self, voltage_V: float, duration_s: float, sample_interval_s: float) -> Iterator[Block]:
        self.check_potentiostatic(voltage_V, sample_interval_s)
        return self._chrono(self.G.PstatMode, self.G.ChronoAmp, voltage_V, self.config.limits.max_abs_current_A, duration_s, sample_interval_s)

    def open_circuit(self, duration_s: float, sample_interval_s: float) -> Iterator[Block]:
        self.check_mode("open_circuit")
        self.check_sample_interval(sample_interval_s)
        return CookedPoints(self, lambda: self._setup_ocv(duration_s, sample_interval_s), lambda columns: np.zeros(len(columns[TIME])), duration_s,
                            OCV_OVERLOAD)

    def _chrono(self, mode: int, dtaq_type: int, value: float, largest_current_A: float, duration_s: float, interval_s: float) -> Iterator[Block]:
        def setup() -> ComObjects:
            pstat = self._pstat
            pstat.SetCtrlMode(mode)
            pstat.SetIERangeMode(False)
            ie_range = pstat.TestIERange(largest_current_A)
            pstat.SetIERange(ie_range)
            self._set_vch_range(pstat)
            # what the cell sees the moment it goes on is this run's level, never the last run's:
            # a potential, or in galvanostatic mode the control voltage giving the current
            pstat.SetVoltage(value * pstat.IEResistor(ie_range) if mode == self.G.GstatMode else value)
            signal = self.backend.create("GamryCOM.GamrySignalConst")
            signal.Init(pstat, value, duration_s, interval_s, mode)
            dtaq = self.backend.create("GamryCOM.GamryDtaqChrono")
            dtaq.Init(pstat, dtaq_type)
            if mode == self.G.GstatMode:  # the instrument stops itself beyond the limit, either polarity
                dtaq.SetStopXMax(True, self.config.limits.max_abs_voltage_V)
                dtaq.SetStopXMin(True, -self.config.limits.max_abs_voltage_V)
            return self._start(pstat, signal, dtaq, cell_on=True)

        # measured current and voltage in either mode, never the setpoint: a current clipped at its
        # range, or a sign the instrument flipped, shows in the data
        return CookedPoints(self, setup, lambda columns: np.asarray(columns[IM], dtype=np.float64), duration_s, CHRONO_OVERLOAD)

    def _set_vch_range(self, pstat) -> None:
        """The voltage channel's range covers the voltage limit (fixed: never the last run's)."""
        pstat.SetVchRangeMode(False)
        pstat.SetVchRange(pstat.TestVchRange(self.config.limits.max_abs_voltage_V))

    def _setup_ocv(self, duration_s: float, interval_s: float) -> ComObjects:
        pstat = self._pstat
        pstat.SetCtrlMode(self.G.PstatMode)
        self._set_vch_range(pstat)
        signal = self.backend.create("GamryCOM.GamrySignalConst")
        signal.Init(pstat, 0.0, duration_s, interval_s, self.G.PstatMode)
        dtaq = self.backend.create("GamryCOM.GamryDtaqOcv")
        dtaq.Init(pstat)
        return self._start(pstat, signal, dtaq, cell_on=False)

    def _start(self, pstat, signal, dtaq, cell_on: bool) -> ComObjects:
        sink = _Sink()
        connection = self.backend.events(dtaq, sink)
        pstat.SetSignal(signal)
        if cell_on:
            pstat.SetCell(self.G.CellOn)
        started = self.backend.now()
        dtaq.Run(True)
        return ComObjects(signal=signal, dtaq=dtaq, sink=sink, connection=connection, started=started)

    def _end(self, acquisition: ComObjects | None) -> None:
        """Cell off (first, whatever else fails), then stop the acquisition with Stop() (Run's
        argument is AutoRun: Run(False) stops nothing), then release its COM objects on the COM thread."""
        if self._com is None or not self._com.usable:
            log.error("%s: the COM thread is %s: cannot switch the cell off from here", self.name, "hung" if self._com and self._com.hung else "gone")
            return
        try:
            self._call(self._set_cell_off)
        finally:
            try:
                if acquisition is not None and getattr(acquisition, "dtaq", None) is not None:
                    self._call(lambda: acquisition.dtaq.Stop())
            finally:
                if acquisition is not None:
                    self._call(acquisition.release)

    def eis(self, frequencies_Hz: np.ndarray, amplitude_V: float, dc_voltage_V: float | None,
            impedance_guess_ohm: float = DEFAULT_IMPEDANCE_GUESS_OHM) -> Iterator[Block]:
        frequencies_Hz = np.asarray(frequencies_Hz, dtype=np.float64)
        self.check_eis(frequencies_Hz, amplitude_V, dc_voltage_V)
        return ImpedanceReadings(self, lambda: self._setup_eis(amplitude_V, dc_voltage_V, impedance_guess_ohm), frequencies_Hz, amplitude_V)

    def _setup_eis(self, amplitude_V: float, dc_voltage_V: float | None, impedance_guess_ohm: float) -> ComObjects:
        """As Gamry's Potentiostatic EIS: the open-circuit voltage measured with the cell off (the DC
        level when none is given), a fixed IE range for the expected current, ReadZ's settings,
        then the cell on and the DC current it draws handed to ReadZ."""
        pstat = self._pstat
        pstat.SetCtrlMode(self.G.PstatMode)
        self._set_vch_range(pstat)
        open_circuit_V = float(pstat.MeasureV())  # the cell is off here
        dc_V = open_circuit_V if dc_voltage_V is None else dc_voltage_V
        pstat.SetIERangeMode(False)
        pstat.SetIERange(pstat.TestIERange(2 * (abs(dc_V - open_circuit_V) + np.sqrt(2) * amplitude_V) / impedance_guess_ohm))
        pstat.SetVoltage(dc_V)
        readz = self.backend.create("GamryCOM.GamryReadZ")
        readz.Init(pstat)
        readz.SetSpeed(self.G.ReadZSpeedNorm)
        readz.SetGain(1.0)
        readz.SetINoise(0.0)
        readz.SetVNoise(0.0)
        readz.SetIENoise(0.0)
        readz.SetZmod(impedance_guess_ohm)
        sink = _Sink()
        connection = self.backend.events(readz, sink)
        pstat.SetCell(self.G.CellOn)
        readz.SetIdc(pstat.MeasureI())
        return ComObjects(readz=readz, sink=sink, connection=connection)


class _ComAcquisition(PolledAcquisition):
    """What the Gamry's acquisitions share.  Every read is a call on the COM thread, which waits
    for that thread (up to ``com_timeout_s``): they are read on their run's own thread, never on
    the acquisition loop (``poll_waits``), every POLL_S (iterated: as soon as their sink's event
    says there is something to read), and their run is asked between reads whether it was aborted
    or paused.
    ``setup`` (on the COM thread: the cell on) runs at the first read; :meth:`close` (the cell off,
    the Dtaq stopped, the COM objects released) at the end, on abort and on any error."""

    poll_waits = True

    def __init__(self, driver: GamryPotentiostat, setup: Callable[[], ComObjects]) -> None:
        self._driver = driver
        self._setup = setup
        self._objects: ComObjects | None = None
        self._next_poll = -math.inf
        self._closed = False

    def due_at(self) -> float:
        return -math.inf if self._objects is not None and self._event(self._objects).is_set() else self._next_poll

    def poll(self) -> Block | None:
        if self._closed:
            raise StopIteration
        try:
            if self._objects is None:
                self._objects = self._driver._call(self._setup)
                self._started()
            self._next_poll = time.monotonic() + POLL_S
            return self._read(self._objects)
        except BaseException:  # its end (StopIteration) or an error: the cell off, first
            self.close()
            raise

    def __next__(self) -> Block:
        while True:
            block = self.poll()
            if block is not None:
                return block
            self._event(self._objects).wait(max(0.0, self._next_poll - time.monotonic()))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._driver._end(self._objects)

    def _started(self) -> None:
        """Once set up (the COM objects made, the acquisition started)."""

    @abc.abstractmethod
    def _event(self, objects: ComObjects) -> threading.Event:
        """The sink's event that says a read would find something."""

    @abc.abstractmethod
    def _read(self, objects: ComObjects) -> Block | None:
        """One read (calls on the COM thread): a block, None (nothing yet), or StopIteration (the end)."""


class CookedPoints(_ComAcquisition):
    """A Dtaq's points as it cooks them (a ``Cook`` a read): blocks of (time, current from
    ``current(columns)``, measured Vf, and the Overload flags).  DriverError when data stop
    coming ``acquisition_grace_s`` after the acquisition should have ended."""

    def __init__(self, driver: GamryPotentiostat, setup: Callable[[], ComObjects], current: Callable[[tuple], np.ndarray],
                 duration_s: float, overload_column: int) -> None:
        super().__init__(driver, setup)
        self._current = current
        self._duration_s = duration_s
        self._overload_column = overload_column
        self._deadline = math.inf

    def _started(self) -> None:
        self._deadline = time.monotonic() + self._duration_s + self._driver.config.acquisition_grace_s

    def _event(self, objects: ComObjects) -> threading.Event:
        return objects.sink.available

    def _read(self, objects: ComObjects) -> Block | None:
        driver, grace_s = self._driver, self._driver.config.acquisition_grace_s
        objects.sink.available.clear()
        count, columns = driver._call(lambda: objects.dtaq.Cook(COOK_POINTS))
        if count:
            self._deadline = max(self._deadline, time.monotonic() + grace_s)
            return Block({
                "time_s": objects.started + np.asarray(columns[TIME], dtype=np.float64),
                "current_A": self._current(columns),
                "voltage_V": np.asarray(columns[VF], dtype=np.float64),
            }, overload=np.asarray(columns[self._overload_column], dtype=np.int64))
        if objects.sink.done.is_set():
            raise StopIteration
        if time.monotonic() > self._deadline:
            raise DriverError(f"{driver.name}: no data from the acquisition {grace_s:g} s after it should have ended")
        return None


class ImpedanceReadings(_ComAcquisition):
    """One ReadZ reading per frequency, a block each (time, the frequency the instrument applied,
    Z' and Z'').  Retry is normal (ReadZ changed its gain or range and wants another pass), up to
    READZ_MAX_PASSES a frequency; Error, or no Ok by then, fails; so does no answer within the most
    cycles ReadZ may average plus ``acquisition_grace_s``.  A run asked to stop while a frequency is
    measured stops without waiting for it."""

    def __init__(self, driver: GamryPotentiostat, setup: Callable[[], ComObjects], frequencies_Hz: np.ndarray, amplitude_V: float) -> None:
        super().__init__(driver, setup)
        self._frequencies_Hz = frequencies_Hz
        self._amplitude_V = amplitude_V
        self._next = 0  # the frequency being measured
        self._passes = 0  # its Measure calls so far
        self._deadline = math.inf

    def _started(self) -> None:
        self._measure(self._objects)

    def _event(self, objects: ComObjects) -> threading.Event:
        return objects.sink.done

    def _read(self, objects: ComObjects) -> Block | None:
        driver, G = self._driver, self._driver.G
        if self._next == len(self._frequencies_Hz):
            raise StopIteration
        frequency_Hz = float(self._frequencies_Hz[self._next])
        if not objects.sink.done.is_set():
            if time.monotonic() > self._deadline:
                raise DriverError(f"{driver.name}: ReadZ gave no reading at {frequency_Hz:g} Hz within {driver.config.acquisition_grace_s:g} s of its time")
            return None
        status = objects.sink.status
        if status == G.ReadZStatusRetry:
            if self._passes == READZ_MAX_PASSES:
                raise DriverError(f"{driver.name}: ReadZ asked to retry {READZ_MAX_PASSES} times at {frequency_Hz:g} Hz without a reading")
            self._measure(objects)
            return None
        if status != G.ReadZStatusOk:
            raise DriverError(f"{driver.name}: ReadZ failed at {frequency_Hz:g} Hz (gcREADZSTATUS {status}, not Ok or Retry)")
        applied_Hz, z_real, z_imag = driver._call(lambda: (objects.readz.Zfreq(), objects.readz.Zreal(), objects.readz.Zimag()))
        block = Block({
            "time_s": np.array([driver.backend.now()]),
            "frequency_Hz": np.array([applied_Hz]),  # what the instrument applied, not what was asked
            "z_real_ohm": np.array([z_real]),
            "z_imag_ohm": np.array([z_imag]),
        })
        self._next, self._passes = self._next + 1, 0
        if self._next < len(self._frequencies_Hz):
            self._measure(objects)
        return block

    def _measure(self, objects: ComObjects) -> None:
        """Start a pass at the frequency being measured (its cycle limits set at the first)."""
        frequency_Hz = float(self._frequencies_Hz[self._next])
        if self._passes == 0:
            self._driver._call(lambda: objects.readz.SetCycleLim(*readz_cycle_limits(frequency_Hz)))
        objects.sink.done.clear()
        self._driver._call(lambda: objects.readz.Measure(frequency_Hz, self._amplitude_V))
        self._passes += 1
        self._deadline = time.monotonic() + readz_cycle_limits(frequency_Hz)[1] / frequency_Hz + self._driver.config.acquisition_grace_s
