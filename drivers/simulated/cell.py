"""A Li|solid electrolyte|Li symmetric cell under galvanostatic control.

The voltage of the cell is

    V = j * ASR_ohmic + eta_ct(t)          (both electrodes; j in A/cm2, ASR in Ohm cm2)

with the charge-transfer polarization of the two Li electrodes relaxing towards its Butler-Volmer
steady state (symmetric, alpha = 0.5):

    eta_ss = 2 * (2RT/F) * asinh(j / (2 j0)),   eta_ct(t) = eta_ss + (eta_0 - eta_ss) exp(-t / tau)

Dendrites: while Li is plated on the working electrode (negative current) at a current density
above the critical one, the plated charge counts towards an incubation charge; when it is reached
a short forms in parallel with the cell and its resistance collapses exponentially to its final
value.  The shorted cell is treated as its open-circuit response behind its small-signal
resistance, loaded by the short:  V = V_cell * R_short / (R_short + R_cell).  The short never heals.

This is the seam for the full physics (interfaces, voids, nucleation, EIS): callers only use
:meth:`SymmetricCell.galvanostatic`.
"""

from __future__ import annotations

import numpy as np

from echemd.config.models import SymmetricCellConfig

FARADAY_C_MOL = 96485.33212
GAS_CONSTANT_J_MOL_K = 8.314462618
#: Resistance of a dendrite the moment it touches the counter electrode, Ohm.
SHORT_INITIAL_RESISTANCE_OHM = 1e7


class SymmetricCell:
    """State and response of one symmetric cell.  Reproducible from the config's seed."""

    def __init__(self, config: SymmetricCellConfig) -> None:
        self.config = config
        self._rng = np.random.default_rng(config.seed)
        self._thermal_V = GAS_CONSTANT_J_MOL_K * (config.temperature_C + 273.15) / FARADAY_C_MOL
        self._eta_V = 0.0  # charge-transfer polarization of the unshorted cell
        self._dendrite_charge_C_cm2 = 0.0
        self._time_s = 0.0
        self.short_since_s: float | None = None  # cell time at which the short formed

    @property
    def small_signal_resistance_ohm(self) -> float:
        """dV/dI of the unshorted cell at zero current, Ohm."""
        c = self.config
        charge_transfer_asr = 2 * self._thermal_V / (c.exchange_current_mA_cm2 * 1e-3)
        return (c.ohmic_asr_ohm_cm2 + charge_transfer_asr) / c.area_cm2

    def galvanostatic(self, current_A: float, offsets_s: np.ndarray) -> np.ndarray:
        """Voltages (V) at ``offsets_s`` (s, increasing, > 0) after now, at constant ``current_A``.

        Advances the cell's state to the last offset.
        """
        c = self.config
        j = current_A / c.area_cm2  # A/cm2
        j0 = c.exchange_current_mA_cm2 * 1e-3
        eta_ss = 2 * (2 * self._thermal_V) * np.arcsinh(j / (2 * j0))
        eta = eta_ss + (self._eta_V - eta_ss) * np.exp(-offsets_s / c.polarization_time_constant_s)
        v_cell = j * c.ohmic_asr_ohm_cm2 + eta

        self._grow_dendrite(j, offsets_s)
        factor = self._short_factor(self._time_s + offsets_s)
        voltage = v_cell * factor + self._rng.normal(0.0, c.noise_V, len(offsets_s))

        self._eta_V = float(eta[-1])
        self._time_s += float(offsets_s[-1])
        return voltage

    def _grow_dendrite(self, j_A_cm2: float, offsets_s: np.ndarray) -> None:
        c = self.config
        plating = -j_A_cm2
        if self.short_since_s is not None or plating <= c.critical_current_mA_cm2 * 1e-3:
            return
        needed = c.incubation_charge_mAh_cm2 * 3.6 - self._dendrite_charge_C_cm2  # mAh/cm2 -> C/cm2
        if plating * offsets_s[-1] >= needed:
            self.short_since_s = self._time_s + needed / plating
            self._dendrite_charge_C_cm2 += needed
        else:
            self._dendrite_charge_C_cm2 += plating * float(offsets_s[-1])

    def _short_factor(self, times_s: np.ndarray) -> np.ndarray:
        if self.short_since_s is None:
            return np.ones_like(times_s)
        c = self.config
        age = np.clip(times_s - self.short_since_s, 0.0, None)
        r_short = c.short_resistance_ohm + SHORT_INITIAL_RESISTANCE_OHM * np.exp(-age / c.short_collapse_s)
        factor = r_short / (r_short + self.small_signal_resistance_ohm)
        return np.where(times_s >= self.short_since_s, factor, 1.0)
