"""A daemon's data folder served by a real Tiled server (`tiled serve config`, on loopback, with an
API key): run files read column by column over HTTP by Tiled's own client, a running run as far as
it has been written, a finished one whole (after its compression at the end)."""

import os
import secrets
import socket
import subprocess
import sys
import time

import h5py
import httpx
import numpy as np
import pytest
from tiled.client import from_uri

from echemd.daemon.client import Client
from echemd.daemon.service import Daemon
from helpers import until

API_KEY = secrets.token_hex(16)  # Tiled takes letters and digits only


@pytest.fixture
def tiled_server(tmp_path):
    """``serve(folder)`` starts Tiled's server over a data folder, as docs/data-format.md says a lab
    does, and returns the URI of it once it answers."""
    servers = []

    def serve(folder, environment={"TILED_HDF5_SWMR_DEFAULT": "1"}):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = tmp_path / "tiled.yml"
        config.write_text(f"trees:\n  - path: /\n    tree: echemd.daemon.tiled_tree:runs\n    args: {{directory: '{folder}'}}\n"
                          f"authentication:\n  single_user_api_key: {API_KEY}\n")
        servers.append(subprocess.Popen([sys.executable, "-m", "tiled", "serve", "config", str(config), "--port", str(port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **environment}))
        uri, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 90
        while True:
            assert servers[-1].poll() is None, servers[-1].stderr.read().decode()[-3000:]
            try:
                httpx.get(f"{uri}/api/v1/", timeout=1.0)  # (no retries, unlike Tiled's client: a server that died is seen at once)
                return uri
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the Tiled server did not answer"
                time.sleep(0.2)

    yield serve
    for server in servers:
        server.terminate()
        server.wait(10)


def column(uri: str, run_id: str, name: str) -> np.ndarray:
    """A run's column as far as it is written now, as the docs say to read a running run: looked up
    afresh, and read to the length it had then (it grows meanwhile)."""
    node = from_uri(uri, api_key=API_KEY)[run_id]["data"][name]
    return node[: node.shape[0]]


def test_a_running_and_a_finished_run_are_read_column_by_column_over_http(lab, tiled_server):
    config = lab()
    daemon = Daemon(config, sim_speed=20.0)
    try:
        with Client(daemon.control.endpoint) as client:
            run_id = client.submit("plate-until-short", "sim-pstat-1", diameter_mm=2.0, current_mA_cm2=0.5, max_hours=0.2,
                                   sample_interval_s=0.05)
            until(lambda: client.status(run_id)["n_samples"] >= 200)
            uri = tiled_server(config.data_dir)
            assert run_id in list(from_uri(uri, api_key=API_KEY))
            early = {name: column(uri, run_id, name) for name in ("time_s", "current_A", "voltage_V")}
            assert min(map(len, early.values())) >= 200  # (each as long as it was when read)
            until(lambda: len(column(uri, run_id, "time_s")) > len(early["time_s"]) + 100, timeout_s=30)  # it grows as written
            assert client.status(run_id)["status"] == "running"
            assert np.all(np.diff(early["time_s"]) > 0) and np.isfinite(early["voltage_V"]).all()
            client.abort(run_id)
            record = client.wait(run_id, timeout_s=30)
        until(lambda: from_uri(uri, api_key=API_KEY)[run_id].metadata.get("status") == "aborted", timeout_s=30)
        finished = from_uri(uri, api_key=API_KEY)[run_id]
        with h5py.File(record["file"], "r") as f:
            for name in ("time_s", "current_A", "voltage_V"):
                whole = finished["data"][name].read()
                assert np.array_equal(whole, f["data"][name][:]) and len(whole) == record["n_samples"]
                assert np.array_equal(whole[: len(early[name])], early[name])  # what was read live was final
            assert f["data/voltage_V"].compression == "gzip"  # the finished run was read after its compression
    finally:
        daemon.close()


def test_a_name_that_is_no_run_is_not_found(tmp_path, tiled_server):
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a run")
    client = from_uri(tiled_server(folder), api_key=API_KEY)
    assert list(client) == []
    with pytest.raises(KeyError):
        client["notes"]


def test_a_server_that_cannot_open_files_being_written_refuses_to_start(tmp_path, tiled_server):
    with pytest.raises(AssertionError, match="TILED_HDF5_SWMR_DEFAULT=1"):
        tiled_server(tmp_path, environment={"TILED_HDF5_SWMR_DEFAULT": "0"})
