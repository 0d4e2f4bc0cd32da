"""Plots of run files (matplotlib, headless): what a scientist looks at first.

- plating runs (ccd and its variants): voltage and current density vs time, step boundaries and
  labels, the short with an inset of the 10 minutes before it was found; for ccd and csc a third
  panel with every half cycle's polarization and ASR;
- c-AFM (cafm-sweep, memristor): I-V on linear (µA) and log|I| axes, one colour per cycle,
  triggering biases marked;
- EIS: Nyquist (Ohm cm2 with an area, equal axes, a marker per decade of frequency) and Bode with
  the fit, and the Kramers-Kronig residuals.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from echemd.daemon.runfile_reader import RunFileReader

#: Steps labelled in a plating plot at most (more would overlap), and the span before a short that its inset shows, s.
STEP_LABELS, SHORT_ZOOM_S = 16, 600.0


def plot_run(run_file: str | Path, out: str | Path) -> Path:
    """Write the run's figure to ``out`` (PNG, or any format matplotlib knows by the suffix)."""
    import matplotlib.pyplot as plt

    figure = run_figure(run_file)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return Path(out)


def plot_table(path: str | Path, out: str | Path, kind: str | None = None, area_cm2: float | None = None,
               spectrum: int | None = None, named: dict | None = None) -> Path:
    """Write the figure of a file from other software (Gamry DTA, EC-Lab text, CSV) to ``out``:
    its data analysed as ``echemd analyze`` does (``kind`` ccd, eis or cafm: by default the first
    whose columns the file has, in the order eis, cafm, ccd; ``named``: which of a text table's
    columns is which, as readers.read_table takes it).  Raises UnreadableFile, FitError."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from echemd.protocols.analysis import records
    from echemd.protocols.io.readers import UnreadableFile, read_table

    kinds = [kind] if kind else ["eis", "cafm", "ccd"]
    for k, candidate in enumerate(kinds):
        try:
            table, kind = read_table(path, candidate, named), candidate
            break
        except UnreadableFile as exc:
            if k == len(kinds) - 1:
                raise exc if len(kinds) == 1 else UnreadableFile(f"neither an impedance spectrum, a c-AFM sweep nor a plating "
                                                                  f"record (as ccd: {exc})") from exc
    area = area_cm2 if area_cm2 is not None else table.area_cm2
    if kind == "eis":
        f, z_real, z_imag = table.spectrum(spectrum)
        figure = _eis(plt, {"frequency_Hz": f, "z_real_ohm": z_real, "z_imag_ohm": z_imag},
                      records.analyze_eis(f, z_real, z_imag, area_cm2=area), area)
    elif kind == "cafm":
        bias, current = table.require("bias_V", "current_A")
        figure = _cafm(plt, {"bias_V": bias, "current_A": current}, records.analyze_cafm(bias, current))
    else:
        t, i, v = table.require("time_s", "current_A", "voltage_V")
        result = records.analyze_ccd_chunks(lambda: [(t, i, v)], area_cm2=area) if area else {}
        figure = _plating(plt, {"time_s": t, "current_A": i, "voltage_V": v}, result, [], area)
    figure.suptitle(f"{kind}  {Path(path).name}", fontsize=10)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return Path(out)


def run_figure(run_file: str | Path):
    """The run's figure (a matplotlib Figure, headless); raises ValueError for a protocol with no plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with RunFileReader(run_file) as run:
        protocol, run_id, area = run.protocol, str(run.attrs["run_id"]), run.area_cm2
        data, result, events = run.columns(), run.result or {}, run.events()
    from echemd.protocols import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise ValueError(f"{run_file}: no plot for protocol {protocol!r}")
    kind = PROTOCOLS[protocol].presentation.figure
    if kind == "plating":
        figure = _plating(plt, data, result, events, area)
    elif kind == "sweep":
        figure = _cafm(plt, data, result)
    else:
        figure = _eis(plt, data, result, area)
    figure.suptitle(f"{protocol}  {run_id}", fontsize=10)
    figure.tight_layout()
    return figure


