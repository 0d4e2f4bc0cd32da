"""Kills inside every file transition (creation, writing, closing, compression, start-up recovery):
a seeded sample of benchmarks/crash_points.py's kill points (the script checks all of them)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "crash_points.py"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks a child per kill")
def test_a_kill_at_any_moment_of_a_run_files_life_leaves_it_readable_and_recoverable():
    done = subprocess.run([sys.executable, str(SCRIPT), "--sample", "120", "--seed", "20261202"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    checked = {line.split(":")[0]: int(line.split(", ")[1].split()[0]) for line in done.stdout.splitlines() if "kill points" in line}
    assert set(checked) == {"run", "run+compress", "recovery", "recovery+compress"} and sum(checked.values()) == 120
