"""The copy-paste examples of docs/integrating.md run as written (only the endpoint is swapped):
the Python SDK one, the Node.js one and the browser one (a page of another origin, allowed by
`--allow-origin`, reading mfvan-web's WebSocket in Debian's chromium). The publisher is a real
ZeroMQ PUB socket sending the golden vectors' frames."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import zmq

from streamer.harness.procs import free_port
from tests.engine.golden import good_messages

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "integrating.md"
NODE_DIR = ROOT / "clients" / "node"
CHROMIUM = Path("/usr/bin/chromium")
BIN = Path(sys.executable).parent


def examples() -> dict[str, str]:
    pat = re.compile(r"```\w+\n(?:# |// |<!-- )example: ([\w-]+)(?: -->)?\n(.*?)```", re.S)
    return {m.group(1): m.group(2) for m in pat.finditer(DOC.read_text())}


@pytest.fixture()
def publisher():
    """A PUB endpoint repeating an engine Status, a heartbeat and a float16 Result with crop."""
    frames = [good_messages()[n][1] for n in ("status_engine", "heartbeat", "macro", "result_float16_crop")]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.linger = 0
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sock.bind(endpoint)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(0.05):
            for f in frames:
                sock.send_multipart(f)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield endpoint
    stop.set()
    t.join(5)
    sock.close(0)
    ctx.term()


def test_the_doc_has_the_three_examples() -> None:
    assert set(examples()) == {"python-sdk", "node", "browser"}


def test_python_example(publisher: str) -> None:
    code = examples()["python-sdk"].replace("tcp://127.0.0.1:5556", publisher)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "cam0 track 3: positive 0.71, 350 ms, frames 1200-1270" in r.stdout
    assert "heatmap (4, 8, 8)" in r.stdout


@pytest.mark.skipif(shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir(),
                    reason="node or clients/node/node_modules (npm ci) missing")
def test_node_example(publisher: str, tmp_path: Path) -> None:
    code = examples()["node"].replace("tcp://127.0.0.1:5556", publisher)
    code = code.replace('"./mfvan.mjs"', f'"{(NODE_DIR / "mfvan.mjs").as_uri()}"')
    script = tmp_path / "example.mjs"
    script.write_text(code)
    r = subprocess.run([shutil.which("node"), str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "cam0 track 3: positive 0.71, 350 ms, heatmap float16 4,8,8" in r.stdout


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)")
def test_browser_example(publisher: str, tmp_path: Path) -> None:
    """The page is the integrator's own app on another origin (its own local HTTP server)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
    import functools
    import http.server

    port, app_port = free_port(), free_port()
    html = examples()["browser"].replace("ws://127.0.0.1:8765", f"ws://127.0.0.1:{port}")
    (tmp_path / "index.html").write_text(f"<!doctype html><meta charset='utf-8'><body>{html}</body>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    app = http.server.ThreadingHTTPServer(("127.0.0.1", app_port), handler)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{app_port}"
    web = subprocess.Popen([str(BIN / "mfvan-web"), "--endpoint", publisher, "--port", str(port),
                            "--allow-origin", origin], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "dashboard at" in web.stdout.readline()
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            try:
                page = browser.new_page()
                page.goto(f"{origin}/index.html")
                page.wait_for_function("() => document.getElementById('out').textContent.includes("
                                       "'cam0: positive 0.71 (350 ms)')", timeout=20_000)
                page.wait_for_function("() => { const i = document.getElementById('heatmap');"
                                       " return i && i.complete && i.naturalWidth > 0; }", timeout=20_000)
            finally:
                browser.close()
    finally:
        app.shutdown()
        web.terminate()
        web.wait(20)