def _plating(plt, data, result, events, area_cm2):
    t_h = data["time_s"] / 3600
    steps = result.get("steps")
    rows = 3 if steps else 2
    figure = plt.figure(figsize=(9, 3 * rows))
    top = figure.add_subplot(rows, 1, 1)
    bottom = figure.add_subplot(rows, 1, 2, sharex=top)
    top.plot(t_h, data["voltage_V"] * 1e3, lw=0.8, color="tab:blue")
    top.set_ylabel("voltage (mV)")
    if area_cm2:
        bottom.plot(t_h, data["current_A"] * 1e3 / area_cm2, lw=0.8, color="tab:orange")
        bottom.set_ylabel("current density (mA/cm2)")
    else:
        bottom.plot(t_h, data["current_A"] * 1e3, lw=0.8, color="tab:orange")
        bottom.set_ylabel("current (mA)")
    bottom.set_xlabel("time (h)")
    starts = [(t, message) for t, kind, message in events if kind == "step"]
    for t, message in starts:
        for axis in (top, bottom):
            axis.axvline(t / 3600, color="0.85", lw=0.6, zorder=0)
        if len(starts) <= STEP_LABELS:  # (a long run's labels would only overlap)
            bottom.annotate(message.split(": ")[-1], (t / 3600, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -2),
                            textcoords="offset points", fontsize=6, color="0.4", rotation=90, va="top")
    short = result.get("short_detected_at_s")
    if short is not None:
        label = f"short: {result['ccd_mA_cm2']:g} mA/cm2" if result.get("ccd_mA_cm2") is not None else "short"
        for axis in (top, bottom):
            axis.axvline(short / 3600, color="tab:red", lw=1.2)
        top.annotate(label, (short / 3600, top.get_ylim()[0]), color="tab:red", xytext=(-4, 6), textcoords="offset points", ha="right")
        _short_inset(top, data, short)
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    if steps:
        _per_step(figure.add_subplot(rows, 1, 3), steps, result)
    return figure


def _short_inset(axis, data: dict, short_s: float) -> None:
    """An inset of the voltage from SHORT_ZOOM_S before the short was found to a tenth of that after."""
    t, v = data["time_s"], data["voltage_V"]
    window = (t >= short_s - SHORT_ZOOM_S) & (t <= short_s + SHORT_ZOOM_S / 10) & np.isfinite(v)
    if window.sum() < 2:
        return
    inset = axis.inset_axes([0.04, 0.08, 0.3, 0.38])
    inset.plot(t[window] / 3600, v[window] * 1e3, lw=0.8, color="tab:blue")
    inset.axvline(short_s / 3600, color="tab:red", lw=1.0)
    inset.set_title(f"the short: {SHORT_ZOOM_S / 60:g} min before", fontsize=7)
    inset.tick_params(labelsize=6)
    axis.indicate_inset_zoom(inset, edgecolor="0.5")


def _per_step(axis, steps: dict, result: dict) -> None:
    """Every half cycle's smoothed polarization (mV; plating filled, stripping open) and ASR (Ohm cm2)
    at its end, the half cycle holding the short in red."""
    from matplotlib.ticker import MaxNLocator

    number = np.arange(1, len(steps["label"]) + 1)
    polarization = np.array([np.nan if p is None else p for p in steps["polarization_mV"]], dtype=float)
    asr = np.array([np.nan if a is None else a for a in steps["asr_ohm_cm2"]], dtype=float)
    plating = np.array([phase == "plate" for phase in steps["phase"]])
    axis.plot(number[plating], polarization[plating], "o", color="tab:blue", label="polarization, plating")
    axis.plot(number[~plating], polarization[~plating], "o", mfc="none", color="tab:blue", label="polarization, stripping")
    axis.set_xlabel("half cycle")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel("polarization (mV)")
    ratio = axis.twinx()
    ratio.plot(number, asr, "s", ms=3, color="tab:green", label="ASR")
    ratio.set_ylabel("ASR (Ohm cm2)")
    if result.get("stopped_by") == "short" and len(number):
        axis.axvline(number[-1], color="tab:red", lw=1.2, label="short")
    axis.legend(fontsize=8, loc="upper left")
    axis.grid(alpha=0.3)


