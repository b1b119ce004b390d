"""Plugins by registry (engine.registry): names come from entry points without importing a
runtime, an unknown name is one line listing the registered ones, a bare name is that plugin
with its defaults, a plugin's section validates its own options, and a backend registered at
run time is served by load_backend and validates in EngineConfig without touching any module."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pydantic import Field, ValidationError

from engine.artefact import Artefact, ArtefactError, load_artefact
from engine.backends import BACKENDS, check_outputs, load_backend
from engine.config.engine import BenchConfig, EngineConfig
from engine.registry import PluginSection, Registry, UnknownPlugin
from streamer.faces import DETECTORS
from trainer.config.build import BuildConfig


def test_names_come_from_the_entry_points() -> None:
    assert BACKENDS.names() == ["auto", "onnxruntime", "tensorrt", "torch"]
    assert BACKENDS.plugins() == ["onnxruntime", "tensorrt", "torch"]
    assert DETECTORS.names() == ["insightface", "mediapipe", "retinaface"]
    from engine.backends.ort import OrtBackend, OrtConfig
    from streamer.faces.retinaface import RetinaFaceDetector

    assert BACKENDS.load("onnxruntime") is OrtBackend and BACKENDS.section("onnxruntime") is OrtConfig
    assert DETECTORS.load("retinaface") is RetinaFaceDetector


def test_resolving_names_and_validating_sections_imports_no_runtime() -> None:
    """Listing names imports no plugin module; choosing one imports only its module, never its
    runtime (tensorrt, cuda, torch, insightface, mediapipe load when a backend is built)."""
    code = (
        "import sys\n"
        "from engine.backends import BACKENDS\n"
        "from streamer.faces import DETECTORS\n"
        "print(BACKENDS.names(), DETECTORS.names())\n"
        "plugins = ('engine.backends.ort', 'engine.backends.tensorrt', 'trainer.torch_backend',\n"
        "           'streamer.faces.retinaface', 'streamer.faces.insightface_backend', 'streamer.faces.mediapipe_backend')\n"
        "print('plugins:', [m for m in plugins if m in sys.modules])\n"
        "from engine.config.engine import EngineConfig\n"
        "from streamer.config import FacesConfig\n"
        "for b in BACKENDS.names(): EngineConfig(backend=b)\n"
        "for d in DETECTORS.names(): FacesConfig(detector=d).detector_options()\n"
        "heavy = ('tensorrt', 'cuda', 'torch', 'insightface', 'mediapipe')\n"
        "print('runtimes:', [m for m in heavy if m in sys.modules])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1] == "plugins: []", lines
    assert lines[2] == "runtimes: []", lines


def test_unknown_name_is_one_line_listing_the_registered_names() -> None:
    with pytest.raises(UnknownPlugin) as err:
        BACKENDS.load("onnx")
    assert str(err.value) == "unknown backend 'onnx'; choose from auto, onnxruntime, tensorrt, torch"
    with pytest.raises(ArtefactError, match=r"^unknown backend 'tensor-rt'; choose from auto, onnxruntime, tensorrt, torch$"):
        load_backend(load_artefact(None), "tensor-rt")
    with pytest.raises(ValidationError) as verr:
        EngineConfig(backend="onnx")
    (e,) = verr.value.errors()
    assert e["loc"] == ("backend",) and e["msg"] == "unknown backend 'onnx'; choose from auto, onnxruntime, tensorrt, torch"
    with pytest.raises(ValidationError, match="unknown face detector 'dlib'; choose from insightface, mediapipe, retinaface"):
        DETECTORS.validate("dlib")
    for model, field, bad in ((BenchConfig, "backends", ["auto"]), (BuildConfig, "backend", "trt")):
        with pytest.raises(ValidationError, match="unknown backend .*; choose from onnxruntime, tensorrt, torch"):
            model(**{field: bad})


def test_bare_name_and_section_mean_the_same() -> None:
    assert EngineConfig().backend.type == "auto"
    bare, full = EngineConfig(backend="onnxruntime").backend, EngineConfig(backend={"type": "onnxruntime"}).backend
    assert bare == full and type(bare).__name__ == "OrtConfig" and bare.threads is None
    dumped = EngineConfig(backend={"type": "torch", "device": "cpu"}).model_dump(mode="json")
    assert dumped["backend"] == {"type": "torch", "device": "cpu", "threads": None}
    assert EngineConfig.model_validate(dumped).backend.device == "cpu"
    assert EngineConfig.model_validate_json(EngineConfig(backend="tensorrt").model_dump_json()).backend.type == "tensorrt"


def test_a_section_validates_its_own_options_and_rejects_others() -> None:
    assert EngineConfig(backend={"type": "onnxruntime", "threads": 4}).backend.threads == 4
    with pytest.raises(ValidationError) as err:
        EngineConfig(backend={"type": "onnxruntime", "threads": 0, "device": "cuda:0"})
    assert {(e["loc"], e["type"]) for e in err.value.errors()} == {
        (("backend", "threads"), "greater_than_equal"), (("backend", "device"), "extra_forbidden")
    }
    with pytest.raises(ValidationError, match="String should match pattern"):
        EngineConfig(backend={"type": "tensorrt", "device": "gpu0"})
    with pytest.raises(ValidationError) as err:
        EngineConfig(backend={"threads": 2})
    assert err.value.errors()[0]["loc"] == ("backend", "type") and err.value.errors()[0]["type"] == "missing"
    for junk in (3, None, ["onnxruntime"], {"type": ["x"]}):
        with pytest.raises(ValidationError):
            EngineConfig(backend=junk)


def test_shared_values_fill_only_unset_options() -> None:
    from engine.backends.ort import OrtConfig

    assert OrtConfig(type="onnxruntime").resolved(threads=3, device="cpu").threads == 3
    assert OrtConfig(type="onnxruntime", threads=5).resolved(threads=3).threads == 5


def test_json_schema_is_the_union_of_the_registered_sections() -> None:
    schema = EngineConfig.model_json_schema()["properties"]["backend"]
    variants = schema["oneOf"]
    assert variants[0]["enum"] == BACKENDS.names()
    consts = {v["properties"]["type"]["const"] for v in variants[1:]}
    assert consts == set(BACKENDS.names())


class ConstantConfig(PluginSection):
    """A test backend's own section: one option of its own, plus the shared threads."""

    value: float = Field(0.25, ge=0, le=1)
    threads: int | None = None


