"""Plots of run files (matplotlib, headless): what a scientist looks at first.

- plating runs (ccd and its variants): voltage and current vs time, step boundaries, the short;
- c-AFM (cafm-sweep, memristor): I-V on linear and log|I| axes, triggering biases marked;
- EIS: Nyquist (equal axes) and Bode with the fit, and the Kramers-Kronig residuals.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np

PLATING = ("ccd", "ccd-ramp", "plate-until-short", "cycling")


def plot_run(run_file: str | Path, out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with h5py.File(run_file, "r", libver="latest", swmr=True) as f:
        protocol = str(f.attrs["protocol"])
        run_id = str(f.attrs["run_id"])
        data = {name: f["data"][name][:] for name in f["data"]}
        result = json.loads(f["result"].attrs.get("json", "null")) or {}
        events = [(t, k.decode(), m.decode()) for t, k, m in zip(f["events/time_s"][:], f["events/kind"][:], f["events/message"][:])]
    if protocol in PLATING:
        figure = _plating(plt, data, result, events)
    elif "bias_V" in data:
        figure = _cafm(plt, data, result)
    elif "frequency_Hz" in data:
        figure = _eis(plt, data, result)
    else:
        raise ValueError(f"{run_file}: no plot for protocol {protocol!r}")
    figure.suptitle(f"{protocol}  {run_id}", fontsize=10)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return Path(out)


def _plating(plt, data, result, events):
    t_h = data["time_s"] / 3600
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    top.plot(t_h, data["voltage_V"] * 1e3, lw=0.8, color="tab:blue")
    top.set_ylabel("voltage (mV)")
    bottom.plot(t_h, data["current_A"] * 1e3, lw=0.8, color="tab:orange")
    bottom.set_ylabel("current (mA)")
    bottom.set_xlabel("time (h)")
    for t, kind, _ in events:
        if kind == "step":
            for axis in (top, bottom):
                axis.axvline(t / 3600, color="0.85", lw=0.6, zorder=0)
    short = result.get("short_detected_at_s")
    if short is not None:
        label = f"short: {result['ccd_mA_cm2']:g} mA/cm2" if result.get("ccd_mA_cm2") is not None else "short"
        for axis in (top, bottom):
            axis.axvline(short / 3600, color="tab:red", lw=1.2)
        top.annotate(label, (short / 3600, top.get_ylim()[0]), color="tab:red", xytext=(-4, 6), textcoords="offset points", ha="right")
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    return figure


def _cafm(plt, data, result):
    bias, current = data["bias_V"], data["current_A"]
    figure, (linear, log) = plt.subplots(1, 2, figsize=(10, 4.2))
    linear.plot(bias, current * 1e6, lw=0.8)
    linear.set_xlabel("tip bias (V vs Li/Li+)")
    linear.set_ylabel("current (uA)")
    log.semilogy(bias, np.abs(current) + 1e-15, lw=0.8)
    log.set_xlabel("tip bias (V vs Li/Li+)")
    log.set_ylabel("|current| (A)")
    for k, trigger in enumerate(t for t in result.get("triggering_bias_V", []) if t is not None):
        for axis in (linear, log):
            axis.axvline(trigger, color="tab:red", lw=0.8, alpha=0.7, label="triggering bias" if k == 0 else None)
    log.legend(loc="lower left", fontsize=8)
    for axis in (linear, log):
        axis.grid(alpha=0.3)
    return figure


def _eis(plt, data, result):
    f = data["frequency_Hz"]
    z = data["z_real_ohm"] + 1j * data["z_imag_ohm"]
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    nyquist, bode, residuals = axes
    nyquist.plot(z.real, -z.imag, "o", ms=3, label="data")
    bode.loglog(f, np.abs(z), "o", ms=3, label="|Z|")
    if result.get("parameters"):
        from impedance.models.circuits import CustomCircuit

        model = CustomCircuit(result["circuit"], initial_guess=list(result["parameters"].values()))
        dense = np.logspace(np.log10(f.min()), np.log10(f.max()), 300)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "simulating circuit based on initial parameters": intended
            fit = model.predict(dense, use_initial=True)
        nyquist.plot(fit.real, -fit.imag, "-", lw=1, label=f"fit {result['circuit']}")
        bode.loglog(dense, np.abs(fit), "-", lw=1, label="fit")
    nyquist.set_xlabel("Z' (Ohm)")
    nyquist.set_ylabel("-Z'' (Ohm)")
    nyquist.set_aspect("equal", adjustable="datalim")
    nyquist.legend(fontsize=8)
    bode.set_xlabel("frequency (Hz)")
    bode.set_ylabel("|Z| (Ohm)")
    phase = bode.twinx()
    phase.semilogx(f, -np.degrees(np.angle(z)), "s", ms=2, color="tab:green")
    phase.set_ylabel("-phase (deg)")
    from echemd.protocols.kramers_kronig import lin_kk

    kk = lin_kk(f, z)
    residuals.semilogx(f, kk.residuals_real * 100, "o-", ms=2, label="real")
    residuals.semilogx(f, kk.residuals_imag * 100, "s-", ms=2, label="imag")
    residuals.axhline(0, color="0.5", lw=0.6)
    residuals.set_xlabel("frequency (Hz)")
    residuals.set_ylabel("Kramers-Kronig residual (% of |Z|)")
    residuals.set_title(f"Lin-KK, M = {kk.elements}: {'valid' if kk.valid else 'NOT valid'}", fontsize=9)
    residuals.legend(fontsize=8)
    for axis in axes:
        axis.grid(alpha=0.3)
    return figure
