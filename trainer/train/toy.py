"""A tiny labelled pair set made in memory, for tests and smoke runs of the pipeline.

Class c brightens a blob in region c of a random 'face' over the onset..apex sequence: a
signal every model here should learn, so a pipeline that scores at chance on it is broken.
"""

from __future__ import annotations

import numpy as np

from trainer.train.data import PairSet

LABELS = ["negative", "positive", "surprise"]


def toy_pairs(n_subjects: int = 3, per_class: int = 3, seed: int = 0, frames: int = 2, size: int = 32) -> PairSet:
    rng = np.random.default_rng(seed)
    q = size // 4
    spots = [(q // 2, q // 2), (q // 2, size - q - q // 2), (size - q - q // 2, size // 2 - q // 2)]
    o_, a_, y_, s_, c_, f_, w_ = [], [], [], [], [], [], []
    for s in range(n_subjects):
        face = rng.integers(40, 200, (size, size, 3)).astype(np.float32)
        for c in range(3):
            for k in range(per_class):
                seq = []
                for t in range(frames + 2):
                    img = np.clip(face + rng.normal(0, 3, face.shape), 0, 255)
                    y, x = spots[c]
                    img[y : y + q, x : x + q] += 50 * t / (frames + 1)
                    seq.append(np.clip(img, 0, 255).astype(np.uint8))
                idx = len(y_)
                o_.append(seq[0])
                a_.append(seq[-1])
                f_.extend(seq[1:-1])
                w_.extend([idx] * frames)
                y_.append(c)
                s_.append(f"sub{s:02d}")
                c_.append(f"sub{s:02d}/e{c}{k}")
    frames_arr = np.stack(f_) if f_ else np.zeros((0, size, size, 3), np.uint8)
    # the pattern was drawn in RGB; a PairSet holds BGR wire crops, so store it reversed and the
    # network (through crops_to_nchw) sees the very tensors it always saw: smoke numbers stay put
    o_, a_, frames_arr = (np.ascontiguousarray(np.stack(x)[..., ::-1]) for x in (o_, a_, frames_arr))
    return PairSet(onset=o_, apex=a_, labels=np.array(y_), label_names=list(LABELS), subjects=s_,
                   clips=c_, frames=frames_arr, frame_owner=np.array(w_, np.int64))
