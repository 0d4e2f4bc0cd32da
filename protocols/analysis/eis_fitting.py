"""Equivalent-circuit fitting of impedance spectra with impedance.py, from data-driven initial guesses.

A fit starts where the data say it should: the series resistance at the high-frequency intercept;
each parallel block p(R, C or CPE) on an arc found in the spectrum (its resistance from the arc's
width on the real axis, its time constant from the frequency of the arc's apex), blocks taken in
the order they are written (high frequency first); diffusion elements from the low-frequency tail.
Nobody has to hand-tune a guess, and a guess ten times off (which makes impedance.py's curve_fit
fail) does not happen.  Which arc a block describes is not always the written order, so every
order is tried (up to six starts) and the fit with the lowest sum of squared residuals, the
quantity impedance.py minimizes, is kept.

Every parameter is bounded to what is physical (resistances, capacitances, CPE and Warburg
coefficients, inductances >= 0; CPE exponents in [0.5, 1]), and each result says how well the data
determine it: ``errors`` are impedance.py's standard errors (one sigma, from the fit's covariance),
``relative_errors`` those over the value, and ``warnings`` names every parameter the data do not
determine (relative error over 100 % or none) and a spectrum with fewer than two frequencies per
parameter.  When the default circuit's second arc is not determined, the one-arc circuit is fitted
instead and the result says so (``note``, ``requested_circuit``).  High-frequency points with a
positive imaginary part (cable and instrument inductance) are left out of a circuit without an
inductor, and the result says which (``excluded``).

Capacitances of CPE arcs follow Brug et al. (1984): C = Q^(1/a) (R_s R / (R_s + R))^((1 - a)/a),
with R_s the series resistance.  Each arc gets a hint of what it is, with its basis (see
:func:`assign`): bulk and grain boundary by the capacitance over the cell constant (Irvine, Sinclair
and West 1990; needs the electrolyte thickness), electrode processes by areal capacitance.  In a
symmetric cell an electrode arc holds both interfaces: one interface's ASR is R x A / 2.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field

import numpy as np
from impedance.models.circuits import CustomCircuit
from impedance.models.circuits.elements import circuit_elements

from echemd.daemon.errors import EchemdError

#: Default circuit of a symmetric solid-state cell: bulk (series), two arcs (grain boundary /
#: interphase, and electrode interface), each a resistor in parallel with a CPE.
DEFAULT_CIRCUIT = "R0-p(R1,CPE1)-p(R2,CPE2)"
CPE_ALPHA_GUESS = 0.9
#: Most starting points tried (orders in which the blocks take the arcs).
MAX_STARTS = 6
#: Another order replaces the written one (high frequency first) only when its fit is this much better.
BETTER_BY = 0.005
#: Bounds of a CPE exponent: below 0.5 an "arc" is no longer a capacitive one.
CPE_ALPHA_BOUNDS = (0.5, 1.0)
#: A parameter whose standard error exceeds its value this many times is not determined by the data.
UNDETERMINED_RELATIVE_ERROR = 1.0
#: Fewer frequencies than this per parameter: the result warns.
POINTS_PER_PARAMETER = 2
#: The circuit tried instead of the default when the default's second arc is not determined.
ONE_ARC_CIRCUIT = "R0-p(R1,CPE1)"
ALLOWED_CIRCUIT = re.compile(r"^[A-Za-z0-9_,\-()\s]+$")
ELEMENT = re.compile(r"^([A-Za-z]+)_?\d*$")
#: Arcs of the electrodes (in a symmetric cell, two interfaces each): see assign().
INTERFACE_LABELS = frozenset({"grain boundary or interphase", "interphase", "electrode interface", "electrochemical reaction"})


class FitError(EchemdError):
    """The circuit cannot be fitted to the data (bad circuit string, too few points, no convergence)."""


@dataclass(frozen=True)
class Arc:
    block: str
    resistance_ohm: float
    capacitance_F: float
    apex_frequency_Hz: float
    assignment: str  # a hint, from the capacitance: see assignment_basis
    assignment_basis: str = ""
    asr_ohm_cm2: float | None = None  # R x A: the whole cell's
    capacitance_F_cm2: float | None = None
    asr_per_interface_ohm_cm2: float | None = None  # R x A / 2 for an electrode arc of a symmetric cell


@dataclass(frozen=True)
class CircuitFit:
    circuit: str
    parameters: dict[str, float]
    errors: dict[str, float]
    units: dict[str, str]
    initial_guess: dict[str, float]
    rms_relative_residual: float
    series_resistance_ohm: float
    arcs: list[Arc] = field(default_factory=list)
    area_cm2: float | None = None
    thickness_cm: float | None = None
    symmetric: bool = True
    warnings: list[str] = field(default_factory=list)
    excluded: dict | None = None  # points left out of the fit, and why
    requested_circuit: str | None = None  # when a smaller circuit was fitted instead (see note)
    note: str = ""

    @property
    def relative_errors(self) -> dict[str, float]:
        return {name: (abs(self.errors[name] / value) if value else math.inf) for name, value in self.parameters.items()}

    @property
    def undetermined(self) -> list[str]:
        """Parameters the data do not determine (relative standard error > 100 %, or none)."""
        return [name for name, rel in self.relative_errors.items() if not rel <= UNDETERMINED_RELATIVE_ERROR]

    def summary(self) -> dict:
        """JSON-ready result (as `echemd analyze eis` prints it)."""
        out = {
            "circuit": self.circuit,
            "parameters": self.parameters,
            "errors": self.errors,
            "relative_errors": {name: (rel if math.isfinite(rel) else None) for name, rel in self.relative_errors.items()},
            "units": self.units,
            "rms_relative_residual_percent": self.rms_relative_residual * 100,
            "arcs": [arc.__dict__ for arc in self.arcs],
            "warnings": self.warnings,
        }
        if self.excluded:
            out["excluded"] = self.excluded
        if self.requested_circuit:
            out["requested_circuit"], out["note"] = self.requested_circuit, self.note
        if self.area_cm2 is not None:
            total = self.series_resistance_ohm + sum(arc.resistance_ohm for arc in self.arcs)
            out["asr_ohm_cm2"] = {"series": self.series_resistance_ohm * self.area_cm2, "total": total * self.area_cm2,
                                  **{arc.block: arc.asr_ohm_cm2 for arc in self.arcs}}
            electrode_arcs = [arc for arc in self.arcs if arc.asr_per_interface_ohm_cm2 is not None]
            if self.symmetric and electrode_arcs:
                out["asr_per_interface_ohm_cm2"] = {
                    **{arc.block: arc.asr_per_interface_ohm_cm2 for arc in electrode_arcs},
                    "electrode_arcs": sum(arc.asr_per_interface_ohm_cm2 for arc in electrode_arcs),
                    "basis": "symmetric cell: each electrode arc holds both interfaces, so one interface is R x A / 2",
                }
        return out


# --- circuit structure -----------------------------------------------------------------------------
def _split_top(text: str, separator: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _element_kind(name: str) -> str:
    match = ELEMENT.match(name)
    if match is None or match.group(1) not in circuit_elements:
        raise FitError(f"unknown circuit element {name!r}; impedance.py knows {', '.join(sorted(k for k in circuit_elements if k not in 'sp'))}")
    return match.group(1)


def _elements_in(text: str) -> list[str]:
    """Element names in the order impedance.py numbers their parameters."""
    return [n for n in re.split(r"[-,()\s]+", text.replace("p(", "(")) if n]


# --- initial guesses ------------------------------------------------------------------------------
@dataclass
class _Spectrum:
    f: np.ndarray  # Hz, high to low
    z: np.ndarray

    @property
    def high_frequency_resistance(self) -> float:
        head = self.z.real[: max(3, len(self.z) // 10)]
        return float(max(head.min(), 0.0)) or float(abs(self.z.real[0]))

    def arcs(self) -> list[tuple[float, float]]:
        """(resistance, apex frequency) of each arc, high frequency first."""
        minus = -self.z.imag
        smooth = np.convolve(minus, np.ones(3) / 3, mode="same")
        found = []
        for k in range(1, len(smooth) - 1):
            if smooth[k] > 0 and smooth[k] >= smooth[k - 1] and smooth[k] > smooth[k + 1] and smooth[k] > 0.05 * smooth.max():
                left = k - 1
                while left > 0 and smooth[left - 1] < smooth[left]:
                    left -= 1
                right = k + 1
                while right < len(smooth) - 1 and smooth[right + 1] < smooth[right]:
                    right += 1
                width = self.z.real[right] - self.z.real[left]
                found.append((float(max(width, 2 * minus[k])), float(self.f[k])))
        return found

    def tail(self) -> tuple[float, float]:
        """(resistance, time constant) of the low-frequency tail beyond the last arc."""
        return float(max(abs(self.z[-1]) * 0.3, 1e-12)), float(1 / (2 * math.pi * self.f[-1]))


def initial_guess(circuit: str, frequency_Hz: np.ndarray, impedance_ohm: np.ndarray, order: tuple[int, ...] | None = None) -> list[float]:
    """Data-driven initial guess for every parameter of ``circuit`` (impedance.py's order).

    Arcs go to the parallel blocks high frequency first, or in ``order`` (a permutation: block i
    gets the order[i]-th arc).
    """
    high_to_low = np.argsort(frequency_Hz)[::-1]
    spectrum = _Spectrum(np.asarray(frequency_Hz)[high_to_low], np.asarray(impedance_ohm)[high_to_low])
    r_series = spectrum.high_frequency_resistance
    blocks = [part for part in _split_top(circuit, "-") if part.startswith("p(")]
    arcs = spectrum.arcs()
    total = max(float(spectrum.z.real.max()) - r_series, 1e-9)
    if len(arcs) > len(blocks):
        arcs = sorted(sorted(arcs, reverse=True)[: len(blocks)], key=lambda arc: -arc[1])
    missing = len(blocks) - len(arcs)
    if missing > 0:  # spread the unexplained resistance over log-spaced time constants
        rest = max(total - sum(r for r, _ in arcs), 0.05 * total) / missing
        spare = np.logspace(np.log10(spectrum.f[0]), np.log10(spectrum.f[-1]), missing + 2)[1:-1]
        arcs = sorted(arcs + [(rest, float(f)) for f in spare], key=lambda arc: -arc[1])
    tail_r, tail_tau = spectrum.tail()
    if order is not None:
        arcs = [arcs[i] for i in order]
    block_of = {}
    for block, (r, f_apex) in zip(blocks, arcs):
        for name in _elements_in(block):
            block_of[name] = (r, 1 / (2 * math.pi * f_apex))

    guess: list[float] = []
    series_r_used = False
    for name in _elements_in(circuit):
        kind = _element_kind(name)
        r_arc, tau = block_of.get(name, (None, None))
        in_block = r_arc is not None
        if kind == "R":
            if in_block:
                guess.append(r_arc)
            elif not series_r_used:
                guess.append(r_series)
                series_r_used = True
            else:
                guess.append(0.01 * total)
        elif kind == "C":
            guess.append(tau / r_arc if in_block else 1 / (2 * math.pi * spectrum.f[-1] * max(abs(spectrum.z.imag[-1]), 1e-12)))
        elif kind == "CPE":
            q = tau**CPE_ALPHA_GUESS / r_arc if in_block else 1 / (2 * math.pi * spectrum.f[-1] * max(abs(spectrum.z.imag[-1]), 1e-12))
            guess += [q, CPE_ALPHA_GUESS]
        elif kind == "L":
            guess.append(max(spectrum.z.imag[0], 0.0) / (2 * math.pi * spectrum.f[0]) or 1e-9)
        elif kind == "W":
            guess.append(max(abs(spectrum.z.imag[-1]), 1e-12) * math.sqrt(2 * math.pi * spectrum.f[-1]))
        elif kind in ("Wo", "Ws", "G", "K"):
            guess += [tail_r, tail_tau]
        else:
            raise FitError(f"no automatic initial guess for {kind} elements; use R, C, CPE, L, W, Wo, Ws, G or K")
    return guess


# --- fitting --------------------------------------------------------------------------------------
def _brug(q: float, alpha: float, r: float, r_series: float) -> float:
    r_parallel = r * r_series / (r + r_series) if r_series > 0 else r
    return q ** (1 / alpha) * r_parallel ** ((1 - alpha) / alpha)


def assign(capacitance_F: float, area_cm2: float | None = None, thickness_cm: float | None = None) -> tuple[str, str]:
    """What an arc probably is, from its capacitance, and the basis of that hint.

    Irvine, Sinclair and West's (1990) ranges are for capacitance over the cell constant, C t / A
    (F/cm): bulk ~1e-12, grain boundary 1e-11..1e-8, surface layer 1e-9..1e-7.  That is the right
    normalisation for what the electrolyte's volume does (bulk, grain boundaries: it needs the
    thickness); what happens at an electrode scales with its area, so electrode processes are told
    by C / A (F/cm2): electrode interface (double layer, charge transfer) 1e-7..5e-5, reactions
    above.  Under 1e-7 F/cm2: bulk below C t/A = 1e-11 F/cm, grain boundary below 1e-9, "grain
    boundary or interphase" from 1e-9 to 1e-8 (ISW's grain-boundary and surface-layer ranges
    overlap there: capacitance alone cannot tell), interphase above.  The basis gives both numbers."""
    areal = capacitance_F / area_cm2 if area_cm2 else capacitance_F
    unit = "F/cm2" if area_cm2 else "F (no area given)"
    if areal >= 1e-7:
        label = "electrode interface" if areal < 5e-5 else "electrochemical reaction"
        return label, f"C/A = {areal:.2g} {unit} (electrode interface 1e-7..5e-5, reaction above)"
    if not (area_cm2 and thickness_cm):
        return "bulk, grain boundary or interphase", f"C/A = {areal:.2g} {unit}; give the electrolyte thickness to tell them apart (by C t/A)"
    specific = capacitance_F * thickness_cm / area_cm2
    label = ("bulk" if specific < 1e-11 else "grain boundary" if specific < 1e-9 else
             "grain boundary or interphase" if specific < 1e-8 else "interphase")
    return label, f"C t/A = {specific:.2g} F/cm, C/A = {areal:.2g} F/cm2 (Irvine-Sinclair-West: bulk < 1e-11, grain boundary 1e-11..1e-8 F/cm)"


def check_circuit(circuit: str) -> None:
    """FitError unless ``circuit`` is a well-formed impedance.py circuit string of known elements."""
    if not circuit or not ALLOWED_CIRCUIT.match(circuit):
        raise FitError(f"bad circuit {circuit!r}: use elements joined by '-' (series) and p(a,b) (parallel), e.g. {DEFAULT_CIRCUIT}")
    depth = 0
    for ch in circuit:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            break
    if depth != 0:
        raise FitError(f"bad circuit {circuit!r}: its parentheses do not balance")
    for name in _elements_in(circuit):
        _element_kind(name)


def _bounds(circuit: str) -> tuple[list[float], list[float]]:
    """Physical bounds of every parameter, impedance.py's order."""
    lower, upper = [], []
    for name in _elements_in(circuit):
        kind = _element_kind(name)
        if kind == "CPE":
            lower += [0.0, CPE_ALPHA_BOUNDS[0]]
            upper += [math.inf, CPE_ALPHA_BOUNDS[1]]
        else:
            count = 2 if kind in ("Wo", "Ws", "G", "K") else 1
            lower += [0.0] * count
            upper += [math.inf] * count
    return lower, upper


