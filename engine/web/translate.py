"""Wire message → JSON object for browsers (the WebSocket message format, docs/integrating.md).

Why PNG and not raw arrays: a browser shows a PNG with one <img>; the 8-bit grey level of a
heatmap PNG is the map's weight × 255 (float16 maps are quantised to that; a subscriber that needs
the exact floats uses the ZeroMQ protocol). `overlay` is ready to show: the fused map in the JET
colour map over the apex crop when crops are published, else alone. Crops reach a browser only
when the bridge's own `security.publish_crops` is true as well as the engine's.
"""

from __future__ import annotations

import base64

import cv2
import msgspec
import numpy as np

from engine.wire import protocol as P
from engine.wire.client import Delivery

TYPE = {P.Result: "result", P.Macro: "macro", P.Status: "status", P.Heartbeat: "hb"}


def _png(img: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # cv2 refuses only impossible shapes; the protocol has excluded them
        raise ValueError(f"cannot encode {img.shape} as PNG")
    return base64.b64encode(buf.tobytes()).decode()


def grey8(m: np.ndarray) -> np.ndarray:
    return m if m.dtype == np.uint8 else np.rint(np.clip(m.astype(np.float32), 0, 1) * 255).astype(np.uint8)


def overlay(fused: np.ndarray, crop: np.ndarray | None, size: int = 224) -> np.ndarray:
    """The fused map as colour, blended over the crop (BGR) when there is one."""
    if crop is not None:
        size = max(size, crop.shape[0])
    colour = cv2.applyColorMap(cv2.resize(grey8(fused), (size, size), interpolation=cv2.INTER_LINEAR), cv2.COLORMAP_JET)
    if crop is None:
        return colour
    base = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(base, 0.55, colour, 0.45, 0)


def to_json(d: Delivery, crops: bool) -> dict:
    """One message for browsers: the header's fields plus topic, received_ns, gap and images."""
    h = d.header
    out = msgspec.to_builtins(h)
    out["type"] = TYPE[type(h)]
    out["topic"] = d.topic
    out["received_ns"] = d.received_ns
    out["gap"] = d.gap
    if isinstance(h, P.Result):
        out.pop("heatmap", None)
        out.pop("apex_crop", None)
        maps, crop = d.heatmap, (d.apex_crop if crops else None)
        out["heatmaps"] = {}
        out["overlay_png"] = None
        out["apex_crop_png"] = _png(np.ascontiguousarray(crop)) if crop is not None else None
        if maps is not None:
            out["heatmaps"] = {name: _png(grey8(m)) for name, m in zip(h.heatmap_names, maps, strict=True)}
            fused = maps[list(h.heatmap_names).index("fused")] if "fused" in h.heatmap_names else maps[0]
            out["overlay_png"] = _png(overlay(fused, crop))
        out["latency_ms"] = round(d.latency_ms, 3) if d.latency_ms is not None else None
    return out
