"""Schema of `mfvan-sub`, the reference subscriber."""

from __future__ import annotations

from pydantic import Field

from engine.config.base import Endpoint, Section
from engine.wire.security import Security


class SubConfig(Section):
    endpoint: Endpoint = Field("tcp://127.0.0.1:5556", description="the engine's PUB endpoint")
    cameras: list[str] = Field(default_factory=list, description="only these cameras (empty = all)")
    heartbeats: bool = Field(False, description="also print hb/ messages")
    security: Security = Security()
