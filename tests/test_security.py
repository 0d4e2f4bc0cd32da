"""CURVE on both sockets: allow-listed clients work, unknown keys and plaintext get nothing."""

import os
import stat
import subprocess
import sys
import threading

import pytest
import zmq

from echemd.config import ConfigError, load_default_config
from echemd.config.loader import parse_config
from echemd.daemon import hosts
from echemd.daemon.client import Client, Subscription
from echemd.daemon.security import ClientKeys, create_keys
from echemd.daemon.service import Daemon


@pytest.fixture
def secured(tmp_path):
    daemon, alice, mallory = secured_daemon(tmp_path)
    yield daemon, alice, mallory
    daemon.close()


def secured_daemon(tmp_path, **changes):
    """A daemon on the simulated lab with a [security] table: (daemon, alice's keys (allowed), mallory's (not))."""
    keys = tmp_path / "keys"
    create_keys(keys, "server")
    allowed = keys / "allowed"
    _, alice_secret = create_keys(keys / "alice", "alice")
    allowed.mkdir()
    (allowed / "alice.key").write_bytes((keys / "alice" / "alice.key").read_bytes())
    _, mallory_secret = create_keys(keys / "mallory", "mallory")
    config = load_default_config().model_copy(update={
        "control_endpoint": "tcp://127.0.0.1:*", "publish_endpoint": "tcp://127.0.0.1:*", "data_dir": tmp_path / "runs", **changes,
    })
    config = config.model_validate({**config.model_dump(), "security": {"server_secret_key": str(keys / "server.key_secret"), "authorized_clients": str(allowed)}})
    return Daemon(config), ClientKeys.load(keys / "server.key", alice_secret), ClientKeys.load(keys / "server.key", mallory_secret)


def test_the_allow_list_is_read_at_every_connection_without_a_restart(secured, tmp_path):
    daemon, alice, mallory = secured
    allowed = tmp_path / "keys" / "allowed"
    (allowed / "mallory.key").write_bytes((tmp_path / "keys" / "mallory" / "mallory.key").read_bytes())  # admitted
    with Client(daemon.control.endpoint, timeout_s=5.0, keys=mallory) as client:
        assert client.ping()["version"]
    (allowed / "alice.key").unlink()  # revoked: her next connection gets nothing
    with Client(daemon.control.endpoint, timeout_s=1.0, keys=alice) as client, pytest.raises(TimeoutError):
        client.ping()
    with Subscription(zmq.Context.instance(), daemon.publisher.endpoint, b"", alice) as revoked:
        assert revoked.receive(1.5) is None


def test_an_allow_listed_client_works_on_both_sockets(secured):
    daemon, alice, _ = secured
    with Client(daemon.control.endpoint, keys=alice) as client:
        run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)
        blocks = list(client.subscribe(run_id))
        assert client.wait(run_id, timeout_s=30)["status"] == "completed"
    assert blocks and [b.seq for b in blocks] == list(range(len(blocks)))


def test_with_a_tcp_host_link_the_hosts_and_the_clients_are_each_admitted_by_their_own_keys(tmp_path, monkeypatch):
    """One ZAP handler, two domains: the allow-list for clients, the link's own key for hosts."""
    monkeypatch.setattr(hosts, "IPC_LINK", False)  # (as on Windows)
    daemon, alice, _ = secured_daemon(tmp_path, instrument_hosts=1)
    try:
        assert daemon.hosts.link_endpoint.startswith("tcp://")
        with Client(daemon.control.endpoint, keys=alice) as client:
            run_id = client.submit("ccd", "sim-pstat-1", diameter_mm=2.0)
            blocks = list(client.subscribe(run_id))
            assert client.wait(run_id, timeout_s=30)["status"] == "completed"
        assert blocks and [b.seq for b in blocks] == list(range(len(blocks)))
        hosts_key = daemon.hosts.curve.hosts
        as_host = ClientKeys(alice.server_public, hosts_key.public, hosts_key.secret)
        with Client(daemon.control.endpoint, timeout_s=1.0, keys=as_host) as client, pytest.raises(TimeoutError):
            client.ping()  # (the hosts' key is no client's)
    finally:
        daemon.close()


def test_an_unknown_key_and_a_plaintext_client_get_nothing(secured):
    daemon, _, mallory = secured
    with Client(daemon.control.endpoint, timeout_s=1.0, keys=mallory) as client, pytest.raises(TimeoutError):
        client.ping()
    with Client(daemon.control.endpoint, timeout_s=1.0) as client, pytest.raises(TimeoutError):
        client.ping()
    with Subscription(zmq.Context.instance(), daemon.publisher.endpoint, b"") as plaintext:
        assert plaintext.receive(1.5) is None  # not even the heartbeat
    with Subscription(zmq.Context.instance(), daemon.publisher.endpoint, b"", mallory) as unknown:
        assert unknown.receive(1.5) is None


def test_a_refused_client_times_out_every_time(secured):
    """A request the daemon refuses (an unknown key) ends in TimeoutError within the client's
    timeout, never waits forever.  A DEALER's send waits while the socket has no connection, which
    a refused handshake can leave it without: a refused ping once hung a fresh-clone CI run (in
    the tcp host-link test above, in ``send``), and 1 of 3 runs of 300 refused pings."""
    daemon, _, mallory = secured
    outcomes = []

    def refused_pings():
        for _ in range(60):
            with Client(daemon.control.endpoint, timeout_s=0.05, keys=mallory) as client:
                try:
                    client.ping()
                    outcomes.append("answered")
                except TimeoutError:
                    outcomes.append("timed out")

    pinging = threading.Thread(target=refused_pings, daemon=True)
    pinging.start()
    pinging.join(60)
    assert not pinging.is_alive() and outcomes == ["timed out"] * 60


def test_keys_are_made_with_a_private_secret(tmp_path):
    done = subprocess.run([sys.executable, "-m", "echemd.daemon.cli", "keys", "lab-pc", "--dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    secret = tmp_path / "lab-pc.key_secret"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600 and (tmp_path / "lab-pc.key").exists()
    assert ClientKeys.load(tmp_path / "lab-pc.key", secret).secret


def test_binding_beyond_loopback_needs_curve():
    text = 'control_endpoint = "tcp://0.0.0.0:5710"\n[[instruments]]\nname = "p"\ndriver = "simulated-potentiostat"\nlimits = { max_abs_voltage_V = 5.0, max_abs_current_A = 0.1 }\n'
    with pytest.raises(ConfigError, match="reachable from other machines: give a \\[security\\] table"):
        parse_config(text, "lab.toml")
