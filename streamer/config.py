"""Schema of `mfvan-streamd`: cameras, faces, spotting, the engine link and the supervisor."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from engine.config.base import ListenHost, Section
from engine.config.engine import EngineConfig
from engine.registry import PluginSection
from engine.wire.security import Security
from streamer.faces import DETECTORS


class GenICamConfig(Section):
    """A GigE Vision / USB3 Vision camera through Aravis (streamer/genicam.py, docs/cameras.md).

    Width, height and fps are the camera section's own; these are the GenICam-only options.
    """

    id: str = Field("", description="which camera: serial number, DeviceUserID, IP address or Aravis device id "
                    "('mfvan-streamd --list-cameras' shows them); empty = not a GenICam camera")
    pixel_format: str = Field("Mono8", description="GenICam PixelFormat: Mono8 or Bayer*8 (BayerRG8 ...); "
                              "'' = keep the camera's")
    output: Literal["native", "grey"] = Field("native", description="native: Mono8 stays one grey plane, Bayer is "
                                              "demosaiced once to BGR; grey: Bayer is demosaiced straight to grey")
    offset_x: int | None = Field(None, ge=0, description="ROI left edge; null = ROI centred on the sensor")
    offset_y: int | None = Field(None, ge=0, description="ROI top edge; null = ROI centred on the sensor")
    binning: int = Field(1, ge=1, le=8, description="sensor binning (both axes), applied before the ROI")
    exposure_us: float | None = Field(None, gt=0, description="ExposureTime in µs (auto exposure off); null = "
                                      "leave the camera's. At 200 fps it must stay below 5,000")
    gain_db: float | None = Field(None, description="Gain in dB (auto gain off); null = leave the camera's")
    features: dict[str, str] = Field(default_factory=dict, description="more GenICam features set at open, "
                                     "by name (e.g. {BalanceWhiteAuto: 'Off'})")
    buffers: int = Field(0, ge=0, le=4096, description="Aravis buffer pool; 0 = from the ring (a quarter of "
                         "capture.ring_frames, 16..256 and at most 256 MiB)")
    lost_s: float = Field(1.0, gt=0, description="no buffer for this long: probe the camera; no answer = lost "
                          "(the streamer exits and the supervisor restarts it)")
    packet_size: int = Field(0, ge=0, le=16384, description="GigE Vision packet size; 0 = negotiate the largest "
                             "the path carries (jumbo frames: 8192-9000)")
    packet_resend: bool = Field(True, description="ask a GigE camera to resend lost packets")
    packet_socket: Literal["auto", "on", "off"] = Field("auto", description="Aravis' raw packet socket for "
                                                        "GigE streams; auto = off for a camera on loopback")
    socket_buffer: int = Field(0, ge=0, description="UDP receive buffer in bytes; 0 = 8 frames, at least "
                               "4 MiB (net.core.rmem_max caps it: raise it, docs/cameras.md)")
    strict: bool = Field(False, description="a mode mismatch or a frame rate the camera cannot reach is an "
                         "error, not a warning")


class CameraConfig(Section):
    name: str = Field("cam0", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="topic-safe camera id")
    device: int | None = Field(None, ge=0, description="V4L2 index (/dev/videoN)")
    video: str = Field("", description="replay a file or frame folder instead of a camera")
    genicam: GenICamConfig = Field(default_factory=GenICamConfig, description="a GenICam camera (genicam.id set)")
    fps: float = Field(200.0, gt=0, le=2000, description="camera rate; frame folders' rate; video files see fps_from_file")
    fps_from_file: bool = Field(True, description="a video file plays at its own rate (false: at fps)")
    width: int = Field(640, ge=16, le=8192)
    height: int = Field(480, ge=16, le=8192)
    fourcc: str = Field("MJPG", min_length=4, max_length=4, description="V4L2 transport format (MJPG, YUYV)")
    exposure: float | None = Field(None, description="V4L2 exposure in the driver's units (GenICam: genicam.exposure_us)")
    realtime: bool = Field(False, description="pace a replay at the source rate")

    @model_validator(mode="after")
    def _one_source(self) -> CameraConfig:
        given = [k for k, on in (("device", self.device is not None), ("video", bool(self.video)),
                                 ("genicam.id", bool(self.genicam.id))) if on]
        if len(given) > 1:
            raise ValueError(f"camera {self.name}: give one source, not {' and '.join(given)}")
        return self

    @property
    def kind(self) -> str:
        """The source registry's name for this camera: file, genicam or v4l2 ('' = none given)."""
        if self.video:
            return "file"
        if self.genicam.id:
            return "genicam"
        return "v4l2" if self.device is not None else ""

    @property
    def live(self) -> bool:
        """A camera runs on its own clock: its frames are dropped (counted), never waited for."""
        return self.kind in ("v4l2", "genicam")


