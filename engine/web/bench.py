"""`mfvan-bench web`: PUB → browser latency of the bridge, with every component real.

A real `mfvan-engined` (the bundled demo artefact) classifies pairs pushed at a steady rate, a
real `mfvan-web` subscribes to its PUB, and headless Debian chromium (Playwright, the system
binary) shows the dashboard; the page records, per message, its receive time minus the
publisher's stamp (`Result.published_ns`, `Heartbeat.ts_ns`: one host, one clock). Prints one
JSON object with p50/p99 per kind. Needs /usr/bin/chromium and `playwright` (the dev extra).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from engine.wire import protocol as P

CHROMIUM = Path("/usr/bin/chromium")
BIN = Path(sys.executable).parent


def _pct(v: list[float], q: float) -> float:
    return round(float(np.percentile(v, q)), 2) if v else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mfvan-bench web", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=200, help="pairs to classify (one Result each)")
    ap.add_argument("--rate", type=float, default=10.0, help="pairs per second")
    ap.add_argument("--port", type=int, default=0, help="mfvan-web port (0 = any free)")
    args = ap.parse_args(argv)
    if args.pairs < 1 or args.rate <= 0:
        ap.error("--pairs must be >= 1 and --rate > 0")
    if not CHROMIUM.exists():
        print("mfvan-bench web: needs Debian's chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("mfvan-bench web: needs playwright (pip install playwright; never `playwright install`)", file=sys.stderr)
        return 2
    from engine.artefact import load_artefact

    size = load_artefact("").crop_size
    with tempfile.TemporaryDirectory(prefix="mfvan-bench-web-") as t:
        pairs, pub = f"ipc://{t}/pairs", f"ipc://{t}/pub"
        engine = subprocess.Popen([str(BIN / "mfvan-engined"), "--pair-endpoint", pairs, "--pub-endpoint", pub,
                                   "--threads", "1", "--log-level", "WARNING"])
        web = subprocess.Popen([str(BIN / "mfvan-web"), "--endpoint", pub, "--port", str(args.port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.linger = 0
        push.connect(pairs)
        try:
            line = web.stdout.readline()
            if "dashboard at " not in line:
                print(f"mfvan-bench web: mfvan-web did not start: {line.strip()}", file=sys.stderr)
                return 1
            url = line.split("dashboard at ", 1)[1].split()[0]
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
                    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
                page = browser.new_page()
                page.goto(url)
                page.wait_for_function("() => window.mfvan && window.mfvan.latency.hb.length > 0", timeout=120_000)
                rng = np.random.default_rng(0)
                crops = rng.integers(0, 256, (8, size, size, 3), dtype=np.uint8)
                t0 = time.monotonic()
                for i in range(args.pairs):
                    now = P.now_ns()
                    h = P.Pair(camera="bench", track=1, seq=i + 1, onset_index=10 * i, apex_index=10 * i + 5,
                               offset_index=10 * i + 9, onset_ts_ns=now, apex_ts_ns=now, offset_ts_ns=now,
                               spotted_ns=now, score=1.0, crop=P.array_spec(crops[0]))
                    push.send_multipart(P.encode_pair(h, crops[i % 8], crops[(i + 1) % 8]))
                    time.sleep(max(0.0, t0 + (i + 1) / args.rate - time.monotonic()))
                page.wait_for_function(f"() => window.mfvan.latency.result.length >= {args.pairs}", timeout=60_000)
                lat = page.evaluate("window.mfvan.latency")
                browser.close()
        finally:
            push.close(0)
            ctx.term()
            for p in (web, engine):
                p.terminate()
                p.wait(20)
    out = {"bench": "web", "pairs": args.pairs, "rate": args.rate, "unit": "ms, PUB stamp -> browser onmessage"}
    for kind in ("result", "hb"):
        v = lat[kind]
        out[kind] = {"n": len(v), "p50": _pct(v, 50), "p99": _pct(v, 99), "max": round(max(v), 2) if v else None}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
