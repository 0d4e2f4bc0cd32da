"""A Li|solid electrolyte|Li symmetric cell: DC response, impedance and dendrite shorts from one set of parameters.

All internal quantities are areal (A/cm2, Ohm cm2, F/cm2); the public methods take and return
absolute SI values (A, V, Ohm).  Positive current strips Li from the working electrode, negative
current plates it (anodic positive).

The cell is a series of elements, each consistent between the time and frequency domains:

- bulk electrolyte R_b = thickness / conductivity, reduced by a growing dendrite (penetration);
- grain boundaries R_gb || C_gb;
- per electrode (working and counter, each its own contact fraction a, lowered by voids):
  the Li|electrolyte interface R_int/2 || C_int scaled by 1/a; charge transfer, Butler-Volmer,
  symmetric (alpha = 0.5): eta = (2RT/F) * asinh(j_local / (2 j0)), j_local = j / a, in parallel
  with the double layer; an optional finite-length Warburg (diffusion);
- a series inductance (EIS only);
- at the start of plating on the working electrode, a Li nucleation overshoot decaying with the
  plated charge;
- a short: when the dendrite has crossed the cell, a parallel path whose resistance collapses from
  10 MOhm to a hard (Ohms) or soft (a fraction of the cell's, fluctuating) value.

Each RC element relaxes with its own time constant after a current step (exact exponential
between samples).  An electrode loses contact while it strips above the void onset (the working
electrode at positive current, the counter electrode at negative current, while the working one
plates) and heals while Li is plated on it.  The dendrite grows from the working electrode at a
rate proportional to its local overdrive j_local - j_critical, so a cell fails sooner the harder it
is driven and never below its (seeded, per cell) critical current.

What is measured: the cell's voltage (two electrodes: the potentiostat's reference lead on the
counter electrode) or, with ``reference_electrode``, the working electrode against a Li reference
in the electrolyte (three electrodes): its own interface terms plus the ``reference_position``
share of the electrolyte's resistance, blind to the counter electrode.  A short carries part of
the current past the electrolyte, lowering either reading by the same factor.  Reading noise (white
plus the mains hum, aliased by the sampling) and a random-walk drift come on top.  Everything
random is drawn from the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from echemd.config.models import SymmetricCellConfig

FARADAY_C_MOL = 96485.33212
GAS_CONSTANT_J_MOL_K = 8.314462618
#: Resistance of a dendrite the moment it touches the counter electrode, Ohm.
SHORT_INITIAL_RESISTANCE_OHM = 1e7
#: Slowest mode of a finite-length Warburg relative to its diffusion time (4 / pi^2).
WARBURG_MODE = 4.0 / math.pi**2
#: Relative rms current noise of potentiostatic readings, and its floor (A).
CURRENT_NOISE, CURRENT_NOISE_FLOOR_A = 1e-4, 1e-10
MAH_CM2_PER_A_S_CM2 = 1e3 / 3600.0  # A s/cm2 -> mAh/cm2


@dataclass
class CellState:
    """What the cell remembers between samples."""

    time_s: float = 0.0
    contact: float = 1.0  # fraction of the working electrode's interface in contact (voids lower it)
    counter_contact: float = 1.0  # the same for the counter electrode
    dendrite: float = 0.0  # 0 .. 1: how far the dendrite has crossed the cell
    plated_mAh_cm2: float = 0.0  # plated since plating last began (nucleation)
    plating: bool = False
    drift_V: float = 0.0
    elements_V: dict[str, float] = field(default_factory=dict)  # voltages of the relaxing elements
    short_since_s: float | None = None


class SymmetricCell:
    """One symmetric cell.  Reproducible from its config's seed."""

    def __init__(self, config: SymmetricCellConfig) -> None:
        c = self.config = config
        rng = np.random.default_rng(config.seed)
        self.critical_A_cm2 = c.critical_current_mA_cm2 * 1e-3 * math.exp(c.critical_current_spread * rng.standard_normal())
        self._rng = rng
        self.state = CellState()
        self._thermal_V = GAS_CONSTANT_J_MOL_K * (c.temperature_C + 273.15) / FARADAY_C_MOL
        self._j0 = c.exchange_current_mA_cm2 * 1e-3
        self.bulk_asr_ohm_cm2 = (c.thickness_um * 1e-4) / (c.bulk_conductivity_mS_cm * 1e-3)
        self._soft_short_ohm = c.soft_short_fraction * self.dc_resistance_ohm()
        # what the reading sees of each element: all of it between working and counter, the
        # working electrode's and a share of the electrolyte's against a reference
        share = c.reference_position if c.reference_electrode else 1.0
        counter = 0.0 if c.reference_electrode else 1.0
        self._seen = {"bulk": share, "gb": share, "int_we": 1.0, "ct_we": 1.0, "w_we": 1.0,
                      "int_ce": counter, "ct_ce": counter, "w_ce": counter}

    # --- element values (areal) --------------------------------------------------------------
    def _charge_transfer_V(self, j_local: np.ndarray | float) -> np.ndarray | float:
        """Charge-transfer overpotential of one electrode at local current density ``j_local`` (A/cm2), V."""
        return 2 * self._thermal_V * np.arcsinh(np.asarray(j_local) / (2 * self._j0))

    def _charge_transfer_asr(self, j_local: float) -> float:
        """d eta / d j_local of one electrode, Ohm cm2."""
        return self._thermal_V / self._j0 / math.sqrt(1 + (j_local / (2 * self._j0)) ** 2)

    def _time_constants(self) -> dict[str, float]:
        c = self.config
        return {
            "gb": c.grain_boundary_asr_ohm_cm2 * c.grain_boundary_capacitance_uF_cm2 * 1e-6,
            "int": c.interface_asr_ohm_cm2 * c.interface_capacitance_uF_cm2 * 1e-6,
            "ct": 2 * self._charge_transfer_asr(0.0) * c.charge_transfer_capacitance_uF_cm2 * 1e-6,
            "w": WARBURG_MODE * c.warburg_time_s,
        }

    def _targets(self, j: float, contact: np.ndarray, counter_contact: np.ndarray) -> dict[str, np.ndarray]:
        """Steady-state voltage of each relaxing element (its share of the cell voltage) at areal current j (A/cm2)."""
        c = self.config
        targets = {"gb": np.full_like(contact, j * c.grain_boundary_asr_ohm_cm2)}
        for side, a in (("we", contact), ("ce", counter_contact)):
            targets[f"int_{side}"] = j * c.interface_asr_ohm_cm2 / 2 / a
            targets[f"ct_{side}"] = self._charge_transfer_V(j / a)
            targets[f"w_{side}"] = j * c.warburg_asr_ohm_cm2 / 2 / a
        return targets

    def _electrode_asr(self, j: float, a: float) -> float:
        """Small-signal ASR of one electrode's interface terms at areal current j, contact a, Ohm cm2."""
        c = self.config
        return (c.interface_asr_ohm_cm2 / 2 + self._charge_transfer_asr(j / a) + c.warburg_asr_ohm_cm2 / 2) / a

    # --- small-signal view -------------------------------------------------------------------
    def dc_resistance_ohm(self, current_A: float = 0.0) -> float:
        """dV/dI of the unshorted cell at ``current_A`` in its present state, Ohm (the EIS low-f limit)."""
        c, s = self.config, self.state
        j = current_A / c.area_cm2
        asr = (
            self.bulk_asr_ohm_cm2 * (1 - c.penetration_resistance_fraction * s.dendrite)
            + c.grain_boundary_asr_ohm_cm2
            + self._electrode_asr(j, s.contact) + self._electrode_asr(j, s.counter_contact)
        )
        return asr / c.area_cm2

    def short_resistance_ohm(self, times_s: np.ndarray) -> np.ndarray:
        """Resistance of the short path at cell times ``times_s`` (inf before the short)."""
        since = self.state.short_since_s
        r = np.full(np.shape(times_s), np.inf)
        if since is None:
            return r
        c = self.config
        final = c.short_resistance_ohm if c.short_kind == "hard" else self._soft_short_ohm
        age = np.asarray(times_s) - since
        after = age >= 0
        r[after] = final + SHORT_INITIAL_RESISTANCE_OHM * np.exp(-age[after] / c.short_collapse_s)
        if c.short_kind == "soft":  # a soft short flickers
            r[after] *= np.exp(0.2 * self._rng.standard_normal(int(after.sum())))
        return r

    def impedance_ohm(self, frequency_Hz: np.ndarray, current_A: float = 0.0) -> np.ndarray:
        """Noise-free complex impedance (Ohm) at ``current_A`` DC, in the present state, as measured
        (the cell's, or the working electrode's against the reference)."""
        c, s = self.config, self.state
        w = 2 * np.pi * np.asarray(frequency_Hz, dtype=np.float64)
        tau = self._time_constants()
        j = current_A / c.area_cm2
        bulk = self.bulk_asr_ohm_cm2 * (1 - c.penetration_resistance_fraction * s.dendrite)
        parts = {"bulk": bulk + 0j * w, "gb": c.grain_boundary_asr_ohm_cm2 / (1 + 1j * w * tau["gb"])}
        for side, a in (("we", s.contact), ("ce", s.counter_contact)):
            r_ct = self._charge_transfer_asr(j / a)
            parts[f"int_{side}"] = c.interface_asr_ohm_cm2 / 2 / a / (1 + 1j * w * tau["int"])
            parts[f"ct_{side}"] = r_ct / a / (1 + 1j * w * 2 * r_ct * c.charge_transfer_capacitance_uF_cm2 * 1e-6)
            if c.warburg_asr_ohm_cm2 > 0:
                root = np.sqrt(1j * w * c.warburg_time_s)
                parts[f"w_{side}"] = c.warburg_asr_ohm_cm2 / 2 / a * np.tanh(root) / root
        cell = sum(parts.values()) / c.area_cm2
        z = sum(self._seen[name] * part for name, part in parts.items()) / c.area_cm2 + 1j * w * c.inductance_nH * 1e-9
        r_short = self.short_resistance_ohm(np.array([s.time_s]))[0]
        return z if math.isinf(r_short) else z * r_short / (cell + r_short)

    def measure_impedance(self, frequency_Hz: float, current_A: float, duration_s: float) -> complex:
        """One impedance reading (Ohm) at ``frequency_Hz``, taking ``duration_s`` of cell time."""
        self.galvanostatic(current_A, np.array([duration_s]))
        z = complex(self.impedance_ohm(np.array([frequency_Hz]), current_A)[0])
        noise = self.config.eis_noise * abs(z) * complex(*self._rng.standard_normal(2))
        return z + noise

    # --- time domain -------------------------------------------------------------------------
    def galvanostatic(self, current_A: float, offsets_s: np.ndarray) -> np.ndarray:
        """Voltages (V) at ``offsets_s`` (s, increasing, > 0) after now at constant ``current_A``.

        Advances the cell's state to the last offset.
        """
        c = self.config
        j = current_A / c.area_cm2
        t = np.asarray(offsets_s, dtype=np.float64)
        contacts, dendrite, plated = self._advance(j, t)
        v_measured = self._measured_voltage(j, t, contacts, dendrite, plated)
        factor = self._loading(self.state.time_s + t - t[-1], j)
        return v_measured * factor + self._drift(t) + self._reading_noise(self.state.time_s + t - t[-1])

    def potentiostatic(self, voltage_V: float, offsets_s: np.ndarray) -> np.ndarray:
        """Currents (A) at ``offsets_s`` after now while the cell is held at ``voltage_V``."""
        c = self.config
        j = self._solve_current(voltage_V)
        t = np.asarray(offsets_s, dtype=np.float64)
        self._advance(j, t)
        s = self.state
        self.state.elements_V = {k: float(v[-1]) for k, v in self._targets(j, np.array([s.contact]), np.array([s.counter_contact])).items()}
        through_short = voltage_V / self.short_resistance_ohm(self.state.time_s + t - t[-1])
        current = j * c.area_cm2 + through_short
        noise = self._rng.standard_normal(len(t)) * (CURRENT_NOISE * np.abs(current) + CURRENT_NOISE_FLOOR_A)
        return current + noise

    def _steady_voltage(self, j: float) -> float:
        """The measured voltage (V) once steady at areal current j, in the present state."""
        c, s = self.config, self.state
        plating = j < 0
        plated = s.plated_mAh_cm2 if (plating and s.plating) else 0.0
        v = self._seen["bulk"] * j * self.bulk_asr_ohm_cm2 * (1 - c.penetration_resistance_fraction * s.dendrite)
        v += sum(self._seen[k] * float(x[0]) for k, x in self._targets(j, np.array([s.contact]), np.array([s.counter_contact])).items())
        return v + self._nucleation_V(j, np.array([plated]))[0] + s.drift_V

    def current_at(self, voltage_V: float) -> float:
        """Steady current (A) of the unshorted cell whose measured voltage is held at ``voltage_V``, in its present state."""
        return self._solve_current(voltage_V) * self.config.area_cm2

    def _solve_current(self, voltage_V: float) -> float:
        """Areal current (A/cm2) at which the unshorted cell's steady voltage equals ``voltage_V`` (bisection)."""
        lo, hi = -1.0, 1.0  # A/cm2: far beyond any Li cell
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            if self._steady_voltage(mid) < voltage_V:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    def _advance(self, j: float, t: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
        """The contact fractions (working, counter electrode), dendrite progress and nucleation
        charge at each offset; moves the state on."""
        c, s = self.config, self.state
        charge = abs(j) * t * MAH_CM2_PER_A_S_CM2  # mAh/cm2 passed since now
        plating = j < 0
        contact = self._contact(s.contact, j * 1e3, charge)
        counter_contact = self._contact(s.counter_contact, -j * 1e3, charge)
        s.counter_contact = float(counter_contact[-1])
        plated = (s.plated_mAh_cm2 if s.plating else 0.0) + charge if plating else np.zeros_like(t)

        dendrite = np.full_like(t, s.dendrite)
        if plating and s.short_since_s is None:
            rate = np.maximum(0.0, -j / contact - self.critical_A_cm2) * MAH_CM2_PER_A_S_CM2 / c.dendrite_charge_mAh_cm2  # 1/s
            steps = rate * np.diff(t, prepend=0.0)
            dendrite = s.dendrite + np.cumsum(steps)
            crossed = np.flatnonzero(dendrite >= 1.0)
            if crossed.size:
                k = crossed[0]
                before = dendrite[k - 1] if k else s.dendrite
                t_before = t[k - 1] if k else 0.0
                s.short_since_s = s.time_s + t_before + (1.0 - before) / rate[k]
                dendrite = np.minimum(dendrite, 1.0)

        s.contact, s.dendrite = float(contact[-1]), float(dendrite[-1])
        s.plated_mAh_cm2, s.plating = float(plated[-1]), plating
        s.time_s += float(t[-1])
        return (contact, counter_contact), dendrite, plated

    def _contact(self, start: float, stripping_mA_cm2: float, charge: np.ndarray) -> np.ndarray:
        """Contact fraction of an electrode stripped at ``stripping_mA_cm2`` (negative: Li plated on
        it) after each ``charge`` (mAh/cm2) passed, from ``start``.

        Voids grow with the *local* overdrive: da/dQ = -g (s / a - s_on) while s / a > s_on, so
        voiding runs away once it starts (less contact, a higher local current density, faster
        voiding) down to the minimum contact.  Solved exactly: Q(a) = (F(a0) - F(a)) / g with
        F(x) = -x / s_on - s / s_on^2 ln(s - s_on x), inverted by bisection."""
        c = self.config
        if stripping_mA_cm2 < 0:
            return 1 - (1 - start) * np.exp(-c.void_healing_per_mAh_cm2 * charge)
        s, onset, g = stripping_mA_cm2, c.void_onset_mA_cm2, c.void_growth_per_mAh_cm2
        if s <= onset * start or g == 0 or start <= c.min_contact_fraction:
            return np.full_like(charge, start)

        def needed(a: np.ndarray | float) -> np.ndarray | float:  # charge (mAh/cm2) that takes the contact from start to a
            f = lambda x: -x / onset - s / onset**2 * np.log(s - onset * x)  # noqa: E731
            return (f(start) - f(a)) / g

        lo, hi = np.full_like(charge, c.min_contact_fraction), np.full_like(charge, start)
        for _ in range(60):  # to ~1e-18 of the contact range
            mid = 0.5 * (lo + hi)
            beyond = needed(mid) > charge  # mid is reached only after more charge: the contact is above it
            lo, hi = np.where(beyond, mid, lo), np.where(beyond, hi, mid)
        return np.where(needed(c.min_contact_fraction) <= charge, c.min_contact_fraction, 0.5 * (lo + hi))

    def _nucleation_V(self, j: float, plated_mAh_cm2: np.ndarray) -> np.ndarray:
        c = self.config
        if j >= 0:
            return np.zeros_like(plated_mAh_cm2)
        size = c.nucleation_overshoot_mV * 1e-3 * math.sqrt(-j * 1e3)
        return -size * np.exp(-plated_mAh_cm2 / c.nucleation_charge_mAh_cm2)

    def _measured_voltage(self, j: float, t: np.ndarray, contacts: tuple[np.ndarray, np.ndarray], dendrite: np.ndarray,
                          plated: np.ndarray) -> np.ndarray:
        """Measured voltage of the unshorted cell at offsets t, each RC element relaxing towards its target."""
        c, s = self.config, self.state
        v = self._seen["bulk"] * j * self.bulk_asr_ohm_cm2 * (1 - c.penetration_resistance_fraction * dendrite)
        v = v + self._nucleation_V(j, plated)
        tau = self._time_constants()
        for name, target in self._targets(j, *contacts).items():
            start = s.elements_V.get(name, 0.0)
            time_constant = tau[name.split("_")[0]]
            decay = np.exp(-t / time_constant) if time_constant > 0 else np.zeros_like(t)
            element = target + (start - target[0]) * decay
            s.elements_V[name] = float(element[-1])
            v = v + self._seen[name] * element
        return v

    def _reading_noise(self, times_s: np.ndarray) -> np.ndarray:
        """White noise plus the mains hum at cell times ``times_s`` (sampled, so aliased), V."""
        c = self.config
        hum = c.mains_pickup_V * np.sin(2 * np.pi * c.mains_Hz * times_s + 1.0)
        return hum + self._rng.normal(0.0, c.noise_V, len(times_s))

    def _loading(self, times_s: np.ndarray, j: float) -> np.ndarray:
        """Factor by which a short in parallel lowers the cell's voltage at cell times ``times_s``."""
        r_short = self.short_resistance_ohm(times_s)
        factor = np.ones_like(r_short)
        shorted = np.isfinite(r_short)
        factor[shorted] = r_short[shorted] / (r_short[shorted] + self.dc_resistance_ohm(j * self.config.area_cm2))
        return factor

    def _drift(self, t: np.ndarray) -> np.ndarray:
        c, s = self.config, self.state
        steps = self._rng.standard_normal(len(t)) * c.drift_V_per_sqrt_h * np.sqrt(np.diff(t, prepend=0.0) / 3600.0)
        drift = s.drift_V + np.cumsum(steps)
        s.drift_V = float(drift[-1])
        return drift

    @property
    def short_since_s(self) -> float | None:
        """Cell time at which the short formed, or None."""
        return self.state.short_since_s
