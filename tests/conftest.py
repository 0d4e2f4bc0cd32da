"""Shared fixtures: a daemon with the simulated lab on loopback, and a client for it."""

from __future__ import annotations

import pytest

from echemd.config import DaemonConfig, load_default_config
from echemd.daemon.client import Client
from echemd.daemon.service import Daemon


def lab_config(tmp_path, **changes) -> DaemonConfig:
    """The embedded simulated lab on free loopback ports, writing into tmp_path."""
    update = {"control_endpoint": "tcp://127.0.0.1:*", "publish_endpoint": "tcp://127.0.0.1:*", "data_dir": tmp_path / "runs"}
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

