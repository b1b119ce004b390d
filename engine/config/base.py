"""Base model for every config section: unknown keys are errors, values are immutable.

Also the value types several sections share (endpoints, listen hosts), so a malformed one is a
config error at `file:line` instead of a ZeroMQ or socket traceback once the daemon runs.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_ENDPOINT_HELP = "expected tcp://HOST:PORT (HOST may be * to bind every interface), ipc://PATH or inproc://NAME"
MAX_IPC_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


def _host_ok(host: str, wildcard: bool) -> bool:
    if wildcard and host == "*":
        return True
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host))  # a hostname (or a network interface name)


def check_endpoint(value: str) -> str:
    """ZeroMQ endpoints this project can bind or connect (several joined by ","); the message
    says what is expected."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) > 1:
        for part in parts:
            check_endpoint(part)
        return value
    scheme, sep, rest = value.partition("://")
    if not sep or not rest:
        raise ValueError(f"{value!r} is not a ZeroMQ endpoint: {_ENDPOINT_HELP}")
    if scheme == "tcp":
        target = rest.rsplit(";", 1)[-1]  # "tcp://SOURCE;HOST:PORT" connects from SOURCE
        host, colon, port = target.rpartition(":")
        if not colon or not _host_ok(host, wildcard=True):
            raise ValueError(f"{value!r}: bad host {host or target!r}; {_ENDPOINT_HELP}")
        if port != "*" and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"{value!r}: port {port!r} is not 1..65535 (or * for any)")
        return value
    if scheme == "ipc":
        if len(rest.encode()) > MAX_IPC_PATH:
            raise ValueError(f"{value!r}: an ipc path may have at most {MAX_IPC_PATH} bytes")
        return value
    if scheme == "inproc":
        return value
    raise ValueError(f"{value!r}: transport {scheme!r} is not supported; {_ENDPOINT_HELP}")


def check_listen_host(value: str) -> str:
    """An address to listen on: an IP address or a host name (no port, no scheme)."""
    if not value or not _host_ok(value, wildcard=False):
        raise ValueError(f"{value!r} is not an IP address or host name (e.g. 127.0.0.1, 0.0.0.0, ::1)")
    return value


Endpoint = Annotated[str, AfterValidator(check_endpoint)]
ListenHost = Annotated[str, AfterValidator(check_listen_host)]
