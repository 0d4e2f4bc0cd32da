"""A seeded corpus of synthetic stepped-current Li|solid electrolyte|Li traces with known truth.

Written from the physics and from the failure cases seen in the lab, for judging short detectors; it
shares no code with echemd (numpy only), so a detector cannot pass by agreeing with itself.

Every trace is a CCD test (plating at a rising current density, stripping at a fixed one, the same
charge per half cycle), anodic-positive (plating is a negative current), or one long plating step.
The cell's polarization is ohmic plus symmetric Butler-Volmer, P(j) = j R + 4 (RT/F) asinh(j / 2 j0).
On top, each trace carries a random mix of what real records hold, and its class forces one of them
on at full strength:

- ``clean``: noise (0.05-0.5 mV rms) only, besides the mix;
- ``overshoot``: a Li nucleation overshoot of 15-30 mV decaying with a 10-60 s time constant at the
  start of every plating step;
- ``recovery``: a contact-recovery transient of 5-10 mV decaying over minutes (60-180 s time
  constant) at the start of every plating step after stripping;
- ``thermal``: a room-temperature swing of 0.5-1.5 % of the polarization, period 10-60 min;
- ``decline``: one long plating step whose polarization falls gradually (10-15 mV over 3 h, Li3PS4);
- ``spikes``: glitches of 5-20 mV lasting 0.05-1 s, ~30 an hour, on whichever samples they meet;
- ``drift``: the instrument's offset (a random walk of 0.02-0.2 mV/sqrt(h) and up to 0.1 mV/h; a
  potentiostat's offset is stable to tens of uV) and the interface's slow evolution (the
  polarization drifting by up to 5 %/h, either way: the drift that is large in real cells);
- shorts, which put a parallel path across the cell from a known onset time: a hard one (0.5-5 Ohm)
  or a soft one (10-30 % of the polarization left, flickering), collapsing with a 2-60 s time
  constant, whose onset lies in the settle time of a plating step (``short-settle``), inside it
  (``short-mid``), in its last tenth so that it completes while stripping (``short-end``), inside a
  stripping step (``short-strip``), or before the first step (``short-start``, a hard short).

Sampling is 0.1-10 s, electrodes 2-10 mm in diameter.  The truth of a short trace is its onset time
and the cycle whose plating step it belongs to (the cycle of the stripping step for ``short-strip``;
none for ``short-start``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

THERMAL_V = 8.314462618 * 298.15 / 96485.33212  # RT/F at 25 C, V
NO_SHORT = ("clean", "overshoot", "recovery", "thermal", "decline", "spikes", "drift")
SHORTS = ("short-settle", "short-mid", "short-end", "short-strip", "short-start")
CLASSES = NO_SHORT + SHORTS
NUISANCES = ("overshoot", "recovery", "thermal", "spikes", "drift")


@dataclass
class Trace:
    name: str
    kind: str
    time_s: np.ndarray
    current_A: np.ndarray
    voltage_V: np.ndarray
    area_cm2: float
    sample_interval_s: float
    noise_mV: float
    short_onset_s: float | None  # truth: when the parallel path appeared (None: no short)
    short_cycle: int | None  # truth: the cycle the short belongs to (None: none, or before the first step)
    hard: bool | None = None


@dataclass
class _Step:
    start_s: float
    duration_s: float
    density_mA_cm2: float  # signed: plating negative
    cycle: int


def corpus(count: int = 336, seed: int = 2026) -> list[Trace]:
    """``count`` traces, the classes in turn; the same for the same arguments."""
    return [trace(CLASSES[k % len(CLASSES)], seed * 100_003 + k) for k in range(count)]


def trace(kind: str, seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    area = float(math.pi * (rng.choice([2.0, 4.0, 6.0, 10.0]) / 20) ** 2)
    dt = float(rng.choice([0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]))
    noise_V = float(np.exp(rng.uniform(np.log(0.05), np.log(0.5)))) * 1e-3
    r_ohm_cm2 = rng.uniform(20, 150)
    j0 = float(np.exp(rng.uniform(np.log(0.3), np.log(2.0)))) * 1e-3  # A/cm2
    features = {name for name in NUISANCES if rng.random() < 0.4} | ({kind} & set(NUISANCES))
    strong = kind  # the forced feature takes its full-strength range

    if kind == "decline":
        steps = [_Step(0.0, rng.uniform(3, 4) * 3600, -rng.uniform(0.5, 1.0), 1)]
        r_ohm_cm2 = rng.uniform(250, 400)
    else:
        start = float(rng.choice([0.1, 0.2, 0.25, 0.5]))
        strip = float(rng.choice([0.1, 0.2])) if start > 0.1 else 0.1
        capacity = float(rng.choice([0.05, 0.1, 0.2]))
        cycles = int(rng.integers(4, 7))
        steps, now = [], 0.0
        for cycle in range(1, cycles + 1):
            for density in (-start * cycle, strip):
                duration = capacity / abs(density) * 3600
                steps.append(_Step(now, duration, density, cycle))
                now += duration

    t_parts, j_parts, v_parts = [], [], []
    for k, step in enumerate(steps):
        t = step.start_s + dt * np.arange(1, max(2, int(step.duration_s / dt)) + 1)
        age = t - step.start_s
        j = step.density_mA_cm2 * 1e-3
        p = abs(j) * r_ohm_cm2 + 4 * THERMAL_V * np.arcsinh(abs(j) / (2 * j0))
        magnitude = p * (1 - rng.uniform(0.3, 1.0) * np.exp(-age / rng.uniform(0.5, 20)))  # current-step rise
        if j < 0 and "overshoot" in features:
            size = rng.uniform(15, 30) if strong == "overshoot" else rng.uniform(2, 15)
            magnitude = magnitude + size * 1e-3 * np.exp(-age / rng.uniform(10, 60))
        if j < 0 and k > 0 and "recovery" in features:
            size = rng.uniform(5, 10) if strong == "recovery" else rng.uniform(1, 5)
            magnitude = magnitude + size * 1e-3 * np.exp(-age / rng.uniform(60, 180))
        if kind == "decline":
            magnitude = magnitude - rng.uniform(10, 15) * 1e-3 * age / step.duration_s
        t_parts.append(t), j_parts.append(np.full(t.size, j)), v_parts.append(magnitude)
    t, j, magnitude = np.concatenate(t_parts), np.concatenate(j_parts), np.concatenate(v_parts)

    if "thermal" in features:
        amplitude = rng.uniform(0.5, 1.5) if strong == "thermal" else rng.uniform(0.1, 0.5)
        period = rng.uniform(10, 60) * 60
        magnitude = magnitude * (1 + amplitude / 100 * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)))

    onset, cycle_of_short, hard = None, None, None
    if kind in SHORTS:
        onset, cycle_of_short, hard = _place_short(kind, steps, rng)
        magnitude = _shorted(magnitude, t, j, onset, hard, r_ohm_cm2, j0, area, rng)

    voltage = np.sign(j) * magnitude  # anodic positive: plating (j < 0) gives a negative voltage
    voltage = voltage + rng.normal(0, noise_V, t.size)
    if "drift" in features:  # the instrument's offset, and the interface's slow evolution (a fraction of P)
        walk = np.cumsum(rng.normal(0, rng.uniform(0.02, 0.2) * 1e-3 * math.sqrt(dt / 3600), t.size))
        voltage = voltage + walk + rng.uniform(-0.1, 0.1) * 1e-3 / 3600 * t
        percent_per_h = rng.uniform(-5, 5) if strong == "drift" else rng.uniform(-1, 1)
        voltage = voltage * np.maximum(0.2, 1 + percent_per_h / 100 * t / 3600)
    if "spikes" in features:  # glitches are events in time; each hits the samples taken while it lasts
        for start in rng.uniform(0, t[-1], size=max(1, int(30 * t[-1] / 3600))):
            hit = (t >= start) & (t <= start + rng.uniform(0.05, 1.0))
            voltage[hit] += rng.choice([-1, 1]) * rng.uniform(5, 20) * 1e-3
    return Trace(f"{kind}-{seed}", kind, t, j * area, voltage, area, dt, noise_V * 1e3, onset, cycle_of_short, hard)


def _place_short(kind: str, steps: list[_Step], rng: np.random.Generator) -> tuple[float, int | None, bool]:
    hard = kind == "short-start" or bool(rng.random() < 0.5)
    if kind == "short-start":
        return 0.0, None, True
    plating = [s for s in steps if s.density_mA_cm2 < 0]
    cycle = int(rng.integers(2, len(plating)))  # at least one full cycle after it
    step = plating[cycle - 1]
    if kind == "short-strip":
        step = steps[steps.index(step) + 1]
        return step.start_s + rng.uniform(0.1, 0.6) * step.duration_s, cycle, hard
    if kind == "short-settle":
        return step.start_s + rng.uniform(0, min(50.0, 0.5 * step.duration_s)), cycle, hard
    if kind == "short-mid":
        return step.start_s + rng.uniform(0.2, 0.8) * step.duration_s, cycle, hard
    return step.start_s + rng.uniform(0.9, 0.99) * step.duration_s, cycle, hard  # short-end


def _shorted(magnitude, t, j, onset, hard, r_ohm_cm2, j0, area, rng):
    """|V| with a parallel path growing in from ``onset``: hard (0.5-5 Ohm) or soft (10-30 % left, flickering)."""
    weight = 1 - np.exp(-np.maximum(t - onset, 0.0) / rng.uniform(2, 60)) if onset > 0 else np.ones(t.size)  # onset 0: shorted before
    if hard:
        r_short_ohm_cm2 = rng.uniform(0.5, 5) * area
        cell_asr = magnitude / np.maximum(np.abs(j), 1e-12)
        left = r_short_ohm_cm2 / (r_short_ohm_cm2 + cell_asr)
    else:
        left = rng.uniform(0.1, 0.3) * np.exp(0.15 * rng.standard_normal(t.size))
    return magnitude * (1 - weight * (1 - left))
