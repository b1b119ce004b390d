"""Schema of `mfvan-web` (the bridge): where it subscribes, where it serves, who may read it."""

from __future__ import annotations

from pydantic import Field

from engine.config.base import Section
from engine.wire.security import Security


class WebConfig(Section):
    endpoint: str = Field("tcp://127.0.0.1:5556", description="the engine's PUB endpoint to subscribe to")
    cameras: list[str] = Field(default_factory=list, description="only these cameras (empty = all)")
    host: str = Field("127.0.0.1", description="HTTP/WebSocket bind address; beyond loopback a token is required")
    port: int = Field(8765, ge=0, le=65535, description="HTTP/WebSocket port (0 = any free port, printed)")
    token: str = Field("", description="required from every WebSocket/API client when set (MFVAN_TOKEN); "
                       "mandatory when host is not a loopback address")
    allow_origins: list[str] = Field(default_factory=list, description="web origins (e.g. http://localhost:3000) "
                                     "whose pages may open the WebSocket besides the dashboard's own; '*' = any")
    client_queue: int = Field(256, ge=1, le=100_000, description="messages queued per WebSocket client; past it "
                              "the oldest is dropped and counted, so a slow browser never slows anyone else")
    max_clients: int = Field(32, ge=1, le=10_000)
    history: int = Field(50, ge=0, le=1000, description="recent results/macros a new client receives on connect")
    stale_s: float = Field(3.0, gt=0, le=600, description="a component silent this long is shown as unhealthy")
    security: Security = Security()  # CURVE toward the PUB; security.publish_crops gates crops to browsers
