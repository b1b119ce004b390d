"""`mfvan-sub`: print mfvan results as they arrive (a line each, or JSON lines).

Reports sequence gaps (pairs refused at a full queue, or messages lost) and end-to-end
latency (now − capture time of the apex frame). `--save-heatmaps DIR` writes a PNG per result:
the fused attention map over the apex crop when the publisher sends crops, else the heatmaps
side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import cv2
import msgspec
import numpy as np

from engine.config.cli import add_config_args, config_from_args
from engine.config.sub import SubConfig
from engine.wire import protocol as P
from engine.wire.client import DEFAULT_TOPICS, Delivery, Subscriber
from engine.wire.security import SecurityError


def heatmap_png(event: Delivery) -> np.ndarray | None:
    """One BGR image: per heatmap a colour panel (over the apex crop when it was published)."""
    maps = event.heatmap
    if maps is None:
        return None
    names = event.header.heatmap_names
    crop = event.apex_crop
    panels = []
    for name, m in zip(names, maps, strict=True):
        m8 = m if m.dtype == np.uint8 else np.clip(np.nan_to_num(m.astype(np.float32)) * 255, 0, 255).astype(np.uint8)
        size = (crop.shape[1], crop.shape[0]) if crop is not None else (max(112, m8.shape[1]), max(112, m8.shape[0]))
        colour = cv2.applyColorMap(cv2.resize(m8, size, interpolation=cv2.INTER_LINEAR), cv2.COLORMAP_JET)
        if crop is not None:
            colour = cv2.addWeighted(np.ascontiguousarray(crop), 0.55, colour, 0.45, 0)
        cv2.putText(colour, name, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(colour)
    if crop is not None:
        panels.insert(0, np.ascontiguousarray(crop))
    return np.hstack(panels)


def _human(event: Delivery) -> str:
    h = event.header
    stamp = time.strftime("%H:%M:%S", time.localtime(event.received_ns / 1e9)) + f".{event.received_ns // 1_000_000 % 1000:03d}"
    gap = f" [gap {event.gap}]" if event.gap else ""
    if isinstance(h, P.Result):
        probs = " ".join(f"{k} {v:.2f}" for k, v in h.probs.items())
        return (f"{stamp} {h.camera} track {h.track} seq {h.seq} MICRO {h.label} {h.probs.get(h.label, 0):.2f} "
                f"({probs}) frames {h.onset_index}->{h.apex_index} latency {event.latency_ms:.1f} ms{gap}")
    if isinstance(h, P.Macro):
        dur = (h.offset_ts_ns - h.onset_ts_ns) / 1e6
        return (f"{stamp} {h.camera} track {h.track} seq {h.seq} MACRO {dur:.0f} ms "
                f"frames {h.onset_index}->{h.apex_index}->{h.offset_index} score {h.score:.2f}{gap}")
    if isinstance(h, P.Status):
        counters = " ".join(f"{k}={v}" for k, v in sorted(h.counters.items()))
        return f"{stamp} status {h.component} {h.state} {counters} {h.detail}".rstrip()
    return f"{stamp} hb {h.component} seq {h.seq}{gap}"


def _json(event: Delivery, saved: str | None) -> str:
    out = {"topic": event.topic, "type": event.kind, "received_ns": event.received_ns, "gap": event.gap}
    out.update(msgspec.to_builtins(event.header))
    out["type"] = event.kind  # the struct tag, spelt as the class name
    if event.latency_ms is not None:
        out["latency_ms"] = round(event.latency_ms, 3)
    if saved:
        out["heatmap_png"] = saved
    return json.dumps(out, separators=(",", ":"))


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mfvan-sub", description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", help="PUB endpoint of an engine (default from config: tcp://127.0.0.1:5556)")
    parser.add_argument("--camera", action="append", default=None, help="only this camera (repeatable)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--count", type=int, default=0, help="exit after N events (micro results and macro events)")
    parser.add_argument("--timeout", type=float, default=0, help="exit with status 1 after S seconds without an event")
    parser.add_argument("--save-heatmaps", metavar="DIR", help="write a PNG of each result's heatmaps here")
    parser.add_argument("--status", action="store_true", help="also print status/ messages")
    parser.add_argument("--heartbeats", action="store_true", help="also print hb/ messages")
    parser.add_argument("--server-key", help="server public key file (enables CURVE)")
    parser.add_argument("--client-key", help="this client's secret key file (with --server-key)")
    add_config_args(parser)
    args = parser.parse_args(argv)
    if args.count < 0 or args.timeout < 0:
        parser.error("--count and --timeout must be >= 0")
    overrides: dict = {}
    if args.endpoint:
        overrides["endpoint"] = args.endpoint
    if args.camera:
        overrides["cameras"] = args.camera
    if args.heartbeats:
        overrides["heartbeats"] = True
    if args.server_key or args.client_key:
        overrides["security"] = {"server_public_key": args.server_key or "", "client_secret_key": args.client_key or ""}
    cfg = config_from_args(args, SubConfig, overrides)

    kinds = [P.TOPIC_LABEL, P.TOPIC_MACRO] + ([P.TOPIC_STATUS] if args.status else [])
    if cfg.heartbeats:
        kinds.append(P.TOPIC_HEARTBEAT)
    heat_dir = Path(args.save_heatmaps) if args.save_heatmaps else None
    if heat_dir:
        heat_dir.mkdir(parents=True, exist_ok=True)
    try:
        sub = Subscriber(cfg.endpoint, cfg.cameras, kinds if kinds else DEFAULT_TOPICS, cfg.security)
    except (SecurityError, ValueError) as exc:
        print(f"mfvan-sub: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # zmq.ZMQError on a malformed endpoint
        print(f"mfvan-sub: cannot connect to {cfg.endpoint!r}: {exc}", file=sys.stderr)
        return 2
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("flag", True))
    latencies: list[float] = []
    counted = 0
    status = 0
    try:
        while not stop["flag"]:
            event = sub.recv(timeout_ms=int(args.timeout * 1000) if args.timeout else 250)
            if event is None:
                if args.timeout:
                    print(f"mfvan-sub: no event for {args.timeout:g} s", file=sys.stderr)
                    status = 1
                    break
                continue
            saved = None
            if heat_dir is not None and isinstance(event.header, P.Result):
                img = heatmap_png(event)
                if img is not None:
                    h = event.header
                    path = heat_dir / f"{h.camera}_t{h.track}_s{h.seq}_{h.label}.png"
                    cv2.imwrite(str(path), img)
                    saved = str(path)
            print(_json(event, saved) if args.json else _human(event), flush=True)
            if isinstance(event.header, (P.Result, P.Macro)):
                if event.latency_ms is not None and isinstance(event.header, P.Result):
                    latencies.append(event.latency_ms)
                counted += 1
                if args.count and counted >= args.count:
                    break
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # `mfvan-sub ... | head`: the reader is done, which is a normal end, not a traceback.
        # stdout goes to /dev/null so the interpreter's final flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        seq = sub.sequences
        invalid = dict(sub.invalid)
        sub.close()
    summary = (f"mfvan-sub: {counted} events, {seq.missing} missing by sequence ({seq.late} late), "
               f"{sum(invalid.values())} invalid {invalid or ''}".rstrip())
    if latencies:
        summary += f", latency p50 {_percentile(latencies, 50):.1f} ms p99 {_percentile(latencies, 99):.1f} ms"
    print(summary, file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
