"""Cell presets named after the systems in the papers behind echemd's protocols.

docs/simulators.md lists each preset and the published figure it reproduces.

Each preset is a set of :class:`SymmetricCellConfig` / :class:`TipJunctionConfig` values; a
configuration names one (``preset = "Li6PS5Cl-flat"``) and may override any field.  Areal values
(Ohm cm2, uF/cm2, mA/cm2) are per electrode area; the figures each preset is meant to reproduce are
in its comment and are checked by tests/test_presets.py.
"""

from __future__ import annotations

import math

DISC_2MM_CM2 = math.pi * 0.1**2  # 2 mm diameter Li discs
PELLET_10MM_CM2 = math.pi * 0.5**2

CELL_PRESETS: dict[str, dict[str, object]] = {
    # Li|Li6PS5Cl|Li, flat interface, 7 MPa: CCD ~1 mA/cm2 (2 mV drop during plating): critical 0.8, so 0.5 mA/cm2 steps report 1.0.
    "Li6PS5Cl-flat": dict(
        area_cm2=DISC_2MM_CM2, thickness_um=700.0, bulk_conductivity_mS_cm=2.5, grain_boundary_asr_ohm_cm2=4.0,
        grain_boundary_capacitance_uF_cm2=0.01, interface_asr_ohm_cm2=6.0, interface_capacitance_uF_cm2=0.5,
        exchange_current_mA_cm2=0.5, charge_transfer_capacitance_uF_cm2=10.0, critical_current_mA_cm2=0.8,
        critical_current_spread=0.08, dendrite_charge_mAh_cm2=0.005, void_onset_mA_cm2=0.5,
    ),
    # Li|Li6PS5Cl|Li, contoured ("egg-box") interface: CCD raised by ~50%: critical 1.2, so 0.5 mA/cm2 steps report 1.5.
    "Li6PS5Cl-contoured": dict(
        area_cm2=DISC_2MM_CM2, thickness_um=700.0, bulk_conductivity_mS_cm=2.5, grain_boundary_asr_ohm_cm2=4.0,
        grain_boundary_capacitance_uF_cm2=0.01, interface_asr_ohm_cm2=4.0, interface_capacitance_uF_cm2=0.7,
        exchange_current_mA_cm2=0.7, charge_transfer_capacitance_uF_cm2=14.0, critical_current_mA_cm2=1.2,
        critical_current_spread=0.08, dendrite_charge_mAh_cm2=0.005, void_onset_mA_cm2=0.6,
    ),
    # Li|LLZO|Li bare, 25 C: CCD < 0.1 mA/cm2, ASR ~1000 Ohm cm2 (poor wetting).
    "LLZO-bare": dict(
        area_cm2=PELLET_10MM_CM2, thickness_um=1000.0, bulk_conductivity_mS_cm=0.5, grain_boundary_asr_ohm_cm2=20.0,
        grain_boundary_capacitance_uF_cm2=0.005, interface_asr_ohm_cm2=900.0, interface_capacitance_uF_cm2=0.2,
        exchange_current_mA_cm2=0.5, charge_transfer_capacitance_uF_cm2=5.0, critical_current_mA_cm2=0.07,
        critical_current_spread=0.08, dendrite_charge_mAh_cm2=0.0005, void_onset_mA_cm2=0.05,
    ),
    # Li|Au|LLZO|Au|Li: CCD ~0.2 mA/cm2, ASR ~100 Ohm cm2.
    "LLZO-Au": dict(
        area_cm2=PELLET_10MM_CM2, thickness_um=1000.0, bulk_conductivity_mS_cm=0.5, grain_boundary_asr_ohm_cm2=20.0,
        grain_boundary_capacitance_uF_cm2=0.005, interface_asr_ohm_cm2=60.0, interface_capacitance_uF_cm2=0.5,
        exchange_current_mA_cm2=1.0, charge_transfer_capacitance_uF_cm2=10.0, critical_current_mA_cm2=0.2,
        critical_current_spread=0.08, dendrite_charge_mAh_cm2=0.001, void_onset_mA_cm2=0.15,
    ),
    # Li|PPC|LLZO|PPC|Li (polymer homogenizing layer): CCD 1.8 mA/cm2, ASR ~14-50 Ohm cm2, cycles at 0.8.
    "LLZO-polymer": dict(
        area_cm2=PELLET_10MM_CM2, thickness_um=300.0, bulk_conductivity_mS_cm=0.8, grain_boundary_asr_ohm_cm2=2.0,
        grain_boundary_capacitance_uF_cm2=0.005, interface_asr_ohm_cm2=6.0, interface_capacitance_uF_cm2=1.0,
        exchange_current_mA_cm2=2.0, charge_transfer_capacitance_uF_cm2=20.0, critical_current_mA_cm2=1.8,
        critical_current_spread=0.05, dendrite_charge_mAh_cm2=0.01, void_onset_mA_cm2=1.5,
    ),
    # Li|Li3PS4|Li (operando CT): plating at 0.8 mA/cm2 shorts after ~3.2 h, polarization falling
    # gradually before; 0.6 mA/cm2 too slow to fail.  EIS 3 MHz -> 0.1 Hz: interface arc ~0.01 uF,
    # charge-transfer arc ~10 uF (absolute, 10 mm pellet).
    "Li3PS4": dict(
        area_cm2=PELLET_10MM_CM2, thickness_um=600.0, bulk_conductivity_mS_cm=0.3, grain_boundary_asr_ohm_cm2=0.0,
        grain_boundary_capacitance_uF_cm2=0.01, interface_asr_ohm_cm2=60.0, interface_capacitance_uF_cm2=0.0127,
        exchange_current_mA_cm2=0.3, charge_transfer_capacitance_uF_cm2=12.7, critical_current_mA_cm2=0.5,
        critical_current_spread=0.03, dendrite_charge_mAh_cm2=0.96, penetration_resistance_fraction=0.1,
        void_onset_mA_cm2=1.0,
    ),
}

JUNCTION_PRESETS: dict[str, dict[str, object]] = {
    # Pt tip (20 nm radius) on LLZO: triggering ~ -0.12 V at a grain boundary, ~100x in a grain
    # interior; sets within -0.2 V (settling at ~ -0.15 V), resets within +1 V, on/off ~1e5 for > 200 cycles.
    "LLZO-tip": dict(electrode="tip", contact_radius_nm=20.0, off_resistance_ohm=1e10, filament_resistance_ohm=1e5),
    # 500 um Au pad on LLZO: many parallel paths, on/off < 10, hardly resets.
    "LLZO-pad": dict(electrode="pad", contact_radius_nm=250_000.0, off_resistance_ohm=3e4, filament_resistance_ohm=1e4,
                     reset_probability=0.05),
}
