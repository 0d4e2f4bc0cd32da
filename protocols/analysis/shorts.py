"""Short detection in constant-current Li plating and stripping: the criterion, a run's monitor, a step's watch.

A dendrite that reaches the counter electrode puts a parallel path across the cell: the polarization
|V| at constant current falls.  :class:`ShortMonitor` watches every constant-current step of a run
(plating and stripping) and remembers the cell's history; each step gets a :class:`ShortWatch`, a
:class:`~echemd.protocols.base.StopCondition`.  Three rules, on the polarization P (running median
over ``smoothing_s`` of V sign(I): a cell is a load, so this is |V| while it holds a voltage,
and noise averages out instead of adding up once it does not) and the area-specific resistance
ASR = P / |j|:

- **drop** (the Li6PS5Cl CCD studies' 2 mV criterion, made robust): once the step has settled, P
  falls below its highest value of the last ``drop_window_s`` by at least
  max(``drop_threshold_mV``, ``drop_threshold_fraction`` x that peak);
- **collapse**: P / |j| falls below ``collapse_fraction`` of the lowest ASR the cell showed at the
  end of the settle time of any earlier step (its own history: no settle time hides it);
- **floor**: the cell's resistance P / |I| falls below ``floor_ohm`` (a metallic filament, ohms
  whatever the electrode's area), or P below ``floor_mV`` (no measurable polarization): a cell
  shorted before the first step has no history to fall from.

The settle time ends at the first sample, at least ``settle_s + settle_window_s`` after the step's
first one, at which the polarization has fallen by less than a fifth of the drop threshold over
the last ``settle_window_s`` (samples before ``settle_s`` not counted): a nucleation overshoot or a
contact-recovery transient has stopped decaying.  It ends at ``settle_max_s`` at the latest.
Collapse and floor apply from ``settle_s`` on, while the polarization is not rising (it rose by less
than the same fifth of the threshold over the last ``confirm_s``: a cell still charging after a
current step is not collapsing).  A rule must hold on every sample for ``confirm_s`` before it
counts.  Fed block by block, a watch gives exactly the answer it gives on the whole step.
docs/science.md states the criterion with its figures.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from echemd.protocols.base import Stop, StopCondition
from echemd.protocols.analysis.streaming import Persistence, TrailingWindow, WindowMax

#: The settle time ends when the polarization fell less than this fraction of the drop threshold
#: over the last settle_window_s: a transient decaying with a time constant as long as the window
#: then has less than ~40 % of the threshold left to fall.
SETTLE_CALM_FRACTION = 0.2
#: A step's |I| is summed as a whole number of these (1 pA): exactly, so its charge is the same
#: however its samples were cut into blocks (a float sum's rounding depends on the cut).
CURRENT_QUANTUM_A = 1e-12
#: The running median spans smoothing_s, but never fewer samples than this (a single-sample spike
#: always falls out) nor more (bounded cost per sample at fast sampling).
MIN_SMOOTHING_SAMPLES, MAX_SMOOTHING_SAMPLES = 5, 101
#: Live, a step's samples are judged in blocks of this much run time, s (at 1 kHz a watch fed every
#: 10 ms block cost ~200 us a block, ~15 us when fed 0.2 s at a time; a short is confirmed over
#: confirm_s, 5 s by default: the step ends at most this much later than it would otherwise).
JUDGE_EVERY_S = 0.2
#: A run that ends without a detected short is suspect when its last step's resistance is below this
#: many times the floor; the evidence shows the last SUSPECT_STEPS steps.
SUSPECT_FLOOR_FACTOR, SUSPECT_STEPS = 3.0, 4


def current_quanta(current_A: np.ndarray) -> int:
    """Sum of |I| over samples, in whole CURRENT_QUANTUM_A (exact: int64 pieces of a million samples,
    |I| < 9 A); a non-finite sample counts as none."""
    magnitude = np.rint(np.abs(np.asarray(current_A, dtype=np.float64)) / CURRENT_QUANTUM_A)
    magnitude[~np.isfinite(magnitude)] = 0
    quanta = magnitude.astype(np.int64)
    return sum(int(quanta[start:start + 1_000_000].sum()) for start in range(0, len(quanta), 1_000_000))

class ShortDetection(BaseModel):
    """The short criterion's parameters (lab units); a protocol parameter group and `analyze ccd` options."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    drop_threshold_mV: float = Field(2.0, gt=0, description="smallest polarization drop that marks a short, mV (the Li6PS5Cl CCD studies: 2 mV)")
    drop_threshold_fraction: float = Field(
        0.05, ge=0, lt=1, description="the drop must also reach this fraction of the polarization (thermal swings of ~1% never do)")
    drop_window_s: float | None = Field(300.0, gt=0, description="a drop counts when it happens within this time, s (none: since the settle time)")
    settle_s: float = Field(5.0, ge=0, description="shortest settle time at the start of each step, s")
    settle_window_s: float = Field(120.0, gt=0, description="the settle time ends once the polarization stopped falling over this long, s")
    settle_max_s: float = Field(600.0, ge=0, description="longest settle time, s")
    smoothing_s: float = Field(15.0, gt=0, description="running-median window of the detector, s (5 to 101 samples)")
    confirm_s: float = Field(5.0, ge=0, description="a rule must hold this long without a break, s")
    collapse_fraction: float = Field(
        0.5, gt=0, lt=1, description="a step whose ASR falls below this fraction of the cell's lowest earlier ASR is shorted")
    floor_ohm: float = Field(10.0, ge=0, description="a cell resistance |V|/|I| below this is a metallic short whatever the history, Ohm")
    floor_mV: float = Field(0.5, ge=0, description="a polarization below this is a short whatever the history, mV")

    @model_validator(mode="after")
    def _settle_bounds(self) -> "ShortDetection":
        if self.settle_max_s < self.settle_s:
            raise ValueError(f"settle_max_s ({self.settle_max_s:g} s) is shorter than settle_s ({self.settle_s:g} s)")
        return self

    def detection(self) -> "ShortDetection":
        """The criterion alone (from a model that extends it, e.g. a protocol's parameters)."""
        return ShortDetection(**{name: getattr(self, name) for name in ShortDetection.model_fields})


