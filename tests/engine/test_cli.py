"""The engine's commands: mfvan-build-engine, mfvan-engined, mfvan-bench engine (help, config
flags, clear errors without tracebacks, the benchmark's JSON)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.build import DEMO_CHECKPOINT, main

pytest.importorskip("torch")
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def test_build_help_and_config_flags(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as ex:
        main(["--help"])
    assert ex.value.code == 0 and "--calib" in capsys.readouterr().out
    with pytest.raises(SystemExit) as ex:
        main(["--print-config", "--precision", "int8"])
    assert ex.value.code == 0 and "precision: int8" in capsys.readouterr().out
    bad = tmp_path / "b.yaml"
    bad.write_text("backend: onnxruntime\nprecison: int8\n")
    with pytest.raises(SystemExit) as ex:
        main(["--config", str(bad), "--validate-config"])
    assert ex.value.code == 2 and f"{bad}:2: precison" in capsys.readouterr().err


def test_build_errors_are_messages_not_tracebacks(tmp_path: Path, capsys) -> None:
    assert main(["--checkpoint", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    if not DEMO_CHECKPOINT.is_file():
        assert main(["--out", str(tmp_path / "o")]) == 2
        assert "demo checkpoint" in capsys.readouterr().err
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    assert main(["--checkpoint", str(junk), "--out", str(tmp_path / "o")]) == 2
    assert "junk.ckpt" in capsys.readouterr().err
    assert main(["--checkpoint", str(junk), "--backend", "onnxruntime", "--precision", "fp16", "--out", "o"]) == 2
    assert "fp32 or int8" in capsys.readouterr().err


@pytest.fixture(scope="module")
def artefact(tmp_path_factory) -> Path:
    from tests.helpers.engine import build

    return build(tmp_path_factory.mktemp("cli"))


def test_bench_engine_json(artefact: Path) -> None:
    r = _run(str(BIN / "mfvan-bench"), "engine", "--engine", str(artefact), "--batch", "2", "--iters", "20",
             "--torch-iters", "5", "--threads", "1", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    ort = report["results"]["onnxruntime/fp32"]
    assert report["batch"] == 2 and ort["iters"] == 20
    assert 0 < ort["p50_ms"] <= ort["p99_ms"] and ort["pairs_per_s"] > 0
    te = report["torch_eager"]
    assert te["p50_ms"] > 0 and ort["torch_eager_p50_ms"] == te["p50_ms"]
    assert ort["speedup_vs_torch_eager"] == pytest.approx(te["p50_ms"] / ort["p50_ms"], rel=0.02)
    assert "onnxruntime/int8" not in report["results"]  # no INT8 model in this artefact
    assert "tensorrt" not in json.dumps(report["results"])


def test_engined_refuses_a_corrupt_artefact(tmp_path: Path, artefact: Path) -> None:
    import shutil

    broken = Path(shutil.copytree(artefact, tmp_path / "broken"))
    (broken / "model.onnx").write_bytes(b"garbage")
    r = _run(str(BIN / "mfvan-engined"), "--artefact", str(broken), "--pair-endpoint", f"ipc://{tmp_path}/p",
             "--pub-endpoint", f"ipc://{tmp_path}/q")
    assert r.returncode == 2
    assert "mfvan-build-engine" in r.stderr and "Traceback" not in r.stderr


def test_engined_validate_config(tmp_path: Path) -> None:
    r = _run(str(BIN / "mfvan-engined"), "--config", str(ROOT / "configs" / "engine.yaml"), "--validate-config")
    assert r.returncode == 0 and "ok" in r.stdout


def test_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    """A write that fails mid-build (here: a 1 MiB file-size limit, like a full disk) is one
    clear line, and neither a half-written file nor a manifest appears where the artefact goes."""
    import resource
    import signal

    from tests.helpers.engine import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "m.ckpt")

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    out = tmp_path / "art"
    r = subprocess.run([str(BIN / "mfvan-build-engine"), "--checkpoint", str(ckpt), "--out", str(out), "-q"],
                       capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "nothing written to" in r.stderr, r.stderr[-2000:]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt"]  # no .building- leftovers


def test_engined_with_its_metrics_port_taken_is_one_line_exit_2(tmp_path: Path, artefact: Path) -> None:
    """A taken /metrics port is a permanent error: one line, exit 2, no traceback, and the ipc
    sockets the engine had already bound are removed again."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = _run(str(BIN / "mfvan-engined"), "--artefact", str(artefact), "--pair-endpoint", f"ipc://{tmp_path}/p",
                 "--pub-endpoint", f"ipc://{tmp_path}/q", "--metrics-port", str(port))
    assert r.returncode == 2, r.stderr
    assert f"cannot serve /metrics on port {port}" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "p").exists() and not (tmp_path / "q").exists()
