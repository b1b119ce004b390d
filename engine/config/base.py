"""Base model for every config section: unknown keys are errors, values are immutable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


class Security(Section):
    """CURVE for TCP endpoints. Empty paths mean plain sockets (fine for ipc/inproc/loopback)."""

    server_secret_key: str = ""  # path to the server's secret key file (mfvan-keys)
    client_allow_dir: str = ""  # directory of allowed clients' public keys
    client_secret_key: str = ""  # path to this client's secret key file
    server_public_key: str = ""  # path to the server's public key file (for clients)
    ipc_mode: int = 0o660
    publish_crops: bool = False  # raw face crops never leave the host unless this is true
