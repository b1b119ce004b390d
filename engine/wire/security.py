"""CURVE authentication and ipc permissions for every socket the daemon binds or connects.

Why here: results and face crops are sensitive; one place decides how a socket is secured so a
bound endpoint can never be left open by one component and closed by another. Keys are
ZeroMQ certificate files made by `mfvan-keys` (`zmq.auth` format: NAME.key public,
NAME.key_secret secret). With `client_allow_dir` set, only clients whose public key file lies
in that folder get through (ZAP); a client without an allowed key receives nothing. The folder
is read again whenever it changes (checked at every handshake and by the engine's loop) and on
`AllowList.reload()` (SIGHUP), so adding a key admits its client and deleting one revokes it
without a restart (the engine then closes the socket's connections so every client must
authenticate again: `AllowList.refresh` reports the removal).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import zmq
import zmq.auth
from pydantic import BaseModel, ConfigDict, field_validator
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger("mfvan.security")


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
    ipc_mode: int = 0o660  # octal: YAML `0660` or the string "0o660"; owner rw required, no world access
    publish_crops: bool = False  # raw face crops never leave the host unless this is true
    # plain TCP bound beyond loopback is refused unless this is true: anyone who reaches the port
    # reads every result and can send Pair/Macro/Status messages that are republished as genuine
    insecure: bool = False

    @field_validator("ipc_mode", mode="before")
    @classmethod
    def _octal_mode(cls, v: object) -> object:
        """Why strict: `-1` made sockets world-accessible and a decimal `600` (0o1130) locked the
        owner out; both were accepted silently. Strings are read as octal ("0660", "0o660")."""
        if isinstance(v, str):
            text = v.strip().lower().removeprefix("0o")
            if not text or any(c not in "01234567" for c in text):
                raise ValueError(f"ipc_mode {v!r} is not an octal mode such as 0o660")
            v = int(text, 8)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError("ipc_mode must be an octal file mode such as 0o660")
        if not 0 <= v <= 0o777:
            raise ValueError(f"ipc_mode {v} is outside 0o000..0o777 (YAML reads 600 as decimal: write 0660 or \"0o660\")")
        if v & 0o600 != 0o600:
            raise ValueError(f"ipc_mode {oct(v)} locks the service's own user out (owner needs rw, e.g. 0o660)")
        if v & 0o007:
            raise ValueError(f"ipc_mode {oct(v)} lets every local user connect; share a group instead (0o660)")
        return v


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


class AllowList:
    """The public keys in `client_allow_dir`, read again when the folder changes.

    Why not pyzmq's `configure_curve(location=...)`: it reads the folder once, so a deleted key
    stayed admitted and a new one was refused until a restart. A change is noticed by the
    folder's fingerprint (names, sizes, mtimes, inodes of `*.key`), checked at most every
    `min_interval_s` at handshakes and whenever the owner calls `refresh()`. An unreadable key
    file is skipped with a warning rather than emptying the list.
    """

    def __init__(self, folder: Path, min_interval_s: float = 0.25, extra: frozenset[bytes] = frozenset()):
        self.folder = folder
        self.extra = frozenset(extra)  # admitted whatever the folder holds (the server's own key)
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._fingerprint: tuple | None = None
        self._checked = 0.0
        self._forced = False
        self._removed: set[bytes] = set()
        self.keys: frozenset[bytes] = frozenset()  # z85 public keys
        self.reloads = 0
        self.refresh(force=True)

    def _scan(self) -> tuple:
        try:
            entries = sorted(os.scandir(self.folder), key=lambda e: e.name)
        except OSError as exc:
            return (("<error>", str(exc)),)
        out = []
        for e in entries:
            if e.name.endswith(".key"):
                try:
                    st = e.stat()
                except OSError:
                    continue
                out.append((e.name, st.st_size, st.st_mtime_ns, st.st_ino))
        return tuple(out)

    def _load(self) -> frozenset[bytes]:
        keys = set()
        for name, *_ in self._fingerprint or ():
            path = self.folder / name
            try:
                public, _secret = zmq.auth.load_certificate(path)
            except (OSError, ValueError) as exc:
                log.warning("allow-list: skipping %s (not a ZeroMQ public key file: %s)", path, exc)
                continue
            if public:
                keys.add(public)
        return frozenset(keys)

    def reload(self) -> None:
        """Read the folder at the next check whatever its fingerprint (SIGHUP)."""
        self._forced = True

    def refresh(self, force: bool = False, now: bool = False) -> frozenset[bytes]:
        """Re-read the folder if it changed; returns the keys removed since the last call.

        `now` checks whatever the time since the last check; `force` re-reads even unchanged.
        """
        with self._lock:
            t = time.monotonic()
            force = force or self._forced
            if force or now or t - self._checked >= self.min_interval_s:
                self._checked = t
                self._forced = False
                fingerprint = self._scan()
                if force or fingerprint != self._fingerprint:
                    self._fingerprint = fingerprint
                    new = self._load() | self.extra
                    if self._fingerprint is not None and self.reloads:
                        log.info("allow-list %s reloaded: %d keys (%d added, %d removed)", self.folder, len(new),
                                 len(new - self.keys), len(self.keys - new))
                    self._removed |= self.keys - new
                    self._removed -= new
                    self.keys = new
                    self.reloads += 1
            removed, self._removed = frozenset(self._removed), set()
            return removed

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's ZAP credentials-provider hook: runs in the authenticator thread per handshake."""
        self.refresh()
        allowed = key in self.keys
        if not allowed:
            # a refusal is final for that connection (libzmq does not retry it): never refuse on
            # a check up to min_interval_s old when the key may just have been added
            self.refresh(now=True)
            allowed = key in self.keys
        if not allowed:
            log.debug("refused a CURVE client whose key is not in %s", self.folder)
        return allowed


