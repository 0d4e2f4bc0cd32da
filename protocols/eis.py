"""Potentiostatic EIS of a cell: a frequency sweep, high to low.

Frequencies are log-spaced with ``points_per_decade``, anchored at both ends (the first is
``start_Hz``, the last ``end_Hz``).  The AC amplitude is given in mV rms; the DC bias in V, or none
for open circuit (a symmetric Li cell rests at 0 V).  A sweep outside the instrument's frequency
range is refused before anything is applied.

The result gives the spectrum's model-free landmarks, the equivalent-circuit fit of ``circuit``
(impedance.py syntax; data-driven initial guesses), the Kramers-Kronig residuals and, with an
area, area-specific resistances and capacitances (see :func:`~echemd.protocols.analysis.analyze_eis`).
A fit that fails does not fail the run: the spectrum is recorded and ``fit_error`` says why.
"""

from __future__ import annotations

from pydantic import Field

from echemd.config.models import InstrumentLimits
from echemd.drivers.base import Instrument
from echemd.daemon.errors import EchemdError
from echemd.protocols.analysis.records import analyze_eis
from echemd.protocols.base import Column, Plan, Presentation, ProtocolDefinition
from echemd.protocols.impedance_sweep import IMPEDANCE_COLUMNS, ImpedanceSweep, landmarks


class EISParameters(ImpedanceSweep):
    dc_bias_V: float | None = Field(None, description="DC bias, V; none: at the open-circuit voltage measured just before")
    area_cm2: float | None = Field(None, gt=0, description="electrode area for area-specific values, cm2")
    thickness_mm: float | None = Field(None, gt=0, le=100, description="electrolyte thickness, mm: tells bulk from grain-boundary arcs (capacitance over the cell constant)")
    symmetric: bool = Field(True, description="both electrodes alike (Li|SE|Li): an electrode arc holds two interfaces, reported per interface (R x A / 2)")
    circuit: str | None = Field("R0-p(R1,CPE1)-p(R2,CPE2)", max_length=200, description="equivalent circuit to fit (impedance.py syntax); none: no fit")


def check(params: EISParameters, instrument: Instrument, limits: InstrumentLimits) -> None:
    params.check("eis", instrument, limits, params.dc_bias_V)


def plan(params: EISParameters) -> Plan:
    spectrum = yield params.step(f"EIS {params.start_Hz:g} -> {params.end_Hz:g} Hz, {params.amplitude_mV_rms:g} mV rms", params.dc_bias_V)
    z = spectrum.columns["z_real_ohm"] + 1j * spectrum.columns["z_imag_ohm"]
    result = landmarks(spectrum.columns, params.area_cm2)
    if params.circuit:
        try:
            result.update(analyze_eis(spectrum.columns["frequency_Hz"], z.real, z.imag, params.circuit, params.area_cm2,
                                      params.thickness_mm / 10 if params.thickness_mm else None, params.symmetric))
        except Exception as exc:  # noqa: BLE001 - an analysis problem never fails a measured run: every point is recorded
            result["fit_error"] = str(exc) if isinstance(exc, (ValueError, EchemdError)) else f"{type(exc).__name__}: {exc}"
    return result


def summary(result: dict) -> str:
    """ASR and its arcs, and the Kramers-Kronig verdict, in one line."""
    asr = result.get("asr_ohm_cm2", {})
    arcs = " + ".join(f"{a['assignment']} {a['asr_ohm_cm2']:.1f} Ohm cm2 ({a['capacitance_F_cm2']:.2g} F/cm2)" for a in result.get("arcs", []))
    kk = result.get("kk", {})
    return (f"ASR {asr.get('total', float('nan')):.1f} Ohm cm2 = bulk {asr.get('series', float('nan')):.1f} + {arcs}; "
            f"Kramers-Kronig residual {kk.get('rms_residual_percent', float('nan')):.2f}% ({'valid' if kk.get('valid') else 'not valid'})")


EIS = ProtocolDefinition(
    name="eis",
    title="Potentiostatic EIS frequency sweep",
    instrument_kind="potentiostat",
    parameters=EISParameters,
    columns=(Column("time_s", "s"), *IMPEDANCE_COLUMNS),
    plan=plan,
    check=check,
    presentation=Presentation("impedance", "EISPOT", "low_frequency_real_ohm", summary=summary),
    pause_hold=None,
    planned_steps=lambda p: 1,
)
