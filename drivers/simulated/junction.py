"""A c-AFM junction Li|LLZO|Pt tip (or Au pad) with Li filaments: triggering, ohmic conduction, reset.

Grains are a seeded Voronoi map; the tip sits at a position whose distance d to the nearest grain
boundary sets the filament triggering bias

    V_t(d) = V_gb * interior_ratio ** (1 - exp(-d / reach))

(~ -0.12 V on a boundary, ~80x that deep in a grain (-9.4 V, within a 10 V sweep), continuous in
between).  Before a filament forms the junction barely conducts, and not ohmically: electronic
leakage I = (V0/R_off) sinh(V/V0) (``off_resistance_ohm`` at small bias, ``off_nonlinearity_V`` =
V0: 1.8x the small-bias conductance at 5 V, 6x at 9.4 V, never the surge of a filament); once the
bias reaches the set threshold a filament bridges it and the junction is ohmic
(``filament_resistance_ohm``: a linear back scan).  A positive bias at the reset threshold (70-100%
of ``reset_bias_V``) dissolves it with ``reset_probability`` (1 for a tip; small for a pad, which
hardly resets).  After the first (forming) event the set threshold moves towards ``set_bias_V``
over ``set_settle_cycles`` cycles, with cycle-to-cycle jitter: memristive cycling.
"""

from __future__ import annotations

import math

import numpy as np

from echemd.config.models import TipJunctionConfig

#: Half-width of the simulated grain map, in grain sizes.
MAP_HALF_WIDTH_GRAINS = 15


class TipJunction:
    def __init__(self, config: TipJunctionConfig) -> None:
        self.config = config
        self._rng = np.random.default_rng(config.seed)
        half = MAP_HALF_WIDTH_GRAINS * config.grain_size_nm
        count = (2 * MAP_HALF_WIDTH_GRAINS) ** 2
        self.grain_centres_nm = self._rng.uniform(-half, half, size=(count, 2))
        x, y = config.tip_x_nm, config.tip_y_nm
        self.place(*(self.nearest_boundary_point(x, y) if config.tip_on_grain_boundary else (x, y)))

    # --- where the tip is ------------------------------------------------------------------
    def _nearest_boundary(self, x_nm: float, y_nm: float) -> tuple[float, np.ndarray]:
        """Distance (nm) to the nearest grain boundary and the unit normal pointing at it."""
        p = np.array([x_nm, y_nm])
        centres = self.grain_centres_nm
        d2 = np.sum((centres - p) ** 2, axis=1)
        own = int(np.argmin(d2))
        others = np.delete(np.arange(len(d2)), own)
        towards = centres[others] - centres[own]
        separation = np.linalg.norm(towards, axis=1)
        distances = (d2[others] - d2[own]) / (2 * separation)  # to each bisector of the own grain
        k = int(np.argmin(distances))
        return float(distances[k]), towards[k] / separation[k]

    def boundary_distance_nm(self, x_nm: float, y_nm: float) -> float:
        """Distance (nm) from (x, y) to the nearest grain boundary of the Voronoi map."""
        return self._nearest_boundary(x_nm, y_nm)[0]

    def nearest_boundary_point(self, x_nm: float, y_nm: float) -> tuple[float, float]:
        """The point of the nearest grain boundary closest to (x, y), nm."""
        distance, normal = self._nearest_boundary(x_nm, y_nm)
        return float(x_nm + distance * normal[0]), float(y_nm + distance * normal[1])

    def triggering_bias_at(self, distance_nm: float) -> float:
        c = self.config
        return c.triggering_bias_V * c.interior_ratio ** (1 - math.exp(-distance_nm / c.grain_boundary_reach_nm))

    def place(self, x_nm: float, y_nm: float) -> None:
        """Move the tip to a fresh spot: no filament, forming not yet happened."""
        self.position_nm = (x_nm, y_nm)
        self.distance_nm = max(0.0, self.boundary_distance_nm(x_nm, y_nm))
        self.triggering_bias_V = self.triggering_bias_at(self.distance_nm)
        self.filament = False
        self.sets = 0
        self._set_threshold_V = self.triggering_bias_V
        self._reset_threshold_V = self._draw_reset()
        self._reset_armed = True

    # --- electrical response ---------------------------------------------------------------
    def current(self, bias_V: float) -> float:
        """Current (A) at ``bias_V`` (V, tip vs Li), updating the filament state."""
        c = self.config
        if not self.filament and bias_V <= self._set_threshold_V:
            self.filament = True
            self.sets += 1
            self._reset_threshold_V = self._draw_reset()
        elif self.filament and self._reset_armed and bias_V >= self._reset_threshold_V:
            self._reset_armed = False  # one reset attempt per positive excursion
            if self._rng.random() < c.reset_probability:
                self.filament = False
                self._set_threshold_V = self._draw_set()
        elif bias_V <= 0 and not self._reset_armed:
            self._reset_armed = True
            self._reset_threshold_V = self._draw_reset()
        if self.filament:
            ideal = bias_V / c.filament_resistance_ohm
        else:
            ideal = c.off_nonlinearity_V / c.off_resistance_ohm * math.sinh(bias_V / c.off_nonlinearity_V)
        return ideal * (1 + c.relative_noise * self._rng.standard_normal()) + c.noise_A * self._rng.standard_normal()

    def _draw_set(self) -> float:
        c = self.config
        settled = c.set_bias_V + (self.triggering_bias_V - c.set_bias_V) * math.exp(-self.sets / c.set_settle_cycles)
        return min(settled + c.bias_jitter_V * self._rng.standard_normal(), -1e-3)

    def _draw_reset(self) -> float:
        return self.config.reset_bias_V * self._rng.uniform(0.7, 1.0)
