"""INT8 vs FP32 on held-out pairs: label agreement, accuracy/F1 change, output drift.

Why agreement and accuracy both: agreement says how often INT8 changes a decision even
where labels are unknown; the accuracy/macro-F1 delta (when the held-out pairs are labelled)
says whether those changes matter. INT8 ships only with this report (DESIGN §4).
"""

from __future__ import annotations

import numpy as np

from calibration.pairs import PairSet
from engine.tensors import pair_inputs


def run_onnx(path, pairs: PairSet, *, threads: int = 2, batch: int = 16, form: str = "onset_apex"
             ) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    probs, heats = [], []
    for i in range(0, len(pairs), batch):
        first, apex = pair_inputs(pairs.onset[i : i + batch], pairs.apex[i : i + batch], form)
        p, h = sess.run(["probs", "heatmaps"], {"onset": first, "apex": apex})
        probs.append(p)
        heats.append(h)
    return np.concatenate(probs), np.concatenate(heats)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean F1 over the classes present in y_true (the MEGC UF1 convention)."""
    f1s = []
    for c in range(n_classes):
        if not (y_true == c).any():
            continue
        tp = int(((y_pred == c) & (y_true == c)).sum())
        fp = int(((y_pred == c) & (y_true != c)).sum())
        fn = int(((y_pred != c) & (y_true == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(f1s)) if f1s else float("nan")


def compare(fp32_onnx, int8_onnx, held_out: PairSet, *, threads: int = 2, form: str = "onset_apex") -> dict[str, object]:
    p32, h32 = run_onnx(fp32_onnx, held_out, threads=threads, form=form)
    p8, h8 = run_onnx(int8_onnx, held_out, threads=threads, form=form)
    y32, y8 = p32.argmax(1), p8.argmax(1)
    n_classes = p32.shape[1]
    report: dict[str, object] = {
        "held_out_pairs": len(held_out),
        "held_out_subjects": sorted(set(held_out.subjects)),
        "label_agreement": float((y32 == y8).mean()),
        "probs_max_abs_diff": float(np.abs(p32 - p8).max()),
        "probs_mean_abs_diff": float(np.abs(p32 - p8).mean()),
        "heatmaps_mean_abs_diff": float(np.abs(h32 - h8).mean()),
        "labelled": held_out.labelled,
    }
    if held_out.labelled:
        y = held_out.labels
        acc32, acc8 = float((y32 == y).mean()), float((y8 == y).mean())
        f32, f8 = macro_f1(y, y32, n_classes), macro_f1(y, y8, n_classes)
        report.update(
            accuracy_fp32=acc32, accuracy_int8=acc8, accuracy_delta=acc8 - acc32,
            macro_f1_fp32=f32, macro_f1_int8=f8, macro_f1_delta=f8 - f32,
        )
    return report
