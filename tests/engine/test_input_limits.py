"""Bad or hostile input to the commands and the engine artefact: a one-line error and exit 2,
never a traceback, a hang or an exhausted machine (issue 12, item 11).

Config files go through the real loader and the real commands (`mfvan-sub`, `mfvan-streamd`
as subprocesses); manifests through `load_artefact` on a real built artefact.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.artefact import ArtefactError, load_artefact
from engine.config import ConfigError, load_config
from engine.config.engine import EngineConfig
from engine.config.sub import SubConfig

BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
) + "\n"


def _streamd_config():
    from streamer.config import StreamdConfig

    return StreamdConfig


BAD_FILES: dict[str, tuple[bytes, str]] = {
    "bomb": (BOMB.encode(), "YAML bomb"),
    "deep": (("a: " + "[" * 5000 + "]" * 5000 + "\n").encode(), "nested too deeply"),
    "latin1": ('spotter: {noise_floor_file: "caf\xe9.json"}\n'.encode("latin-1"), "not UTF-8"),
    "endpoint": (b"engine: {pub_endpoint: nonsense}\n", "not a ZeroMQ endpoint"),
    "port": (b"engine: {pair_endpoint: 'tcp://127.0.0.1:99999'}\n", "not 1..65535"),
    "metrics_host": (b"supervisor: {metrics_host: 'not a host!'}\n", "not an IP address or host name"),
    "ipc_mode_negative": (b"security: {ipc_mode: -1}\n", "outside 0o000..0o777"),
    "ipc_mode_decimal": (b"security: {ipc_mode: 600}\n", "outside 0o000..0o777"),
    "ipc_mode_world": (b"security: {ipc_mode: 0666}\n", "every local user"),
    "cameras": (b"cameras: [{name: a, video: x.mp4}, {name: a, video: y.mp4}]\n", "duplicate name"),
    "micro": (b"spotter: {micro_min_ms: 600, micro_max_ms: 500}\n", "must be below"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_streamd_config_is_one_clear_problem(tmp_path: Path, case: str) -> None:
    body, expected = BAD_FILES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_bytes(body)
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as err:
        load_config(_streamd_config(), path, environ={})
    assert time.monotonic() - t0 < 5.0, "the loader took seconds (expanding a bomb?)"
    assert len(err.value.problems) == 1 and expected in err.value.problems[0], err.value.problems
    assert err.value.problems[0].startswith(f"{path}:")


def _run(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MFVAN_")} | (env or {})
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120,
                          env=full_env)


def test_commands_exit_2_with_one_line_on_a_yaml_bomb_and_a_bad_endpoint(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    bad = tmp_path / "endpoint.yaml"
    bad.write_text("endpoint: nonsense\n")
    for module, path in (("streamer.daemon", bomb), ("engine.sub_cli", bomb), ("engine.sub_cli", bad)):
        t0 = time.monotonic()
        proc = _run(module, "--config", str(path), "--validate-config")
        assert proc.returncode == 2, (module, path, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr and str(path) in lines[0], proc.stderr
        assert time.monotonic() - t0 < 60


def test_unrelated_mfvan_variables_are_not_config_errors() -> None:
    """The README's own MFVAN_CACHE and MFVAN_PUB_ENDPOINT made every command exit 2."""
    env = {"MFVAN_CACHE": "/tmp/mfvan-cache", "MFVAN_PUB_ENDPOINT": "tcp://*:5556", "MFVAN_SOMETHING__ELSE": "1"}
    for module in ("engine.sub_cli", "streamer.daemon"):
        proc = _run(module, "--validate-config", env=env)
        assert proc.returncode == 0, (module, proc.stderr)
    # a variable that is a setting of this command still applies, and a bad value is still an error
    assert load_config(EngineConfig, environ=env).pub_endpoint == "tcp://*:5556"
    assert load_config(SubConfig, environ=env).endpoint == "tcp://127.0.0.1:5556"
    with pytest.raises(ConfigError, match="MFVAN_ENDPOINT"):
        load_config(SubConfig, environ={"MFVAN_ENDPOINT": "nonsense"})


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from tests.helpers.reliability import session_artefact

    return session_artefact(tmp_path_factory)


def _copy_with(tmp: Path, src: Path, edit) -> Path:
    dst = tmp / "artefact"
    shutil.copytree(src, dst)
    manifest = dst / "manifest.json"
    data = json.loads(manifest.read_text())
    out = edit(data)
    manifest.write_text(out if isinstance(out, str) else json.dumps(data))
    return dst


def test_swapped_labels_change_the_published_identity(tmp_path: Path, built: Path) -> None:
    genuine = load_artefact(built)

    def swap(m: dict) -> None:
        m["labels"][0], m["labels"][1] = m["labels"][1], m["labels"][0]

    swapped = load_artefact(_copy_with(tmp_path, built, swap))
    assert swapped.manifest.model_sha256 == genuine.manifest.model_sha256  # same model file
    assert swapped.identity != genuine.identity and len(swapped.identity) == 64
    assert load_artefact(built).identity == genuine.identity  # stable across loads


@pytest.mark.parametrize("case,match", [
    ("nested", "nested too deeply"),
    ("long_label", "labels.0"),
    ("repeated_label", "labels repeat"),
    ("many_heatmaps", "heatmap_names"),
])
def test_hostile_manifest_is_a_clear_artefact_error(tmp_path: Path, built: Path, case: str, match: str) -> None:
    def edit(m: dict):
        if case == "nested":
            return json.dumps(m)[:-1] + ', "source": ' + "[" * 100_000 + "]" * 100_000 + "}"
        if case == "long_label":
            m["labels"][0] = "x" * 32_768
        elif case == "repeated_label":
            m["labels"][1] = m["labels"][0]
        else:
            m["output"]["heatmap_names"] = [f"h{i}" for i in range(9)]
        return None

    folder = _copy_with(tmp_path, built, edit)
    with pytest.raises(ArtefactError, match=match) as err:
        load_artefact(folder)
    assert "mfvan-build-engine" in str(err.value) and "\n" not in str(err.value)