class CaptureConfig(Section):
    pair_hwm: int = Field(64, ge=1, description="pairs queued toward the engine before PUSH refuses (counted)")
    ring_frames: int = Field(512, ge=8, le=100_000, description="frames buffered between grab and processing")
    gap_factor: float = Field(1.5, gt=1.0, description="a timestamp jump > gap_factor/fps is a sensor gap")
    stall_s: float = Field(2.0, gt=0, description="no frame for this long: the source is reported stalled (degraded)")
    pipeline_nice: int = Field(5, ge=0, le=19, description="niceness added to each camera's processing thread (its "
                               "grab thread and the engine keep the daemon's): on a busy host the engine answers "
                               "and frames are timestamped first; the ring absorbs the wait; 0 = equal shares")


class FacesConfig(Section):
    """Face detection and tracking.

    `detector` is a registered face detector (streamer.faces.DETECTORS): a bare name
    (`detector: retinaface`) or its own section (`detector: {type: insightface, pack: ...}`).
    Shared-field rule: the fields below are shared by every detector; a detector option with the
    same name as one of them (retinaface's `detect_width`, `score_threshold`, `reanchor_width`,
    mediapipe's `max_faces`) takes the shared value while unset (null) and overrides it when set.
    """

    detector: Annotated[PluginSection, DETECTORS.field()] = Field(
        "retinaface", description="a face detector name or {type: name, its options...}"
    )
    detect_every: int = Field(20, ge=1, description="check tracked faces with the detector every N frames (track in between); 20 at 200 fps = 10 Hz")
    detect_width: int = Field(320, ge=64, description="detector input width for full-frame scans (frames are downscaled)")
    scan_every_s: float = Field(0.5, gt=0, le=60, description="full-frame scan for new faces this often while faces are "
                                "tracked (every detect_every frames when none is): the longest a new face waits")
    reanchor_width: int = Field(160, ge=0, description="detector input width for the crop around a tracked face at each "
                                "check (retinaface); 0 = every check is a full-frame scan")
    defer_when_behind: int = Field(16, ge=0, description="while this many frames wait in the capture ring (live or "
                                   "realtime sources), due detector runs on well-tracked faces are put off (counted as "
                                   "`deferred`, at most 4 intervals) so the pipeline catches up before frames are lost; "
                                   "0 = never")
    score_threshold: float = Field(0.8, ge=0, le=1)
    max_faces: int = Field(8, ge=1, le=64)
    min_face_px: int = Field(48, ge=8)
    crop_size: int = Field(112, ge=32, le=512, description="aligned crop side in pixels")

    def detector_options(self) -> PluginSection:
        """The chosen detector's section, its unset options filled from the shared fields."""
        return self.detector.resolved(**{k: getattr(self, k) for k in type(self).model_fields if k != "detector"})


class SpotterConfig(Section):
    method: Literal["flow", "lbp"] = "flow"
    k_ms: float = Field(185.0, gt=0, description="half an average micro-expression; k = round(k_ms*fps/1000)")
    threshold: Literal["online", "published"] = "online"
    mad_c: float = Field(6.0, gt=0, description="online threshold = running median + c*MAD")
    confirm_factor: float = Field(1.5, ge=1, description="an episode counts only if its peak rises this many times the threshold's margin above the floor")
    published_p: float = Field(0.5, ge=0, le=1, description="offline rule mean + p*(max-mean)")
    warmup_s: float = Field(0.3, ge=0, description="noise floor learning before events may fire (at least 8 frames)")
    micro_min_ms: float = Field(65.0, gt=0)
    micro_max_ms: float = Field(500.0, gt=0)
    micro_max_disp: float = Field(0.03, gt=0, description="micro events are subtle: a peak ROI displacement above this fraction of the inter-ocular distance makes an episode macro")
    edge_fraction: float = Field(0.1, gt=0, lt=1, description="onset/offset where score crosses this fraction of peak (never below the noise threshold)")
    end_fraction: float = Field(0.25, gt=0, lt=1, description="an episode ends once the score stays below this fraction of its peak")
    spot_size: int = Field(112, ge=32, le=256, description="side of the grey crops the spotter's optical flow runs on")
    floor_window_s: float = Field(5.0, gt=0, description="the noise floor is the median+MAD of this much recent quiet motion")
    max_episode_s: float = Field(4.0, gt=0, description="an episode not back to neutral after this long is a held macro event")
    noise_floor_file: str = Field("", description="JSON from calibration/noise_floor.py seeding the floor (per subject)")
    blink_mouth_ratio: float = Field(4.0, ge=0, description="a short episode where an eye moves this many times more than either mouth corner (and at least as much as either brow) is a blink; 0 = only the both-eyes rule")
    seed_gated: bool = Field(True, description="a calibration seed gates what the floor learns from the first frame (true), or only once the warm-up has blended it out (false: a seed from a still recording may sit below the same face's floor in conversation)")
    micro_min_disp: float = Field(0.002, ge=0, description="an episode whose peak rises less than this fraction of the inter-ocular distance above the floor is noise (weak), however still the face")
    motion_model: Literal["translation", "similarity"] = Field("similarity", description="the head's residual motion removed from the flow before ROI motion is read: a median translation, or a median similarity (also rotation and zoom)")
    floor_prior: tuple[float, float] | None = Field((0.042, 0.010), description="(centre, MAD) in crop pixels a track's floor starts from when no calibration seed is given, blended out over the warm-up; null = wait for the warm-up")
    edge_margin: float = Field(0.3, ge=0, le=1, description="onset/offset never closer to the floor than this fraction of the trigger margin (threshold - floor)")
    min_on_shape: bool = Field(True, description="judge micro_min_ms on the width at the interval's level corrected for a smooth onset and return (a raised cosine spends acos(1-2f)/pi of its time below the fraction f)")
    after_episode: Literal["refractory", "anchor"] = Field("anchor", description="after an episode returns: 'refractory' ignores k frames; 'anchor' compares with the neutral frame it returned to (a shorter lag) so a close neighbour is still seen")
    early_reference: bool = Field(True, description="in a track's first k frames (start, re-anchor) compare with its first frame instead of waiting k frames")


