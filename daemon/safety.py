"""The daemon's own check of every sample against the safety limits, independent of the protocol.

A run's limits are the instrument's configured limits, tightened by any the run was submitted
with.  A sample beyond one fails the run and the instrument goes to its safe state.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from echemd.config.models import RunLimits
from echemd.protocols.detection import first_beyond

VOLTAGE_COLUMNS = ("voltage_V", "bias_V")


class SafetyMonitor:
    """Watches the blocks of one run: |V|, |I|, charge passed, compliance hits, duration."""

    def __init__(self, limits: RunLimits) -> None:
        self.limits = limits
        self.charge_C = 0.0
        self.compliance_hits = 0
        self._last_time_s: float | None = None

    def check(self, columns: Mapping[str, np.ndarray], cumulative: bool = True) -> str | None:
        """A message naming the first limit the block breaks, or None.

        With ``cumulative`` false (while a paused run holds), charge, compliance hits and duration
        are counted but not enforced: only |V| and |I| are.
        """
        lim, t = self.limits, columns["time_s"]
        for column in VOLTAGE_COLUMNS:
            message = _beyond(columns, column, lim.max_abs_voltage_V, "max_abs_voltage_V")
            if message:
                return message
        message = _beyond(columns, "current_A", lim.max_abs_current_A, "max_abs_current_A")
        if message:
            return message
        if "current_A" in columns and len(t):
            previous = self._last_time_s if self._last_time_s is not None else t[0] - (t[1] - t[0] if len(t) > 1 else 0.0)
            magnitude = np.abs(columns["current_A"])  # each sample's current over the interval up to it
            self.charge_C += float(magnitude[0] * (t[0] - previous) + np.dot(magnitude[1:], t[1:] - t[:-1]))
        if len(t):
            self._last_time_s = float(t[-1])
        if "compliance" in columns:
            self.compliance_hits += int(np.sum(columns["compliance"] != 0))
        if not cumulative:
            return None
        if lim.max_charge_C is not None and self.charge_C > lim.max_charge_C:
            return f"charge passed {self.charge_C:.6g} C at t = {t[-1]:.6g} s is beyond the limit max_charge_C = {lim.max_charge_C:g}"
        if "compliance" in columns:
            if lim.max_compliance_hits is not None and self.compliance_hits > lim.max_compliance_hits:
                return f"{self.compliance_hits} compliance hits by t = {t[-1]:.6g} s is beyond the limit max_compliance_hits = {lim.max_compliance_hits}"
        if lim.max_duration_s is not None and len(t) and t[-1] > lim.max_duration_s:
            return f"run time {t[-1]:.6g} s is beyond the limit max_duration_s = {lim.max_duration_s:g}"
        return None


def _beyond(columns: Mapping[str, np.ndarray], column: str, limit: float | None, key: str) -> str | None:
    values = columns.get(column)
    i = None if values is None or limit is None else first_beyond(values, limit)
    if i is None:
        return None
    return f"{column} = {values[i]:.6g} at t = {columns['time_s'][i]:.6g} s is beyond the limit {key} = {limit:g}"
