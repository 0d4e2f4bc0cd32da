"""Shared fixtures: a daemon with the simulated lab on loopback, and a client for it."""

from __future__ import annotations

import pytest

from echemd.config import DaemonConfig, load_default_config
from echemd.daemon.client import Client
from echemd.daemon.service import Daemon


def lab_config(tmp_path, **changes) -> DaemonConfig:
    """The embedded simulated lab on free loopback ports, writing into tmp_path, its instruments in
    the test's own process (``instrument_hosts = 0``) so that a test can reach a simulated cell
    (``daemon.runners[name].instrument``); tests of the hosts ask for them (``instrument_hosts=2``),
    and every `echemd serve` a test starts runs them."""
    update = {"control_endpoint": "tcp://127.0.0.1:*", "publish_endpoint": "tcp://127.0.0.1:*", "data_dir": tmp_path / "runs",
              "instrument_hosts": 0}
    return load_default_config().model_copy(update={**update, **changes})


@pytest.fixture
def lab(tmp_path):
    """A factory of lab configurations in tmp_path: ``lab(**changes)``."""
    return lambda **changes: lab_config(tmp_path, **changes)


@pytest.fixture
def daemon(lab):
    running = Daemon(lab())
    yield running
    running.close()


@pytest.fixture
def client(daemon):
    with Client(daemon.control.endpoint, timeout_s=10) as connected:
        yield connected

