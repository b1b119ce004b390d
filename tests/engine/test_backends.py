"""Every available backend agrees with torch on the same inputs (FP32 tight, INT8 by label
agreement); unavailable runtimes fail with an error naming the missing package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from engine.artefact import ArtefactError, load_artefact
from engine.backends import BackendUnavailable, load_backend
from engine.tensors import crops_to_nchw
from tests.helpers.engine import face_pairs

pytest.importorskip("torch")
FP32_ATOL = 1e-5  # measured ≈3e-8 on probs, ≈7e-7 on heatmaps (ORT CPU vs torch CPU)


@pytest.fixture(scope="module")
def artefact(tmp_path_factory):
    from tests.helpers.engine import build

    return load_artefact(build(tmp_path_factory.mktemp("backends")))


@pytest.fixture(scope="module")
def inputs():
    on, ap = face_pairs(5, seed=1)
    return crops_to_nchw(on), crops_to_nchw(ap)


@pytest.fixture(scope="module")
def reference(artefact, inputs):
    tb = load_backend(artefact, "torch", "fp32", threads=1, device="cpu")
    return tb.infer(*inputs)


def test_reference_is_not_degenerate(reference) -> None:
    probs, heat = reference
    # inputs differ → outputs differ by far more than the parity tolerance, so parity means something
    assert np.ptp(probs, axis=0).max() > 100 * FP32_ATOL
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert heat.shape == (5, 4, 7, 7) and 0.0 <= heat.min() and heat.max() <= 1.0


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_fp32_matches_torch(artefact, inputs, reference, batch) -> None:
    b = load_backend(artefact, "onnxruntime", "fp32", threads=1)
    assert b.device == "CPUExecutionProvider"
    probs, heat = b.infer(inputs[0][:batch], inputs[1][:batch])
    np.testing.assert_allclose(probs, reference[0][:batch], atol=FP32_ATOL)
    np.testing.assert_allclose(heat, reference[1][:batch], atol=FP32_ATOL)


def test_unoptimised_onnx_matches_torch_too(artefact, inputs, reference) -> None:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(artefact.path("model.onnx")), providers=["CPUExecutionProvider"])
    probs, heat = sess.run(["probs", "heatmaps"], {"onset": inputs[0], "apex": inputs[1]})
    np.testing.assert_allclose(probs, reference[0], atol=FP32_ATOL)
    np.testing.assert_allclose(heat, reference[1], atol=FP32_ATOL)


def test_auto_picks_onnxruntime_without_a_plan(artefact) -> None:
    assert load_backend(artefact, "auto", "fp32", threads=1).name == "onnxruntime"


def test_config_sections_choose_the_backend_and_its_options(artefact) -> None:
    """`engine.backend` (a bare name or the backend's own section) reaches the backend: its own
    `threads` overrides engine.intra_op_threads, which applies while it is unset."""
    from engine.config.engine import EngineConfig

    def ort_threads(cfg: EngineConfig) -> int:
        b = load_backend(artefact, cfg.backend, cfg.precision, threads=cfg.intra_op_threads)
        assert b.name == "onnxruntime"
        return b.session.get_session_options().intra_op_num_threads

    assert ort_threads(EngineConfig(backend="onnxruntime", intra_op_threads=3)) == 3
    assert ort_threads(EngineConfig(backend={"type": "onnxruntime", "threads": 1}, intra_op_threads=3)) == 1
    tb = load_backend(artefact, EngineConfig(backend={"type": "torch", "device": "cpu", "threads": 1}).backend)
    assert tb.name == "torch" and tb.device == "cpu"
    with pytest.raises(ArtefactError, match="unknown backend 'ort'; choose from auto, onnxruntime, tensorrt, torch"):
        load_backend(artefact, "ort")


def test_int8_needs_an_int8_model(artefact) -> None:
    with pytest.raises(ArtefactError, match="no INT8 model.*mfvan-build-engine"):
        load_backend(artefact, "onnxruntime", "int8")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_tensorrt_absent_names_the_package(artefact) -> None:
    with pytest.raises(BackendUnavailable, match="tensorrt"):
        load_backend(artefact, "tensorrt", "fp16")


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="TensorRT is not installed (NVIDIA index only); path unproven here")
def test_tensorrt_fp16_matches_torch(tmp_path: Path, inputs, reference) -> None:
    from tests.helpers.engine import build

    art = load_artefact(build(tmp_path, backend="tensorrt", precision="fp16"))
    probs, _ = load_backend(art, "tensorrt", "fp16").infer(*inputs)
    np.testing.assert_allclose(probs, reference[0], atol=5e-3)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
def test_torch_cuda_fp16_graphs_match_cpu(artefact, inputs, reference) -> None:
    if not _cuda():
        pytest.skip("no CUDA device (CPU-only torch or no GPU): the torch CUDA path is unproven here")
    for precision, atol in (("fp32", 1e-4), ("fp16", 5e-3)):
        b = load_backend(artefact, "torch", precision, device="cuda")
        for n in (1, 5, 1):  # graph capture per batch size, then replay
            probs, heat = b.infer(inputs[0][:n], inputs[1][:n])
            np.testing.assert_allclose(probs, reference[0][:n], atol=atol)
            np.testing.assert_allclose(heat, reference[1][:n], atol=10 * atol)


def test_torch_cuda_absent_is_a_clear_error(artefact) -> None:
    if _cuda():
        pytest.skip("CUDA is present")
    with pytest.raises(BackendUnavailable, match="CUDA"):
        load_backend(artefact, "torch", "fp16", device="cuda")


def test_serving_and_benchmarking_need_no_torch(artefact) -> None:
    """DESIGN §1: a host that only serves an engine must not need torch."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, json\n"
        "import engine.server\n"
        "from engine.artefact import load_artefact\n"
        "from engine.backends import load_backend, BackendUnavailable\n"
        "a = load_artefact(sys.argv[1])\n"
        "x = np.zeros((1, 3, 112, 112), np.float32)\n"
        "print(load_backend(a, 'onnxruntime', threads=1).infer(x, x)[0].shape)\n"
        "try:\n    load_backend(a, 'torch')\nexcept BackendUnavailable as e:\n    print('torch:', e)\n"
        "from engine.bench import run_bench\nfrom engine.config.engine import BenchConfig\n"
        "r = run_bench(BenchConfig(engine=sys.argv[1], iters=3, warmup=0, threads=1))\n"
        "print(sorted(r['results']), r['torch_eager'])\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(artefact.folder)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "(1, 3)"
    assert lines[1].startswith("torch:") and "pip install" in lines[1]
    assert lines[2] == "['onnxruntime/fp32'] None"
