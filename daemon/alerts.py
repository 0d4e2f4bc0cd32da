"""Alerts: commands the daemon runs when something a lab must hear about happens to a run (a short
found, a run failed), with the run in their environment (see AlertConfig in the configuration).

Each command runs in its own background thread, without a shell: a slow, hanging or failing
command never holds up a run or the daemon; what went wrong is logged.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from echemd.config.models import AlertConfig

log = logging.getLogger(__name__)


class Alerts:
    def __init__(self, configs: Sequence[AlertConfig]) -> None:
        self.configs = list(configs)
        self._threads: list[threading.Thread] = []

    def raise_alert(self, trigger: str, record: Mapping[str, Any], message: str = "", result: dict[str, Any] | None = None) -> None:
        """Run every command configured for ``trigger`` (an event kind or a final status) of the run
        ``record`` (as the control API reports it: run_id, protocol, instrument, status, metadata, file)."""
        chosen = [config for config in self.configs if trigger in config.on]
        if not chosen:
            return
        environment = {
            **os.environ,
            "ECHEMD_ALERT": trigger,
            "ECHEMD_RUN_ID": str(record["run_id"]),
            "ECHEMD_PROTOCOL": str(record.get("protocol", "")),
            "ECHEMD_INSTRUMENT": str(record.get("instrument", "")),
            "ECHEMD_STATUS": str(record.get("status", "")),
            "ECHEMD_MESSAGE": message,
            "ECHEMD_SAMPLE": str((record.get("metadata") or {}).get("sample", "")),
            "ECHEMD_FILE": str(record.get("file", "")),
        }
        if result is not None:
            environment["ECHEMD_RESULT"] = json.dumps(result)
        for config in chosen:
            thread = threading.Thread(target=_run, args=(config, environment), name=f"echemd-alert-{trigger}", daemon=True)
            thread.start()
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def wait(self, timeout_s: float = 5.0) -> None:
        """Give the commands still running up to ``timeout_s`` to end (at daemon shutdown)."""
        for thread in list(self._threads):
            thread.join(timeout_s)


def _run(config: AlertConfig, environment: dict[str, str]) -> None:
    what = f"alert {environment['ECHEMD_ALERT']} of run {environment['ECHEMD_RUN_ID']}: {' '.join(config.command)}"
    try:
        done = subprocess.run(config.command, env=environment, capture_output=True, text=True, timeout=config.timeout_s)
    except (OSError, subprocess.SubprocessError) as exc:
        log.error("%s could not run: %s", what, exc)
        return
    if done.returncode != 0:
        log.error("%s exited %d: %s", what, done.returncode, done.stderr.strip()[-500:])
    else:
        log.info("%s done", what)
