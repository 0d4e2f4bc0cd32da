"""A data folder on a disk that fills mid-run: a real size-limited tmpfs, mounted in a private
mount namespace (``unshare -rm``); skipped where the machine does not allow one."""

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def can_mount_tmpfs(tmp_path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        done = subprocess.run(["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def test_a_disk_that_fills_fails_the_run_safely_leaks_nothing_and_the_end_is_written_when_space_returns(tmp_path):
    if not can_mount_tmpfs(tmp_path):
        pytest.skip("no private tmpfs here (unshare -rm / mount not permitted)")
    done = subprocess.run(["unshare", "-rm", sys.executable, str(HERE / "full_disk_scenario.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=240, cwd=HERE)
    if done.returncode == 77:
        pytest.skip("mounting a tmpfs failed inside the namespace")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert "every check held" in done.stdout
