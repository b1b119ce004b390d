"""Frame sources and the grab thread: every frame timestamped, buffered in a bounded ring.

Why a thread and a ring: a camera delivers frames on its own clock; if the consumer stalls,
the driver drops frames silently. The grab thread only reads and stamps, so it never waits on
faces/spotting; when the ring is full the oldest frame is dropped and counted as an overrun,
which is a different failure from a sensor gap (a timestamp jump > gap_factor/fps) and is
counted separately. A replay that is not paced (`realtime=False`) has no clock to fall behind,
so it waits for room instead of dropping (lossless, as fast as the consumer goes).

Sources are found by name in `SOURCES` (engine.registry): `file`, `v4l2` and `genicam`
(streamer/genicam.py, imported only when a camera names it); `open_camera` picks one from a
camera's config section (`CameraConfig.kind`). A source may add counters of its own
(`Source.counters()`, help text in `SOURCE_HELP`): the streamer exports them beside the ring's.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from engine.registry import Registry
from streamer.config import CameraConfig, CaptureConfig

log = logging.getLogger("mfvan.capture")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff")


class CaptureError(RuntimeError):
    """A source that cannot be opened or read; the message says what to check."""


@dataclass
class Frame:
    index: int  # position in the source (0-based), also for dropped frames
    ts_ns: int  # capture time: driver/sidecar/file time on the monotonic scale of the source
    image: np.ndarray  # BGR uint8, or one grey plane (H x W) from a mono camera
    wall_ns: int = 0  # wall clock when grabbed (for the wire protocol)
    gap_before: bool = False  # a sensor gap or an overrun lies between this frame and the previous


@dataclass
class CaptureStats:
    frames: int = 0  # frames grabbed
    gaps: int = 0  # sensor gaps (timestamp jumps)
    overruns: int = 0  # frames dropped because the ring was full
    extra: dict[str, int] = field(default_factory=dict)


def _natural_key(p: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name))


def _timestamp_rows(side: Path) -> list[tuple[int, int]]:
    """(index, ts_ns) rows of a timestamp CSV; a malformed one is a CaptureError naming its line.

    Why: a damaged sidecar surfaced as an IndexError traceback, or as a ValueError that the
    worker blamed on the noise-floor file ("noise floor file  unusable").
    """
    try:
        lines = side.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptureError(f"{side}: unreadable timestamp file: {exc}") from None
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            if len(parts) < 2:
                raise ValueError
            rows.append((int(parts[0]), int(parts[1])))
        except ValueError:
            raise CaptureError(f"{side}:{n}: expected 'index,ts_ns', got {line[:60]!r} (delete or fix the "
                               "timestamp file to replay without it)") from None
    return rows


def read_sidecar(path: Path) -> list[int] | None:
    """Timestamps written by `mfvan-record` next to a recording (`<file>.ts.csv`: index,ts_ns)."""
    side = Path(str(path) + ".ts.csv")
    if not side.exists():
        return None
    return [ts for _i, ts in _timestamp_rows(side)]


MIN_MICRO_FPS = 100.0


def rate_warning(fps: float) -> str | None:
    """Micro-expressions last 65-500 ms: below ~100 fps the spotter sees a handful of frames each."""
    if fps < MIN_MICRO_FPS:
        return (f"{fps:.0f} fps is too slow for micro-expressions (they last 65-500 ms; use >= "
                f"{MIN_MICRO_FPS:.0f} fps, 200 is the design rate): many will be missed")
    return None


class Source:
    """A frame source. `fps` is the nominal rate; `frames()` yields (image, ts_ns or None).

    `live`: a camera on its own clock (frames without a timestamp get the host's monotonic
    time; a full ring drops, never waits). `mismatch`: asked vs got, for a camera whose mode
    was set. `counters()`: the source's own drop counters (names in SOURCE_HELP).
    """

    fps: float
    name: str
    live: bool = False
    mismatch: dict = {}  # noqa: RUF012 - read-only default, replaced per instance

    def frames(self) -> Iterator[tuple[np.ndarray, int | None]]:
        raise NotImplementedError

    def counters(self) -> dict[str, int]:
        return {}

    def incomplete(self) -> str | None:
        """After `frames()` ended: why the replay stopped short, or None (complete, or live)."""
        return None

    def close(self) -> None:
        pass


class FolderSource(Source):
    """A folder of images (CASME II layout: img1.jpg, img2.jpg ...), naturally sorted."""

    def __init__(self, path: Path, fps: float):
        self.paths = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
        if not self.paths:
            raise CaptureError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        self.fps, self.name = fps, str(path)
        side = path / "timestamps.csv"  # written by mfvan-record into a frame folder
        self.ts = None
        if side.exists():
            self.ts = {i + 1: t for i, t in _timestamp_rows(side)}

    def frames(self) -> Iterator[tuple[np.ndarray, int | None]]:
        for p in self.paths:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise CaptureError(f"{p}: unreadable image")
            ts = None
            if self.ts is not None and (m := re.search(r"(\d+)$", p.stem)):
                ts = self.ts.get(int(m.group(1)))
            yield img, ts


class VideoSource(Source):
    """A video file through OpenCV's FFmpeg reader; timestamps from a sidecar when present."""

    def __init__(self, path: Path, fps: float | None):
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            raise CaptureError(f"{path}: cannot open as a video (is it a video file or a frame folder?)")
        file_fps = self.cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.fps = float(fps or file_fps or 30.0)
        self.name = str(path)
        self.sidecar = read_sidecar(path)
        # what a complete replay delivers: the sidecar's count (one row per recorded frame), else
        # the container's (estimated from the duration for some formats, hence the tolerance)
        self.expected = len(self.sidecar) if self.sidecar else int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.read = 0

    def frames(self) -> Iterator[tuple[np.ndarray, int | None]]:
        i = 0
        while True:
            ok, img = self.cap.read()
            if not ok:
                return
            ts = self.sidecar[i] if self.sidecar is not None and i < len(self.sidecar) else None
            i += 1
            self.read = i
            yield img, ts

    def incomplete(self) -> str | None:
        """A truncated or damaged file ends early and OpenCV just stops: say so."""
        short = self.expected - self.read
        if self.expected > 0 and short > max(2, 0.02 * self.expected):
            return (f"the video ended after {self.read} of {self.expected} frames "
                    "(truncated or damaged file): the replay is incomplete")
        return None

    def close(self) -> None:
        self.cap.release()


