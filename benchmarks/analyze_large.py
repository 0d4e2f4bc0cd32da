"""`echemd analyze ccd` on a long run file and on the same rows as CSV: seconds and peak memory per
million rows, against a raw read of the same three columns (h5py; pandas for the CSV) in the same run.

The file: a run file's layout (data/time_s, current_A, voltage_V; parameters with the area) holding
ROWS samples of long-term plating/stripping at 1 s (0.8 mA/cm2, 0.4 mAh/cm2 per half cycle: one
step every 1,800 rows), noise 0.1 mV.  Each figure is one fresh process; peak memory is the
process's maximum resident set (ru_maxrss).  Prints the figures and their ratios.

    python benchmarks/analyze_large.py [--rows 10000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

AREA_CM2 = np.pi * 0.1**2
CHILD = """
import resource, sys, time, runpy
start = time.perf_counter()
sys.argv = sys.argv[1:]
code = 0
try:
    runpy.run_module(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
print(f"BENCH {time.perf_counter() - start:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} {code}", file=sys.stderr)
"""
RAW_READ = """
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    columns = [f["data"][name][:] for name in ("time_s", "current_A", "voltage_V")]
print(sum(len(c) for c in columns))
"""
RAW_CSV_READ = """
import sys, pandas
print(len(pandas.read_csv(sys.argv[1], engine="c")))
"""


def write_csv(run_file: Path, path: Path) -> None:
    """The run file's three columns as a CSV (time_s,current_A,voltage_V), a million rows at a time."""
    with h5py.File(run_file, "r") as f, open(path, "w") as out:
        out.write("time_s,current_A,voltage_V\n")
        n = len(f["data/time_s"])
        for start in range(0, n, 1_000_000):
            stop = min(n, start + 1_000_000)
            np.savetxt(out, np.column_stack([f["data"][name][start:stop] for name in ("time_s", "current_A", "voltage_V")]),
                       delimiter=",", fmt="%.10g")


def write_run_file(path: Path, rows: int) -> None:
    """A long plating/stripping record in the run-file layout, written a million rows at a time."""
    half_cycle = 1800
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        f.attrs["protocol"] = "cycling"
        f.attrs["parameters"] = json.dumps({"area_cm2": AREA_CM2})
        data = f.create_group("data")
        columns = {name: data.create_dataset(name, shape=(rows,), dtype="<f8", chunks=(65536,)) for name in ("time_s", "current_A", "voltage_V")}
        for start in range(0, rows, 1_000_000):
            k = np.arange(start, min(start + 1_000_000, rows))
            plating = (k // half_cycle) % 2 == 0
            current = np.where(plating, -0.8e-3, 0.8e-3) * AREA_CM2
            columns["time_s"][k[0]:k[-1] + 1] = k + 1.0
            columns["current_A"][k[0]:k[-1] + 1] = current
            columns["voltage_V"][k[0]:k[-1] + 1] = np.sign(current) * 0.030 + rng.normal(0, 1e-4, len(k))


def measure(*command: str) -> tuple[float, float]:
    """(seconds, peak MB) of a fresh Python process running module ``command[0]`` with its arguments."""
    done = subprocess.run([sys.executable, "-c", CHILD, *command], capture_output=True, text=True)
    line = next(line for line in done.stderr.splitlines() if line.startswith("BENCH "))
    seconds, peak_mb, code = line.split()[1:]
    assert code == "0", done.stderr[-2000:]
    return float(seconds), float(peak_mb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "long.h5"
        start = time.perf_counter()
        write_run_file(path, rows)
        print(f"{rows:,} rows written in {time.perf_counter() - start:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")
        script = Path(folder) / "raw_read.py"
        script.write_text(RAW_READ)
        baseline_s, baseline_mb = _raw(script, path)
        analyze_s, analyze_mb = measure("echemd.daemon.cli", "analyze", "ccd", str(path), "--plating-sign", "negative")
        idle_s, idle_mb = measure("echemd.daemon.cli", "--version")
        csv_path = Path(folder) / "long.csv"
        write_csv(path, csv_path)
        csv_script = Path(folder) / "raw_csv_read.py"
        csv_script.write_text(RAW_CSV_READ)
        csv_baseline_s, csv_baseline_mb = _raw(csv_script, csv_path)
        csv_s, csv_mb = measure("echemd.daemon.cli", "analyze", "ccd", str(csv_path), "--plating-sign", "negative", "--area-cm2", str(AREA_CM2))
        csv_size_mb = csv_path.stat().st_size / 1e6
    per_m = rows / 1e6
    print(f"analyze ccd: {analyze_s:.2f} s ({analyze_s / per_m:.2f} s per million rows), peak {analyze_mb:.0f} MB "
          f"(the CLI alone: {idle_s:.2f} s, {idle_mb:.0f} MB)")
    print(f"baseline, h5py reading the 3 columns whole: {baseline_s:.2f} s, peak {baseline_mb:.0f} MB")
    print(f"ratios: time {analyze_s / baseline_s:.1f}x the raw read; memory {analyze_mb / baseline_mb:.2f}x")
    print(f"the same rows as CSV ({csv_size_mb:.0f} MB): analyze ccd {csv_s:.2f} s ({csv_s / per_m:.2f} s per million rows), "
          f"peak {csv_mb:.0f} MB; baseline, pandas reading it whole: {csv_baseline_s:.2f} s, peak {csv_baseline_mb:.0f} MB "
          f"(time {csv_s / csv_baseline_s:.1f}x, memory {csv_mb / csv_baseline_mb:.2f}x)")


def _raw(script: Path, path: Path) -> tuple[float, float]:
    """The raw read in a fresh process: (seconds, peak MB)."""
    done = subprocess.run([sys.executable, "-c", "import resource, runpy, sys, time; start = time.perf_counter(); sys.argv = sys.argv[1:]; "
                           "runpy.run_path(sys.argv[0], run_name='__main__'); "
                           "print(f'BENCH {time.perf_counter() - start:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} 0', "
                           "file=sys.stderr)", str(script), str(path)], capture_output=True, text=True)
    line = next(line for line in done.stderr.splitlines() if line.startswith("BENCH "))
    return float(line.split()[1]), float(line.split()[2])


if __name__ == "__main__":
    main()
