"""Alerts: a configured command runs on a short and on a run's end, with the run in its environment."""

import json
import sys
import time

from conftest import lab_config
from echemd.config import DaemonConfig
from echemd.daemon.client import Client
from echemd.daemon.service import Daemon

#: Appends its ECHEMD_* environment as one JSON line to the file given as its argument.
RECORDER = "import json, os, sys; open(sys.argv[1], 'a').write(json.dumps({k: v for k, v in os.environ.items() if k.startswith('ECHEMD_')}) + '\\n')"


def test_a_short_and_the_end_of_the_run_raise_the_configured_alerts(tmp_path):
    log = tmp_path / "alerts.jsonl"
    alerts = [{"on": ["short"], "command": [sys.executable, "-c", RECORDER, str(log)]},
              {"on": ["completed", "failed"], "command": [sys.executable, "-c", RECORDER, str(log)]},
              {"on": ["failed"], "command": ["/no/such/pager"]}]  # cannot run: logged, nothing else happens
    base = lab_config(tmp_path)
    config = DaemonConfig.model_validate({**base.model_dump(), "alerts": alerts})
    daemon = Daemon(config)
    try:
        with Client(daemon.control.endpoint) as client:
            record = client.wait(client.submit("ccd", "sim-pstat-1", diameter_mm=2.0, metadata={"sample": "LPSCl-07"}), timeout_s=60)
            deadline = time.monotonic() + 20
            while len(log.read_text().splitlines() if log.exists() else []) < 2:
                assert time.monotonic() < deadline, "the alert commands did not run"
                time.sleep(0.05)
    finally:
        daemon.close()
    raised = [json.loads(line) for line in log.read_text().splitlines()]
    by_alert = {entry["ECHEMD_ALERT"]: entry for entry in raised}
    assert set(by_alert) == {"short", "completed"}
    short = by_alert["short"]
    assert short["ECHEMD_RUN_ID"] == record["run_id"] and short["ECHEMD_PROTOCOL"] == "ccd" and short["ECHEMD_INSTRUMENT"] == "sim-pstat-1"
    assert short["ECHEMD_MESSAGE"].startswith("short (") and short["ECHEMD_SAMPLE"] == "LPSCl-07" and "ECHEMD_RESULT" not in short
    ended = by_alert["completed"]
    assert ended["ECHEMD_STATUS"] == "completed" and json.loads(ended["ECHEMD_RESULT"])["ccd_mA_cm2"] == 1.0
    assert ended["ECHEMD_FILE"] == record["file"]


def test_a_run_found_interrupted_at_start_raises_its_alert(tmp_path):
    """A power cut (the daemon and its hosts killed): the next daemon recovers the run's file and
    raises 'interrupted' for it, with the run in the environment."""
    from test_crash import crash, serve

    process, client = serve(tmp_path)
    run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0, metadata={"sample": "LPSCl-09"})
    deadline = time.monotonic() + 20
    while client.status(run_id)["n_samples"] == 0:
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.05)
    time.sleep(1.0)  # (flushed)
    crash(process)
    client.close()
    log = tmp_path / "alerts.jsonl"
    alerts = [{"on": ["interrupted"], "command": [sys.executable, "-c", RECORDER, str(log)]}]
    config = DaemonConfig.model_validate({**lab_config(tmp_path, data_dir=tmp_path / "runs").model_dump(), "alerts": alerts})
    daemon = Daemon(config)
    try:
        deadline = time.monotonic() + 20
        while not log.exists() or not log.read_text().strip():
            assert time.monotonic() < deadline, "no interrupted alert"
            time.sleep(0.05)
    finally:
        daemon.close()
    raised = json.loads(log.read_text().splitlines()[0])
    assert raised["ECHEMD_ALERT"] == "interrupted" and raised["ECHEMD_RUN_ID"] == run_id and raised["ECHEMD_STATUS"] == "interrupted"
    assert raised["ECHEMD_SAMPLE"] == "LPSCl-09" and raised["ECHEMD_PROTOCOL"] == "ccd" and "previous daemon" in raised["ECHEMD_MESSAGE"]
