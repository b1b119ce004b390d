"""FP32 ONNX + calibration pairs → INT8 QDQ ONNX (ONNX Runtime static quantisation).

Why QDQ with symmetric INT8 scales: the same file runs on ONNX Runtime's CPU EP and builds
as an explicitly quantised TensorRT engine (TensorRT takes only symmetric INT8 Q/DQ, and
TensorRT 11 has no implicit calibrator). Why only Conv/MatMul/Gemm by default: they hold
nearly all the arithmetic; quantising softmax, layer norm and residual adds costs accuracy
(attention maps are what the heatmaps show) for little speed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from calibration.pairs import CalibrationError, PairSet
from engine.tensors import pair_inputs

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_OPS = ("Conv", "MatMul", "Gemm")


class PairReader:
    """onnxruntime CalibrationDataReader over wire crops, fed exactly like the server feeds
    (`engine.tensors.pair_inputs`: a motion-form model gets the onset → apex flow, not the onset)."""

    def __init__(self, pairs: PairSet, batch: int = 8, names: tuple[str, str] = ("onset", "apex"),
                 form: str = "onset_apex"):
        self.pairs, self.batch, self.names, self.form = pairs, min(batch, len(pairs)), names, form
        self._i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        """Batches of exactly `batch` pairs: ONNX Runtime's histogram calibrators (entropy,
        percentile) stack per-batch outputs and fail on a short last batch, so the last one is
        topped up with the first pairs (a few repeats; min/max and histograms barely move)."""
        n = len(self.pairs)
        if self._i >= n:
            return None
        idx = np.arange(self._i, self._i + self.batch) % n
        self._i += self.batch
        first, apex = pair_inputs(self.pairs.onset[idx], self.pairs.apex[idx], self.form)
        return {self.names[0]: first, self.names[1]: apex}

    def rewind(self) -> None:
        self._i = 0


def quantize_qdq(
    fp32_onnx: Path,
    out: Path,
    pairs: PairSet,
    *,
    method: str = "minmax",
    op_types: tuple[str, ...] = DEFAULT_OPS,
    per_channel: bool = True,
    percentile: float = 99.99,
    entropy_bins: int = 2048,
    form: str = "onset_apex",
) -> dict[str, object]:
    """Write the QDQ model to `out`; return what the manifest records about it. `form` is the
    model's input form (`engine.tensors.input_form` of its manifest)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise CalibrationError(f"calibration method {method!r} not in {METHODS}")
    if len(pairs) == 0:
        raise CalibrationError("no calibration pairs")
    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}[method]

    class _Reader(PairReader, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory(prefix="mfvan-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        # shape inference + ORT-basic optimisation first, as onnxruntime's quantiser recommends
        quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=True)
        reader: object = _Reader(pairs, form=form)
        cache: dict[str, object] = {}
        if method == "entropy":
            ranges = _entropy_ranges(pre, Path(tmp), _Reader(pairs, form=form), op_types, entropy_bins)
            reader, cache = None, {"calibration_cache_path": ranges}
        quantize_static(
            str(pre),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            per_channel=per_channel,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calib,
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "CalibPercentile": percentile,
                "CalibTensorRangeSymmetric": True,
            },
            **cache,
        )
    import onnx

    model = onnx.load(str(out))
    n_q = sum(1 for n in model.graph.node if n.op_type == "QuantizeLinear")
    if n_q == 0:
        raise CalibrationError(f"{out.name}: the quantiser inserted no QuantizeLinear nodes")
    return {"method": method, "op_types": list(op_types), "per_channel": per_channel, "quantize_nodes": n_q}


def _entropy_ranges(pre: Path, tmp: Path, reader, op_types: tuple[str, ...], bins: int = 2048) -> Path:
    """KL-divergence (entropy) ranges with 2048 histogram bins folded to 128, as TensorRT does.

    Why by hand: `quantize_static` does not pass bin counts to the entropy calibrator, whose
    defaults (128 bins, 128 quantised bins) make every threshold the full range, i.e. the very
    same model as MinMax. The ranges go to quantize_static through its calibration cache.
    """
    try:
        from onnxruntime.quantization.calibrate import (
            CalibrationMethod,
            create_calibrator,
            save_tensors_data,
        )
    except ImportError:
        raise CalibrationError(
            "entropy calibration needs an onnxruntime with the calibration cache API (save_tensors_data); "
            "use --calib-method minmax or percentile, or upgrade onnxruntime"
        ) from None
    calibrator = create_calibrator(
        pre,
        list(op_types),
        augmented_model_path=str(tmp / "augmented.onnx"),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"symmetric": True, "num_bins": bins, "num_quantized_bins": 128},
    )
    calibrator.collect_data(reader)
    path = tmp / "entropy_ranges.json"
    save_tensors_data(calibrator.compute_data(), path)
    return path