@dataclass(frozen=True)
class StepSummary:
    """A step's state at the end of its settle time: what the cell's history is made of."""

    label: str
    current_density_mA_cm2: float
    polarization_mV: float
    asr_ohm_cm2: float
    shorted: bool = False


class ShortMonitor:
    """Watches every constant-current step of one cell's run; remembers its healthy steps.

    ``area_cm2``: electrode area, cm2 (ASR = polarization / current density).
    """

    def __init__(self, criterion: ShortDetection, area_cm2: float) -> None:
        if not area_cm2 > 0:
            raise ValueError("the electrode area (cm2) is needed to judge a short against the cell's resistance")
        self.criterion = criterion
        self.area_cm2 = area_cm2
        self.steps: deque[StepSummary] = deque(maxlen=SUSPECT_STEPS)  # the last steps that settled
        self.watched = 0  # steps watched so far
        self._lowest_asr: float | None = None  # of the healthy steps, Ohm cm2
        self._watch: ShortWatch | None = None

    def watch(self, sample_interval_s: float, label: str = "") -> "ShortWatch":
        """The stop condition for the next constant-current step, sampled every ``sample_interval_s``
        (s); ends the previous step's watch."""
        self._close_watch()
        self._watch = ShortWatch(self, sample_interval_s, label)
        self.watched += 1
        return self._watch

    @property
    def reference_asr_ohm_cm2(self) -> float | None:
        """The lowest ASR of the finished healthy steps, Ohm cm2 (None before the first)."""
        return self._lowest_asr

    def suspect(self) -> dict | None:
        """Evidence that the cell looks shorted though no rule fired (None when it does not)."""
        self._close_watch()
        if not self.steps:
            return None
        last = self.steps[-1]
        limit = SUSPECT_FLOOR_FACTOR * self.criterion.floor_ohm
        resistance = last.asr_ohm_cm2 / self.area_cm2
        if resistance >= limit:
            return None
        tail = list(self.steps)
        return {
            "reason": f"the last step's resistance {resistance:.3g} Ohm is below {limit:g} Ohm: a near-zero, ohmic polarization",
            "steps": [s.label for s in tail],
            "asr_ohm_cm2": [round(s.asr_ohm_cm2, 6) for s in tail],
            "polarization_mV": [round(s.polarization_mV, 6) for s in tail],
            "current_density_mA_cm2": [round(s.current_density_mA_cm2, 6) for s in tail],
        }

    def _close_watch(self) -> None:
        if self._watch is not None and self._watch.summary is not None:
            summary = self._watch.summary
            if self._watch.stop is not None:
                summary = replace(summary, shorted=True)
            elif self._lowest_asr is None or summary.asr_ohm_cm2 < self._lowest_asr:
                self._lowest_asr = summary.asr_ohm_cm2
            self.steps.append(summary)
        self._watch = None


