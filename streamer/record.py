"""`mfvan-record`: camera (or any source) → lossless recording + timestamp sidecar, for replay.

Why lossless (FFV1 in Matroska, or a PNG folder): micro-movements are a pixel or two; a lossy
codec's blocking and its frame-to-frame quantisation noise are motion of that size. The
sidecar `<out>.ts.csv` keeps every frame's capture timestamp and source index, so a replay
with `mfvan-streamd --video` sees the same sensor gaps (and the same dropped frames: their
indices are missing) as the live run did.

Nothing half-written is left looking valid: each PNG is written under a temporary name and
renamed, an FFV1 file and the sidecar are written as `.part` files and renamed only when the
recording ends cleanly. OpenCV's writers do not raise on a full disk, so free space is checked
before each frame; running out stops the recording with an error and exit status 1.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import sys
import time
from pathlib import Path

import cv2

from streamer.capture import CaptureError, Grabber, camera_arg, open_camera, open_source

RESERVE_BYTES = 1 << 20  # never fill a disk to the last byte: logs and the sidecar need room


def _ensure_space(where: Path, frame_bytes: int) -> None:
    """Raise ENOSPC before a frame would not fit (cv2 writers fail silently on a full disk)."""
    free = shutil.disk_usage(where).free
    if free < 2 * frame_bytes + RESERVE_BYTES:
        raise OSError(errno.ENOSPC, f"No space left on device ({free} bytes free at {where})")


def _part(path: Path) -> Path:
    """`rec.mkv` → `rec.part.mkv`: the container is chosen by the extension, so keep it last."""
    return path.with_name(f"{path.stem}.part{path.suffix}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mfvan-record", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", metavar="N|genicam:ID", help="V4L2 camera /dev/videoN, or a GenICam camera by "
                     "serial, user id, IP or device id (mfvan-streamd --list-cameras)")
    src.add_argument("--video", metavar="PATH", help="re-record a video or frame folder (transcode to lossless)")
    p.add_argument("--out", required=True, help="FILE.mkv (FFV1) or a folder (PNG frames)")
    p.add_argument("--fps", type=float, default=200.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fourcc", default="MJPG", help="camera transport format")
    p.add_argument("--exposure", type=float, help="V4L2: the driver's units; GenICam: ExposureTime in µs")
    p.add_argument("--pixel-format", default="Mono8", help="GenICam PixelFormat (Mono8, BayerRG8 ...)")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0 = until the source ends or Ctrl-C)")
    p.add_argument("--frames", type=int, default=0, help="stop after this many frames (0 = no limit)")
    p.add_argument("--ring", type=int, default=1024, help="frames buffered between grab and write")
    from engine.config.cli import add_config_args, config_from_args
    from engine.process import setup_logging
    from streamer.config import CameraConfig, CaptureConfig

    add_config_args(p)
    args = p.parse_args(argv)
    config_from_args(args, CaptureConfig)  # --print-config / --validate-config for the capture section
    setup_logging("WARNING")  # the capture code warns through logging
    try:
        if args.camera is not None:
            cam = camera_arg(args.camera)
            if "genicam" in cam:
                cam["genicam"].update(pixel_format=args.pixel_format, exposure_us=args.exposure)
            else:
                cam["exposure"] = args.exposure
            cam = CameraConfig(**cam, fps=args.fps, width=args.width, height=args.height, fourcc=args.fourcc)
            source = open_camera(cam, CaptureConfig(ring_frames=args.ring))
        else:
            source = open_source(args.video, None, args.fps if Path(args.video).is_dir() else None)
    except (CaptureError, ValueError) as exc:
        print(f"mfvan-record: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    folder = out.suffix == ""
    if folder:
        out.mkdir(parents=True, exist_ok=True)
    elif not out.parent.is_dir():
        print(f"mfvan-record: folder {out.parent} does not exist", file=sys.stderr)
        return 2
    sidecar_path = out / "timestamps.csv" if folder else Path(str(out) + ".ts.csv")
    sidecar_part = sidecar_path.with_name(sidecar_path.name + ".part")
    video_part = None if folder else _part(out)
    grab = Grabber(source, args.ring, live=source.live).start()
    writer = None
    sidecar = open(sidecar_part, "w")  # noqa: SIM115  (closed in finally)
    sidecar.write("index,ts_ns\n")
    n = 0
    failure: str | None = None
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
            _ensure_space(out if folder else out.parent, fr.image.nbytes)
            if folder:
                final = out / f"img{fr.index + 1}.png"
                tmp = out / f".img{fr.index + 1}.tmp.png"
                if not cv2.imwrite(str(tmp), fr.image, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
                    tmp.unlink(missing_ok=True)
                    raise OSError(errno.EIO, f"cannot write {final}")
                os.replace(tmp, final)
            else:
                if writer is None:
                    h, w = fr.image.shape[:2]
                    # a mono camera's grey plane is recorded as one (FFV1 gray), not tripled
                    writer = cv2.VideoWriter(str(video_part), cv2.VideoWriter_fourcc(*"FFV1"), source.fps, (w, h),
                                             isColor=fr.image.ndim == 3)
                    if not writer.isOpened():
                        print(f"mfvan-record: cannot write FFV1 to {out}", file=sys.stderr)
                        return 2
                writer.write(fr.image)
            sidecar.write(f"{fr.index},{fr.ts_ns}\n")
            n += 1
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        failure = f"{exc.strerror or exc}"
    finally:
        grab.stop()
        if writer is not None:
            writer.release()
        try:
            sidecar.close()
        except OSError as exc:
            failure = failure or f"{exc.strerror or exc}"
    if failure is None:
        try:
            if video_part is not None and video_part.exists():
                os.replace(video_part, out)
            os.replace(sidecar_part, sidecar_path)
        except OSError as exc:
            failure = f"{exc.strerror or exc}"
    if failure is not None:
        for leftover in (video_part, sidecar_part):
            if leftover is not None:
                leftover.unlink(missing_ok=True)
        kept = f"; the {n} whole PNG frames written stay in {out}, without a sidecar" if folder and n else ""
        print(f"mfvan-record: recording stopped after {n} frames: {failure}{kept}", file=sys.stderr)
        return 1
    s = grab.stats
    lost = {k: v for k, v in source.counters().items() if k.startswith("buffers_") and v}
    print(f"mfvan-record: {n} frames → {out} ({s.gaps} sensor gaps, {s.overruns} lost to overruns"
          + "".join(f", {v} {k.removeprefix('buffers_')}" for k, v in lost.items()) + ")", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
