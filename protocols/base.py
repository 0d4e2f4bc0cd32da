"""What a protocol is: a parameter model, a check against the instrument, and a plan the runner executes.

A plan is a generator, in the spirit of bluesky: it yields :class:`Galvanostatic` (or other
acquisition) steps and :class:`Event` notes; for each step the runner sends back a
:class:`StepOutcome` with the samples the step recorded and why it stopped; the plan's return value
is the run's result (a JSON-ready dict).  A plan never touches ZeroMQ, HDF5 or a concrete driver.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Union

import numpy as np
from pydantic import BaseModel

from echemd.config.models import InstrumentLimits
from echemd.daemon.errors import EchemdError
from echemd.daemon.vocabulary import EventKind, HoldMode
from echemd.drivers.base import DEFAULT_IMPEDANCE_GUESS_OHM, Block, Instrument, Potentiostat, Sourcemeter


class ProtocolRefused(EchemdError):
    """The parameters ask for more than the instrument or its configured limits allow."""


@dataclass(frozen=True)
class Column:
    """A recorded column: its name, SI unit and, where the name does not say it all, what it holds
    (stored as the dataset's ``description`` attribute)."""

    name: str
    units: str
    description: str = ""


@dataclass(frozen=True)
class Stop:
    """Why a step ended early: ``reason``, the run time (s) of the sample that triggered it, details."""

    reason: str
    time_s: float
    details: Mapping[str, Any] = field(default_factory=dict)


class StopCondition(abc.ABC):
    """Watches a step's samples as they arrive; :meth:`update` returns a Stop to end the step.

    ``batch_s``: the engine may hold samples back and feed them in blocks spanning up to this long
    (s of run time), and always feeds what it holds when the acquisition ends (step end, pause) or
    another condition stops the step: for a condition whose answer does not depend on how its
    samples are cut into blocks and that judges over seconds (the short detector), at a fraction of
    the cost per sample.  0 (the default): every block as it arrives (a safety cut-off).
    """

    batch_s: float = 0.0

    @abc.abstractmethod
    def update(self, columns: Mapping[str, np.ndarray]) -> Stop | None:
        """Feed the next samples (``time_s`` in run time, s); return a Stop or None."""


class _Timed:
    """A step that lasts ``duration_s`` (s), a sample every ``sample_interval_s`` (s)."""

    duration_s: float
    sample_interval_s: float

    def remainder(self, samples_done: int):
        """What is left of the step after ``samples_done`` samples (after a pause), or None."""
        left = self.duration_s - samples_done * self.sample_interval_s
        return replace(self, duration_s=left) if left >= self.sample_interval_s else None


@dataclass(frozen=True)
class Galvanostatic(_Timed):
    """Hold a current (A) for a duration (s), sampling every ``sample_interval_s`` (s).

    ``keep_samples``: hand the step's samples back to the plan (all are recorded either way); a
    plan that only needs the stop should say False, so a long step costs no memory.
    """

    needs: ClassVar[type[Instrument]] = Potentiostat
    current_A: float
    duration_s: float
    sample_interval_s: float
    label: str
    stops: tuple[StopCondition, ...] = ()
    keep_samples: bool = True

    def acquire(self, instrument: Instrument) -> Iterator[Block]:
        return instrument.galvanostatic(self.current_A, self.duration_s, self.sample_interval_s)


@dataclass(frozen=True)
class VoltageSweep:
    """Source each bias (V) in turn for ``dwell_s`` (s) with a current compliance (A), measuring current."""

    needs: ClassVar[type[Instrument]] = Sourcemeter
    biases_V: np.ndarray
    compliance_A: float
    dwell_s: float
    label: str
    stops: tuple[StopCondition, ...] = ()
    keep_samples: bool = True

    def acquire(self, instrument: Instrument) -> Iterator[Block]:
        return instrument.voltage_sweep(self.biases_V, self.compliance_A, self.dwell_s)

    def remainder(self, samples_done: int) -> "VoltageSweep | None":
        return replace(self, biases_V=self.biases_V[samples_done:]) if samples_done < len(self.biases_V) else None

    @property
    def sample_interval_s(self) -> float:
        return self.dwell_s


@dataclass(frozen=True)
class Impedance:
    """Potentiostatic EIS: one reading per frequency (Hz), AC amplitude (V rms), DC bias (V) or
    None for the open-circuit voltage, and the |Z| expected (Ohm: the starting current range)."""

    needs: ClassVar[type[Instrument]] = Potentiostat
    frequencies_Hz: np.ndarray
    amplitude_V: float
    dc_voltage_V: float | None
    label: str
    stops: tuple[StopCondition, ...] = ()
    keep_samples: bool = True
    impedance_guess_ohm: float = DEFAULT_IMPEDANCE_GUESS_OHM

    def acquire(self, instrument: Instrument) -> Iterator[Block]:
        return instrument.eis(self.frequencies_Hz, self.amplitude_V, self.dc_voltage_V, self.impedance_guess_ohm)

    def remainder(self, samples_done: int) -> "Impedance | None":
        return replace(self, frequencies_Hz=self.frequencies_Hz[samples_done:]) if samples_done < len(self.frequencies_Hz) else None


@dataclass(frozen=True)
class OpenCircuit(_Timed):
    """Rest at open circuit (cell off, no current) for ``duration_s`` (s), recording the voltage every
    ``sample_interval_s`` (s)."""

    needs: ClassVar[type[Instrument]] = Potentiostat
    duration_s: float
    sample_interval_s: float
    label: str
    stops: tuple[StopCondition, ...] = ()
    keep_samples: bool = True

    def acquire(self, instrument: Instrument) -> Iterator[Block]:
        return instrument.open_circuit(self.duration_s, self.sample_interval_s)


Step = Union[Galvanostatic, VoltageSweep, Impedance, OpenCircuit]


def check_kind(step: Step, instrument: Instrument) -> None:
    """The one check that an instrument can take a step (the kind it ``needs``); the daemon refuses
    a protocol of the wrong kind at submission already (ProtocolDefinition.instrument_kind)."""
    if not isinstance(instrument, step.needs):
        raise ProtocolRefused(f"{instrument.name} is a {instrument.kind}; a {type(step).__name__} step needs a {step.needs.kind}")


@dataclass(frozen=True)
class Event:
    """A note for the run's event log (e.g. ``kind=EventKind.SHORT``)."""

    kind: EventKind
    message: str


@dataclass(frozen=True)
class StepOutcome:
    """What a step recorded (columns in run time; empty when the step did not keep its samples),
    the Stop that ended it early if any, and how many samples it took."""

    columns: Mapping[str, np.ndarray]
    stop: Stop | None
    n_samples: int = 0


Plan = Generator[Union[Step, Event], StepOutcome, dict]


def with_defaults(model: type[BaseModel], given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` parameters completed by ``defaults`` (an instrument's): only the fields ``model``
    has, and not one of a group of alternatives (``model.ALTERNATIVES``: sets of field names of
    which a run gives one, e.g. area_cm2 or diameter_mm) from which ``given`` already names one."""
    taken = set(given)
    alternatives = getattr(model, "ALTERNATIVES", ())
    filled = dict(given)
    for key, value in defaults.items():
        if key in taken or key not in model.model_fields:
            continue
        if any(key in group and taken & group for group in alternatives):
            continue
        filled[key] = value
    return filled


@dataclass(frozen=True)
class Presentation:
    """How a protocol's runs are shown, declared by the protocol (as pymeasure's Procedure declares
    its DATA_COLUMNS), so that plots, exports and summaries never switch on protocol names."""

    #: The run's figure: "plating" (voltage and current density, per-step panel), "impedance"
    #: (Nyquist, Bode, fit and Kramers-Kronig residuals) or "sweep" (I-V loops, one colour per cycle).
    figure: str
    #: The Gamry DTA ``TAG`` of its export (CHRONOP, EISPOT, CV), which tells Echem Analyst the technique.
    dta_tag: str
    #: The result key that says the most (``echemd runs`` and summaries show it).
    headline: str
    #: The line a scientist reads first, from a result (by default ``headline = value``).
    summary: Callable[[Mapping[str, Any]], str] | None = None

    @property
    def nexus_plot(self) -> tuple[str, str]:
        """The run file's default plot for NeXus viewers (h5web, silx, NeXpy): (signal, axis) columns."""
        return {"plating": ("voltage_V", "time_s"), "sweep": ("current_A", "bias_V"), "impedance": ("z_real_ohm", "frequency_Hz")}[self.figure]

    def summarize(self, result: Mapping[str, Any]) -> str:
        if self.summary is not None:
            return self.summary(result)
        stopped = f" (stopped by {result['stopped_by']})" if result.get("stopped_by") else ""
        return f"{self.headline} = {result.get(self.headline)}{stopped}"

    def summary_line(self, result: Mapping[str, Any] | None) -> str:
        """:meth:`summarize` for a run record: "" without a result, or for a result this version
        cannot summarize (a file of another version of the protocol): a line never hides a run."""
        if not result:
            return ""
        try:
            return self.summarize(result)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            return ""


@dataclass(frozen=True)
class ProtocolDefinition:
    """A protocol as the daemon sees it."""

    name: str
    title: str
    instrument_kind: str
    parameters: type[BaseModel]
    columns: tuple[Column, ...]
    plan: Callable[[Any], Plan]
    check: Callable[[Any, Instrument, InstrumentLimits], None]
    presentation: Presentation
    #: What the instrument does while a run is paused; None: the protocol cannot be paused.
    pause_hold: HoldMode | None = HoldMode.OUTPUT_OFF
    #: How many steps the plan will run at most, for progress (None: unknown).
    planned_steps: Callable[[Any], int] | None = None
    #: How many samples a run will record at most, to refuse an absurdly large one (None: unknown).
    planned_samples: Callable[[Any], int] | None = None
    #: What the run file records of a run's setup beyond its parameters (root attributes).
    run_attributes: Callable[[Any], Mapping[str, Any]] = lambda params: {}
    #: Columns some runs record besides ``columns`` (e.g. impedance spectra between the half cycles
    #: of a CCD).  A run with extra columns records each sample in every column, NaN in those its
    #: step does not measure.
    extra_columns: Callable[[Any], tuple[Column, ...]] = lambda params: ()

    def columns_for(self, params: Any) -> tuple[Column, ...]:
        """The columns a run of ``params`` records."""
        return self.columns + tuple(self.extra_columns(params))

    def sparse_columns(self, params: Any) -> frozenset[str]:
        """The columns of a run of ``params`` that some of its samples leave NaN (not measured by their step)."""
        if not self.extra_columns(params):
            return frozenset()
        return frozenset(column.name for column in self.columns_for(params) if column.name != "time_s")

    def describe(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "instrument_kind": self.instrument_kind,
            "columns": {column.name: column.units for column in self.columns},
            "pause_hold": self.pause_hold.value if self.pause_hold is not None else None,
            "headline": self.presentation.headline,
            "parameters_schema": self.parameters.model_json_schema(),
        }
