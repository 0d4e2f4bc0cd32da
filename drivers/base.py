"""The instrument interfaces protocols code against.

A protocol sees a :class:`Potentiostat` or a :class:`Sourcemeter`, never a concrete driver.  Every
acquisition method returns an iterator of :class:`Block` objects (a generator, or a
:class:`PolledAcquisition`): the caller (the daemon's runner) records each block as it arrives and
may stop early by closing the iterator, which must leave the instrument idle.
:meth:`Instrument.safe_state` (cell off / output off) is called by the runner after every run,
whatever happened, and must never raise on an instrument that is still reachable.

Sign convention: currents and voltages are those of the working electrode (the tip for c-AFM)
against the counter/reference, anodic current positive (IUPAC, as Gamry reports them); plating
lithium on the working electrode is a negative current.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from echemd.daemon.errors import EchemdError


#: |Z| expected when nothing better is known, Ohm (Gamry's own EIS scripts start from 100 Ohm;
#: a 2 mm Li|Li6PS5Cl|Li cell is 300-3,000 Ohm).
DEFAULT_IMPEDANCE_GUESS_OHM = 1000.0


class DriverError(EchemdError):
    """The instrument failed or could not be reached (timeout, I/O error, instrument error queue)."""


class DriverUnavailable(DriverError):
    """The driver cannot work on this machine (missing OS support or package); raised at daemon start."""


class InstrumentRefused(EchemdError):
    """A request exceeds what the instrument can do; raised before anything is applied."""


@dataclass(frozen=True)
class Block:
    """Samples acquired together: equal-length float64 columns keyed by name (e.g. ``voltage_V``).

    ``time_s`` is on the instrument's own clock, in seconds; the runner rebases it to the run start.
    ``overload``: per sample, the overload bit field the instrument reported (0: none), for
    instruments that report one; the engine records its changes as ``overload`` events.
    """

    columns: Mapping[str, np.ndarray]
    overload: np.ndarray | None = None

    def __post_init__(self) -> None:
        lengths = {name: len(values) for name, values in self.columns.items()}
        if self.overload is not None:
            lengths["(overload)"] = len(self.overload)
        if len(set(lengths.values())) > 1:
            raise ValueError(f"block columns differ in length: {lengths}")
        if "time_s" not in self.columns:
            raise ValueError("a block needs a time_s column")

    def __len__(self) -> int:
        return len(self.columns["time_s"])


class PolledAcquisition(Iterator[Block], abc.ABC):
    """An acquisition whose samples collect in a buffer that can be read without waiting, as a
    driver polling an instrument's buffer reads it.

    Iterating it waits for each block (about one poll period of samples), like any acquisition.
    Besides, the engine asks it :meth:`due_at` and :meth:`poll`, and its run whether it was
    aborted or paused between reads (at least every 0.1 s): a run stops at once, not at its next
    sample.  Where polling never waits on the instrument, a process's acquisition loop
    (echemd.daemon.acquisition_loop) does the reading: one thread reads every such acquisition of
    the process in turn, instead of a thread each.  Where a poll is a call that waits (a COM round
    trip), :attr:`poll_waits` says so and the run's own thread reads it; a driver whose reads
    block for a whole measurement (a 2400's ``:READ?``) returns a plain iterator instead.
    Everything else an acquisition is held to holds: blocks in time order, ``close`` leaves the
    instrument idle, errors are raised by the call that meets them."""

    #: True when :meth:`poll` makes a call that waits (on a COM thread, say): read on its run's own
    #: thread, never on the acquisition loop, where it would hold up every other instrument.
    poll_waits: ClassVar[bool] = False

    @abc.abstractmethod
    def due_at(self) -> float:
        """When it is next worth reading: the ``time.monotonic()`` (s) by which about one poll
        period of samples will have collected (``-inf``: at once, always)."""

    @abc.abstractmethod
    def poll(self) -> Block | None:
        """The samples collected since the last block, at once (None: none yet).  Raises
        StopIteration once every sample has been handed out."""

    @abc.abstractmethod
    def close(self) -> None:
        """End the acquisition (the instrument idle); later reads raise StopIteration."""


@dataclass(frozen=True)
class PotentiostatCapabilities:
    """What a potentiostat can do; protocols are checked against it before a run starts."""

    modes: frozenset[str]  # of "galvanostatic", "potentiostatic", "open_circuit", "eis"
    max_current_A: float
    max_voltage_V: float
    min_sample_interval_s: float
    eis_min_frequency_Hz: float
    eis_max_frequency_Hz: float


@dataclass(frozen=True)
class SourcemeterCapabilities:
    """What a sourcemeter can do (source voltage, measure current)."""

    max_voltage_V: float
    max_compliance_A: float
    min_sample_interval_s: float


class Instrument(abc.ABC):
    """Common life cycle of every instrument."""

    kind: str
    name: str
    driver: str
    capabilities: PotentiostatCapabilities | SourcemeterCapabilities

    @abc.abstractmethod
    def open(self) -> None:
        """Connect (or reconnect); raises DriverError when the instrument cannot be reached."""

    @abc.abstractmethod
    def close(self) -> None:
        """Put the instrument in its safe state and release the connection."""

    @abc.abstractmethod
    def safe_state(self) -> None:
        """Cell off / output off.  Idempotent."""

    @property
    @abc.abstractmethod
    def time_s(self) -> float:
        """The instrument's clock (the time base of its blocks), s."""

    def describe(self) -> dict:
        """JSON-ready description: kind, driver, capabilities."""
        capabilities = {
            key: sorted(value) if isinstance(value, frozenset) else value
            for key, value in asdict(self.capabilities).items()
        }
        return {"kind": self.kind, "driver": self.driver, "capabilities": capabilities}


class Potentiostat(Instrument):
    kind = "potentiostat"
    capabilities: PotentiostatCapabilities
    #: How the cell is wired, where the driver can know it: 2 (reference and counter leads on the
    #: counter electrode: the measured voltage is the cell's) or 3 (the reference lead on a
    #: reference electrode: the working electrode's against it).  None: a real instrument measures
    #: working sense against reference whatever is on the leads; the operator says which.
    electrodes: int | None = None

    @abc.abstractmethod
    def galvanostatic(self, current_A: float, duration_s: float, sample_interval_s: float) -> Iterator[Block]:
        """Hold ``current_A`` for ``duration_s``, yielding blocks of (time_s, current_A, voltage_V).

        Samples are taken every ``sample_interval_s``; the first one interval after the start.
        Raises InstrumentRefused (before applying anything) if the current or interval is out of range.
        """

    @abc.abstractmethod
    def potentiostatic(self, voltage_V: float, duration_s: float, sample_interval_s: float) -> Iterator[Block]:
        """Hold ``voltage_V`` for ``duration_s``, yielding blocks of (time_s, current_A, voltage_V)."""

    @abc.abstractmethod
    def open_circuit(self, duration_s: float, sample_interval_s: float) -> Iterator[Block]:
        """Record the open-circuit voltage, yielding blocks of (time_s, current_A, voltage_V)."""

    @abc.abstractmethod
    def eis(self, frequencies_Hz: np.ndarray, amplitude_V: float, dc_voltage_V: float | None,
            impedance_guess_ohm: float = DEFAULT_IMPEDANCE_GUESS_OHM) -> Iterator[Block]:
        """Potentiostatic EIS, one reading per frequency in the given order.

        ``amplitude_V`` is the AC amplitude (V rms); ``dc_voltage_V`` the DC bias, or None for the
        open-circuit voltage measured just before; ``impedance_guess_ohm`` the |Z| expected, which
        sets the starting current range (an instrument adjusts it per frequency).  Yields blocks of
        (time_s, frequency_Hz as the instrument applied it, z_real_ohm, z_imag_ohm).
        """

    def check_mode(self, mode: str) -> None:
        if mode not in self.capabilities.modes:
            raise InstrumentRefused(f"{self.name} has no {mode} mode")

    def check_sample_interval(self, sample_interval_s: float) -> None:
        fastest = self.capabilities.min_sample_interval_s
        if sample_interval_s < fastest:
            raise InstrumentRefused(f"{self.name}: sample interval {sample_interval_s:.4g} s is shorter than the fastest {fastest:.4g} s")

    def check_galvanostatic(self, current_A: float, sample_interval_s: float) -> None:
        self.check_mode("galvanostatic")
        if abs(current_A) > self.capabilities.max_current_A:
            raise InstrumentRefused(
                f"{self.name}: |current| {abs(current_A):.4g} A exceeds the instrument's range {self.capabilities.max_current_A:.4g} A"
            )
        self.check_sample_interval(sample_interval_s)

    def check_potentiostatic(self, voltage_V: float, sample_interval_s: float) -> None:
        self.check_mode("potentiostatic")
        if abs(voltage_V) > self.capabilities.max_voltage_V:
            raise InstrumentRefused(
                f"{self.name}: |voltage| {abs(voltage_V):.4g} V exceeds the instrument's range {self.capabilities.max_voltage_V:.4g} V"
            )
        self.check_sample_interval(sample_interval_s)

    def check_eis(self, frequencies_Hz: np.ndarray, amplitude_V: float, dc_voltage_V: float | None) -> None:
        self.check_mode("eis")
        caps = self.capabilities
        low, high = float(np.min(frequencies_Hz)), float(np.max(frequencies_Hz))
        if low < caps.eis_min_frequency_Hz or high > caps.eis_max_frequency_Hz:
            raise InstrumentRefused(
                f"{self.name}: EIS from {low:.4g} to {high:.4g} Hz is outside the instrument's "
                f"{caps.eis_min_frequency_Hz:.4g} - {caps.eis_max_frequency_Hz:.4g} Hz"
            )
        if not 0 < amplitude_V <= caps.max_voltage_V or abs(dc_voltage_V or 0.0) + amplitude_V > caps.max_voltage_V:
            raise InstrumentRefused(f"{self.name}: EIS amplitude {amplitude_V:.4g} V rms with DC {dc_voltage_V} V is out of range")


class Sourcemeter(Instrument):
    kind = "sourcemeter"
    capabilities: SourcemeterCapabilities

    @abc.abstractmethod
    def voltage_sweep(self, biases_V: np.ndarray, compliance_A: float, dwell_s: float) -> Iterator[Block]:
        """Source each bias in turn for ``dwell_s``, yielding blocks of (time_s, bias_V, current_A, compliance).

        ``compliance`` is 1.0 where the current was clamped at ``compliance_A``, else 0.0.
        """