class ConstantBackend:
    """Every pair gets the same probabilities; shapes come from the manifest."""

    name = "constant"
    config = ConstantConfig

    def __init__(self, artefact: Artefact, precision: str = "fp32", *, value: float = 0.25, threads: int | None = None):
        self.artefact, self.precision, self.value, self.threads = artefact, precision, value, threads
        self.device = "none"
        self.max_batch = artefact.manifest.input.max_batch

    def infer(self, onset: np.ndarray, apex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.artefact.manifest.output
        b = onset.shape[0]
        probs = np.full((b, out.num_classes), self.value, np.float32)
        heat = np.zeros((b, len(out.heatmap_names), out.heatmap_grid, out.heatmap_grid), np.float32)
        return probs, heat

    def close(self) -> None:
        pass


@pytest.fixture
def constant_backend():
    BACKENDS.register("constant", ConstantBackend)
    yield
    BACKENDS.unregister("constant")


def test_a_backend_registered_at_run_time_is_served(constant_backend) -> None:
    art = load_artefact(None)  # the bundled demo artefact
    assert "constant" in BACKENDS.names() and "constant" in BenchConfig(backends=["constant"]).backends
    cfg = EngineConfig(backend={"type": "constant", "value": 0.5}, intra_op_threads=3)
    b = load_backend(art, cfg.backend, cfg.precision, threads=cfg.intra_op_threads)
    assert isinstance(b, ConstantBackend) and b.value == 0.5 and b.threads == 3
    s = art.crop_size
    x = np.zeros((2, 3, s, s), np.float32)
    probs, heat = b.infer(x, x)
    check_outputs(art, probs, heat, 2)
    assert np.all(probs == 0.5)
    assert load_backend(art, "constant").value == 0.25  # a bare name: its defaults
    with pytest.raises(ValidationError, match="value"):
        EngineConfig(backend={"type": "constant", "value": 2})


def test_registering_by_module_path_imports_when_chosen() -> None:
    reg: Registry[type] = Registry("widget", "mfvan.test-no-such-group", unavailable=LookupError)
    assert reg.names() == []
    with pytest.raises(UnknownPlugin, match="none is registered"):
        reg.load("x")
    reg.register("ordered", "collections:OrderedDict")
    reg.register("missing", "no_such_module_xyz:Thing")
    from collections import OrderedDict

    assert reg.load("ordered") is OrderedDict
    assert reg.section("ordered") is PluginSection  # no `config`: only `type`
    assert reg.make("ordered").type == "ordered"
    with pytest.raises(ValidationError, match="extra"):
        reg.validate({"type": "ordered", "size": 3})
    with pytest.raises(LookupError, match="the missing widget needs 'no_such_module_xyz'"):
        reg.load("missing")
    with pytest.raises(ValidationError, match="no_such_module_xyz"):
        reg.validate("missing")
    reg.unregister("ordered")
    assert reg.names() == ["missing"]
