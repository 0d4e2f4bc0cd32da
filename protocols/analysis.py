"""Analyses of recorded data, as pure functions on numpy arrays: what `echemd analyze` prints.

- :func:`analyze_ccd`: a stepped-current record (time, current, voltage) -> CCD, last passed step,
  detection time, rule and drop size, with the same monitor and verdict the CCD protocol runs live.
- :func:`analyze_cafm`: cyclic bias sweeps (time, bias, current) -> triggering bias per sweep,
  R^2 of a line through each back scan (ohmic filament), on/off ratio per cycle.
- :func:`analyze_eis`: a spectrum -> equivalent-circuit fit, Kramers-Kronig residuals, ASR.
"""

from __future__ import annotations

import math

import numpy as np

from echemd.daemon.errors import EchemdError
from echemd.protocols.ccd import CCDVerdict
from echemd.protocols.detection import find_triggering_bias
from echemd.protocols.shorts import ShortDetection, ShortMonitor

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


def infer_plating_sign(current_A: np.ndarray, steps: list[slice]) -> int:
    """-1 when plating is the negative current (echemd's and Gamry's convention), +1 when positive.

    A CCD test raises the plating current step by step and keeps the stripping current: the sign
    whose current magnitude rises over its steps is the plating one.  Raises PlatingDirectionUnknown
    when neither or both do.
    """
    rising = []
    for sign in (-1, 1):
        magnitudes = [float(np.median(sign * current_A[step])) for step in steps if np.median(sign * current_A[step]) > 0]
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


def analyze_ccd(time_s, current_A, voltage_V, area_cm2: float, detection: ShortDetection | None = None,
                plating_sign: int | None = None) -> dict:
    """CCD from a record of plating and stripping steps, judged exactly as the live ``ccd`` protocol
    judges them (the same short monitor and verdict; see shorts.py and ccd.CCDVerdict).

    ``plating_sign``: -1 (plating is negative current), +1, or None to find it from the data.
    Returns the ccd protocol's result keys (without ``stopped_by`` and ``cycles``), ``plating_steps``
    and ``plating_sign``.
    """
    if not area_cm2 or area_cm2 <= 0:
        raise ValueError("the electrode area (cm2) is needed to turn currents into current densities")
    t, i, v = (np.asarray(x, dtype=np.float64) for x in (time_s, current_A, voltage_V))
    steps = [step for step in constant_current_steps(i) if np.median(np.abs(i[step])) > 0]
    sign = plating_sign if plating_sign is not None else infer_plating_sign(i, steps)
    monitor = ShortMonitor(detection or ShortDetection(), area_cm2)
    verdict = CCDVerdict(monitor)
    plating_mA_cm2, plating_steps = None, 0
    for step in steps:
        density = round(float(abs(np.median(i[step]))) / area_cm2 * 1e3, 6)
        phase = "plate" if np.median(i[step]) * sign > 0 else "strip"
        if phase == "plate":
            plating_mA_cm2, plating_steps = density, plating_steps + 1
        label = f"{phase} {density:g} mA/cm2"
        watch = monitor.watch(_sample_interval_s(t[step]), label)
        stop = watch.update({"time_s": t[step], "current_A": i[step], "voltage_V": v[step]})
        if verdict.half_cycle(plating_mA_cm2, phase, stop, watch, density):
            break
    return {**verdict.result(), "plating_steps": plating_steps, "plating_sign": "negative" if sign < 0 else "positive"}


def _sample_interval_s(time_s: np.ndarray) -> float:
    """A step's sample interval, s (the median spacing; 1 s for a step of one sample)."""
    return float(np.median(np.diff(time_s))) if len(time_s) > 1 else 1.0


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
    from echemd.protocols.eis_fitting import DEFAULT_CIRCUIT, fit_circuit
    from echemd.protocols.kramers_kronig import lin_kk

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