class ShortWatch(StopCondition):
    """The short rules on one constant-current step (see the module docstring); needs ``time_s``,
    ``current_A`` and ``voltage_V`` columns.  Live, the engine feeds it every JUDGE_EVERY_S of
    samples (its answer is the same for any cut of the samples into blocks)."""

    batch_s = JUDGE_EVERY_S

    def __init__(self, monitor: ShortMonitor, sample_interval_s: float, label: str = "") -> None:
        c = monitor.criterion
        self.criterion = c
        self.label = label
        self.area_cm2 = monitor.area_cm2
        self.reference_asr_ohm_cm2 = monitor.reference_asr_ohm_cm2
        self._first_step = monitor.watched == 0
        window = smoothing_samples(c.smoothing_s, sample_interval_s)
        self._median = TrailingWindow(window)
        self._mean_current = TrailingWindow(window, "mean")
        # the lowest polarization of the last confirm_s (sampling is uniform within a step)
        self._lowest = TrailingWindow(2 * round(c.confirm_s / sample_interval_s / 2) + 1, "min")
        self._settling = WindowMax(c.settle_window_s)
        self._peak = WindowMax(c.drop_window_s)
        self._confirm = Persistence(c.confirm_s)
        self._t0: float | None = None
        self.sample_interval_s = sample_interval_s
        self._last_t = math.nan  # latest sample's time, s
        self._current_quanta = 0  # |I| summed over the step's samples, in CURRENT_QUANTUM_A
        self._last_p = math.nan  # latest smoothed polarization, V
        self._last_density = math.nan  # latest window-mean |I| / area, A/cm2
        self._highest_V = -math.inf  # highest smoothed polarization of the step, V
        self._highest_health = -math.inf  # highest min(P / drop threshold, resistance / floor_ohm) of the step
        self.settled_at_s: float | None = None
        self.summary: StepSummary | None = None
        self.stop: Stop | None = None

    def update(self, columns: Mapping[str, np.ndarray]) -> Stop | None:
        if self.stop is not None or not len(columns["time_s"]):
            return None
        c = self.criterion
        t_raw = np.asarray(columns["time_s"], dtype=np.float64)
        if self._t0 is None:
            self._t0 = float(t_raw[0])
        current = np.asarray(columns["current_A"], dtype=np.float64)
        quanta_before = self._current_quanta
        self._last_t = float(t_raw[-1])
        self._current_quanta += current_quanta(current)
        t, t_window, p = self._median.update(t_raw, np.asarray(columns["voltage_V"]) * np.sign(current))
        amps = self._mean_current.update(t_raw, np.abs(current))[2]
        if not len(t):
            return None
        density = amps / self.area_cm2  # A/cm2 (mean |I| of the same window)
        self._last_p, self._last_density = float(p[-1]), float(density[-1])
        with np.errstate(divide="ignore", invalid="ignore"):
            asr = np.where(density > 0, p / density, np.inf)
        threshold_V = c.drop_threshold_mV * 1e-3

        armed = self._arm(t, t_window, p, asr, density, threshold_V)
        holds = np.zeros(len(t), dtype=bool)
        peak = np.full(len(t), np.nan)
        if armed < len(t):
            peak[armed:] = self._peak.update(t[armed:], p[armed:])
            holds[armed:] = peak[armed:] - p[armed:] >= np.maximum(threshold_V, c.drop_threshold_fraction * peak[armed:])
        low_asr = c.floor_ohm * self.area_cm2
        if self.reference_asr_ohm_cm2 is not None:
            low_asr = max(low_asr, c.collapse_fraction * self.reference_asr_ohm_cm2)
        # (no current, no polarization to judge: an open-circuit sample is never a short)
        low = ((asr < low_asr) | (p < c.floor_mV * 1e-3)) & (density > 0) & (t_window >= self._t0 + c.settle_s)
        if low.any():  # a cell whose polarization is still rising (charging after a current step) is not collapsing
            lowest = _pad_front(self._lowest.update(t, p)[2], len(p), -np.inf)  # unknown at first: maybe rising
            low &= p - lowest <= SETTLE_CALM_FRACTION * np.maximum(threshold_V, c.drop_threshold_fraction * p)
        else:
            self._lowest.carry(t, p)
        holds |= low
        health = None
        if self._first_step:
            with np.errstate(divide="ignore", invalid="ignore"):
                health = np.minimum(p / threshold_V, asr / self.area_cm2 / c.floor_ohm)

        hit = self._confirm.update(t, holds)
        if hit is None:
            self._highest_V = max(self._highest_V, float(p.max()))
            if health is not None:
                self._highest_health = max(self._highest_health, float(health.max()))
            return None
        i, since = hit
        highest_V = max(self._highest_V, float(p[: i + 1].max()))
        floor = asr[i] < c.floor_ohm * self.area_cm2 or p[i] < c.floor_mV * 1e-3
        rule = ("floor" if floor else "collapse") if low[i] else "drop"
        never_healthy = health is not None and max(self._highest_health, float(health[: i + 1].max())) < 1
        details = {
            "rule": rule,
            "step": self.label,
            "onset_s": since,
            "polarization_mV": float(p[i]) * 1e3,
            "drop_mV": float((peak[i] if rule == "drop" else highest_V) - p[i]) * 1e3,
            "asr_ohm_cm2": _finite(asr[i]),
            "reference_asr_ohm_cm2": self.reference_asr_ohm_cm2,
            # shorted before it began: the floor in the first step, which never held both a polarization
            # above the drop threshold and a resistance above the floor
            "shorted_from_start": rule == "floor" and never_healthy,
        }
        self.stop = Stop("short", float(t[i]), details)
        # the step as far as it went when the short was found (whatever the block held after it)
        through = int(np.searchsorted(t_raw, t[i], side="right"))
        self._last_t = float(t_raw[through - 1])
        self._current_quanta = quanta_before + current_quanta(current[:through])
        self._last_p, self._last_density = float(p[i]), float(density[i])
        return self.stop

    @property
    def started_s(self) -> float:
        """When the step began: one sample interval before its first sample, s (NaN before any)."""
        return self._t0 - self.sample_interval_s if self._t0 is not None else math.nan

    def step_record(self) -> dict:
        """What the step was, as far as it went: duration (s), charge passed (mAh/cm2), the smoothed
        polarization (mV) and ASR (Ohm cm2) at its last sample, and how much the polarization rose
        (%) from the end of the settle time to the last sample (None when it never settled)."""
        settled_mV = self.summary.polarization_mV if self.summary is not None else None
        last_mV = self._last_p * 1e3
        return {
            "duration_s": self._last_t - self.started_s,
            "charge_mAh_cm2": self._current_quanta * CURRENT_QUANTUM_A * self.sample_interval_s / self.area_cm2 / 3.6,
            "polarization_mV": last_mV,
            "asr_ohm_cm2": _finite(self._last_p / self._last_density) if self._last_density > 0 else None,
            "rise_percent": _finite((last_mV / settled_mV - 1) * 100) if settled_mV else None,
        }

    def _arm(self, t: np.ndarray, t_window: np.ndarray, p: np.ndarray, asr: np.ndarray, density: np.ndarray, threshold_V: float) -> int:
        """Index of the first sample after the settle time in this block (len(t) while still settling).

        Times count from the start of each smoothed value's median window: no sample before the
        settle time leaks into the judgement through the smoothing."""
        if self.settled_at_s is not None:
            return 0
        c = self.criterion
        since_start = t_window - self._t0
        watched = since_start >= c.settle_s  # calm is judged on a full window after the shortest settle time
        ends = since_start >= c.settle_max_s
        # the settle time ends by the first sample past settle_max_s: later ones need no judging
        last = int(np.argmax(ends)) + 1 if ends.any() else len(t)
        if watched[:last].any():
            first = int(np.argmax(watched))
            highest = self._settling.update(t[first:last], p[first:last])
            calm = highest - p[first:last] < SETTLE_CALM_FRACTION * np.maximum(threshold_V, c.drop_threshold_fraction * highest)
            ends[first:last] |= calm & (since_start[first:last] >= c.settle_s + c.settle_window_s)
        if not ends.any():
            return len(t)
        k = int(np.argmax(ends))
        self.settled_at_s = float(t[k])
        self.summary = StepSummary(self.label, float(density[k]) * 1e3, float(p[k]) * 1e3, float(asr[k]))
        return k


def smoothing_samples(smoothing_s: float, sample_interval_s: float) -> int:
    """The odd number of samples the running median spans: ``smoothing_s`` (s) at ``sample_interval_s`` (s)."""
    if not sample_interval_s > 0:
        raise ValueError(f"the sample interval must be > 0 s, got {sample_interval_s}")
    n = round(smoothing_s / sample_interval_s)
    return min(MAX_SMOOTHING_SAMPLES, max(MIN_SMOOTHING_SAMPLES, n + (1 - n % 2)))


def _pad_front(values: np.ndarray, n: int, fill: float) -> np.ndarray:
    """``values`` of the last samples of ``n``, the first ones (whose window is not full yet) ``fill``."""
    return values if len(values) == n else np.concatenate([np.full(n - len(values), fill), values])


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