class Guard:
    """What `secure_bind` returns when an allow-list is in force: stop() it on shutdown."""

    def __init__(self, auth: ThreadAuthenticator, allow: AllowList):
        self.auth = auth
        self.allow = allow

    def stop(self) -> None:
        self.auth.stop()


def curve_enabled(sec: Security) -> bool:
    return bool(sec.server_secret_key or sec.server_public_key)


def _chmod_ipc(endpoint: str, mode: int) -> None:
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://"):]
        if path and not path.startswith("@"):  # abstract sockets have no file
            os.chmod(path, mode)


def split_endpoints(endpoint: str) -> list[str]:
    """`tcp://a:1,tcp://b:1` → both: one socket may bind or connect several endpoints (a
    streamer's PUSH balancing pairs over two engine hosts, a subscriber reading both)."""
    return [e.strip() for e in endpoint.split(",") if e.strip()]


def secure_bind(sock: zmq.Socket, endpoint: str, sec: Security) -> Guard | None:
    """Bind `sock` as a CURVE server when keys are configured; ipc files get `sec.ipc_mode`.

    Without CURVE: TCP beyond loopback is refused unless `sec.insecure`, and loopback TCP is
    bound with a warning (every local user can read and inject); ipc is protected by its mode.

    Returns the ZAP guard (the caller stops it on shutdown; `guard.allow` is the live
    allow-list) when an allow-list is used.
    """
    auth: Guard | None = None
    if sec.server_secret_key:
        public, secret = _load(sec.server_secret_key, want_secret=True)
        if sec.client_allow_dir:
            folder = Path(sec.client_allow_dir)
            if not folder.is_dir():
                raise SecurityError(f"client allow-list folder {folder} does not exist")
            # the server's own key pair is always admitted: whoever holds its secret is the server
            # anyway, and mfvan-streamd's embedded streamers and supervisor authenticate with it
            allow = AllowList(folder, extra=frozenset({public}))
            zap = ThreadAuthenticator(sock.context)
            zap.start()
            zap.configure_curve_callback(domain="*", credentials_provider=allow)
            auth = Guard(zap, allow)
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True
    elif sec.client_allow_dir:
        raise SecurityError("client_allow_dir needs server_secret_key (CURVE) to mean anything")
    for ep in split_endpoints(endpoint) or [endpoint]:
        if ep.startswith("tcp://") and not sec.server_secret_key:
            if not _is_loopback(ep) and not sec.insecure:
                raise SecurityError(
                    f"refusing to bind {ep} without CURVE: anyone who can reach it could read every result and "
                    "inject messages; set security.server_secret_key (+ client_allow_dir, see `mfvan-keys`), "
                    "bind a loopback or ipc:// endpoint, or set security.insecure: true")
            log.warning("binding %s without CURVE: %s", ep,
                        "anyone who can reach it reads every result and can inject messages (security.insecure)"
                        if not _is_loopback(ep) else "every local user can read results and inject messages; "
                        "use an ipc:// endpoint in a private runtime dir (ipc_mode 0660) or CURVE")
        sock.bind(ep)
        _chmod_ipc(ep, sec.ipc_mode)
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
    for ep in split_endpoints(endpoint) or [endpoint]:
        sock.connect(ep)


def _is_loopback(endpoint: str) -> bool:
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