class SupervisorConfig(Section):
    max_restarts: int = Field(5, ge=0)
    backoff_s: float = Field(2.0, ge=0, description="restart delay after the first (immediate) one; doubles per restart in the window, at most 30 s")
    restart_window_s: float = Field(60.0, gt=0)
    stop_timeout_s: float = Field(5.0, gt=0)
    metrics_port: int = Field(9108, ge=0, le=65535, description="/metrics and /healthz; 0 = off")
    metrics_host: ListenHost = Field("127.0.0.1", description="address /metrics and /healthz listen on")
    linger_s: float = Field(1.0, ge=0, description="after a replay ends, let the engine finish its queue this long")
    status_every_s: float = Field(1.0, gt=0, description="streamer Status messages (counters) this often")


class StreamdConfig(Section):
    cameras: list[CameraConfig] = Field(default_factory=lambda: [CameraConfig()])
    capture: CaptureConfig = CaptureConfig()
    faces: FacesConfig = FacesConfig()
    spotter: SpotterConfig = SpotterConfig()
    # the embedded engine shares the host with one streamer core per camera: one ORT thread by
    # default (two threads on two busy cores tripled the e2e p99 in mfvan-bench e2e)
    engine: EngineConfig = EngineConfig(intra_op_threads=1)
    embedded_engine: bool = Field(True, description="run the engine in-process tree; false = use engine.pair_endpoint")
    supervisor: SupervisorConfig = SupervisorConfig()
    security: Security = Security()

    @model_validator(mode="after")
    def _consistent(self) -> StreamdConfig:
        """Checks across fields: each of these was accepted and then misbehaved silently."""
        names = [c.name for c in self.cameras]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            # one name = one metric series and one topic: two cameras would be indistinguishable
            raise ValueError(f"cameras: duplicate name(s) {', '.join(dupes)}; give every camera its own name")
        sp = self.spotter
        if sp.micro_min_ms >= sp.micro_max_ms:
            raise ValueError(f"spotter.micro_min_ms ({sp.micro_min_ms:g}) must be below spotter.micro_max_ms "
                             f"({sp.micro_max_ms:g}): no episode could be a micro-expression")
        return self._one_security()

    def _one_security(self) -> StreamdConfig:
        """One place for the server side: `security.*` (the README's, also MFVAN_SECURITY__*).

        Why: the embedded engine read only `engine.security`, so server keys under the top-level
        `security:` left the PUB in plaintext without a word. Now the top-level server keys are
        the embedded engine's; the same key set differently in both places is an error; and the
        embedded links (streamers' PUSH, the supervisor's heartbeat check) authenticate with the
        server's own key pair unless client keys are given (the engine always admits its own).
        """
        top, eng = self.security, self.engine.security
        server = {f: getattr(top, f) for f in ("server_secret_key", "client_allow_dir") if getattr(top, f)}
        for flag in ("publish_crops", "insecure"):
            if getattr(top, flag):
                server[flag] = True
        if server.get("server_secret_key") or server.get("client_allow_dir"):
            if not self.embedded_engine:
                raise ValueError("security.server_secret_key/client_allow_dir configure a server, and this daemon runs "
                                 "none (external engine): set them on mfvan-engined, keep the client keys here")
            for f in ("server_secret_key", "client_allow_dir"):
                if f in server and getattr(eng, f) and getattr(eng, f) != server[f]:
                    raise ValueError(f"security.{f} and engine.security.{f} differ: set the embedded engine's "
                                     "server keys in one place (security.* is enough)")
        new_eng = eng.model_copy(update=server) if server else eng
        new_top = top
        if new_eng.server_secret_key and self.embedded_engine and not (top.server_public_key or top.client_secret_key):
            new_top = top.model_copy(update={"server_public_key": new_eng.server_secret_key,
                                             "client_secret_key": new_eng.server_secret_key})
        if new_eng is eng and new_top is top:
            return self
        return self.model_copy(update={"security": new_top,
                                       "engine": self.engine.model_copy(update={"security": new_eng})})
