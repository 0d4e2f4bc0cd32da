"""Helpers for the benchmark scripts: a daemon on the simulated lab, medians, printing."""

from __future__ import annotations

import statistics
import tempfile
from contextlib import contextmanager
from pathlib import Path

from echemd.config import load_default_config
from echemd.daemon.client import Client
from echemd.daemon.service import Daemon


@contextmanager
def simulated_daemon(**changes):
    """A daemon with the embedded simulated lab on free loopback ports, run files in a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        config = load_default_config().model_copy(update={
            "control_endpoint": "tcp://127.0.0.1:*", "publish_endpoint": "tcp://127.0.0.1:*", "data_dir": Path(folder), **changes,
        })
        daemon = Daemon(config)
        try:
            with Client(daemon.control.endpoint) as client:
                yield daemon, client
        finally:
            daemon.close()


def median(values) -> float:
    return statistics.median(values)


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]
