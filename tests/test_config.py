"""Config loading: every shipped YAML validates; mistakes name their file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config.engine import EngineConfig
from engine.config.loader import ConfigError, load_config
from engine.config.streamd import StreamdConfig
from engine.config.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = {"streamd.yaml": StreamdConfig, "engine.yaml": EngineConfig}


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
