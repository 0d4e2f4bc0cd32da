"""The daemon's own check of every sample against the instrument's configured limits.

It runs whatever the protocol does: a sample beyond a limit fails the run and the instrument goes
to its safe state.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from echemd.config.models import InstrumentLimits

VOLTAGE_COLUMNS = ("voltage_V", "bias_V")
CURRENT_COLUMNS = ("current_A",)


def limit_violation(columns: Mapping[str, np.ndarray], limits: InstrumentLimits) -> str | None:
    """A message naming the first sample beyond ``limits``, or None when every sample is within them."""
    checks = [(name, limits.max_abs_voltage_V, "max_abs_voltage_V") for name in VOLTAGE_COLUMNS]
    checks += [(name, limits.max_abs_current_A, "max_abs_current_A") for name in CURRENT_COLUMNS]
    for column, limit, key in checks:
        values = columns.get(column)
        if values is None:
            continue
        beyond = np.flatnonzero(np.abs(values) > limit)
        if beyond.size:
            i = beyond[0]
            return f"{column} = {values[i]:.6g} at t = {columns['time_s'][i]:.6g} s is beyond the limit {key} = {limit:g}"
    return None
