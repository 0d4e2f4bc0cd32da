"""Detectors that watch a step's samples: pure numerics on numpy arrays, usable online and offline.

The short detector has its own module (shorts.py)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from echemd.protocols.base import Stop, StopCondition


def first_beyond(values: np.ndarray, limit: float) -> int | None:
    """Index of the first value with |value| > limit, or None; a NaN (no reading) is not beyond.

    One reduction when none is (the common case)."""
    magnitude = np.abs(values)
    if not len(magnitude) or magnitude.max() <= limit:
        return None
    beyond = np.flatnonzero(magnitude > limit)  # (a NaN makes the max NaN: look at each value)
    return int(beyond[0]) if beyond.size else None


class VoltageLimit(StopCondition):
    """Stops a step when |voltage| exceeds ``limit_V`` (V): a safety cut-off."""

    def __init__(self, limit_V: float) -> None:
        self.limit_V = limit_V

    def update(self, columns: Mapping[str, np.ndarray]) -> Stop | None:
        i = first_beyond(columns["voltage_V"], self.limit_V)
        if i is None:
            return None
        return Stop("voltage_limit", float(columns["time_s"][i]), {"voltage_V": float(columns["voltage_V"][i]), "limit_V": self.limit_V})


def find_triggering_bias(bias_V: np.ndarray, current_A: np.ndarray, surge_factor: float = 100.0, baseline_points: int = 10) -> float | None:
    """Bias (V) at which the junction's conductance |I/V| first exceeds ``surge_factor`` times its
    initial value (the median over the first ``baseline_points`` biased samples), or None.

    Compliance clamping only lowers the current after the surge, so it cannot hide it.
    """
    biased = np.flatnonzero(np.asarray(bias_V) != 0)
    if biased.size <= baseline_points:
        return None
    conductance = np.abs(np.asarray(current_A)[biased] / np.asarray(bias_V)[biased])
    baseline = max(float(np.median(conductance[:baseline_points])), np.finfo(float).tiny)
    surges = np.flatnonzero(conductance[baseline_points:] > surge_factor * baseline)
    return float(np.asarray(bias_V)[biased][baseline_points + surges[0]]) if surges.size else None
