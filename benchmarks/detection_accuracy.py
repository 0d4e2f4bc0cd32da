"""Short-detection accuracy on a seeded corpus of synthetic traces with known truth (short_corpus.py).

For echemd's detector (the same monitor and verdict as `echemd analyze ccd` and the live ccd
protocol, default criterion) and for a naive baseline (per step: running maximum of |V| minus the
present |V| >= 2 mV, no smoothing, no settle time), prints per class and overall: false positives (a
short reported in a trace without one, or before the onset), false negatives (a short never
reported), detection delay after the onset (median, worst) and, for echemd, whether the CCD verdict
names the right cycle.

    python benchmarks/detection_accuracy.py [--count 336] [--seed 2026] [--set NAME=VALUE ...]

``--set`` changes a field of the criterion (e.g. ``--set confirm_s=5``), to see what each buys.

Targets: 0 false positives, 0 false negatives, median delay <= 30 s, worst <= 300 s.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import numpy as np

from short_corpus import CLASSES, Trace, corpus

from echemd.protocols.analysis.records import analyze_ccd, constant_current_steps
from echemd.protocols.analysis.shorts import ShortDetection

NAIVE_THRESHOLD_V = 2e-3


def echemd_detector(criterion: ShortDetection):
    def detect(trace: Trace) -> tuple[float | None, float | None]:
        """(detection time s or None, CCD mA/cm2 or None)."""
        result = analyze_ccd(trace.time_s, trace.current_A, trace.voltage_V, trace.area_cm2, criterion, plating_sign=-1)
        return result["short_detected_at_s"], result["ccd_mA_cm2"]
    return detect


def naive_detector(trace: Trace) -> tuple[float | None, None]:
    for step in constant_current_steps(trace.current_A):
        magnitude = np.abs(trace.voltage_V[step])
        drop = np.maximum.accumulate(magnitude) - magnitude
        hits = np.flatnonzero(drop >= NAIVE_THRESHOLD_V)
        if hits.size:
            return float(trace.time_s[step][hits[0]]), None
    return None, None


def plating_density_of_cycle(trace: Trace, cycle: int | None) -> float | None:
    if cycle is None:
        return None
    densities = []
    for step in constant_current_steps(trace.current_A):
        if np.median(trace.current_A[step]) < 0:
            densities.append(round(float(-np.median(trace.current_A[step])) / trace.area_cm2 * 1e3, 6))
    return densities[cycle - 1]


def judge(traces: list[Trace], detector) -> dict:
    rows: dict[str, dict] = defaultdict(lambda: {"n": 0, "fp": 0, "fn": 0, "delays": [], "verdict_ok": 0})
    for trace in traces:
        detected_s, ccd = detector(trace)
        for key in (trace.kind, "all"):
            row = rows[key]
            row["n"] += 1
            if trace.short_onset_s is None:
                row["fp"] += detected_s is not None
            elif detected_s is None:
                row["fn"] += 1
            elif detected_s < trace.short_onset_s:
                row["fp"] += 1
            else:
                row["delays"].append(detected_s - trace.short_onset_s)
                row["verdict_ok"] += ccd == plating_density_of_cycle(trace, trace.short_cycle)
    return rows


def report(name: str, rows: dict, verdicts: bool) -> None:
    print(f"\n{name}")
    print(f"{'class':<14}{'traces':>7}{'false +':>9}{'false -':>9}{'median delay s':>16}{'worst delay s':>15}" + ("  right CCD" if verdicts else ""))
    for key in (*CLASSES, "all"):
        row = rows.get(key)
        if row is None:
            continue
        delays = row["delays"]
        median = f"{statistics.median(delays):.1f}" if delays else "-"
        worst = f"{max(delays):.1f}" if delays else "-"
        ok = f"  {row['verdict_ok']}/{len(delays)}" if verdicts and delays else ""
        print(f"{key:<14}{row['n']:>7}{row['fp']:>9}{row['fn']:>9}{median:>16}{worst:>15}{ok}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=336, help="traces in the corpus (the classes in turn)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a criterion field to change")
    parser.add_argument("--no-baseline", action="store_true", help="judge echemd's detector only")
    args = parser.parse_args()
    criterion = ShortDetection(**dict(item.split("=", 1) for item in args.set))
    started = time.perf_counter()
    traces = corpus(args.count, args.seed)
    samples = sum(t.time_s.size for t in traces)
    print(f"corpus: {len(traces)} traces, {samples:,} samples, {len(CLASSES)} classes, generated in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    ours = judge(traces, echemd_detector(criterion))
    elapsed = time.perf_counter() - started
    changed = ", ".join(args.set) or "default criterion"
    report(f"echemd ({changed}; {samples / elapsed / 1e6:.2f} M samples/s)", ours, verdicts=True)
    if not args.no_baseline:
        report(f"naive baseline (running max - |V| >= {NAIVE_THRESHOLD_V * 1e3:g} mV per step)", judge(traces, naive_detector), verdicts=False)
    total = ours["all"]
    delays = total["delays"]
    met = total["fp"] == 0 and total["fn"] == 0 and delays and statistics.median(delays) <= 30 and max(delays) <= 300
    print(f"\ntargets (0 FP, 0 FN, median <= 30 s, worst <= 300 s): {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
