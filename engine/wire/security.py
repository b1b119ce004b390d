"""CURVE authentication and ipc permissions for every socket the daemon binds or connects.

Why here: results and face crops are sensitive; one place decides how a socket is secured so a
bound endpoint can never be left open by one component and closed by another. Keys are
ZeroMQ certificate files made by `mfvan-keys` (`zmq.auth` format: NAME.key public,
NAME.key_secret secret). With `client_allow_dir` set, only clients whose public key file lies
in that folder get through (ZAP); a client without an allowed key receives nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq
import zmq.auth
from pydantic import BaseModel, ConfigDict
from zmq.auth.thread import ThreadAuthenticator


class Security(BaseModel):
    """CURVE for TCP endpoints. Empty paths mean plain sockets (fine for ipc/inproc/loopback).

    The schema lives with the code that reads it (the wire layer imports nothing else of the
    project); its model_config is the one every config section has (engine.config.base).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    server_secret_key: str = ""  # path to the server's secret key file (mfvan-keys)
    client_allow_dir: str = ""  # directory of allowed clients' public keys
    client_secret_key: str = ""  # path to this client's secret key file
    server_public_key: str = ""  # path to the server's public key file (for clients)
    ipc_mode: int = 0o660
    publish_crops: bool = False  # raw face crops never leave the host unless this is true


class SecurityError(RuntimeError):
    """Keys are missing, unreadable or inconsistent; the message says which file."""


def _load(path: str, want_secret: bool) -> tuple[bytes, bytes | None]:
    p = Path(path)
    if not p.is_file():
        raise SecurityError(f"key file {p} does not exist (make one with `mfvan-keys`)")
    try:
        public, secret = zmq.auth.load_certificate(p)
    except (OSError, ValueError) as exc:
        raise SecurityError(f"key file {p} is not a ZeroMQ certificate: {exc}") from None
    if want_secret and not secret:
        raise SecurityError(f"{p} holds no secret key (use the .key_secret file)")
    return public, secret


def curve_enabled(sec: Security) -> bool:
    return bool(sec.server_secret_key or sec.server_public_key)


def _chmod_ipc(endpoint: str, mode: int) -> None:
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://"):]
        if path and not path.startswith("@"):  # abstract sockets have no file
            os.chmod(path, mode)


def secure_bind(sock: zmq.Socket, endpoint: str, sec: Security) -> ThreadAuthenticator | None:
    """Bind `sock` as a CURVE server when keys are configured; ipc files get `sec.ipc_mode`.

    Returns the ZAP authenticator (the caller stops it on shutdown) when an allow-list is used.
    """
    auth: ThreadAuthenticator | None = None
    if sec.server_secret_key:
        public, secret = _load(sec.server_secret_key, want_secret=True)
        if sec.client_allow_dir:
            allow = Path(sec.client_allow_dir)
            if not allow.is_dir():
                raise SecurityError(f"client allow-list folder {allow} does not exist")
            auth = ThreadAuthenticator(sock.context)
            auth.start()
            auth.configure_curve(domain="*", location=str(allow))
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True
    elif sec.client_allow_dir:
        raise SecurityError("client_allow_dir needs server_secret_key (CURVE) to mean anything")
    elif endpoint.startswith("tcp://") and not _is_loopback(endpoint):
        # plain TCP beyond this host: allowed, but never silently
        import logging

        logging.getLogger("mfvan.security").warning(
            "binding %s without CURVE: anyone who can reach it can read it", endpoint
        )
    sock.bind(endpoint)
    _chmod_ipc(endpoint, sec.ipc_mode)
    return auth


def secure_connect(sock: zmq.Socket, endpoint: str, sec: Security) -> None:
    """Connect as a CURVE client when the server's public key is configured."""
    if sec.server_public_key:
        server_public, _ = _load(sec.server_public_key, want_secret=False)
        if not sec.client_secret_key:
            raise SecurityError("server_public_key is set but client_secret_key is not (make one with `mfvan-keys`)")
        public, secret = _load(sec.client_secret_key, want_secret=True)
        sock.curve_serverkey = server_public
        sock.curve_publickey = public
        sock.curve_secretkey = secret
    sock.connect(endpoint)


def _is_loopback(endpoint: str) -> bool:
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