def inductive_head(frequency_Hz: np.ndarray, impedance_ohm: np.ndarray) -> np.ndarray:
    """Mask of the highest frequencies whose imaginary part is positive (inductive), down to the first capacitive one."""
    order = np.argsort(frequency_Hz)[::-1]
    mask = np.zeros(len(frequency_Hz), dtype=bool)
    for k in order:
        if impedance_ohm[k].imag <= 0:
            break
        mask[k] = True
    return mask


def fit_circuit(frequency_Hz: np.ndarray, impedance_ohm: np.ndarray, circuit: str = DEFAULT_CIRCUIT, area_cm2: float | None = None,
                thickness_cm: float | None = None, symmetric: bool = True) -> CircuitFit:
    """Fit ``circuit`` (impedance.py syntax) to a spectrum; frequencies in Hz, impedances in Ohm.
    ``area_cm2``: electrode area; ``thickness_cm``: electrolyte thickness (both for the arcs'
    hints and area-specific values); ``symmetric``: both electrodes alike (Li|SE|Li), so an
    electrode arc holds two interfaces.

    Raises FitError when the circuit is malformed, when there are fewer frequencies than
    parameters, or when no start converges.  See the module's docstring for what else it does."""
    check_circuit(circuit)
    f = np.asarray(frequency_Hz, dtype=np.float64)
    z = np.asarray(impedance_ohm, dtype=np.complex128)
    keep = np.isfinite(f) & np.isfinite(z) & (f > 0)
    f, z = f[keep], z[keep]
    excluded = None
    if not any(_element_kind(name) == "L" for name in _elements_in(circuit)):
        inductive = inductive_head(f, z)
        if inductive.any():
            excluded = {"points": int(inductive.sum()), "above_Hz": float(f[~inductive].max()) if (~inductive).any() else None,
                        "reason": "inductive (Im Z > 0: cable and instrument inductance); the circuit has no L element"}
            f, z = f[~inductive], z[~inductive]
    geometry = (area_cm2, thickness_cm, symmetric)
    fit = _fit(f, z, circuit, geometry, excluded)
    if circuit == DEFAULT_CIRCUIT and any(name in fit.undetermined for name in ("R2", "CPE2_0", "CPE2_1")):
        try:
            smaller = _fit(f, z, ONE_ARC_CIRCUIT, geometry, excluded)
        except FitError:
            return fit
        if not smaller.undetermined:
            note = (f"the second arc of {circuit} is not determined by these data ({', '.join(fit.undetermined)}); "
                    f"fitted {ONE_ARC_CIRCUIT} instead")
            return CircuitFit(**{**smaller.__dict__, "requested_circuit": circuit, "note": note,
                                 "warnings": smaller.warnings + [note]})
    return fit


