"""Gamry potentiostats (Interface 1010E class, Reference 600/3000) through GamryCOM.

Everything COM runs on one :class:`~echemd.drivers.comthread.ComThread`, which owns the apartment
and pumps events while idle; acquisition methods run on the daemon's worker thread and hand each
COM call to it.  Chrono signals (``GamrySignalConst`` + ``GamryDtaqChrono``) do galvanostatic
(ChronoPot, with the configured voltage limit as the stop condition) and potentiostatic
(ChronoAmp) holds; ``GamryDtaqOcv`` the open-circuit voltage; ``GamryReadZ`` one impedance reading
per frequency.  The IE range is chosen for the largest current of each step (auto-ranging off).
The cell goes off in a ``finally`` of every acquisition, on abort, on any error.  A COM call that
does not return within ``com_timeout_s`` abandons the COM thread: that run fails, and the next run
starts a fresh thread and reconnects.

Assumptions checked only against the simulated GamryCOM (docs/drivers.md): ``Cook`` returns
``(count, data)`` with ``data[column][point]``; the chrono columns start Time, Vf, Vu, Im; ReadZ
amplitudes are V rms.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from echemd.config.models import SIMULATED_ADDRESS, GamryConfig
from echemd.drivers.base import Block, DriverError, DriverUnavailable, InstrumentRefused, Potentiostat, PotentiostatCapabilities
from echemd.drivers.comthread import ComHung, ComThread

log = logging.getLogger(__name__)

GAMRYCOM_TYPELIB = ("{BD962F0D-A990-4823-9CF5-284D1CDD9C6D}", 1, 0)
COOK_POINTS = 1024
POLL_S = 0.05
#: Passes of ReadZ at one frequency before giving up: each Retry is ReadZ adjusting its gain or range.
READZ_MAX_PASSES = 10
TIME, VF, IM = 0, 1, 3  # chrono and OCV columns used


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
        if self._com is None or self._com.hung:
            self._com = ComThread(self.backend, f"echemd-gamry-{self.name}", self.config.com_timeout_s)
            self._pstat = None
        self._pstat = self._call(self._open_pstat)

    def _open_pstat(self):
        label = self.config.address if self.config.address not in ("", SIMULATED_ADDRESS) else None
        if label is None:
            sections = self.backend.create("GamryCOM.GamryDeviceList").EnumSections()
            if not sections:
                raise DriverError(f"{self.name}: the Gamry Framework lists no potentiostat")
            label = sections[0]
        pstat = self.backend.create(self.config.pstat_class)
        pstat.Init(label)
        pstat.Open()
        pstat.SetCell(self.G.CellOff)
        pstat.SetIConvention(self.G.Anodic)  # echemd's convention; never the last user's
        return pstat

    def close(self) -> None:
        if self._com is None:
            return
        try:
            if self._pstat is not None and not self._com.hung:
                self._call(self._close_pstat)
        finally:
            self._com.stop()
            self._com, self._pstat = None, None

    def _close_pstat(self) -> None:
        self._pstat.SetCell(self.G.CellOff)
        self._pstat.Close()

    def safe_state(self) -> None:
        if self._pstat is not None and self._com is not None and not self._com.hung:
            self._call(self._pstat.SetCell, self.G.CellOff)

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
        except ComHung as exc:
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
        return self._acquire(lambda: self._setup_ocv(duration_s, sample_interval_s), lambda columns: np.zeros(len(columns[TIME])))

    def eis(self, frequencies_Hz: np.ndarray, amplitude_V: float, dc_voltage_V: float | None) -> Iterator[Block]:
        frequencies_Hz = np.asarray(frequencies_Hz, dtype=np.float64)
        self.check_eis(frequencies_Hz, amplitude_V, dc_voltage_V)
        return self._eis(frequencies_Hz, amplitude_V, dc_voltage_V)

    def _chrono(self, mode: int, dtaq_type: int, value: float, largest_current_A: float, duration_s: float, interval_s: float) -> Iterator[Block]:
        def setup():
            pstat = self._pstat
            pstat.SetCtrlMode(mode)
            pstat.SetIERangeMode(False)
            pstat.SetIERange(pstat.TestIERange(largest_current_A))
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
        return self._acquire(setup, lambda columns: np.asarray(columns[IM], dtype=np.float64))

    def _setup_ocv(self, duration_s: float, interval_s: float):
        pstat = self._pstat
        pstat.SetCtrlMode(self.G.PstatMode)
        signal = self.backend.create("GamryCOM.GamrySignalConst")
        signal.Init(pstat, 0.0, duration_s, interval_s, self.G.PstatMode)
        dtaq = self.backend.create("GamryCOM.GamryDtaqOcv")
        dtaq.Init(pstat)
        return self._start(pstat, signal, dtaq, cell_on=False)

    def _start(self, pstat, signal, dtaq, cell_on: bool):
        sink = _Sink()
        connection = self.backend.events(dtaq, sink)
        pstat.SetSignal(signal)
        if cell_on:
            pstat.SetCell(self.G.CellOn)
        started = self.backend.now()
        dtaq.Run(True)
        return dtaq, sink, connection, started

    def _acquire(self, setup: Callable[[], tuple], current: Callable[[tuple], np.ndarray]) -> Iterator[Block]:
        """Blocks of (time, current from ``current(columns)``, measured Vf) as the Dtaq cooks them."""
        dtaq = connection = None
        try:
            dtaq, sink, connection, started = self._call(setup)
            while True:
                sink.available.clear()
                count, columns = self._call(dtaq.Cook, COOK_POINTS)
                if count:
                    yield Block({
                        "time_s": started + np.asarray(columns[TIME], dtype=np.float64),
                        "current_A": current(columns),
                        "voltage_V": np.asarray(columns[VF], dtype=np.float64),
                    })
                elif sink.done.is_set():
                    return
                else:
                    sink.available.wait(POLL_S)
        finally:
            self._end(dtaq)
            del connection

    def _end(self, dtaq) -> None:
        """Cell off (first, whatever else fails), then stop the acquisition with Stop() (Run's
        argument is AutoRun: Run(False) stops nothing)."""
        if self._com is None or self._com.hung:
            log.error("%s: COM is hung: cannot switch the cell off from here", self.name)
            return
        try:
            self._call(self._pstat.SetCell, self.G.CellOff)
        finally:
            if dtaq is not None:
                self._call(dtaq.Stop)

    def _read_z(self, readz, sink: _Sink, frequency_Hz: float, amplitude_V: float) -> None:
        """Measure one frequency until ReadZ reports Ok.  Retry is normal (ReadZ changed its gain or
        range and wants another pass), up to READZ_MAX_PASSES; Error, or no Ok by then, fails."""
        for _ in range(READZ_MAX_PASSES):
            sink.done.clear()
            self._call(readz.Measure, frequency_Hz, amplitude_V)
            while not sink.done.wait(POLL_S):
                pass
            if sink.status == self.G.ReadZStatusOk:
                return
            if sink.status != self.G.ReadZStatusRetry:
                raise DriverError(f"{self.name}: ReadZ failed at {frequency_Hz:g} Hz (gcREADZSTATUS {sink.status}, not Ok or Retry)")
        raise DriverError(f"{self.name}: ReadZ asked to retry {READZ_MAX_PASSES} times at {frequency_Hz:g} Hz without a reading")

    def _eis(self, frequencies_Hz: np.ndarray, amplitude_V: float, dc_voltage_V: float | None) -> Iterator[Block]:
        def setup():
            pstat = self._pstat
            pstat.SetCtrlMode(self.G.PstatMode)
            pstat.SetIERangeMode(True)
            pstat.SetVoltage(dc_voltage_V or 0.0)
            readz = self.backend.create("GamryCOM.GamryReadZ")
            readz.Init(pstat)
            sink = _Sink()
            connection = self.backend.events(readz, sink)
            pstat.SetCell(self.G.CellOn)
            return readz, sink, connection

        connection = None
        try:
            readz, sink, connection = self._call(setup)
            for frequency in frequencies_Hz:
                self._read_z(readz, sink, float(frequency), amplitude_V)
                z_real, z_imag = self._call(lambda: (readz.Zreal(), readz.Zimag()))
                yield Block({
                    "time_s": np.array([self.backend.now()]),
                    "frequency_Hz": np.array([frequency]),
                    "z_real_ohm": np.array([z_real]),
                    "z_imag_ohm": np.array([z_imag]),
                })
        finally:
            self._end(None)
            del connection