class CameraSource(Source):
    """A V4L2 camera. The requested mode is set, then read back; a mismatch is reported.

    Timestamps are the driver's (the V4L2 buffer's, CLOCK_MONOTONIC on uvcvideo) when it gives
    them, else the host's when the frame is grabbed. The driver's queue is as deep as OpenCV
    allows (CAP_PROP_BUFFERSIZE, at most 10 buffers): at 200 fps its default of 4 is 20 ms of
    slack before the driver drops frames silently, which no counter of ours would see.
    """

    live = True
    BUFFERS = 10  # OpenCV's V4L2 backend caps the queue at MAX_V4L_BUFFERS = 10

    def __init__(self, device: int, width: int, height: int, fps: float, fourcc: str = "MJPG",
                 exposure: float | None = None, strict: bool = False):
        backend = cv2.CAP_V4L2 if os.name == "posix" else cv2.CAP_ANY
        self.cap = cv2.VideoCapture(device, backend)
        if not self.cap.isOpened():
            raise CaptureError(f"camera {device}: cannot open /dev/video{device} (present? permissions: video group?)")
        self.cap.set(cv2.CAP_PROP_BUFFERSIZE, self.BUFFERS)
        self.cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc))
        self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self.cap.set(cv2.CAP_PROP_FPS, fps)
        if exposure is not None:
            self.cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1)  # V4L2 manual mode
            self.cap.set(cv2.CAP_PROP_EXPOSURE, exposure)
        got = self.mode()
        want = {"width": width, "height": height, "fps": fps, "fourcc": fourcc}
        if exposure is not None:
            want["exposure"] = exposure
        self.mismatch = {k: (want[k], got[k]) for k in want if _differs(want[k], got[k])}
        if self.mismatch:
            msg = f"camera {device}: mode mismatch (asked, got): {self.mismatch}"
            if strict:
                raise CaptureError(msg)
            log.warning(msg)
        self.fps = float(got["fps"] or fps)
        self.name = f"/dev/video{device}"
        self.driver_ts = 0  # frames stamped by the driver (the rest by the host)

    def mode(self) -> dict:
        code = int(self.cap.get(cv2.CAP_PROP_FOURCC))
        return {
            "width": int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            "fps": float(self.cap.get(cv2.CAP_PROP_FPS)),
            "fourcc": "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)),
            "exposure": float(self.cap.get(cv2.CAP_PROP_EXPOSURE)),
            "buffers": int(self.cap.get(cv2.CAP_PROP_BUFFERSIZE)),
        }

    def frames(self) -> Iterator[tuple[np.ndarray, int | None]]:
        while True:
            ok = self.cap.grab()
            if not ok:
                return
            # the driver's timestamp (ms, CLOCK_MONOTONIC on V4L2) when it gives one
            ts_ms = self.cap.get(cv2.CAP_PROP_POS_MSEC)
            ok, img = self.cap.retrieve()
            if not ok:
                return
            if ts_ms and ts_ms > 0:
                self.driver_ts += 1
                yield img, int(ts_ms * 1e6)
            else:
                yield img, None

    def close(self) -> None:
        self.cap.release()


