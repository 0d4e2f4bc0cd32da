"""Every script in examples/ runs against a daemon with the simulated lab."""

import subprocess
import sys
from pathlib import Path

import pytest

from echemd.daemon.client import Client

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def served(tmp_path):
    control, publish = f"ipc://{tmp_path}/control", f"ipc://{tmp_path}/publish"
    process = subprocess.Popen([sys.executable, "-m", "echemd.daemon.cli", "serve", "--control", control, "--publish", publish,
                                "--data-dir", str(tmp_path / "runs"), "--sim-speed", "max"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with Client(control, timeout_s=20) as client:
        client.ping()
    yield control
    process.terminate()
    process.wait(timeout=30)


def example(name, *args, cwd=None):
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=180, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_submit_ccd_and_wait(served):
    out = example("submit_ccd_and_wait.py", "--endpoint", served)
    assert '"status": "completed"' in out and '"ccd_mA_cm2": 1.0' in out


def test_live_plot(served, tmp_path):
    with Client(served) as client:
        run_id = client.submit("ccd", "sim-pstat-2", diameter_mm=2.0)
    out = example("live_plot.py", run_id, "--endpoint", served, "-o", str(tmp_path / "live.png"))
    assert "samples streamed" in out and (tmp_path / "live.png").read_bytes()[:4] == b"\x89PNG"


def test_eis_batch(served):
    out = example("eis_batch.py", "--endpoint", served, "--labels", "25C", "40C")
    lines = out.strip().splitlines()
    assert len(lines) == 4 and all("KK ok" in line for line in lines)


def test_watch_daemons(served):
    out = example("watch_daemons.py", served, "--rounds", "1")
    assert "sim-pstat-1" in out and "sim-smu-1" in out


def test_bluesky_live(served):
    out = example("bluesky_live.py", "--endpoint", served)
    lines = out.strip().splitlines()
    assert lines[0].startswith("start  plate-until-short on sim-pstat-1") and "sample LPSCl-07" in lines[0]
    assert any(line.startswith("events") for line in lines) and lines[-2].startswith("stop   success after 180 events")
