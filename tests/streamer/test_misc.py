"""sd_notify over a real unix datagram socket; MEGC scoring; mfvan-eval spot, mfvan-spot and
the noise-floor calibration on a small corpus written to disk; mfvan-record round trip."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streamer import sdnotify
from streamer.harness.clip import ClipEvent, render_test_clip, write_folder
from streamer.spotting.evaluate import Score, iou, match, score

BIN = Path(sys.executable).parent
EVENTS = [ClipEvent(240, 270, 300, "brow", 2.5), ClipEvent(420, 452, 485, "mouth", 2.5)]


def test_sd_notify_sends_to_the_socket_and_is_silent_without_one(tmp_path: Path) -> None:
    path = str(tmp_path / "n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        assert sdnotify.notify("READY=1\nSTATUS=x", {"NOTIFY_SOCKET": path})
        assert s.recv(100) == b"READY=1\nSTATUS=x"
    assert not sdnotify.notify("READY=1", {})
    assert sdnotify.watchdog_interval_s({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}) == 2.0
    assert sdnotify.watchdog_interval_s({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}) is None


def test_megc_scoring() -> None:
    assert iou((10, 19), (15, 24)) == pytest.approx(5 / 15)
    assert iou((0, 9), (20, 29)) == 0.0
    # one-to-one: two detections on one ground truth give one hit
    assert match([(0, 99)], [(0, 90), (5, 99)]) == 1
    s = score({"a": [(0, 99), (200, 299)], "b": [(0, 49)]}, {"a": [(10, 95), (400, 450)], "b": [(30, 80)]})
    assert (s.tp, s.n_pred, s.n_gt) == (1, 3, 3)
    assert s.f1 == pytest.approx(1 / 3)
    assert Score().f1 == 0.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_folder(render_test_clip(560, EVENTS, 200.0, seed=1, noise=1.5), root / "sub01" / "EP01_01", ".bmp")
    with open(root / "annotations.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject", "clip", "onset", "apex", "offset", "label", "kind"])
        for e in EVENTS:  # frame numbers as in the file names (1-based)
            w.writerow(["sub01", "EP01_01", e.onset + 1, e.apex + 1, e.offset + 1, "positive", "micro"])
    return root


def test_eval_spot_prints_f1_on_a_corpus(corpus: Path, tmp_path: Path) -> None:
    r = subprocess.run([str(BIN / "mfvan-eval"), "spot", "--root", str(corpus), "--annotations",
                        str(corpus / "annotations.csv"), "--json", "--out", str(tmp_path / "r.json")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert res["scores"]["micro"]["n_gt"] == 2 and res["scores"]["micro"]["f1"] == 1.0
    assert json.loads((tmp_path / "r.json").read_text())["per_clip"]
    bad = subprocess.run([str(BIN / "mfvan-eval"), "spot", "--root", str(tmp_path), "--annotations",
                          str(corpus / "annotations.csv")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "missing" in bad.stderr and "Traceback" not in bad.stderr


def test_eval_spot_counts_detections_in_event_free_clips(corpus: Path, tmp_path: Path) -> None:
    """A clip folder without annotation rows is an event-free video (MEGC), not a clip to skip:
    what the spotter finds there is a false positive, and the report says how many per minute.
    Here the unannotated clip does move (one unannotated brow event), so its detection must
    count against precision."""
    import shutil

    root = tmp_path / "corpus"
    shutil.copytree(corpus, root)
    write_folder(render_test_clip(400, [ClipEvent(240, 270, 300, "brow", 2.5)], 200.0, seed=2, noise=1.5),
                 root / "sub02" / "EP01_01", ".bmp")
    r = subprocess.run([str(BIN / "mfvan-eval"), "spot", "--root", str(root), "--annotations",
                        str(root / "annotations.csv"), "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    free, micro = res["event_free"], res["scores"]["micro"]
    assert res["clips"] == 2 and free["clips"] == 1 and free["seconds"] == pytest.approx(2.0)
    assert free["micro_fp"] >= 1 and free["micro_fp_per_minute"] == pytest.approx(free["micro_fp"] * 30.0)
    assert micro["n_gt"] == 2 and micro["tp"] == 2 and micro["n_pred"] == 2 + free["micro_fp"]


def test_spot_cli_writes_jsonl_and_noise_floor_seeds(corpus: Path, tmp_path: Path) -> None:
    clip = corpus / "sub01" / "EP01_01"
    out = tmp_path / "events.jsonl"
    r = subprocess.run([str(BIN / "mfvan-spot"), "--video", str(clip), "--fps", "200", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["kind"] for e in events] == ["micro", "micro"]
    assert {"track", "onset", "apex", "offset", "score", "kind"} <= set(events[0])
    # a neutral stretch of the same face calibrates the floor; the spotter accepts the seed
    neutral = tmp_path / "neutral"
    write_folder(render_test_clip(300, [], 200.0, seed=2, noise=1.5), neutral, ".bmp")
    nf = tmp_path / "nf.json"
    r = subprocess.run([sys.executable, "-m", "calibration.noise_floor", "--video", str(neutral), "--fps", "200",
                        "--out", str(nf)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    floor = json.loads(nf.read_text())
    assert 0 < floor["median"] < floor["threshold"] < 0.2 and floor["samples"] > 200
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"spotter:\n  noise_floor_file: {nf}\n")
    r = subprocess.run([str(BIN / "mfvan-spot"), "--video", str(clip), "--fps", "200", "--out", "-", "--quiet",
                        "--config", str(cfg)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and [json.loads(x)["kind"] for x in r.stdout.splitlines()] == ["micro", "micro"]
    r = subprocess.run([str(BIN / "mfvan-spot"), "--video", str(tmp_path / "none"), "--out", "-"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no such file" in r.stderr


def test_record_is_lossless_and_keeps_timestamps(corpus: Path, tmp_path: Path) -> None:
    import cv2
    import numpy as np

    clip = corpus / "sub01" / "EP01_01"
    out = tmp_path / "rec.mkv"
    r = subprocess.run([str(BIN / "mfvan-record"), "--video", str(clip), "--out", str(out), "--frames", "20"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = (tmp_path / "rec.mkv.ts.csv").read_text().splitlines()
    assert rows[0] == "index,ts_ns" and rows[1:3] == ["0,0", "1,5000000"] and len(rows) == 21
    cap = cv2.VideoCapture(str(out))
    ok, first = cap.read()
    assert ok and np.array_equal(first, cv2.imread(str(clip / "img1.bmp")))


def test_bench_streamer_json_counts_every_frame() -> None:
    """`mfvan-bench streamer --json`: timed pass + paced replay through the real grab thread."""
    r = subprocess.run([str(Path(sys.executable).parent / "mfvan-bench"), "streamer", "--frames", "150",
                        "--paced-rate", "200", "--json"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["frames"] == 150 and out["resolution"] == "640x480" and out["fps"] > 0
    assert out["counters"]["tracks"] == 1 and out["counters"]["scans"] >= 1
    assert out["ms_per_frame"]["p50"] <= out["ms_per_frame"]["p99"] <= out["ms_per_frame"]["max"]
    paced = out["paced"]
    assert paced["grabbed"] == paced["processed"] + paced["lost_overruns"] == 150


def test_bench_e2e_json_gets_a_result_per_pair() -> None:
    """`mfvan-bench e2e --json` with the bundled engine artefact: every measured pair comes back.

    The timeout also guards the start-up: the bench once waited for a heartbeat it had not
    subscribed to and sat out its 120 s limit on every run."""
    r = subprocess.run([str(Path(sys.executable).parent / "mfvan-bench"), "e2e", "--pairs", "20", "--warmup", "5",
                        "--rate", "100", "--threads", "1", "--json"], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["pairs_sent"] == out["results"] == 20 and out["lost"] == 0
    lat = out["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]


def test_bench_commands_name_a_missing_video_without_a_traceback(tmp_path: Path) -> None:
    for cmd in ("streamer", "e2e"):
        r = subprocess.run([str(Path(sys.executable).parent / "mfvan-bench"), cmd, "--video", str(tmp_path / "nope.mp4")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "nope.mp4: no such file or folder" in r.stderr
        assert "Traceback" not in r.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_pipeline_nice_lowers_only_the_calling_thread() -> None:
    """`capture.pipeline_nice`: the camera's processing thread yields to the engine and to its
    own grab thread on a busy host; the other threads of the process keep their priority."""
    import threading

    from streamer.worker import lower_priority

    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = {}

    def work() -> None:
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        lower_priority(3)
        seen["delta"] = os.getpriority(os.PRIO_PROCESS, tid) - before

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen["delta"] == min(3, 19 - main_before)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_a_drained_backlog_is_trimmed_and_counted(tmp_path: Path) -> None:
    """The real camera worker on a replay paced faster than its pipeline (2,000 fps, a detection
    on every frame): the ring backs up, drains at the end, and its frames' memory is handed back (`trims` ≥ 1); every
    frame is read and the worker ends with an empty ring."""
    import multiprocessing as mp

    from engine.process import release_freed_memory
    from streamer.config import StreamdConfig
    from streamer.worker import COUNTERS, run_camera

    if not release_freed_memory():
        pytest.skip("no glibc malloc_trim here")
    frames = render_test_clip(600, [], fps=200.0, seed=2)
    folder = tmp_path / "clip"
    write_folder(frames, folder, ext=".bmp")
    cfg = StreamdConfig.model_validate({
        "cameras": [{"name": "cam0", "video": str(folder), "fps": 2000, "realtime": True}],
        "capture": {"ring_frames": 256, "pipeline_nice": 0},
        # a full-frame detection on every frame, none shed (~5 ms a frame): the pipeline stays far
        # behind the grab thread on any machine, so the backlog does not depend on the host's speed
        "faces": {"detect_every": 1, "reanchor_width": 0, "defer_when_behind": 0}})
    shared = mp.Array("q", len(COUNTERS), lock=False)
    stop = mp.Event()
    code = run_camera(cfg.model_dump_json(), 0, stop, shared, pair_endpoint=f"ipc://{tmp_path}/pairs")
    got = dict(zip(COUNTERS, shared, strict=True))
    assert code == 0
    assert got["frames"] == 600 and got["trims"] >= 1, got
    assert got["ring"] == 0 and got["running"] == 0


def test_ab_harness_runs_each_tree_in_its_own_process_and_reports_ratios(tmp_path: Path) -> None:
    """The A/B harness imports the tree it is given, not the installed package: a copy of the
    streamer package elsewhere must be the one that runs (else every A/B compares HEAD with itself)."""
    import shutil

    root = Path(__file__).resolve().parents[2]
    other = tmp_path / "copy"
    for pkg in ("streamer", "engine"):
        shutil.copytree(root / pkg, other / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "streamer.harness.ab", f"a={root}", f"b={other}", "--rounds", "1",
                        "--json", "--", "--frames", "120", "--paced-rate", "0"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(summary) == {"a", "b"} and summary["a"]["ratio"] == 1.0 and summary["b"]["fps"][0] > 0
    bad = subprocess.run([sys.executable, "-m", "streamer.harness.ab", "a=/nonexistent", f"b={root}"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_free_port_never_hands_out_a_port_twice() -> None:
    """Two daemons' ports picked in a row must differ (the kernel may reuse a just-freed one)."""
    from streamer.harness.procs import free_port

    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