def _differs(want: object, got: object) -> bool:
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return abs(float(want) - float(got)) > 0.01 * max(1.0, abs(float(want)))
    return str(want) != str(got)


def open_source(video: str = "", device: int | None = None, fps: float | None = None,
                width: int = 640, height: int = 480, fourcc: str = "MJPG",
                exposure: float | None = None) -> Source:
    """A camera (`device`), a video file or a folder of frames (`video`)."""
    if video:
        p = Path(video)
        if not p.exists():
            raise CaptureError(f"{video}: no such file or folder")
        if p.is_dir():
            return FolderSource(p, fps or 200.0)
        return VideoSource(p, fps)
    if device is None:
        raise CaptureError("no source: give --camera N or --video PATH")
    return CameraSource(device, width, height, fps or 200.0, fourcc, exposure)


frame_differs = _differs  # asked-vs-got comparison, shared with the GenICam source


# -- the source registry --------------------------------------------------------------------------
SOURCES: Registry[Callable[[CameraConfig, CaptureConfig], Source]] = Registry(
    "camera source", "mfvan.camera_sources", unavailable=CaptureError)


def _file_source(cam: CameraConfig, capture: CaptureConfig) -> Source:
    file_rate = not Path(cam.video).is_dir() and cam.fps_from_file
    return open_source(cam.video, None, None if file_rate else cam.fps)


def _v4l2_source(cam: CameraConfig, capture: CaptureConfig) -> Source:
    return CameraSource(cam.device, cam.width, cam.height, cam.fps, cam.fourcc, cam.exposure)


SOURCES.register("file", _file_source)
SOURCES.register("v4l2", _v4l2_source)
SOURCES.register("genicam", "streamer.genicam:from_config")


def open_camera(cam: CameraConfig, capture: CaptureConfig | None = None) -> Source:
    """The source a camera section names (video file/folder, V4L2 device or GenICam camera)."""
    if not cam.kind:
        raise CaptureError(f"camera {cam.name}: no source: give device, video or genicam.id")
    src = SOURCES.load(cam.kind)(cam, capture or CaptureConfig())
    slow = rate_warning(src.fps)
    if slow is not None:
        try:
            src.warnings = [*getattr(src, "warnings", ()), slow]
        except AttributeError:
            pass  # a source whose warnings are its own (read-only)
    return src


def camera_arg(text: str) -> dict:
    """`--camera` → a camera section: `N` is /dev/videoN, `genicam:ID` a GenICam camera."""
    text = text.strip()
    if text.isdigit():
        return {"name": f"cam{text}", "device": int(text)}
    if text.lower().startswith("genicam:") and len(text) > len("genicam:"):
        ident = text[len("genicam:"):]
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", ident.split("=")[-1])[:60] or "genicam"
        return {"name": name, "genicam": {"id": ident}}
    raise ValueError(f"--camera {text!r}: give a V4L2 index (0 for /dev/video0) or genicam:ID "
                     "(serial, user id, IP or device id; see --list-cameras)")


# Counters a source may add to the streamer's (mfvan_streamer_<name>_total; SOURCE_GAUGES as
# mfvan_streamer_<name>): every name a Source.counters() or the Grabber's stats.extra returns,
# with the help /metrics shows. The GenICam source reports the buffer, packet and clock ones;
# the Grabber measures flicker on every source.
SOURCE_HELP = {
    "buffers_incomplete": "camera frames dropped because packets were lost (after resends) or did not fit",
    "buffers_timeout": "camera frames dropped because they did not complete in time",
    "buffers_missing": "camera frames never received at all (frame id jumps)",
    "buffers_underrun": "camera frames dropped because no free buffer was queued (the grab thread fell behind)",
    "packets_missing": "GigE Vision stream packets missing",
    "packets_resent": "GigE Vision stream packets the camera resent on request",
    "packets_resend_requests": "GigE Vision packet resend requests sent",
    "clock_offset_us": "camera clock mapped to the host's monotonic clock: host minus camera, microseconds",
    "clock_drift_ppb": "camera clock drift against the host clock, parts per billion",
    "flicker_permille": "frame-to-frame brightness ripple over the last second, 1/1000 of the mean (mains flicker)",
}
SOURCE_GAUGES = ("clock_offset_us", "clock_drift_ppb", "flicker_permille")