def _fit(f: np.ndarray, z: np.ndarray, circuit: str, geometry: tuple[float | None, float | None, bool], excluded: dict | None) -> CircuitFit:
    blocks = sum(part.startswith("p(") for part in _split_top(circuit, "-"))
    orders = list(itertools.permutations(range(blocks)))[:MAX_STARTS] if blocks > 1 else [None]
    lower, upper = _bounds(circuit)
    best, failures = None, []
    for order in orders:  # the same arcs, taken by the blocks in every order: keep the best fit
        guess = initial_guess(circuit, f, z, order)
        if len(f) < len(guess):
            raise FitError(f"{len(f)} frequencies cannot determine the {len(guess)} parameters of {circuit}")
        guess = [min(max(g, lo + 1e-12 * (abs(g) or 1)), hi) for g, lo, hi in zip(guess, lower, upper)]
        model = CustomCircuit(circuit, initial_guess=guess)
        try:
            with np.errstate(all="ignore"):
                model.fit(f, z, bounds=(lower, upper))
                cost = float(np.sum(np.abs(z - model.predict(f)) ** 2))  # what impedance.py minimizes
        except Exception as exc:  # noqa: BLE001 - any numerical failure of one start: try the next
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        if not math.isfinite(cost):
            failures.append("the fit diverged")
            continue
        if best is None or cost < best[0] * (1 - BETTER_BY):
            best = (cost, model, guess)
    if best is None:
        raise FitError(f"the fit of {circuit} did not converge: {failures[0]}")
    _, model, guess = best
    names, units = model.get_param_names()
    values = [float(v) for v in model.parameters_]
    errors = [float(e) for e in model.conf_] if model.conf_ is not None else [math.nan] * len(values)
    parameters = dict(zip(names, values))
    predicted = model.predict(f)
    rms = float(np.sqrt(np.mean(np.abs((z - predicted) / np.abs(z)) ** 2)))
    series = next((parameters[n] for n in _series_resistors(circuit)), 0.0)
    with np.errstate(all="ignore"):
        arcs = [_arc(block, parameters, series, geometry) for block in _split_top(circuit, "-") if block.startswith("p(")]
    area_cm2, thickness_cm, symmetric = geometry
    fit = CircuitFit(circuit, parameters, dict(zip(names, errors)), dict(zip(names, units)), dict(zip(names, guess)),
                     rms, series, [arc for arc in arcs if arc is not None], area_cm2, thickness_cm, symmetric, excluded=excluded)
    warnings = []
    if excluded:
        warnings.append(f"left out {excluded['points']} inductive high-frequency point(s) (Im Z > 0): the circuit has no L element")
    if len(f) < POINTS_PER_PARAMETER * len(values):
        warnings.append(f"{len(f)} frequencies for {len(values)} parameters: fewer than {POINTS_PER_PARAMETER} per parameter")
    for name in fit.undetermined:
        rel = fit.relative_errors[name]
        warnings.append(f"{name} is not determined by these data (standard error {'unknown' if not math.isfinite(rel) else f'{rel:.0%} of its value'})")
    fit.warnings.extend(warnings)
    return fit


