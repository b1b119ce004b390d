"""`mfvan-bench soak` (issue 7, item 4): the real command, a real daemon, a real subscriber.

CI runs 20 s (the full daemon in real time at 200 fps, a sample every 2 s); the `slow` variant
runs 5 minutes. The 30-minute run and its plot are in docs/reliability.md.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")


def bench(*args: str, timeout: float) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("mfvan-bench")
    return subprocess.run([str(exe), "soak", *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def run_soak(tmp: Path, artefact: Path, minutes: float, every: float) -> dict:
    out = tmp / "soak"
    r = bench("--minutes", str(minutes), "--every", str(every), "--clip-seconds", "4", "--artefact", str(artefact),
              "--out", str(out), timeout=minutes * 60 + 240)
    assert r.returncode == 0, (r.stdout, r.stderr[-3000:])
    summary = json.loads((out / "summary.json").read_text())
    rows = list(csv.DictReader((out / "soak.csv").open()))
    assert (out / "soak.png").stat().st_size > 10_000
    assert len(rows) >= minutes * 60 / every * 0.6, len(rows)
    assert "RSS all processes" in r.stdout and "wrote" in r.stdout
    # the daemon ran the whole time, all three processes, and shut down cleanly
    assert summary["daemon_exit"] == 0 and not summary["died_during_run"] and summary["restarts"] == 0
    assert all(int(row["children"]) == 2 for row in rows)
    # the pipeline worked end to end: frames in, events spotted, pairs classified and received
    assert summary["frames"] > minutes * 60 * 100
    assert summary["pairs_sent"] > 0 and summary["results_received"] > 0
    assert summary["engine_dropped"] == 0
    # nothing piles up: pairs in flight stay within the PUSH high-water mark, fds and threads flat
    assert summary["in_flight"]["max"] <= 64
    assert summary["fds_total"]["end"] - summary["fds_total"]["start"] <= 4
    # one HTTP handler thread may be alive while /metrics is scraped: flat means within 2
    assert abs(summary["threads_total"]["end"] - summary["threads_total"]["start"]) <= 2
    print("soak summary:", {k: summary[k] for k in ("duration_s", "rss_total_mb", "rss_engine_mb", "rss_streamers_mb",
                                                    "fds_total", "frames", "micro", "pairs_sent",
                                                    "results_received", "latency_ms_p50", "latency_ms_p99")})
    return summary


def test_soak_20s_through_the_full_daemon(tmp_path: Path, artefact: Path) -> None:
    s = run_soak(tmp_path, artefact, minutes=1 / 3, every=2.0)
    assert s["rss_total_mb"]["end"] - s["rss_total_mb"]["start"] < 100


@pytest.mark.slow
def test_soak_5min_memory_flat(tmp_path: Path, artefact: Path) -> None:
    s = run_soak(tmp_path, artefact, minutes=5, every=5.0)
    assert s["rss_total_mb"]["end"] - s["rss_total_mb"]["start"] < 50, s["rss_total_mb"]


def test_soak_refuses_a_missing_artefact_with_how_to_build_it(tmp_path: Path) -> None:
    r = bench("--minutes", "0.1", "--artefact", str(tmp_path / "nothing"), "--out", str(tmp_path / "o"), timeout=60)
    assert r.returncode == 2
    assert "mfvan-build-engine" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()
