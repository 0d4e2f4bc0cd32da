"""Streaming building blocks for detectors: each takes samples block by block, vectorized per block,
and gives exactly the answer it gives on the whole record at once, whatever the partition.

- :class:`TrailingWindow`: running median, mean or minimum over the last ``window`` samples;
- :class:`WindowMax`: the largest value within the last ``span_s`` seconds of each sample;
- :class:`Persistence`: the first sample at which a condition has held without a break for ``hold_s``.

Times are in seconds and must increase from block to block.
"""

from __future__ import annotations

import numpy as np


def _filter(name: str):
    """scipy.ndimage's running filter for a statistic (imported on first use: it takes ~0.3 s, and
    a CLI call that never analyses should not pay it)."""
    from scipy import ndimage

    function = {"median": ndimage.median_filter, "mean": ndimage.uniform_filter1d, "min": ndimage.minimum_filter1d}[name]
    return lambda x, w, o: function(x, size=w, mode="nearest", origin=o)


class TrailingWindow:
    """A statistic (median, mean or minimum) of each sample and the ``window - 1`` before it (``window`` odd, >= 1).

    :meth:`update` returns the times, window start times and statistics of the samples whose window
    is full; the first ``window - 1`` samples of the record have none.
    """

    def __init__(self, window: int, statistic: str = "median") -> None:
        if window < 1 or window % 2 == 0:
            raise ValueError(f"the window must be an odd number >= 1, got {window}")
        self.window = window
        if statistic not in ("median", "mean", "min"):
            raise ValueError(f"unknown statistic {statistic!r}")
        self._filter = _filter(statistic)
        self._tail: tuple[np.ndarray, ...] | None = None

    def update(self, t: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
        """(times, window start times, the statistic of each column in ``values``) for every sample of
        this block whose window is full."""
        columns = self._extend(t, *values)
        if len(columns[0]) < self.window:
            return (np.empty(0),) * (len(columns) + 1)
        full = slice(self.window - 1, None)
        # scipy's C filters; for an odd window, origin (w-1)/2 makes output k the statistic of samples k-w+1 .. k
        stats = [self._filter(column, self.window, (self.window - 1) // 2)[full] for column in columns[1:]]
        return (columns[0][full], columns[0][: len(columns[0]) - self.window + 1], *stats)

    def carry(self, t: np.ndarray, *values: np.ndarray) -> None:
        """Take the block without computing its statistic (nobody needs it): only the window moves on."""
        self._extend(t, *values)

    def _extend(self, t: np.ndarray, *values: np.ndarray) -> list[np.ndarray]:
        new = (t, *values)
        tail = self._tail or tuple(np.empty(0) for _ in new)
        columns = [np.concatenate([old, np.asarray(column, dtype=np.float64)]) for old, column in zip(tail, new)]
        keep = self.window - 1
        self._tail = tuple(column[max(0, len(column) - keep):] for column in columns)
        return columns


class WindowMax:
    """For each sample, the largest value fed at times within ``span_s`` before it (inclusive; None: ever)."""

    def __init__(self, span_s: float | None) -> None:
        self.span_s = span_s
        # values that can still be the maximum for a later sample: times increasing, values strictly decreasing
        self._t = np.empty(0)
        self._v = np.empty(0)

    def update(self, t: np.ndarray, v: np.ndarray) -> np.ndarray:
        out = np.empty(len(t))
        start = 0
        while start < len(t):  # in pieces no longer than the span: every sample of a piece sees all before it
            n = len(t) - start if self.span_s is None else max(1, int(np.searchsorted(t[start:], t[start] + self.span_s, side="right")))
            out[start:start + n] = self._piece(t[start:start + n], v[start:start + n])
            start += n
        return out

    def _piece(self, t: np.ndarray, v: np.ndarray) -> np.ndarray:
        old_t, old_v = self._t, self._v
        if len(old_v):
            first = np.zeros(len(t), dtype=np.int64) if self.span_s is None else np.searchsorted(old_t, t - self.span_s, side="left")
            old_max = np.where(first < len(old_v), old_v[np.minimum(first, len(old_v) - 1)], -np.inf)
        else:
            old_max = np.full(len(t), -np.inf)
        maxima = np.maximum(old_max, np.maximum.accumulate(v))
        all_t, all_v = np.concatenate([old_t, t]), np.concatenate([old_v, v])
        if self.span_s is not None:
            recent = all_t >= t[-1] - self.span_s
            all_t, all_v = all_t[recent], all_v[recent]
        later_max = np.append(np.maximum.accumulate(all_v[::-1])[::-1][1:], -np.inf)
        survivors = all_v > later_max  # on a tie the later sample survives: it stays in the window longer
        self._t, self._v = all_t[survivors], all_v[survivors]
        return maxima


class Persistence:
    """Finds the first sample at which a condition has held on every sample for at least ``hold_s``.

    ``hold_s = 0`` confirms at the first sample where it holds.  :attr:`since_s` is the time at
    which the present unbroken run of the condition began (None when it does not hold now).
    """

    def __init__(self, hold_s: float) -> None:
        if hold_s < 0:
            raise ValueError(f"the confirmation time must be >= 0 s, got {hold_s}")
        self.hold_s = hold_s
        self.since_s: float | None = None

    def update(self, t: np.ndarray, holds: np.ndarray) -> tuple[int, float] | None:
        """(index in this block, start time of its run) of the first confirmed sample, or None."""
        holds = np.asarray(holds, dtype=bool)
        if not len(t) or (self.since_s is None and not holds.any()):
            return None
        previous = np.concatenate([[self.since_s is not None], holds[:-1]])
        begins = np.where(holds & ~previous, np.arange(len(t)), -1)
        last_begin = np.maximum.accumulate(begins)
        carried = np.nan if self.since_s is None else self.since_s
        since = np.where(last_begin >= 0, t[np.maximum(last_begin, 0)], carried)
        confirmed = np.flatnonzero(holds & (t - since >= self.hold_s))
        self.since_s = float(since[-1]) if holds[-1] else None
        if confirmed.size:
            i = int(confirmed[0])
            return i, float(since[i])
        return None