def list_v4l2() -> list[dict]:
    """V4L2 capture devices with their formats, sizes and rates (VIDIOC_ENUM_* ioctls)."""
    import fcntl
    import struct

    def ioc(direction: int, nr: int, size: int) -> int:
        return (direction << 30) | (size << 16) | (ord("V") << 8) | nr

    querycap, enum_fmt = ioc(2, 0, 104), ioc(3, 2, 64)
    enum_size, enum_ival = ioc(3, 74, 44), ioc(3, 75, 52)
    out = []
    for node in sorted(Path("/dev").glob("video*"), key=_natural_key):
        try:
            fd = os.open(node, os.O_RDWR | os.O_NONBLOCK)
        except OSError as exc:
            out.append({"device": str(node), "error": exc.strerror or str(exc)})
            continue
        try:
            cap = fcntl.ioctl(fd, querycap, bytearray(104))
            driver, card, bus = (cap[a:b].split(b"\0")[0].decode(errors="replace") for a, b in ((0, 16), (16, 48), (48, 80)))
            caps, device_caps = struct.unpack_from("<II", cap, 84)
            if not ((device_caps or caps) & 1):  # V4L2_CAP_VIDEO_CAPTURE: skip metadata nodes
                continue
            modes = []
            for i in range(64):
                try:
                    fmt = fcntl.ioctl(fd, enum_fmt, struct.pack("<III32sII12x", i, 1, 0, b"", 0, 0))
                except OSError:
                    break
                code = struct.unpack_from("<I", fmt, 44)[0]
                fourcc = code.to_bytes(4, "little").decode(errors="replace")
                sizes = []
                for j in range(256):
                    try:
                        fs = fcntl.ioctl(fd, enum_size, struct.pack("<III24x8x", j, code, 0))
                    except OSError:
                        break
                    kind, w, h = struct.unpack_from("<III", fs, 8)
                    if kind != 1:  # stepwise/continuous: report the range and stop
                        w0, w1, _, h0, h1, _ = struct.unpack_from("<6I", fs, 12)
                        sizes.append(f"{w0}-{w1}x{h0}-{h1}")
                        break
                    rates = []
                    for k in range(64):
                        try:
                            iv = fcntl.ioctl(fd, enum_ival, struct.pack("<IIIII24x8x", k, code, w, h, 0))
                        except OSError:
                            break
                        ikind, num, den = struct.unpack_from("<III", iv, 16)
                        if ikind != 1 or not num:
                            break
                        rates.append(f"{den / num:g}")
                    sizes.append(f"{w}x{h}@{','.join(rates) or '?'}")
                modes.append(f"{fourcc} {' '.join(sizes)}")
            out.append({"device": str(node), "card": card, "driver": driver, "bus": bus, "modes": modes})
        except OSError as exc:
            out.append({"device": str(node), "error": exc.strerror or str(exc)})
        finally:
            os.close(fd)
    return out


def list_cameras() -> list[str]:
    """What `mfvan-streamd --list-cameras` prints: V4L2 devices, then GenICam cameras."""
    lines = ["V4L2 (--camera N):"]
    v4l2 = list_v4l2()
    for d in v4l2:
        if "error" in d:
            lines.append(f"  {d['device']}: {d['error']}")
            continue
        lines.append(f"  {d['device']}  {d['card']} ({d['driver']}, {d['bus']})")
        lines += [f"      {m}" for m in d["modes"]] or ["      no capture formats listed"]
    if not v4l2:
        lines.append("  none (no /dev/video* capture device)")
    lines.append("GenICam (--camera genicam:SERIAL):")
    from streamer import genicam

    why = genicam.unavailable()
    if why:
        lines.append(f"  not available: {why}")
        return lines
    cams = genicam.list_cameras()
    lines += genicam.describe(cams) or ["  none found (GigE: same subnet? firewall open for UDP 3956? USB3: permissions?)"]
    return lines


