"""The daemon's own check of every sample against the safety limits, independent of the protocol.

A run's limits are the instrument's configured limits, tightened by any the run was submitted
with.  A sample beyond one fails the run and the instrument goes to its safe state.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from echemd.config.models import RunLimits
from echemd.protocols.analysis.detection import first_beyond

VOLTAGE_COLUMNS = ("voltage_V", "bias_V")


class SafetyMonitor:
    """Watches the blocks of one run: |V|, |I|, charge passed, compliance hits, duration.

    Every limit is judged sample by sample, so the answer (which limit, at which sample) is the same
    however the samples are split into blocks.  A sample without a reading (NaN) is beyond no limit
    and adds no charge; the limits go on being judged on the samples after it.  The charge passed
    (``charge_C``, C) and the compliance hits are counted only when the run has a limit on them.
    """

    def __init__(self, limits: RunLimits) -> None:
        self.limits = limits
        self.charge_C = 0.0
        self.compliance_hits = 0
        self._last_time_s = 0.0  # run time of the last sample seen: the first counts from the run's time zero

    def check(self, columns: Mapping[str, np.ndarray], cumulative: bool = True) -> str | None:
        """A message naming the limit broken first in the block (at its earliest sample), or None.

        With ``cumulative`` false (while a paused run holds), charge, compliance hits and duration
        are counted but not enforced: only |V| and |I| are.
        """
        lim, t = self.limits, np.asarray(columns["time_s"], dtype=np.float64)
        if not len(t):
            return None
        found: list[tuple[int, str]] = []
        for column in VOLTAGE_COLUMNS:
            found += _beyond(columns, column, lim.max_abs_voltage_V, "max_abs_voltage_V")
        found += _beyond(columns, "current_A", lim.max_abs_current_A, "max_abs_current_A")
        charge = hits = None  # (counted only where limited: a run's limits do not change)
        if "current_A" in columns and lim.max_charge_C is not None:  # each sample's current over the interval up to it
            interval = np.empty(len(t))
            interval[0] = t[0] - self._last_time_s
            np.subtract(t[1:], t[:-1], out=interval[1:])
            # (a sample without a reading adds no charge: a NaN would make the total NaN, and the limit never trip)
            charge = self.charge_C + np.cumsum(np.fmax(np.abs(columns["current_A"]) * interval, 0.0))  # (fmax: NaN -> 0)
            self.charge_C = float(charge[-1])
        if "compliance" in columns and lim.max_compliance_hits is not None:
            hits = self.compliance_hits + np.cumsum(np.asarray(columns["compliance"]) != 0)
            self.compliance_hits = int(hits[-1])
        self._last_time_s = float(t[-1])
        if cumulative:
            if charge is not None and charge[-1] > lim.max_charge_C:
                i = int(np.argmax(charge > lim.max_charge_C))
                found.append((i, f"charge passed {charge[i]:.6g} C at t = {t[i]:.6g} s is beyond the limit max_charge_C = {lim.max_charge_C:g}"))
            if hits is not None and hits[-1] > lim.max_compliance_hits:
                i = int(np.argmax(hits > lim.max_compliance_hits))
                found.append((i, f"{hits[i]} compliance hits by t = {t[i]:.6g} s is beyond the limit max_compliance_hits = {lim.max_compliance_hits}"))
            if lim.max_duration_s is not None and t[-1] > lim.max_duration_s:
                i = int(np.argmax(t > lim.max_duration_s))
                found.append((i, f"run time {t[i]:.6g} s is beyond the limit max_duration_s = {lim.max_duration_s:g}"))
        return min(found, key=lambda hit: hit[0])[1] if found else None


def _beyond(columns: Mapping[str, np.ndarray], column: str, limit: float | None, key: str) -> list[tuple[int, str]]:
    values = columns.get(column)
    i = None if values is None or limit is None else first_beyond(values, limit)
    if i is None:
        return []
    return [(i, f"{column} = {values[i]:.6g} at t = {columns['time_s'][i]:.6g} s is beyond the limit {key} = {limit:g}")]
