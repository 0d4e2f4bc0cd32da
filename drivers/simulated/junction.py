"""A c-AFM junction Li|LLZO|Pt tip: a Li filament forms below the triggering bias, dissolves above reset.

Before the filament forms the junction barely conducts (``off_resistance_ohm``); once the bias on
the tip reaches the (negative) triggering bias a filament bridges it and the junction turns ohmic
(``filament_resistance_ohm``); a positive bias at or above ``reset_bias_V`` dissolves it.  The
full model (distance to grain boundaries, memristive statistics) builds on this seam.
"""

from __future__ import annotations

import numpy as np

from echemd.config.models import TipJunctionConfig


class TipJunction:
    def __init__(self, config: TipJunctionConfig) -> None:
        self.config = config
        self._rng = np.random.default_rng(config.seed)
        self.filament = False

    def current(self, bias_V: float) -> float:
        """Current (A) through the junction at ``bias_V`` (V, tip vs Li), updating the filament state."""
        c = self.config
        if not self.filament and bias_V <= c.triggering_bias_V:
            self.filament = True
        elif self.filament and bias_V >= c.reset_bias_V:
            self.filament = False
        resistance = c.filament_resistance_ohm if self.filament else c.off_resistance_ohm
        return bias_V / resistance + float(self._rng.normal(0.0, c.noise_A))