def _series_resistors(circuit: str) -> list[str]:
    return [part for part in _split_top(circuit, "-") if not part.startswith("p(") and _element_kind(part) == "R"]


def _arc(block: str, parameters: dict[str, float], series_ohm: float, geometry: tuple[float | None, float | None, bool]) -> Arc | None:
    """The arc of a parallel block, or None when it has no R and C/CPE or its numbers are not finite."""
    names = _elements_in(block)
    resistors = [n for n in names if _element_kind(n) == "R"]
    capacitors = [n for n in names if _element_kind(n) in ("C", "CPE")]
    if not resistors or not capacitors:
        return None
    r = parameters[resistors[0]]
    c_name = capacitors[0]
    try:
        c = parameters[c_name] if _element_kind(c_name) == "C" else _brug(parameters[f"{c_name}_0"], parameters[f"{c_name}_1"], r, series_ohm)
        apex = 1 / (2 * math.pi * r * c)
    except (ZeroDivisionError, OverflowError, ValueError):
        return None
    if not (math.isfinite(c) and math.isfinite(apex) and c > 0):
        return None
    area_cm2, thickness_cm, symmetric = geometry
    label, basis = assign(c, area_cm2, thickness_cm)
    asr = r * area_cm2 if area_cm2 else None
    per_interface = asr / 2 if asr is not None and symmetric and label in INTERFACE_LABELS else None
    return Arc(block, r, c, apex, label, basis, asr, c / area_cm2 if area_cm2 else None, per_interface)
