"""mfvan-web in a real browser: Debian's chromium, driven headless by Playwright (the system
binary via executable_path; never a downloaded browser), against a real `mfvan-streamd` replay of
two cameras. Events appear on the page under the right camera with the labels the Python SDK
received, the fused heatmap over the apex crop renders as an image, and an engine killed with
SIGKILL (it cannot say goodbye) is shown as down. Also: the token and origin rules of the bridge,
and the PUB -> browser latency, printed (not asserted). Skipped with the reason where chromium
or Playwright is absent (`.ci/run` installs both)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from engine.wire.client import Subscriber
from engine.wire.protocol import Heartbeat, Result
from streamer.harness.clip import ClipEvent, render_test_clip, write_folder
from streamer.harness.procs import free_port

CHROMIUM = Path("/usr/bin/chromium")
BIN = Path(sys.executable).parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)")


def _web(tmp: Path, pub: str, port: int, *extra: str) -> subprocess.Popen:
    cfg = tmp / "web.yaml"
    cfg.write_text("stale_s: 1.5\nsecurity:\n  publish_crops: true\n")
    proc = subprocess.Popen([str(BIN / "mfvan-web"), "--endpoint", pub, "--port", str(port), "--config", str(cfg),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    assert "dashboard at http://" in line, line + (proc.stdout.read() if proc.poll() is not None else "")
    return proc


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_bridge_needs_a_token_beyond_loopback_and_checks_it(tmp_path: Path) -> None:
    r = subprocess.run([str(BIN / "mfvan-web"), "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "needs a token" in r.stderr and "Traceback" not in r.stderr
    port = free_port()
    web = _web(tmp_path, f"ipc://{tmp_path}/nothing", port, "--token", "s3cret")
    try:
        base = f"http://127.0.0.1:{port}"
        assert urllib.request.urlopen(f"{base}/", timeout=5).status == 200  # the page holds no data
        for url in (f"{base}/api/state", f"{base}/api/state?token=wrong"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(url, timeout=5)
            assert err.value.code == 401
        state = json.loads(urllib.request.urlopen(f"{base}/api/state?token=s3cret", timeout=5).read())
        assert state["protocol"] == "MFV2" and state["clients"] == 0
        req = urllib.request.Request(f"{base}/ws?token=s3cret", headers={
            "Origin": "http://evil.example", "Connection": "Upgrade", "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 403
    finally:
        _stop(web)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def test_dashboard_shows_live_events_heatmaps_and_a_killed_engine(tmp_path: Path, artefact: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
    events = [ClipEvent(240, 270, 300, "brow", 2.5), ClipEvent(420, 452, 485, "mouth", 2.5),
              ClipEvent(580, 640, 840, "mouth", 6.0, "macro")]
    write_folder(render_test_clip(2400, events, 200.0, seed=3, noise=1.5), tmp_path / "camA", ".bmp")
    (tmp_path / "camB").symlink_to(tmp_path / "camA")  # a second camera: same frames, its own streamer
    cfg = tmp_path / "streamd.yaml"
    cfg.write_text("\n".join([
        "engine:", f"  artefact: '{artefact}'", f"  pair_endpoint: ipc://{tmp_path}/pairs",
        f"  pub_endpoint: ipc://{tmp_path}/pub", "  intra_op_threads: 1", "  heartbeat_s: 0.2",
        "  security:", "    publish_crops: true", "supervisor:", "  metrics_port: 0", "  linger_s: 1.0",
        "  stop_timeout_s: 10"]) + "\n")
    pub = f"ipc://{tmp_path}/pub"
    port = free_port()
    web = _web(tmp_path, pub, port)
    sdk = Subscriber(pub, kinds=["label/", "hb/"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    daemon = None
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#conn.ok", timeout=20_000)
            daemon = subprocess.Popen(
                [str(BIN / "mfvan-streamd"), "--video", str(tmp_path / "camA"), "--video", str(tmp_path / "camB"),
                 "--fps", "200", "--realtime", "--config", str(cfg), "--log-level", "WARNING"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            labels: dict[tuple[str, int], str] = {}
            engine = None
            deadline = time.monotonic() + 180
            while len(labels) < 4 and time.monotonic() < deadline and daemon.poll() is None:
                d = sdk.recv(timeout_ms=200)
                if d is not None and isinstance(d.header, Result):
                    labels[(d.header.camera, d.header.seq)] = d.header.label
                elif d is not None and isinstance(d.header, Heartbeat):
                    engine = d.header.component
            assert len(labels) >= 4, f"{len(labels)} results from the SDK"  # two micro events per camera
            for (cam, seq), label in labels.items():
                sel = f'[data-camera="{cam}"] li.event[data-kind="micro"][data-seq="{seq}"]'
                item = page.wait_for_selector(sel, timeout=15_000)
                assert item.get_attribute("data-label") == label and label in item.inner_text()
            for cam in ("camA", "camB"):
                page.wait_for_function(
                    "c => { const i = document.querySelector(`[data-camera='${c}'] img.heatmap`);"
                    " return i && i.complete && i.naturalWidth >= 112; }", arg=cam, timeout=15_000)
                label = page.locator(f'[data-camera="{cam}"] [data-role=label]').inner_text()
                assert label.lower() in set(labels.values())
                assert page.locator(f'[data-camera="{cam}"] .bar').count() == 3
                assert "over the apex crop" in page.locator(f'[data-camera="{cam}"] img.heatmap').get_attribute("alt")
            page.wait_for_selector(f'.engine[data-component="{engine}"][data-healthy="true"]', timeout=15_000)
            page.screenshot(path=str(tmp_path / "dashboard.png"))
            # SIGKILL the engine child (its id is host-pid): no 'stopping' status can come from it
            os.kill(int(engine.rsplit("-", 1)[1]), signal.SIGKILL)
            down = page.wait_for_selector(f'.engine[data-component="{engine}"][data-healthy="false"]', timeout=15_000)
            assert "ENGINE DOWN" in down.inner_text() and "silent for" in down.inner_text()
            page.screenshot(path=str(tmp_path / "dashboard-engine-down.png"))
            lat = page.evaluate("window.mfvan.latency")
        finally:
            browser.close()
            sdk.close()
            if daemon is not None:
                _stop(daemon, signal.SIGINT)
            _stop(web)
    hb, res = lat["hb"], lat["result"]
    print(f"\nPUB -> browser latency: heartbeats n={len(hb)} p50 {_pct(hb, 50):.1f} ms p99 {_pct(hb, 99):.1f} ms; "
          f"results n={len(res)} p50 {_pct(res, 50):.1f} ms p99 {_pct(res, 99):.1f} ms")
    assert len(res) >= 4 and all(v > -50 for v in hb + res)  # one clock; nothing arrives before it was sent
