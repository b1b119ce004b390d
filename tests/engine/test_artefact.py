"""Artefact verification: every way an artefact can be broken fails with the rebuild command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.artefact import DEMO_DIR, ArtefactError, load_artefact

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    from tests.helpers.engine import build

    return build(tmp_path_factory.mktemp("art"), max_batch=4)


@pytest.fixture
def copy(good: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(good, tmp_path / "a"))


def _edit(folder: Path, fn) -> None:
    m = json.loads((folder / "manifest.json").read_text())
    fn(m)
    (folder / "manifest.json").write_text(json.dumps(m))


def test_good_artefact_loads_with_its_spec(good: Path) -> None:
    a = load_artefact(good)
    m = a.manifest
    assert m.labels == ("negative", "positive", "surprise") and a.crop_size == 112
    assert m.input.max_batch == 4 and m.opset >= 17 and m.precision == "fp32"
    assert set(m.files) == {"model.onnx", "model.opt.onnx", "model.ckpt"}
    assert m.files["model.onnx"].sha256 == m.model_sha256
    assert m.source["stage"] == "test" and m.source["model_config"]["name"]
    assert oct((good / "manifest.json").stat().st_mode & 0o777) == "0o644"


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: (d / "model.onnx").unlink(), "model.onnx is missing"),
        (lambda d: (d / "model.onnx").write_bytes((d / "model.onnx").read_bytes()[:-10]), "truncated or replaced"),
        (lambda d: (d / "manifest.json").unlink(), "manifest.json does not exist"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "unreadable manifest"),
        (lambda d: _edit(d, lambda m: m.update(format="mfvan-engine/0")), "format 'mfvan-engine/0'"),
        (lambda d: _edit(d, lambda m: m.update(labels=["a", "b"])), "2 labels for 3 classes"),
        (lambda d: _edit(d, lambda m: m.update(model_sha256="0" * 64)), "model_sha256 disagrees"),
        (lambda d: _edit(d, lambda m: m.update(surprise=1)), "invalid manifest at surprise"),
    ],
)
def test_broken_artefacts_fail_with_rebuild_hint(copy: Path, breakage, message: str) -> None:
    breakage(copy)
    with pytest.raises(ArtefactError, match=message) as err:
        load_artefact(copy)
    assert "mfvan-build-engine" in str(err.value)


def test_flipped_byte_same_size_is_caught(copy: Path) -> None:
    data = bytearray((copy / "model.ckpt").read_bytes())
    data[1000] ^= 1
    (copy / "model.ckpt").write_bytes(bytes(data))
    with pytest.raises(ArtefactError, match="model.ckpt sha256"):
        load_artefact(copy)
    load_artefact(copy, verify=False)  # explicit opt-out still reads the manifest


def test_default_is_the_bundled_demo_artefact() -> None:
    if (DEMO_DIR / "manifest.json").is_file():
        assert load_artefact("").folder == DEMO_DIR
    else:
        with pytest.raises(ArtefactError, match="bundled demo artefact is not built yet"):
            load_artefact("")