class FlickerMeter:
    """Frame-to-frame brightness ripple: mains-powered light beating against the frame rate.

    Why in capture: at 200 fps a lamp on 50 Hz mains (100 Hz flicker) is brighter in every
    other frame, one on 60 Hz mains beats at 40 Hz; the spotter's optical flow normalises
    brightness, but a ripple of a few percent is still the size of a micro-movement's signal.
    Slow changes (a face moving, a cloud) hardly move it. Cost: the mean of a 1/32 x 1/32
    sample of the frame (a few µs). Exported as `flicker_permille` (the ripple's amplitude
    in 1/1000 of the mean brightness over the last second); one warning when it passes 1 %.
    """

    WARN_PERMILLE = 10

    def __init__(self, out: dict[str, int], window: int, name: str):
        self.out, self.window, self.name = out, window, name
        self.prev: float | None = None
        self.sq = self.level = 0.0
        self.n = 0
        self.warned = False
        out["flicker_permille"] = 0

    def add(self, img: np.ndarray, gap: bool) -> None:
        m = float(img[::32, ::32].mean())
        if self.prev is not None and not gap:
            d = m - self.prev
            self.sq += d * d
            self.level += m
            self.n += 1
        self.prev = m
        if self.n >= self.window:
            rms, mean = (self.sq / self.n) ** 0.5, self.level / self.n
            permille = round(500.0 * rms / mean) if mean > 1.0 else 0  # alternating +-a: rms = 2a
            self.out["flicker_permille"] = permille
            if permille >= self.WARN_PERMILLE and not self.warned:
                self.warned = True
                log.warning("%s: brightness ripples %.1f %% frame to frame: mains flicker? use flicker-free "
                            "(DC or high-frequency) lighting (docs/cameras.md)", self.name, permille / 10)
            self.sq = self.level = 0.0
            self.n = 0


class Grabber:
    """The grab thread + bounded ring. `get()` is the consumer side; None means the end."""

    def __init__(self, source: Source, ring_frames: int = 512, gap_factor: float = 1.5,
                 realtime: bool = False, live: bool = False):
        self.source = source
        self.ring: deque[Frame] = deque()
        self.capacity = ring_frames
        self.gap_ns = gap_factor * 1e9 / source.fps
        self.realtime = realtime
        self.drop_when_full = live or realtime  # a clock we cannot pause: drop, never wait
        self.stats = CaptureStats()
        self.flicker = FlickerMeter(self.stats.extra, max(8, round(source.fps)), source.name)
        self._cond = threading.Condition()
        self._done = False
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="grab", daemon=True)

    def start(self) -> Grabber:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=5)
        self.source.close()

    def _run(self) -> None:
        period = 1e9 / self.source.fps
        start = time.monotonic_ns()
        prev_ts: int | None = None
        try:
            for i, (img, ts) in enumerate(self.source.frames()):
                if self._stop.is_set():
                    break
                if ts is None:
                    # replayed files have no clock: the nominal rate is their timeline
                    ts = time.monotonic_ns() if self.source.live else round(i * period)
                if self.realtime:
                    delay = start + i * period - time.monotonic_ns()
                    if delay > 0:
                        time.sleep(delay / 1e9)
                gap = prev_ts is not None and (ts - prev_ts) > self.gap_ns
                prev_ts = ts
                self.flicker.add(img, gap)
                self._put(Frame(i, ts, img, time.time_ns(), gap))
        except BaseException as exc:  # reported to the consumer, never swallowed
            self.error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _put(self, frame: Frame) -> None:
        with self._cond:
            self.stats.frames += 1
            if frame.gap_before:
                self.stats.gaps += 1
            while len(self.ring) >= self.capacity:
                if self.drop_when_full:
                    self.ring.popleft()
                    self.stats.overruns += 1  # the consumer sees the index jump
                    break
                self._cond.wait(0.1)
                if self._stop.is_set():
                    return
            self.ring.append(frame)
            self._cond.notify_all()

    def get(self, timeout: float = 0.5) -> Frame | None:
        """Next frame; None at the end of the source. Raises what the grab thread raised."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.ring:
                if self._done:
                    if self.error is not None:
                        raise CaptureError(str(self.error)) from self.error
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self._cond.wait(left)
            frame = self.ring.popleft()
            self._cond.notify_all()
        return frame
