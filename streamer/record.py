"""`mfvan-record`: camera (or any source) → lossless recording + timestamp sidecar, for replay.

Why lossless (FFV1 in Matroska, or a PNG folder): micro-movements are a pixel or two; a lossy
codec's blocking and its frame-to-frame quantisation noise are motion of that size. The
sidecar `<out>.ts.csv` keeps every frame's capture timestamp and source index, so a replay
with `mfvan-streamd --video` sees the same sensor gaps (and the same dropped frames: their
indices are missing) as the live run did.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

from streamer.capture import CaptureError, Grabber, open_source


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mfvan-record", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=int, metavar="N", help="V4L2 camera /dev/videoN")
    src.add_argument("--video", metavar="PATH", help="re-record a video or frame folder (transcode to lossless)")
    p.add_argument("--out", required=True, help="FILE.mkv (FFV1) or a folder (PNG frames)")
    p.add_argument("--fps", type=float, default=200.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fourcc", default="MJPG", help="camera transport format")
    p.add_argument("--exposure", type=float)
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0 = until the source ends or Ctrl-C)")
    p.add_argument("--frames", type=int, default=0, help="stop after this many frames (0 = no limit)")
    p.add_argument("--ring", type=int, default=1024, help="frames buffered between grab and write")
    from engine.config.cli import add_config_args, config_from_args
    from engine.config.streamd import CaptureConfig

    add_config_args(p)
    args = p.parse_args(argv)
    config_from_args(args, CaptureConfig)  # --print-config / --validate-config for the capture section
    try:
        source = open_source(args.video or "", args.camera, args.fps if args.camera is not None or
                             (args.video and Path(args.video).is_dir()) else None,
                             args.width, args.height, args.fourcc, args.exposure)
    except CaptureError as exc:
        print(f"mfvan-record: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    folder = out.suffix == ""
    grab = Grabber(source, args.ring, live=args.camera is not None).start()
    writer = None
    if folder:
        out.mkdir(parents=True, exist_ok=True)
    sidecar = open(out / "timestamps.csv" if folder else Path(str(out) + ".ts.csv"), "w")  # noqa: SIM115
    sidecar.write("index,ts_ns\n")
    n = 0
    start = time.monotonic()
    try:
        while True:
            if args.seconds and time.monotonic() - start >= args.seconds:
                break
            if args.frames and n >= args.frames:
                break
            try:
                fr = grab.get(timeout=1.0)
            except TimeoutError:
                continue
            if fr is None:
                break
            if folder:
                cv2.imwrite(str(out / f"img{fr.index + 1}.png"), fr.image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            else:
                if writer is None:
                    h, w = fr.image.shape[:2]
                    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"FFV1"), source.fps, (w, h))
                    if not writer.isOpened():
                        print(f"mfvan-record: cannot write FFV1 to {out}", file=sys.stderr)
                        return 2
                writer.write(fr.image)
            sidecar.write(f"{fr.index},{fr.ts_ns}\n")
            n += 1
    except KeyboardInterrupt:
        pass
    finally:
        grab.stop()
        if writer is not None:
            writer.release()
        sidecar.close()
    s = grab.stats
    print(f"mfvan-record: {n} frames → {out} ({s.gaps} sensor gaps, {s.overruns} lost to overruns)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
