"""The package as users install it, not as the dev checkout runs it (issue 11).

A wheel is built from the working tree and installed **without extras** into a fresh venv; the
daemon, the subscriber, the spotter, the streamer benchmark and the engine then run there for
real, and `import torch` must fail. That catches what the editable dev install hides: a module
that reaches for an extra's package, an asset found by a source-tree path, package data left out
of the wheel. A second venv gets the same wheel with `[train]`'s packages borrowed from the dev
venv (a plain path line in a `.pth`: no download, and it does not activate the dev venv's
editable install) and builds an engine from the bundled default checkpoint.

Base dependencies come from the registry or pip's cache; without a registry the module skips.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.artefact import load_artefact
from engine.wire.client import Subscriber
from engine.wire.protocol import Heartbeat
from streamer.harness.clip import ClipEvent, render_test_clip, write_folder

ROOT = Path(__file__).resolve().parents[2]
DEV_PYTHON = Path(sys.executable)
SOURCES = ("pyproject.toml", "README.md", "engine", "streamer", "calibration", "trainer")
MICRO = ClipEvent(150, 180, 210, "brow", 2.5)
# what pip prints when it cannot reach a registry (then the module skips instead of failing)
OFFLINE = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
           "Network is unreachable", "ProxyError", "ConnectTimeout", "Read timed out", "No matching distribution found")


@dataclass(frozen=True)
class Venvs:
    base: Path  # the wheel without extras
    train: Path  # the wheel, torch & co. from the dev venv
    work: Path

    def bin(self, venv: Path, name: str) -> str:
        return str(venv / "bin" / name)


def _env() -> dict[str, str]:
    """The caller's environment minus whatever would point the child at the dev checkout."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not (k.startswith("MFVAN_") and k != "MFVAN_CACHE")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _copy_sources(dest: Path) -> None:
    """The working tree as git sees it (tracked + new, not ignored), so no stale build/ leaks in."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", *SOURCES],
                            cwd=ROOT, capture_output=True, text=True)
    if listed.returncode == 0:
        for rel in filter(None, listed.stdout.split("\0")):
            src = ROOT / rel
            if src.is_file():  # a tracked file deleted in the working tree is gone for the wheel too
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
        return
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        src = ROOT / name
        shutil.copytree(src, dest / name, ignore=ignore) if src.is_dir() else shutil.copy2(src, dest / name)


def _purelib(venv: Path) -> Path:
    out = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True, env=_env())
    return Path(out.stdout.strip())


@pytest.fixture(scope="session")
def venvs(tmp_path_factory) -> Iterator[Venvs]:
    work = tmp_path_factory.mktemp("base_install")
    src, wheels = work / "src", work / "wheels"
    _copy_sources(src)
    built = _run([str(DEV_PYTHON), "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                  "--disable-pip-version-check", "-w", str(wheels), str(src)], work)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    (wheel,) = wheels.glob("mfvan-*.whl")

    base, train = work / "base", work / "train"
    for venv in (base, train):  # the dev interpreter's base Python: same version as the dev venv
        made = _run([str(DEV_PYTHON), "-m", "venv", str(venv)], work)
        assert made.returncode == 0, made.stderr[-2000:]
    pip = ["-m", "pip", "install", "-q", "--disable-pip-version-check"]
    got = _run([str(base / "bin" / "python"), *pip, "-c", str(ROOT / "constraints.txt"), str(wheel)], work, timeout=600)
    if got.returncode != 0:
        text = got.stdout + got.stderr
        if any(marker in text for marker in OFFLINE):
            pytest.skip(f"pip cannot reach a registry for the base dependencies: {text.strip().splitlines()[-1]}")
        pytest.fail(f"pip install of the wheel failed:\n{text[-3000:]}")
    got = _run([str(train / "bin" / "python"), *pip, "--no-deps", str(wheel)], work)
    assert got.returncode == 0, got.stderr[-3000:]
    # torch, onnx, ... from the dev venv without a download; its editable finder stays inactive
    # because the dev site-packages is added as a path, not processed as a site directory
    (_purelib(train) / "mfvan-dev-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield Venvs(base, train, work)
    for venv in (base, train):  # a few hundred MB each: not worth keeping in pytest's retained tmp dirs
        shutil.rmtree(venv, ignore_errors=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("base_clip") / "clip"
    write_folder(render_test_clip(400, [MICRO], 200.0, seed=3, noise=1.5), d, ".bmp")
    return d


def _where(python: str, module: str, cwd: Path) -> Path:
    out = _run([python, "-c", f"import {module}; print({module}.__file__)"], cwd)
    assert out.returncode == 0, out.stderr[-2000:]
    return Path(out.stdout.strip()).resolve()


def test_base_install_has_no_torch_and_runs_the_wheel(venvs: Venvs) -> None:
    python = venvs.bin(venvs.base, "python")
    torch = _run([python, "-c", "import torch"], venvs.work)
    assert torch.returncode != 0 and "No module named 'torch'" in torch.stderr
    for module in ("engine", "streamer"):
        assert _where(python, module, venvs.work).is_relative_to(venvs.base.resolve())


def test_streamd_replays_a_clip_and_sub_receives_a_result(venvs: Venvs, clip: Path, tmp_path_factory) -> None:
    ipc = tmp_path_factory.mktemp("ipc")  # short: ipc paths are limited to ~100 characters
    cfg = ipc / "streamd.yaml"
    cfg.write_text("\n".join([
        "engine:", f"  pair_endpoint: ipc://{ipc}/pairs", f"  pub_endpoint: ipc://{ipc}/pub",
        "  intra_op_threads: 1", "  heartbeat_s: 0.2",
        "supervisor:", "  metrics_port: 0", "  linger_s: 1.0", "  stop_timeout_s: 10", "",
    ]))
    # the subscriber first: ZeroMQ reconnects until the daemon's engine binds
    sub = subprocess.Popen([venvs.bin(venvs.base, "mfvan-sub"), "--endpoint", f"ipc://{ipc}/pub", "--json",
                            "--count", "1", "--timeout", "120"], cwd=venvs.work, env=_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        daemon = _run([venvs.bin(venvs.base, "mfvan-streamd"), "--video", str(clip), "--fps", "200",
                       "--config", str(cfg)], venvs.work, timeout=240)
        out, err = sub.communicate(timeout=150)
    finally:
        if sub.poll() is None:
            sub.kill()
    assert daemon.returncode == 0, daemon.stdout[-2000:] + daemon.stderr[-3000:]
    assert sub.returncode == 0, err[-2000:] + daemon.stderr[-2000:]
    results = [m for m in map(json.loads, out.splitlines()) if m.get("type") == "result"]
    assert results, out[-2000:]
    assert results[0]["camera"] == "clip" and results[0]["label"] in results[0]["probs"]
    assert MICRO.onset - 20 <= results[0]["apex_index"] <= MICRO.offset


def test_spot_finds_the_micro_event(venvs: Venvs, clip: Path) -> None:
    out = venvs.work / "spot.jsonl"
    done = _run([venvs.bin(venvs.base, "mfvan-spot"), "--video", str(clip), "--out", str(out), "--quiet"], venvs.work)
    assert done.returncode == 0, done.stderr[-3000:]
    micro = [e for e in map(json.loads, out.read_text().splitlines()) if e["kind"] == "micro"]
    assert len(micro) == 1 and MICRO.onset - 20 <= micro[0]["apex"] <= MICRO.offset


def test_bench_streamer_without_video(venvs: Venvs) -> None:
    done = _run([venvs.bin(venvs.base, "mfvan-bench"), "streamer", "--frames", "300", "--repeat", "1", "--json"],
                venvs.work)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["frames"] == 300 and report["fps"] > 0 and "streamer.harness.clip" in report["what"]


def test_engined_heartbeats_and_stops_on_sigterm(venvs: Venvs, tmp_path_factory) -> None:
    ipc = tmp_path_factory.mktemp("ipc")
    cfg = ipc / "engine.yaml"
    cfg.write_text(f"pair_endpoint: ipc://{ipc}/pairs\npub_endpoint: ipc://{ipc}/pub\n"  # its own schema: no section
                   "intra_op_threads: 1\nheartbeat_s: 0.2\nmetrics_port: 0\n")
    sub = Subscriber(f"ipc://{ipc}/pub", kinds=("hb/",))
    proc = subprocess.Popen([venvs.bin(venvs.base, "mfvan-engined"), "--config", str(cfg)], cwd=venvs.work,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        beat = None
        for _ in range(300):  # up to a minute, but no longer than the engine lives
            beat = sub.recv(timeout_ms=200)
            if beat is not None or proc.poll() is not None:
                break
        assert beat is not None and isinstance(beat.header, Heartbeat), proc.poll()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.stdout.read()
        sub.close()
    assert rc == 0, out[-3000:]


def test_build_engine_default_checkpoint_from_wheel(venvs: Venvs) -> None:
    python = venvs.bin(venvs.train, "python")
    trainer = _where(python, "trainer", venvs.work)
    assert trainer.is_relative_to(venvs.train.resolve()) and not trainer.is_relative_to(ROOT), trainer
    assert _where(python, "torch", venvs.work).is_relative_to(Path(sysconfig.get_paths()["purelib"]).resolve())
    out = venvs.work / "artefact"
    done = _run([venvs.bin(venvs.train, "mfvan-build-engine"), "--out", str(out)], venvs.work, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    ckpt = Path(manifest["source"]["checkpoint"]).resolve()
    assert ckpt.is_relative_to(trainer.parent) and ckpt.name.endswith(".ckpt")  # the wheel's bundled one
    assert manifest["source"]["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert manifest["backend"] == "onnxruntime" and manifest["labels"]
    art = load_artefact(out)  # verifies every file's sha256 against the manifest
    assert art.manifest.model_sha256 == manifest["model_sha256"]
