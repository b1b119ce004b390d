"""Config loading: every shipped YAML validates; mistakes name their file and line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config.engine import EngineConfig
from engine.config.loader import ConfigError, load_config
from engine.config.sub import SubConfig
from streamer.config import StreamdConfig
from trainer.config.synth import SynthConfig
from trainer.config.train import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = {"streamd.yaml": StreamdConfig, "engine.yaml": EngineConfig, "synth.yaml": SynthConfig}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_shipped_configs_validate(name: str) -> None:
    load_config(SCHEMAS[name], ROOT / "configs" / name, environ={})


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "train").glob("*.yaml")), ids=lambda p: p.name)
def test_train_configs_validate(path: Path) -> None:
    load_config(TrainConfig, path, environ={})


def test_misspelt_key_names_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("cameras:\n  - name: cam1\n    fsp: 200\nspotter:\n  k_ms: 100\n")
    with pytest.raises(ConfigError) as err:
        load_config(StreamdConfig, cfg, environ={})
    assert err.value.problems == [f"{cfg}:3: cameras.0.fsp: unknown key (misspelt? see --print-config for the valid keys)"]


def test_wrong_type_and_range_are_reported_together(tmp_path: Path) -> None:
    cfg = tmp_path / "e.yaml"
    cfg.write_text("batching:\n  max_batch: 0\n  max_wait_ms: soon\n")
    with pytest.raises(ConfigError) as err:
        load_config(EngineConfig, cfg, environ={})
    lines = err.value.problems
    assert lines[0].startswith(f"{cfg}:2: batching.max_batch: Input should be greater than or equal to 1")
    assert lines[1].startswith(f"{cfg}:3: batching.max_wait_ms: Input should be a valid number")


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(EngineConfig, cfg, environ={})
    assert err.value.problems[0].startswith(f"{cfg}:")
    assert "<yaml>" in err.value.problems[0]


def test_environment_overrides_deploy_values(tmp_path: Path) -> None:
    cfg = tmp_path / "e.yaml"
    cfg.write_text("pub_endpoint: tcp://127.0.0.1:7000\n")
    env = {"MFVAN_PUB_ENDPOINT": "tcp://0.0.0.0:7001", "MFVAN_BATCHING__MAX_BATCH": "16", "OTHER": "x"}
    loaded = load_config(EngineConfig, cfg, environ=env)
    assert loaded.pub_endpoint == "tcp://0.0.0.0:7001"
    assert loaded.batching.max_batch == 16
    with pytest.raises(ConfigError) as err:
        load_config(EngineConfig, cfg, environ={"MFVAN_BATCHING__MAX_BATCH": "-3"})
    assert err.value.problems[0].startswith("<env MFVAN_BATCHING__MAX_BATCH>: batching.max_batch:")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(EngineConfig, tmp_path / "nope.yaml", environ={})


def test_cli_reports_misspelt_key_with_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "sub.yaml"
    cfg.write_text("endpoint: tcp://127.0.0.1:5556\ncamreas: [cam0]\n")
    proc = subprocess.run([sys.executable, "-m", "engine.sub_cli", "--config", str(cfg), "--validate-config"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{cfg}:2: camreas: unknown key")
    assert "Traceback" not in proc.stderr


def test_cli_prints_the_effective_config(tmp_path: Path) -> None:
    env = dict(os.environ, MFVAN_ENDPOINT="tcp://127.0.0.1:7777")
    proc = subprocess.run([sys.executable, "-m", "engine.sub_cli", "--camera", "cam3", "--print-config"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    printed = yaml.safe_load(proc.stdout)
    assert printed["endpoint"] == "tcp://127.0.0.1:7777" and printed["cameras"] == ["cam3"]
    # what --print-config prints is a valid config file
    out = tmp_path / "effective.yaml"
    out.write_text(proc.stdout)
    assert load_config(SubConfig, out, environ={}).cameras == ["cam3"]


_SCHEMA_FOR_MUTATION = [(ROOT / "configs" / name, model) for name, model in SCHEMAS.items()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(_SCHEMA_FOR_MUTATION), st.data())
def test_mutated_yaml_gives_located_errors_never_tracebacks(tmp_path: Path, target, data) -> None:
    path, model = target
    lines = path.read_text().splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    op = data.draw(st.sampled_from(["value", "key", "indent", "delete", "garbage", "dup"]))
    line = lines[i]
    if op == "value" and ":" in line:
        key = line.split(":", 1)[0]
        junk = data.draw(st.sampled_from(["-1", "abc", "[1, 2]", "{a: 1}", "1e999", "null", "true", "'x'", "99999999"]))
        lines[i] = f"{key}: {junk}"
    elif op == "key" and ":" in line:
        lines[i] = line.replace(":", "x:", 1)
    elif op == "indent":
        lines[i] = "   " + line
    elif op == "delete":
        del lines[i]
    elif op == "garbage":
        lines.insert(i, data.draw(st.text(alphabet=":-[]{}#&*!|>'\"%@` abc\t", max_size=12)))
    else:
        lines.insert(i, line)
    cfg = tmp_path / "mutated.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    try:
        load_config(model, cfg, environ={})
    except ConfigError as err:
        for problem in err.problems:
            assert re.match(rf"^{re.escape(str(cfg))}:\d+: \S", problem), problem


def test_plugin_choices_keep_their_keys_and_name_their_lines(tmp_path: Path) -> None:
    """`engine.backend: onnxruntime` and `faces.detector: retinaface` (bare names) still load; a
    plugin's own section validates its options and errors keep `file:line: key: message`."""
    ok = tmp_path / "ok.yaml"
    ok.write_text("engine:\n  backend: onnxruntime\n  intra_op_threads: 3\nfaces:\n  detector: retinaface\n"
                  "  detect_width: 400\n  score_threshold: 0.7\n  reanchor_width: 128\n")
    cfg = load_config(StreamdConfig, ok, environ={})
    assert cfg.engine.backend.type == "onnxruntime" and cfg.engine.intra_op_threads == 3
    d = cfg.faces.detector_options()
    assert (d.type, d.detect_width, d.score_threshold, d.reanchor_width) == ("retinaface", 400, 0.7, 128)
    bad = tmp_path / "bad.yaml"
    bad.write_text("engine:\n  backend:\n    type: tensorrt\n    threads: 2\nfaces:\n  detector: dlib\n")
    with pytest.raises(ConfigError) as err:
        load_config(StreamdConfig, bad, environ={})
    assert err.value.problems == [
        f"{bad}:6: faces.detector: unknown face detector 'dlib'; choose from insightface, mediapipe, retinaface",
        f"{bad}:4: engine.backend.threads: unknown key (misspelt? see --print-config for the valid keys)",
    ]
    env = {"MFVAN_ENGINE__BACKEND": "torch"}
    assert load_config(StreamdConfig, ok, environ=env).engine.backend.type == "torch"


@pytest.mark.parametrize("command", [["engine.server_cli", "--backend", "torch"], ["streamer.daemon"]])
def test_printed_plugin_sections_load_back(tmp_path: Path, command: list[str]) -> None:
    code = f"import sys; from {command[0]} import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, *command[1:], "--print-config"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    printed = yaml.safe_load(proc.stdout)
    backend = (printed.get("engine") or printed)["backend"]
    assert backend["type"] == ("torch" if "--backend" in command else "auto")
    out = tmp_path / "effective.yaml"
    out.write_text(proc.stdout)
    again = subprocess.run([sys.executable, "-c", code, "--config", str(out), "--print-config"],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout == proc.stdout
