"""Streaming building blocks for detectors: each takes samples block by block, vectorized per block,
and gives exactly the answer it gives on the whole record at once, whatever the partition.

- :class:`TrailingWindow`: running median, mean or minimum over the last ``window`` samples;
- :class:`WindowMax`: the largest value within the last ``span_s`` seconds of each sample;
- :class:`Persistence`: the first sample at which a condition has held without a break for ``hold_s``.

Times are in seconds and must increase from block to block.
"""

from __future__ import annotations

import functools
from collections import deque

import numpy as np
from numpy.lib.stride_tricks import as_strided


@functools.cache
def _filter(name: str):
    """scipy.ndimage's running filter for a statistic (imported on first use: it takes ~0.3 s, and
    a CLI call that never analyses should not pay it; looked up once: scipy's lazy attributes cost
    ~15 us a time, which a whole record's analysis paid ~30,000 times)."""
    from scipy import ndimage

    function = {"median": ndimage.median_filter, "mean": ndimage.uniform_filter1d, "min": ndimage.minimum_filter1d,
                "max": ndimage.maximum_filter1d}[name]
    return lambda x, w, o: function(x, size=w, mode="nearest", origin=o)


#: A block whose median windows hold at most this many values in all is taken by numpy (a sliding
#: view, one partition: ~11 us for a live block of 10 samples in windows of 101); larger ones by
#: scipy's running median (O(n log w) in C, but ~25 us of Python around each call).  Both give the
#: same values: the median of an odd window is one of its samples.
SMALL_MEDIAN_VALUES = 1 << 15


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
        self.statistic = statistic
        self._filter = _filter(statistic)
        # the latest blocks, as they came: at least the window - 1 samples before the next one
        self._blocks: deque[tuple[np.ndarray, ...]] = deque()
        self._held = 0

    def update(self, t: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
        """(times, window start times, the statistic of each column in ``values``) for every sample of
        this block whose window is full."""
        self._append(t, *values)
        need = len(t) + self.window - 1  # this block and the window before its first sample
        columns = [np.concatenate(column) for column in zip(*self._blocks)]
        columns = [column[max(0, len(column) - need):] for column in columns]
        self._blocks, self._held = deque([tuple(columns)]), len(columns[0])
        self._trim()
        if len(columns[0]) < self.window:
            return (np.empty(0),) * (len(columns) + 1)
        full = slice(self.window - 1, None)
        stats = [self._statistic(column)[full] for column in columns[1:]]
        return (columns[0][full], columns[0][: len(columns[0]) - self.window + 1], *stats)

    def carry(self, t: np.ndarray, *values: np.ndarray) -> None:
        """Take the block without computing its statistic (nobody needs it): only the window moves on
        (nothing is copied: whole blocks are dropped once no later window can reach them)."""
        self._append(t, *values)
        self._trim()

    def _append(self, t: np.ndarray, *values: np.ndarray) -> None:
        self._blocks.append(tuple(np.asarray(column, dtype=np.float64) for column in (t, *values)))
        self._held += len(t)

    def _trim(self) -> None:
        """Drop the oldest blocks while the rest still hold the window - 1 samples the next one needs."""
        while self._blocks and self._held - len(self._blocks[0][0]) >= self.window - 1:
            self._held -= len(self._blocks.popleft()[0])

    def _statistic(self, column: np.ndarray) -> np.ndarray:
        """The statistic of every window of ``column``, aligned with it (output k: samples k-w+1 .. k;
        the first w - 1 outputs are to be ignored)."""
        w = self.window
        if self.statistic == "median" and (len(column) - w + 1) * w <= SMALL_MEDIAN_VALUES:
            windows = as_strided(column, shape=(len(column) - w + 1, w), strides=column.strides * 2, writeable=False)
            return np.concatenate([np.empty(w - 1), np.partition(windows, w // 2, axis=1)[:, w // 2]])
        # scipy's C filters; for an odd window, origin (w-1)/2 makes output k the statistic of samples k-w+1 .. k
        return self._filter(column, w, (w - 1) // 2)


class WindowMax:
    """For each sample, the largest value fed at times within ``span_s`` before it (inclusive; None: ever).

    A block costs a few numpy passes whatever its length (see :func:`_range_max`); blocks longer
    than MAX_PIECE samples are taken MAX_PIECE at a time, so a range-maximum table stays small (at
    most ~9 MB).
    """

    MAX_PIECE = 1 << 16

    def __init__(self, span_s: float | None) -> None:
        self.span_s = span_s
        # values that can still be the maximum for a later sample: times increasing, values strictly decreasing
        self._t = np.empty(0)
        self._v = np.empty(0)

    def update(self, t: np.ndarray, v: np.ndarray) -> np.ndarray:
        t, v = np.asarray(t, dtype=np.float64), np.asarray(v, dtype=np.float64)
        out = np.empty(len(t))
        for start in range(0, len(t), self.MAX_PIECE):
            piece = slice(start, start + self.MAX_PIECE)
            out[piece] = self._piece(t[piece], v[piece])
        return out

    def _piece(self, t: np.ndarray, v: np.ndarray) -> np.ndarray:
        old_t, old_v = self._t, self._v
        if self.span_s is None:
            maxima = np.maximum.accumulate(v)
            if len(old_v):
                maxima = np.maximum(maxima, old_v[0])
        else:
            starts = t - self.span_s
            maxima = _range_max(v, np.searchsorted(t, starts, side="left"))
            if len(old_v):  # the earlier values still in each sample's window: a suffix of the survivors, whose first is its largest
                first_old = np.searchsorted(old_t, starts, side="left")
                maxima = np.maximum(maxima, np.where(first_old < len(old_v), old_v[np.minimum(first_old, len(old_v) - 1)], -np.inf))
        all_t, all_v = np.concatenate([old_t, t]), np.concatenate([old_v, v])
        if self.span_s is not None:
            recent = all_t >= t[-1] - self.span_s
            all_t, all_v = all_t[recent], all_v[recent]
        later_max = np.append(np.maximum.accumulate(all_v[::-1])[::-1][1:], -np.inf)
        survivors = all_v > later_max  # on a tie the later sample survives: it stays in the window longer
        self._t, self._v = all_t[survivors], all_v[survivors]
        return maxima


def _range_max(v: np.ndarray, first: np.ndarray) -> np.ndarray:
    """max(v[first[k] : k + 1]) for every k (``first`` non-decreasing, ``first[k] <= k``).

    Ranges that start at 0 are a cumulative maximum (a block shorter than the span: the common case
    live).  When the others all span the same number of samples (uniform sampling) they are scipy's
    running maximum; otherwise a sparse table: level j holds the maxima of 2**j consecutive values,
    and any range is the larger of two (overlapping) entries of one level."""
    maxima = np.maximum.accumulate(v)
    if not len(v) or first[-1] == 0:
        return maxima
    k = np.arange(len(v))
    length = k - first + 1
    inside = first > 0  # a suffix: first is non-decreasing
    width = int(length[-1])
    if (length[inside] == width).all():
        running = _filter("max")(v, width, width - 1 - width // 2)  # output k: the maximum of samples k-width+1 .. k
        maxima[inside] = running[inside]
        return maxima
    level = np.frexp(length)[1] - 1  # floor(log2(length)), exact for integers
    table = np.full((int(level.max()) + 1, len(v)), -np.inf)
    table[0] = v
    for j in range(1, len(table)):
        half = 1 << (j - 1)
        table[j, : len(v) - half] = np.maximum(table[j - 1, : len(v) - half], table[j - 1, half:])
    return np.maximum(table[level, first], table[level, k - (1 << level) + 1])


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
