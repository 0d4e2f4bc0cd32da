"""Detectors that watch a step's samples: pure numerics on numpy arrays, usable online and offline."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.ndimage import median_filter

from echemd.protocols.base import Stop, StopCondition


def first_beyond(values: np.ndarray, limit: float) -> int | None:
    """Index of the first value with |value| > limit, or None (one reduction when none is: the common case)."""
    magnitude = np.abs(values)
    if not len(magnitude) or magnitude.max() <= limit:
        return None
    return int(np.argmax(magnitude > limit))


class VoltageLimit(StopCondition):
    """Stops a step when |voltage| exceeds ``limit_V`` (V): a safety cut-off."""

    def __init__(self, limit_V: float) -> None:
        self.limit_V = limit_V

    def update(self, columns: Mapping[str, np.ndarray]) -> Stop | None:
        i = first_beyond(columns["voltage_V"], self.limit_V)
        if i is None:
            return None
        return Stop("voltage_limit", float(columns["time_s"][i]), {"voltage_V": float(columns["voltage_V"][i]), "limit_V": self.limit_V})


class VoltageDropDetector(StopCondition):
    """Finds a drop of the polarization |V| by ``threshold_V`` within one constant-current step.

    The polarization is smoothed with a running median of ``window`` samples (rejects noise up to
    ~0.5 mV rms at the default 15 samples, and single-sample spikes); samples within ``settle_s`` of
    the step's first sample are ignored (the current-step transient and the Li nucleation
    overshoot).  A drop is the highest smoothed polarization of the last ``drop_window_s`` seconds
    (None: since the settle time) minus the present one, so a slow drift or a gradual polarization
    decline (well under the threshold per window) is not a short, while a dendrite's collapse is.
    Fed block by block it gives exactly the answer it gives on the whole step at once.
    """

    def __init__(self, threshold_V: float = 2e-3, settle_s: float = 60.0, window: int = 15, drop_window_s: float | None = 300.0) -> None:
        if threshold_V <= 0 or settle_s < 0 or window < 1 or window % 2 == 0 or (drop_window_s is not None and drop_window_s <= 0):
            raise ValueError("threshold_V and drop_window_s must be > 0, settle_s >= 0 and window an odd number >= 1")
        self.threshold_V = threshold_V
        self.settle_s = settle_s
        self.window = window
        self.drop_window_s = drop_window_s
        self._t_start: float | None = None
        self._tail_t = np.empty(0)
        self._tail_v = np.empty(0)
        # smoothed |V| that can still be the peak of a later window: times, and values strictly decreasing
        self._peak_t = np.empty(0)
        self._peak_v = np.empty(0)

    def update(self, columns: Mapping[str, np.ndarray]) -> Stop | None:
        t_new = np.asarray(columns["time_s"], dtype=np.float64)
        if t_new.size == 0:
            return None
        if self._t_start is None:
            self._t_start = float(t_new[0])
        t = np.concatenate([self._tail_t, t_new])
        v = np.concatenate([self._tail_v, np.abs(np.asarray(columns["voltage_V"], dtype=np.float64))])
        keep = self.window - 1
        self._tail_t, self._tail_v = t[len(t) - keep :], v[len(v) - keep :]
        if len(v) < self.window:
            return None
        # running median over the trailing window (scipy's C filter; for odd windows == np.median of each window)
        smoothed = median_filter(v, size=self.window, mode="nearest", origin=(self.window - 1) // 2)[self.window - 1 :]
        window_start = t[: len(smoothed)]
        at = t[self.window - 1 :]
        settled = window_start >= self._t_start + self.settle_s
        at, smoothed = at[settled], smoothed[settled]
        span = self.drop_window_s
        while at.size:  # in pieces no longer than the drop window
            n = at.size if span is None else max(1, int(np.searchsorted(at, at[0] + span, side="right")))
            stop = self._scan(at[:n], smoothed[:n])
            if stop is not None:
                return stop
            at, smoothed = at[n:], smoothed[n:]
        return None

    def _scan(self, at: np.ndarray, smoothed: np.ndarray) -> Stop | None:
        """Drops within one piece (no longer than the drop window), vectorized; then keep its peak candidates."""
        old_t, old_v = self._peak_t, self._peak_v
        if self.drop_window_s is None:
            first = np.zeros(len(at), dtype=np.int64)
        else:
            first = np.searchsorted(old_t, at - self.drop_window_s, side="left")
        if len(old_v):
            old_peak = np.where(first < len(old_v), old_v[np.minimum(first, len(old_v) - 1)], -np.inf)
        else:
            old_peak = np.full(len(at), -np.inf)
        new_peak = np.maximum.accumulate(smoothed)
        peak = np.maximum(old_peak, new_peak)
        hits = np.flatnonzero(peak - smoothed >= self.threshold_V)
        if hits.size:
            i = hits[0]
            if new_peak[i] >= old_peak[i]:  # on a tie the later sample is the peak
                peak_time = float(at[np.flatnonzero(smoothed[: i + 1] == new_peak[i])[-1]])
            else:
                peak_time = float(old_t[first[i]])
            return Stop("voltage_drop", float(at[i]), {"drop_mV": float(peak[i] - smoothed[i]) * 1e3, "peak_V": float(peak[i]), "peak_time_s": peak_time})
        all_t, all_v = np.concatenate([old_t, at]), np.concatenate([old_v, smoothed])
        if self.drop_window_s is not None:
            recent = all_t >= at[-1] - self.drop_window_s
            all_t, all_v = all_t[recent], all_v[recent]
        later_max = np.append(np.maximum.accumulate(all_v[::-1])[::-1][1:], -np.inf)
        candidates = all_v > later_max
        self._peak_t, self._peak_v = all_t[candidates], all_v[candidates]
        return None


def find_voltage_drop(
    time_s: np.ndarray, voltage_V: np.ndarray, threshold_V: float = 2e-3, settle_s: float = 60.0, window: int = 15,
    drop_window_s: float | None = 300.0,
) -> Stop | None:
    """The first drop of |V| by ``threshold_V`` in one constant-current step (see VoltageDropDetector)."""
    return VoltageDropDetector(threshold_V, settle_s, window, drop_window_s).update({"time_s": time_s, "voltage_V": voltage_V})


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