def _cafm(plt, data, result):
    """I-V on linear (µA) and log |I| axes, one colour per cycle (sweep), triggering biases marked."""
    from echemd.protocols.analysis.records import sweeps

    bias, current = data["bias_V"], data["current_A"]
    figure, (linear, log) = plt.subplots(1, 2, figsize=(10, 4.2))
    cycles = sweeps(bias)
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(len(cycles), 1)))
    for k, (cycle, colour) in enumerate(zip(cycles, colours), start=1):
        label = f"cycle {k}" if len(cycles) <= 10 or k in (1, len(cycles)) else None
        linear.plot(bias[cycle], current[cycle] * 1e6, lw=0.8, color=colour, label=label)
        log.semilogy(bias[cycle], np.abs(current[cycle]) + 1e-15, lw=0.8, color=colour)
    linear.set_xlabel("tip bias (V vs Li/Li+)")
    linear.set_ylabel("current (µA)")
    linear.legend(loc="upper left", fontsize=8)
    log.set_xlabel("tip bias (V vs Li/Li+)")
    log.set_ylabel("|current| (A)")
    for k, trigger in enumerate(t for t in result.get("triggering_bias_V", []) if t is not None):
        for axis in (linear, log):
            axis.axvline(trigger, color="tab:red", lw=0.8, alpha=0.7, label="triggering bias" if k == 0 else None)
    log.legend(loc="lower left", fontsize=8)
    for axis in (linear, log):
        axis.grid(alpha=0.3)
    return figure


def _decade_label(frequency_Hz: float) -> str:
    for scale, unit in ((1e6, "MHz"), (1e3, "kHz"), (1.0, "Hz"), (1e-3, "mHz")):
        if frequency_Hz >= scale * 0.999:
            return f"{frequency_Hz / scale:g} {unit}"
    return f"{frequency_Hz:g} Hz"


def _eis(plt, data, result, area_cm2):
    """Nyquist (Ohm cm2 when the area is known, equal axes, a marker at each decade of frequency),
    Bode with the fit, and the Kramers-Kronig residuals."""
    f = data["frequency_Hz"]
    z = data["z_real_ohm"] + 1j * data["z_imag_ohm"]
    scale, unit = (area_cm2, "Ohm cm2") if area_cm2 else (1.0, "Ohm")
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    nyquist, bode, residuals = axes
    nyquist.plot(z.real * scale, -z.imag * scale, "o", ms=3, label="data")
    span = max(np.ptp(z.real), np.ptp(z.imag), 1e-300)
    labelled: list[complex] = []
    for decade in 10.0 ** np.arange(np.ceil(np.log10(f.min())), np.floor(np.log10(f.max())) + 1):
        k = int(np.argmin(np.abs(np.log10(f / decade))))
        crowded = any(abs(z[k] - other) < 0.04 * span for other in labelled)  # (the ends of a spectrum bunch up)
        if abs(np.log10(f[k] / decade)) < 0.05 and not crowded:  # a point at (about) the decade, clear of the others
            labelled.append(z[k])
            nyquist.annotate(_decade_label(decade), (z.real[k] * scale, -z.imag[k] * scale), xytext=(4, 6), textcoords="offset points",
                             fontsize=7, color="0.3")
            nyquist.plot(z.real[k] * scale, -z.imag[k] * scale, "o", ms=5, mfc="none", color="0.3")
    bode.loglog(f, np.abs(z), "o", ms=3, label="|Z|")
    if result.get("parameters"):
        from impedance.models.circuits import CustomCircuit

        model = CustomCircuit(result["circuit"], initial_guess=list(result["parameters"].values()))
        dense = np.logspace(np.log10(f.min()), np.log10(f.max()), 300)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "simulating circuit based on initial parameters": intended
            fit = model.predict(dense, use_initial=True)
        nyquist.plot(fit.real * scale, -fit.imag * scale, "-", lw=1, label=f"fit {result['circuit']}")
        bode.loglog(dense, np.abs(fit), "-", lw=1, label="fit")
    nyquist.set_xlabel(f"Z' ({unit})")
    nyquist.set_ylabel(f"-Z'' ({unit})")
    nyquist.set_aspect("equal", adjustable="datalim")
    nyquist.legend(fontsize=8)
    bode.set_xlabel("frequency (Hz)")
    bode.set_ylabel("|Z| (Ohm)")
    phase = bode.twinx()
    phase.semilogx(f, -np.degrees(np.angle(z)), "s", ms=2, color="tab:green")
    phase.set_ylabel("-phase (deg)")
    from echemd.protocols.analysis.kramers_kronig import lin_kk

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
