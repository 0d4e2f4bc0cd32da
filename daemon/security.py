"""CURVE encryption and client authentication (ZAP) for the control socket and the data stream.

The daemon has a key pair; clients each have one.  With a ``[security]`` table the daemon accepts
only clients whose public key file is in ``authorized_clients`` (read again on every connection),
on both sockets; plaintext clients and unknown keys get nothing at all.  Each control request is
logged with the public key (z85) of the client that sent it.  ``echemd keys NAME`` writes
``NAME.key`` (public, to hand out) and ``NAME.key_secret`` (mode 0600).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import zmq
import zmq.auth

if TYPE_CHECKING:  # (clients and hosts import this module: they need no pydantic, nor asyncio for a ZAP thread)
    from zmq.auth.thread import ThreadAuthenticator

    from echemd.config.models import SecurityConfig


@dataclass(frozen=True)
class ClientKeys:
    """What a client needs to talk to a CURVE daemon: the server's public key and its own pair."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def load(cls, server_public_file: str | Path, client_secret_file: str | Path) -> "ClientKeys":
        server_public, _ = zmq.auth.load_certificate(str(server_public_file))
        public, secret = zmq.auth.load_certificate(str(client_secret_file))
        if secret is None:
            raise ValueError(f"{client_secret_file} holds no secret key (use the .key_secret file)")
        return cls(server_public, public, secret)

    def apply(self, socket: zmq.Socket) -> None:
        socket.curve_serverkey = self.server_public
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret


class SocketSecurity(Protocol):
    """What secures a socket before it binds (CurveServer, host_link.LinkCurve) or connects (ClientKeys)."""

    def apply(self, socket: zmq.Socket) -> None: ...


def serve_curve(socket: zmq.Socket, public: bytes, secret: bytes, zap_domain: str = "") -> None:
    """Make ``socket`` (not yet bound) a CURVE server with this key pair (z85), its clients judged
    by the ZAP handler of ``zap_domain`` ("": the one for sockets that name no domain)."""
    socket.curve_server = True
    socket.curve_publickey = public
    socket.curve_secretkey = secret
    if zap_domain:
        socket.zap_domain = zap_domain.encode()


def create_keys(folder: str | Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key (public) and NAME.key_secret (secret, mode 0600) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(folder), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


class AuthorizedClients:
    """The allow-list: the public key files in a folder, read at every connection (ZAP calls
    ``callback`` once per CURVE handshake), so adding a key file admits its client and removing it
    refuses that client's next connection, without a restart.  A connection already made stays."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def callback(self, domain: str, client_key: bytes) -> bool:
        """Whether ``client_key`` (z85) is in the folder now; an unreadable folder admits nobody."""
        try:
            return bool(zmq.auth.load_certificates(str(self.folder)).get(client_key))
        except (OSError, ValueError):
            return False


class ZapHandler:
    """The daemon's ZAP handler (a ZeroMQ context has one): it admits CURVE clients by a callback
    per ZAP domain (the control and data sockets' clients, the instrument hosts).  Its thread starts
    with the first domain; without one nothing runs."""

    def __init__(self, context: zmq.Context) -> None:
        self._context = context
        self._authenticator: ThreadAuthenticator | None = None

    def admit(self, domain: str, provider) -> None:
        """Admit to the sockets of ``domain`` (``*``: those that name none) the clients whose key
        ``provider.callback(domain, key_z85)`` accepts."""
        if self._authenticator is None:
            from zmq.auth.thread import ThreadAuthenticator

            self._authenticator = ThreadAuthenticator(self._context)
            self._authenticator.start()
        self._authenticator.configure_curve_callback(domain=domain, credentials_provider=provider)

    def stop(self) -> None:
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None


class CurveServer:
    """Makes the control and data sockets CURVE servers that admit the authorized clients."""

    def __init__(self, zap: ZapHandler, config: SecurityConfig) -> None:
        self.public, self.secret = zmq.auth.load_certificate(str(config.server_secret_key))
        if self.secret is None:
            raise ValueError(f"{config.server_secret_key} holds no secret key")
        if not Path(config.authorized_clients).is_dir():
            raise ValueError(f"{config.authorized_clients}: no such folder of client public keys")
        zap.admit("*", AuthorizedClients(Path(config.authorized_clients)))

    def apply(self, socket: zmq.Socket) -> None:
        serve_curve(socket, self.public, self.secret)
