"""Analyses of recorded data, as pure functions on numpy arrays: what `echemd analyze` prints.

- :func:`analyze_ccd`: a stepped-current record (time, current, voltage) -> CCD, last passed step,
  detection time, rule and drop size, with the same monitor and verdict the CCD protocol runs live.
- :func:`analyze_cafm`: cyclic bias sweeps (time, bias, current) -> triggering bias per sweep,
  R^2 of a line through each back scan (ohmic filament), on/off ratio per cycle.
- :func:`analyze_eis`: a spectrum -> equivalent-circuit fit, Kramers-Kronig residuals, ASR.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from echemd.daemon.errors import EchemdError
from echemd.protocols.ccd import CCDVerdict
from echemd.protocols.analysis.detection import find_triggering_bias
from echemd.protocols.analysis.shorts import ShortDetection, ShortMonitor

#: Relative change of current that starts a new constant-current step.
STEP_CHANGE = 0.01


def constant_current_steps(current_A: np.ndarray) -> list[slice]:
    """Index ranges of constant-current steps (a change of > 1% or of sign starts a new one)."""
    current = np.asarray(current_A, dtype=np.float64)
    if current.size == 0:
        return []
    scale = np.maximum(np.abs(current[:-1]), np.abs(current[1:]))
    changes = np.flatnonzero(np.abs(np.diff(current)) > STEP_CHANGE * np.where(scale > 0, scale, 1.0)) + 1
    bounds = [0, *changes.tolist(), current.size]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


class PlatingDirectionUnknown(EchemdError):
    """The record does not show which current sign plates Li on the working electrode."""


def infer_plating_sign(step_currents_A: list[float]) -> int:
    """-1 when plating is the negative current (echemd's and Gamry's convention), +1 when positive,
    from the (median) current of each constant-current step in order.

    A CCD test raises the plating current step by step and keeps the stripping current: the sign
    whose current magnitude rises over its steps is the plating one.  Raises PlatingDirectionUnknown
    when neither or both do.
    """
    rising = []
    for sign in (-1, 1):
        magnitudes = [sign * current for current in step_currents_A if sign * current > 0]
        rises = len(magnitudes) >= 2 and magnitudes[-1] > magnitudes[0] * (1 + STEP_CHANGE) and all(
            later >= earlier * (1 - STEP_CHANGE) for earlier, later in zip(magnitudes, magnitudes[1:]))
        if rises:
            rising.append(sign)
    if len(rising) != 1:
        raise PlatingDirectionUnknown(
            "cannot tell the plating direction from this record: the current magnitude rises step by step in "
            f"{'both directions' if rising else 'neither direction'}; say which current sign plates Li on the working electrode "
            "with --plating-sign negative (echemd's and Gamry's anodic-positive convention) or --plating-sign positive "
            "(as many cyclers export it)")
    return rising[0]


#: A step's current and sample interval are the medians of its first this many samples (so that a
#: record read in chunks, of any size, gives the same answer as one read whole).
STEP_HEAD = 10_000
#: Rows read at a time from a file (6 MB for three columns: the analysis of a 10 M-row run peaks at ~130 MB).
CHUNK_ROWS = 250_000

Chunks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]]


def analyze_ccd(time_s, current_A, voltage_V, area_cm2: float, detection: ShortDetection | None = None,
                plating_sign: int | None = None) -> dict:
    """CCD from a record of plating and stripping steps, judged exactly as the live ``ccd`` protocol
    judges them (the same short monitor and verdict; see shorts.py and ccd.CCDVerdict).

    ``plating_sign``: -1 (plating is negative current), +1, or None to find it from the data.
    Returns the ccd protocol's result keys (without ``stopped_by`` and ``cycles``), ``plating_steps``
    and ``plating_sign``.
    """
    columns = tuple(np.asarray(x, dtype=np.float64) for x in (time_s, current_A, voltage_V))
    return analyze_ccd_chunks(lambda: [columns], area_cm2, detection, plating_sign)


def analyze_ccd_chunks(chunks: Chunks, area_cm2: float, detection: ShortDetection | None = None, plating_sign: int | None = None) -> dict:
    """:func:`analyze_ccd` of a record too long to hold: ``chunks()`` yields its (time_s, current_A,
    voltage_V) pieces in order, afresh at each call (without a ``plating_sign`` it is read twice:
    the steps' currents first, to find the plating sign, then everything).  Memory: one chunk and
    one step's first STEP_HEAD samples.  Rows with no current (NaN: another step's rows, e.g. an impedance spectrum's) are
    skipped.  The answer does not depend on how the record is cut into chunks."""
    if not area_cm2 or area_cm2 <= 0:
        raise ValueError("the electrode area (cm2) is needed to turn currents into current densities")
    sign = plating_sign if plating_sign is not None else infer_plating_sign(
        [head.current_A for head in _step_heads(chunks) if head.current_A != 0])
    monitor = ShortMonitor(detection or ShortDetection(), area_cm2)
    verdict = CCDVerdict(monitor)
    plating_mA_cm2, plating_steps, watch, watch_head, phase, density = None, 0, None, None, "", 0.0
    for head, t, i, v in _step_pieces(chunks):
        if head.current_A == 0:
            continue
        if head is not watch_head:
            if watch is not None and verdict.half_cycle(plating_mA_cm2, phase, watch.stop, watch, density):
                break
            density = round(abs(head.current_A) / area_cm2 * 1e3, 6)
            phase = "plate" if head.current_A * sign > 0 else "strip"
            if phase == "plate":
                plating_mA_cm2, plating_steps = density, plating_steps + 1
            watch, watch_head = monitor.watch(head.sample_interval_s, f"{phase} {density:g} mA/cm2"), head
        if watch.stop is None:
            watch.update({"time_s": t, "current_A": i, "voltage_V": v})
    else:
        if watch is not None:
            verdict.half_cycle(plating_mA_cm2, phase, watch.stop, watch, density)
    return {**verdict.result(), "plating_steps": plating_steps, "plating_sign": "negative" if sign < 0 else "positive"}


@dataclass
class _StepHead:
    """A constant-current step as its first STEP_HEAD samples show it: median current (A) and sample
    interval (s), known once ``settled``."""

    current_A: float = math.nan
    sample_interval_s: float = 1.0
    settled: bool = False
    _time: list[np.ndarray] = field(default_factory=list)
    _current: list[np.ndarray] = field(default_factory=list)
    _held: int = 0

    def take(self, t: np.ndarray, i: np.ndarray) -> bool:
        """Note a piece's samples (the first STEP_HEAD count); True once the head is full."""
        room = STEP_HEAD - self._held
        self._time.append(t[:room])
        self._current.append(i[:room])
        self._held += min(room, len(t))
        return self._held >= STEP_HEAD

    def settle(self) -> None:
        t, i = np.concatenate(self._time), np.concatenate(self._current)
        self.current_A, self.sample_interval_s, self.settled = _median(i), _sample_interval_s(t), True
        self._time, self._current = [], []


def _step_pieces(chunks: Chunks) -> Iterator[tuple[_StepHead, np.ndarray, np.ndarray, np.ndarray]]:
    """(the step's head, time, current, voltage) of each piece of each constant-current step, in
    order; a step's pieces follow each other and share its head, settled before its first piece is
    handed out (its first pieces wait until STEP_HEAD samples, or the step's end, are seen)."""
    head, held, last = None, [], math.nan

    def release():
        if not head.settled:
            head.settle()
        yield from ((head, *piece) for piece in held)
        held.clear()

    for t, i, v in chunks():
        rows = np.isfinite(i)
        t, i, v = t[rows], i[rows], v[rows]
        if not len(t):
            continue
        starts = set(_step_starts(np.concatenate([[last], i])))  # (a step may begin at this chunk's first row)
        last = float(i[-1])
        bounds = sorted(starts | {0, len(t)})
        for a, b in zip(bounds[:-1], bounds[1:]):
            if a in starts:  # a new step: hand out what waits of the one before
                if head is not None:
                    yield from release()
                head = _StepHead()
            if head.settled:
                yield head, t[a:b], i[a:b], v[a:b]
                continue
            held.append((t[a:b], i[a:b], v[a:b]))
            if head.take(t[a:b], i[a:b]):
                yield from release()
    if head is not None:
        yield from release()


def _step_heads(chunks: Chunks) -> list[_StepHead]:
    """Every step's head, in order (the first pass: one chunk and one head at a time in memory)."""
    heads: list[_StepHead] = []
    for head, *_ in _step_pieces(chunks):
        if not heads or heads[-1] is not head:
            heads.append(head)
    return heads


def _step_starts(current: np.ndarray) -> list[int]:
    """Indices (into ``current[1:]``) where a new step begins: a change of > STEP_CHANGE or of sign
    from the sample before (``current[0]`` is the previous chunk's last sample, NaN at the start)."""
    previous, now = current[:-1], current[1:]
    scale = np.maximum(np.abs(previous), np.abs(now))
    with np.errstate(invalid="ignore"):
        changed = np.abs(now - previous) > STEP_CHANGE * np.where(scale > 0, scale, 1.0)
    changed |= np.isnan(previous)
    return np.flatnonzero(changed).tolist()


def _sample_interval_s(time_s: np.ndarray) -> float:
    """A step's sample interval, s (the median spacing; 1 s for a step of one sample)."""
    return _median(np.diff(time_s)) if len(time_s) > 1 else 1.0


def _median(values: np.ndarray) -> float:
    """The median of finite values (np.median's answer at a fraction of its cost: one partition)."""
    half = len(values) // 2
    if len(values) % 2:
        return float(np.partition(values, half)[half])
    low, high = np.partition(values, (half - 1, half))[half - 1: half + 1]
    return float((low + high) / 2)


def sweeps(bias_V: np.ndarray) -> list[slice]:
    """Index ranges of the cyclic sweeps in a bias record: each holds one negative excursion."""
    bias = np.asarray(bias_V, dtype=np.float64)
    low = bias.min()
    if not low < 0:
        return [slice(0, bias.size)]
    deep = bias < 0.5 * low  # inside a negative excursion
    starts = np.flatnonzero(deep[1:] & ~deep[:-1]) + 1
    if deep[0]:
        starts = np.concatenate([[0], starts])
    cuts = [0]
    for a, b in zip(starts[:-1], starts[1:]):  # cut where the bias peaks between two excursions
        cuts.append(int(a + np.argmax(bias[a:b])) + 1)
    cuts.append(bias.size)
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def _r_squared(x: np.ndarray, y: np.ndarray) -> float | None:
    if x.size < 3 or np.ptp(x) == 0:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    residual = np.sum((y - (slope * x + intercept)) ** 2)
    total = np.sum((y - y.mean()) ** 2)
    return float(1 - residual / total) if total > 0 else None


def analyze_cafm(bias_V, current_A, surge_factor: float = 100.0) -> dict:
    """Triggering bias per sweep, ohmic R^2 of each back scan, whether a filament formed and, with
    two or more sweeps, on/off per cycle.

    The back scan runs from the negative vertex back to 0 V; on/off is the median conductance of the
    back scan (low-resistance state) over that of the forward scan before triggering (high).  A
    filament formed (``filament``) when the forward scan triggered and the back scan conducts at
    least ``surge_factor`` times the forward scan before triggering: R^2 alone cannot tell, since an
    unformed junction's leakage is nearly linear over a small bias range too.
    """
    bias, current = np.asarray(bias_V, dtype=np.float64), np.asarray(current_A, dtype=np.float64)
    triggering, ohmic, on_off, filament = [], [], [], []
    for sweep in sweeps(bias):
        b, i = bias[sweep], current[sweep]
        vertex = int(np.argmin(b))
        trigger = find_triggering_bias(b[: vertex + 1], i[: vertex + 1], surge_factor)
        triggering.append(trigger)
        back = slice(vertex, vertex + int(np.argmax(b[vertex:] >= 0)) if np.any(b[vertex:] >= 0) else None)
        ohmic.append(_r_squared(b[back], i[back]))
        forward = (b[: vertex + 1] < 0) & (b[: vertex + 1] > (trigger if trigger is not None else -math.inf))
        on = np.abs(i[back][b[back] < 0] / b[back][b[back] < 0])
        off = np.abs(i[: vertex + 1][forward] / b[: vertex + 1][forward])
        on_off.append(float(np.median(on) / np.median(off)) if on.size and off.size and np.median(off) > 0 else None)
        filament.append(trigger is not None and on_off[-1] is not None and on_off[-1] >= surge_factor)
    result = {"triggering_bias_V": triggering, "ohmic_r2": ohmic, "filament": filament}
    if len(triggering) > 1:
        result["on_off"] = on_off
    return result


def analyze_eis(frequency_Hz, z_real_ohm, z_imag_ohm, circuit: str | None = None, area_cm2: float | None = None,
                thickness_cm: float | None = None, symmetric: bool = True) -> dict:
    """Fit, Kramers-Kronig summary and area-specific values of a spectrum (see eis_fitting).

    impedance.py (and with it matplotlib and pandas) is imported here, only when a spectrum is fitted.
    """
    from echemd.protocols.analysis.eis_fitting import DEFAULT_CIRCUIT, fit_circuit
    from echemd.protocols.analysis.kramers_kronig import lin_kk

    f = np.asarray(frequency_Hz, dtype=np.float64)
    z = np.asarray(z_real_ohm, dtype=np.float64) + 1j * np.asarray(z_imag_ohm, dtype=np.float64)
    if area_cm2 is not None and not area_cm2 > 0:
        raise ValueError(f"the electrode area must be > 0 cm2 (got {area_cm2:g})")
    usable = np.isfinite(f) & np.isfinite(z) & (f > 0)
    if not usable.any():
        raise ValueError("no impedance data: no frequency with a finite impedance (is this an impedance spectrum?)")
    if thickness_cm is not None and not thickness_cm > 0:
        raise ValueError(f"the electrolyte thickness must be > 0 (got {thickness_cm:g} cm)")
    fit = fit_circuit(f, z, circuit or DEFAULT_CIRCUIT, area_cm2, thickness_cm, symmetric)
    summary = fit.summary()
    try:  # the KK test is reported, never in the way of the fit
        summary["kk"] = lin_kk(f[usable], z[usable]).summary()
    except ValueError as exc:
        summary["kk"] = {"run": False, "reason": str(exc)}
    if area_cm2 is not None:
        summary["area_cm2"] = area_cm2
    if thickness_cm is not None:
        summary["thickness_cm"] = thickness_cm
    summary["symmetric"] = symmetric
    return summary
