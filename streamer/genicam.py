"""GenICam cameras (GigE Vision, USB3 Vision) through Aravis: the machine-vision cameras that
record micro-expressions at 200 fps (CASME II's Point Grey, SAMM's Basler).

Why Aravis: it speaks GVCP/GVSP and U3V itself (no vendor SDK), reads each camera's own GenICam
XML, and Debian ships it with GObject introspection; PyGObject (the `[genicam]` extra) is
the only Python piece. Everything here imports it lazily, so the rest of mfvan runs without.

What this module adds on top of the camera's features (docs/cameras.md):
- The mode is set, then read back: a mismatch is reported like V4L2's, and a frame rate the
  camera cannot reach at this ROI and exposure is said at open, not discovered in the counters.
- Frames carry the camera's hardware timestamp mapped onto the host's monotonic clock
  (`ClockMap`): spacing is the sensor's, not the network's or the scheduler's.
- Every frame the camera numbered but we did not get is counted by why: incomplete (packets
  lost), timed out, missing (never arrived), underrun (no free buffer): none of them is a ring
  overrun, which means the consumer fell behind.
- Mono8 stays one grey plane (the spotter works on grey; the face detector expands it only
  where it needs three channels); Bayer is demosaiced once, straight to what is asked.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator

import cv2
import numpy as np

from streamer.capture import SOURCE_GAUGES, SOURCE_HELP, CaptureError, Source, frame_differs
from streamer.config import CameraConfig, CaptureConfig, GenICamConfig

log = logging.getLogger("mfvan.genicam")

PREFIX = "genicam:"

HELP, GAUGES = SOURCE_HELP, SOURCE_GAUGES  # the counters this source reports (names and help in capture)

# GenICam names the 2x2 tile from its top-left pixel, OpenCV from the second row: the same
# mosaic has opposite names (checked in tests/streamer/test_genicam.py on a synthetic mosaic).
_BAYER_BGR = {"BayerRG8": cv2.COLOR_BayerBG2BGR, "BayerBG8": cv2.COLOR_BayerRG2BGR,
              "BayerGR8": cv2.COLOR_BayerGB2BGR, "BayerGB8": cv2.COLOR_BayerGR2BGR}
_BAYER_GREY = {"BayerRG8": cv2.COLOR_BayerBG2GRAY, "BayerBG8": cv2.COLOR_BayerRG2GRAY,
               "BayerGR8": cv2.COLOR_BayerGB2GRAY, "BayerGB8": cv2.COLOR_BayerGR2GRAY}
FORMATS = ("Mono8", *_BAYER_BGR, "RGB8", "BGR8")
_STREAM_INFOS = {"packets_missing": "n_missing_packets", "packets_resent": "n_resent_packets",
                 "packets_resend_requests": "n_resend_requests", "buffers_underrun": "n_underruns"}
POOL_BYTES = 256 << 20  # the buffer pool's memory cap


def _aravis():
    """The Aravis module, or a CaptureError that says what to install."""
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ImportError, ValueError) as exc:
        raise CaptureError("GenICam cameras need Aravis 0.8 and PyGObject: apt-get install gir1.2-aravis-0.8 "
                           f"libgirepository1.0-dev libcairo2-dev pkg-config, then pip install 'mfvan[genicam]' ({exc})"
                           ) from None
    return Aravis


def unavailable() -> str | None:
    """Why GenICam cameras cannot be used here (None: they can)."""
    try:
        _aravis()
    except CaptureError as exc:
        return str(exc)
    return None


def _glib_error():
    from gi.repository import GLib

    return GLib.Error


def pool_size(ring_frames: int, payload: int, fps: float, configured: int = 0) -> int:
    """Aravis buffers to queue: they cover the grab thread's own hiccups, the ring the consumer's.

    A quarter of the ring (16..256), never less than 0.1 s of frames, within POOL_BYTES.
    """
    if configured:
        return configured
    n = min(256, max(16, ring_frames // 4, int(fps * 0.1)))
    return max(4, min(n, POOL_BYTES // max(1, payload)))


class ClockMap:
    """Camera hardware timestamps → host monotonic nanoseconds, spacing kept from the camera.

    Why not the host's arrival time: it carries the network's and the scheduler's jitter
    (milliseconds on a busy host at 200 fps); the camera's clock ticks at the exposure. The
    offset host - camera is bounded below by the fastest arrivals, so each second's minimum
    is a sample of it; a line through the recent minima gives the offset and its drift. The
    applied offset follows that line by at most `slew_ns` per frame, so a correction never
    bends the spacing between two frames by more than that.
    """

    def __init__(self, window_ns: int = 1_000_000_000, windows: int = 60, slew_ns: int = 20_000):
        self.window_ns, self.slew_ns = window_ns, slew_ns
        self.minima: deque[tuple[int, int]] = deque(maxlen=windows)  # (camera ns, min host - camera)
        self.hw0: int | None = None
        self.applied = 0  # the offset in use (host - camera)
        self.a = 0.0  # fitted offset at hw0 ...
        self.b = 0.0  # ... and its drift (ns per ns)
        self._win_start = 0
        self._win_min = 0
        self._last_hw = 0
        self.resets = 0

    def map(self, hw_ns: int, host_ns: int) -> int:
        r = host_ns - hw_ns
        if self.hw0 is None or hw_ns <= self._last_hw:
            if self.hw0 is not None:  # the camera clock went back: the camera was reset
                self.resets += 1
                self.minima.clear()
            self.hw0 = self._win_start = hw_ns
            self.applied = self._win_min = r
            self.a, self.b = float(r), 0.0
        self._last_hw = hw_ns
        self._win_min = min(self._win_min, r)
        if hw_ns - self._win_start >= self.window_ns:
            self.minima.append((self._win_start - self.hw0, self._win_min))
            self._fit()
            self._win_start, self._win_min = hw_ns, r
        target = self.a + self.b * (hw_ns - self.hw0) if self.minima else self._win_min
        step = int(target) - self.applied
        self.applied += max(-self.slew_ns, min(self.slew_ns, step))
        return hw_ns + self.applied

    def _fit(self) -> None:
        if len(self.minima) < 3:
            self.a, self.b = float(min(m for _, m in self.minima)), 0.0
            return
        x = np.array([t for t, _ in self.minima], np.float64)
        y = np.array([m for _, m in self.minima], np.float64)
        y0 = y[0]  # fit around the first value: offsets are ~1e18 ns and would lose precision
        self.b, a = np.polyfit(x, y - y0, 1)
        self.a = a + y0

    @property
    def drift_ppb(self) -> int:
        return round(self.b * 1e9)


def _device_list(aravis) -> list[dict]:
    aravis.update_device_list()
    out = []
    for i in range(aravis.get_n_devices()):
        out.append({"id": aravis.get_device_id(i) or "", "vendor": aravis.get_device_vendor(i) or "",
                    "model": aravis.get_device_model(i) or "", "serial": aravis.get_device_serial_nbr(i) or "",
                    "address": aravis.get_device_address(i) or "", "physical_id": aravis.get_device_physical_id(i) or "",
                    "protocol": aravis.get_device_protocol(i) or ""})
    return out


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def resolve(ident: str) -> str:
    """A serial, DeviceUserID, IP address or device id → the id Aravis opens the camera by.

    `serial=`, `user=`, `ip=` or `id=` in front says which one is meant; without, the first
    that matches wins in that order of cheapness (the user id needs each camera opened).
    """
    aravis = _aravis()
    ident = ident.removeprefix(PREFIX)
    key, sep, value = ident.partition("=")
    if not sep or key not in ("serial", "user", "ip", "id"):
        key, value = "", ident
    devices = _device_list(aravis)
    fields = {"id": ("id",), "serial": ("serial",), "ip": ("address",), "": ("id", "serial", "address")}
    for d in devices:
        if key != "user" and any(d[f] == value for f in fields[key]):
            return d["id"]
        if not key and (d["physical_id"].lower() == value.lower() or f"{d['vendor']}-{d['serial']}" == value):
            return d["id"]
    if key in ("", "ip") and _is_ip(value):
        return value  # not discovered by broadcast (another subnet): Aravis asks that address itself
    if key in ("", "user"):
        error = _glib_error()
        for d in devices:
            try:
                cam = aravis.Camera.new(d["id"])
                user = _feature_string(cam.get_device(), "DeviceUserID")
            except error:
                continue
            finally:
                cam = None
            if user == value:
                return d["id"]
    seen = ", ".join(f"{d['id']} (serial {d['serial']}, {d['address']})" for d in devices) or "none"
    raise CaptureError(f"genicam {ident}: no such camera (found: {seen}); check power, cable and that the "
                       "camera is on this host's subnet (mfvan-streamd --list-cameras)")


def _feature_string(dev, name: str) -> str | None:
    node = dev.get_feature(name)
    if node is None:
        return None
    try:
        return node.get_value_as_string()
    except _glib_error():
        return None


def list_cameras() -> list[dict]:
    """Every GenICam camera Aravis finds, with what it can do (opened briefly to read it)."""
    aravis = _aravis()
    error = _glib_error()
    out = []
    for d in _device_list(aravis):
        try:
            cam = aravis.Camera.new(d["id"])
            dev = cam.get_device()
            w, h = cam.get_sensor_size()
            x, y, rw, rh = cam.get_region()
            fr = cam.get_frame_rate_bounds() if cam.is_frame_rate_available() else None
            ex = cam.get_exposure_time_bounds() if cam.is_exposure_time_available() else None
            d.update(user_id=_feature_string(dev, "DeviceUserID") or "",
                     pixel_formats=[f for f in cam.dup_available_pixel_formats_as_strings() or []],
                     sensor=(w, h), roi=(x, y, rw, rh), width_max=cam.get_width_bounds().max,
                     height_max=cam.get_height_bounds().max,
                     fps_range=None if fr is None else (fr.min, fr.max),
                     exposure_us_range=None if ex is None else (ex.min, ex.max),
                     binning=cam.is_binning_available())
        except error as exc:
            d["error"] = f"modes not read: {exc.message} (in use by another program?)"
        finally:
            cam = None
        out.append(d)
    return out


def describe(cams: list[dict]) -> list[str]:
    """`list_cameras()` as the lines `mfvan-streamd --list-cameras` prints."""
    lines = []
    for d in cams:
        lines.append(f"  {PREFIX}{d['serial'] or d['id']}  {d['vendor']} {d['model']}  serial {d['serial']}  "
                     f"id {d['id']}  {d['protocol']} {d['address']}"
                     + (f"  user id {d['user_id']}" if d.get("user_id") else ""))
        if "error" in d:
            lines.append(f"      {d['error']}")
            continue
        usable = [f for f in d["pixel_formats"] if f in FORMATS]
        lines.append(f"      pixel formats {', '.join(d['pixel_formats'])} (mfvan takes {', '.join(usable) or 'none'})")
        rate = "frame rate not settable" if d["fps_range"] is None else \
            f"{d['fps_range'][0]:g}-{d['fps_range'][1]:g} fps at the current ROI {d['roi'][2]}x{d['roi'][3]}"
        exp = "" if d["exposure_us_range"] is None else \
            f", exposure {d['exposure_us_range'][0]:g}-{d['exposure_us_range'][1]:g} µs"
        lines.append(f"      sensor {d['sensor'][0]}x{d['sensor'][1]}, ROI up to {d['width_max']}x{d['height_max']}, "
                     f"{rate}{exp}{', binning' if d['binning'] else ''}")
    return lines


class GenICamSource(Source):
    """One GenICam camera: configured at open, streaming from the first `frames()` step."""

    live = True
    hardware_clock = True

    def __init__(self, ident: str, cfg: GenICamConfig, width: int, height: int, fps: float,
                 ring_frames: int = 512, exposure: float | None = None):
        aravis = self.aravis = _aravis()
        self.error = _glib_error()
        self.cfg = cfg
        self.asked_fps = fps
        self.loopback = False
        self.ident = ident.removeprefix(PREFIX)
        self.device_id = resolve(self.ident)
        self.name = f"{PREFIX}{self.ident}"
        self.counts = dict.fromkeys((k for k in HELP if k != "flicker_permille"), 0)
        self.clock = ClockMap()
        self.warnings: list[str] = []
        self.trace: list[tuple[int, int, int, int]] | None = None  # (frame id, camera ns, host ns, mapped ns) if asked
        self._lost = False
        self._started = False
        self._closed = threading.Event()
        self.cam = self.stream = None
        try:
            self.cam = aravis.Camera.new(self.device_id)
        except self.error as exc:
            raise CaptureError(f"{self.name}: cannot open {self.device_id}: {exc.message} "
                               "(in use by another program, or gone?)") from None
        self.vendor, self.model = self.cam.get_vendor_name() or "", self.cam.get_model_name() or ""
        self.serial = self.cam.get_device_serial_number() or ""
        try:
            want = self._configure(width, height, fps, exposure if cfg.exposure_us is None else cfg.exposure_us)
            got = self.mode()
            self.mismatch = {k: (want[k], got[k]) for k in want if frame_differs(want[k], got[k])}
            self._check_rate(got)
            self.payload = self.cam.get_payload()
            self.buffers = pool_size(ring_frames, self.payload, got["fps"] or fps, cfg.buffers)
            self.stream = self.cam.create_stream(None, None)
            if self.stream is None:
                raise CaptureError(f"{self.name}: Aravis could not create a stream")
            if self.cam.is_gv_device():
                self._gv_stream_options()
            for _ in range(self.buffers):
                self.stream.push_buffer(aravis.Buffer.new_allocate(self.payload))
            self._infos = {self.stream.get_info_name(i) for i in range(self.stream.get_n_infos())}
        except self.error as exc:
            self.close()
            raise CaptureError(f"{self.name}: {exc.message}") from None
        except CaptureError:
            self.close()
            raise
        problems = ([f"mode mismatch (asked, got): {self.mismatch}"] if self.mismatch else []) + self.warnings
        if problems and cfg.strict:
            self.close()
            raise CaptureError(f"{self.name}: {'; '.join(problems)}")
        for w in problems:
            log.warning("%s: %s", self.name, w)
        self.fps = float(got["fps"] or fps)
        self.pixel_format = got["pixel_format"]
        self._convert = self._converter(self.pixel_format)
        log.info("%s: %s %s serial %s (%s), %s %dx%d at %.1f fps, %d buffers of %d bytes", self.name, self.vendor,
                 self.model, self.serial, self.device_id, self.pixel_format, got["width"], got["height"], self.fps,
                 self.buffers, self.payload)

    # -- configuration ----------------------------------------------------------------------------
    def _configure(self, width: int, height: int, fps: float, exposure_us: float | None) -> dict:
        cam, cfg, aravis = self.cam, self.cfg, self.aravis
        want: dict = {"width": width, "height": height}
        try:
            cam.stop_acquisition()  # a camera left streaming by a crashed run refuses ROI changes
        except self.error:
            pass
        if cam.is_gv_device():
            address = cam.get_device().get_device_address().to_string()
            self.loopback = address.startswith("127.") or address == "::1"
            if cfg.packet_socket == "off" or (cfg.packet_socket == "auto" and self.loopback):
                # the raw packet socket listens on the NIC; loopback traffic never passes it
                cam.gv_set_stream_options(aravis.GvStreamOption.PACKET_SOCKET_DISABLED)
            if cfg.packet_size:
                cam.gv_set_packet_size(cfg.packet_size)
                want["packet_size"] = cfg.packet_size
            else:
                cam.gv_auto_packet_size()
        try:
            cam.set_acquisition_mode(aravis.AcquisitionMode.CONTINUOUS)
            cam.clear_triggers()  # free-running: the camera's clock paces the frames
        except self.error as exc:
            log.debug("%s: trigger/acquisition mode: %s", self.name, exc.message)
        if cfg.pixel_format:
            if cfg.pixel_format not in FORMATS:
                raise CaptureError(f"{self.name}: pixel format {cfg.pixel_format} is not one mfvan takes "
                                   f"({', '.join(FORMATS)})")
            have = cam.dup_available_pixel_formats_as_strings() or []
            if cfg.pixel_format not in have:
                raise CaptureError(f"{self.name}: the camera has no pixel format {cfg.pixel_format} "
                                   f"(it has {', '.join(have)})")
            cam.set_pixel_format_from_string(cfg.pixel_format)
            want["pixel_format"] = cfg.pixel_format
        if cfg.binning > 1:
            if not cam.is_binning_available():
                raise CaptureError(f"{self.name}: binning {cfg.binning} asked; the camera has no binning")
            cam.set_binning(cfg.binning, cfg.binning)
            want["binning"] = cfg.binning
        wmax, hmax = cam.get_width_bounds().max, cam.get_height_bounds().max
        if width > wmax or height > hmax:
            raise CaptureError(f"{self.name}: ROI {width}x{height} is larger than the camera's {wmax}x{hmax}"
                               + (f" at binning {cfg.binning}" if cfg.binning > 1 else ""))
        x = cfg.offset_x if cfg.offset_x is not None else (wmax - width) // 2
        y = cfg.offset_y if cfg.offset_y is not None else (hmax - height) // 2
        xi, yi = max(1, cam.get_x_offset_increment()), max(1, cam.get_y_offset_increment())
        x, y = x - x % xi, y - y % yi
        cam.set_region(x, y, width, height)
        want.update(offset_x=x, offset_y=y)
        if exposure_us is not None:
            if cam.is_exposure_auto_available():
                cam.set_exposure_time_auto(aravis.Auto.OFF)
            cam.set_exposure_time(exposure_us)
            want["exposure_us"] = exposure_us
        if cfg.gain_db is not None:
            if cam.is_gain_auto_available():
                cam.set_gain_auto(aravis.Auto.OFF)
            cam.set_gain(cfg.gain_db)
            want["gain_db"] = cfg.gain_db
        if cfg.features:
            dev = cam.get_device()
            for k, v in cfg.features.items():
                dev.set_features_from_string(f"{k}={v}")
        if cam.is_frame_rate_available():
            bounds = cam.get_frame_rate_bounds()
            cam.set_frame_rate(min(fps, bounds.max))  # above the maximum most cameras refuse outright
        want["fps"] = fps
        return want

    def _gv_stream_options(self) -> None:
        a, s, cfg = self.aravis, self.stream, self.cfg
        # Aravis' own choice (AUTO) is one frame: a receive thread late by one frame period on
        # a busy host then loses packets (measured here: 640x480 at 200 fps, 100 of 400 frames
        # timed out with AUTO, none with 4 MiB). The kernel caps it at net.core.rmem_max.
        size = cfg.socket_buffer or max(4 << 20, 8 * self.payload)
        s.set_property("socket-buffer", a.GvStreamSocketBuffer.FIXED)
        s.set_property("socket-buffer-size", size)
        s.set_property("packet-resend", a.GvStreamPacketResend.ALWAYS if cfg.packet_resend
                       else a.GvStreamPacketResend.NEVER)

    def mode(self) -> dict:
        """What the camera is set to now, read back from its features."""
        cam = self.cam
        x, y, w, h = cam.get_region()
        out = {"width": w, "height": h, "offset_x": x, "offset_y": y,
               "pixel_format": cam.get_pixel_format_as_string() or "",
               "fps": cam.get_frame_rate() if cam.is_frame_rate_available() else 0.0,
               "exposure_us": cam.get_exposure_time() if cam.is_exposure_time_available() else 0.0,
               "gain_db": cam.get_gain() if cam.is_gain_available() else 0.0,
               "binning": cam.get_binning()[0] if cam.is_binning_available() else 1}
        if cam.is_gv_device():
            out["packet_size"] = cam.gv_get_packet_size()
        return out

    def _check_rate(self, got: dict) -> None:
        """Say at open whether the camera can deliver the asked rate at this ROI and exposure."""
        want = self.asked_fps
        cam = self.cam
        if cam.is_frame_rate_available():
            top = cam.get_frame_rate_bounds().max
            if top + 1e-6 < want:
                self.warnings.append(f"cannot reach {want:g} fps at {got['width']}x{got['height']}: the camera's "
                                     f"maximum there is {top:.1f} fps (smaller ROI, binning or a shorter exposure)")
        else:
            self.warnings.append(f"the frame rate is not settable: the camera runs at its own rate, not {want:g} fps")
        if got["exposure_us"] and got["exposure_us"] > 1e6 / want:
            self.warnings.append(f"cannot reach {want:g} fps: exposure {got['exposure_us']:.0f} µs is longer than "
                                 f"the frame period {1e6 / want:.0f} µs")
        if cam.is_gv_device():
            mbit = cam.get_payload() * want * 8 / 1e6
            if mbit > 950 and not self.loopback:
                self.warnings.append(f"{got['width']}x{got['height']} {got['pixel_format']} at {want:g} fps needs "
                                     f"{mbit:.0f} Mbit/s: more than a 1 GigE link carries")

    # -- frames -----------------------------------------------------------------------------------
    def _converter(self, fmt: str):
        grey = self.cfg.output == "grey"
        if fmt == "Mono8":
            return None
        if fmt in _BAYER_BGR:
            code = (_BAYER_GREY if grey else _BAYER_BGR)[fmt]
            return lambda raw: cv2.cvtColor(raw, code)
        if fmt in ("RGB8", "BGR8"):
            code = cv2.COLOR_RGB2GRAY if grey else cv2.COLOR_RGB2BGR
            if fmt == "BGR8":
                code = cv2.COLOR_BGR2GRAY if grey else None
            return (lambda raw: raw) if code is None else (lambda raw: cv2.cvtColor(raw, code))
        raise CaptureError(f"{self.name}: pixel format {fmt} is not one mfvan takes ({', '.join(FORMATS)}): "
                           "set genicam.pixel_format")

    def frames(self) -> Iterator[tuple[np.ndarray, int | None]]:
        aravis, stream = self.aravis, self.stream
        ok_status = aravis.BufferStatus.SUCCESS
        timeout_status = aravis.BufferStatus.TIMEOUT
        channels = 3 if self.pixel_format in ("RGB8", "BGR8") else 1
        self.cam.start_acquisition()
        self._started = True
        last_id: int | None = None
        bad_since = 0
        idle_since = time.monotonic()
        wall_to_mono = time.time_ns() - time.monotonic_ns()
        n = 0
        while not self._closed.is_set():
            buf = stream.timeout_pop_buffer(200_000)
            if buf is None:
                idle = time.monotonic() - idle_since
                if idle >= self.cfg.lost_s:
                    self._probe(idle)
                    idle_since = time.monotonic()
                continue
            idle_since = time.monotonic()  # even a broken frame says the camera is there
            try:
                status = buf.get_status()
                if status != ok_status:
                    self.counts["buffers_timeout" if status == timeout_status else "buffers_incomplete"] += 1
                    bad_since += 1
                    continue
                # the id of a broken buffer may be unknown (no leader packet): count what never
                # came from the ids of good frames, less the broken ones already counted
                fid = buf.get_frame_id()
                if last_id is not None:
                    self.counts["buffers_missing"] += max(0, _missing_between(last_id, fid) - bad_since)
                last_id, bad_since = fid, 0
                w, h = buf.get_image_width(), buf.get_image_height()
                hw = buf.get_timestamp()
                sys_ns = buf.get_system_timestamp()
                data = buf.get_data()  # a copy: the buffer goes straight back to the camera
            finally:
                stream.push_buffer(buf)
            if n % 256 == 0:
                wall_to_mono = time.time_ns() - time.monotonic_ns()  # follows NTP steps
            n += 1
            host = sys_ns - wall_to_mono if sys_ns else time.monotonic_ns()
            ts = self.clock.map(hw, host) if hw else host
            if self.trace is not None:
                self.trace.append((fid, hw, host, ts))
            raw = np.frombuffer(data, np.uint8, count=w * h * channels)
            raw = raw.reshape((h, w, channels) if channels == 3 else (h, w))
            yield (raw if self._convert is None else self._convert(raw)), ts

    def _probe(self, idle: float) -> None:
        """No frame for a while: a camera that still answers has stalled; one that does not is gone."""
        try:
            self.cam.get_integer("Width")
        except self.error as exc:
            self._lost = True
            raise CaptureError(f"{self.name}: camera lost: no frame for {idle:.1f} s and no answer on its control "
                               f"channel ({exc.message}); unplugged, powered off or its link is down") from None
        log.warning("%s: no frame for %.1f s but the camera answers (trigger mode? acquisition stopped?)", self.name,
                    idle)

    def _read_stream(self) -> None:
        stream = self.stream
        if stream is not None:
            for name, info in _STREAM_INFOS.items():
                if info in self._infos:
                    self.counts[name] = int(stream.get_info_uint64_by_name(info))

    def counters(self) -> dict[str, int]:
        self._read_stream()
        out = dict(self.counts)
        out["clock_offset_us"] = self.clock.applied // 1000
        out["clock_drift_ppb"] = self.clock.drift_ppb
        return out

    def close(self) -> None:
        self._closed.set()
        if getattr(self, "_infos", None):
            self._read_stream()  # the final counts outlive the stream
        cam, stream = self.cam, self.stream
        self.cam = self.stream = None
        if cam is not None and self._started and not self._lost:
            try:
                cam.stop_acquisition()
            except self.error:
                pass
        if self._lost and cam is not None:
            # Releasing a camera that no longer answers waits out every control timeout (3-10 s
            # measured), and the streamer exits right after this to be restarted: never release
            # it (one reference more than anyone holds), the process exit frees it instantly.
            import ctypes

            for obj in (stream, cam):
                ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
        del cam, stream


def _missing_between(last: int, fid: int) -> int:
    """Frames the camera numbered between two received ids.

    GigE Vision 1 block ids are 16-bit and skip 0 when they wrap; Aravis may hand some buffers
    an id extended past 65535 and others the raw one, so a large jump is read modulo 2^16. A
    repeat or a step back (a late buffer) counts nothing.
    """
    d = fid - last
    if 0 < d < 30_000:
        return d - 1
    d = (fid - last) % 65536
    if 0 < d < 30_000:
        return max(0, d - 1 - (1 if fid % 65536 < last % 65536 else 0))
    return 0


def from_config(cam: CameraConfig, capture: CaptureConfig) -> GenICamSource:
    """The registry's opener (streamer.capture.SOURCES)."""
    return GenICamSource(cam.genicam.id, cam.genicam, cam.width, cam.height, cam.fps, capture.ring_frames)
