"""OFF-ApexNet-style baseline (Gan et al. 2019): a small CNN on onset -> apex optical flow.

The flow (OpenCV Farneback on grey crops resized to 28x28 after computing it at 64x64, the
paper's input size) gives horizontal and vertical components; each goes through its own
two-conv stream, the streams are concatenated and two fully connected layers classify.
Trained with class-weighted cross-entropy for a fixed number of epochs (no early stopping on
the test subject).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn as nn

from trainer.losses import class_alpha
from trainer.train.data import PairSet

FLOW_SIZE, NET_SIZE = 64, 28
_MEMO: dict[tuple[str, int], np.ndarray] = {}


def flow_features(data: PairSet) -> np.ndarray:
    """[N, 2, 28, 28] float32 (u, v), scaled to pixels of the 28 px grid."""
    out = np.zeros((len(data), 2, NET_SIZE, NET_SIZE), np.float32)
    for i in range(len(data)):
        key = (data.clips[i], data.crop_size)
        if key in _MEMO:  # LOSO folds share samples; the flow is deterministic
            out[i] = _MEMO[key]
            continue
        a = cv2.resize(cv2.cvtColor(data.onset[i], cv2.COLOR_BGR2GRAY), (FLOW_SIZE, FLOW_SIZE), interpolation=cv2.INTER_AREA)
        b = cv2.resize(cv2.cvtColor(data.apex[i], cv2.COLOR_BGR2GRAY), (FLOW_SIZE, FLOW_SIZE), interpolation=cv2.INTER_AREA)
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 9, 3, 5, 1.1, 0)
        small = cv2.resize(flow, (NET_SIZE, NET_SIZE), interpolation=cv2.INTER_AREA) * (NET_SIZE / FLOW_SIZE)
        out[i] = _MEMO[key] = small.transpose(2, 0, 1)
    return out


def forget(clips: list[str]) -> None:
    """Drop these clips' memoised flows: a changed copy of a pair (posed, jittered) keeps its clip name."""
    for key in [k for k in _MEMO if k[0] in set(clips)]:
        del _MEMO[key]


class OffApexNet(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()

        def stream() -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            )

        self.u, self.v = stream(), stream()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * 16 * 7 * 7, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.u(x[:, :1]), self.v(x[:, 1:])], dim=1))


def fit(train: PairSet, seed: int = 0, epochs: int = 40, lr: float = 1e-3, batch: int = 32) -> Callable[[PairSet], np.ndarray]:
    torch.manual_seed(seed)
    num_classes = len(train.label_names)
    x = torch.from_numpy(flow_features(train))
    scale = float(x.abs().flatten().quantile(0.99).clamp_min(1e-3))  # train-set statistic only
    x = x / scale
    y = torch.from_numpy(train.labels)
    net = OffApexNet(num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    lossf = nn.CrossEntropyLoss(weight=class_alpha(train.labels.tolist(), num_classes))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            opt.zero_grad()
            lossf(net(x[idx]), y[idx]).backward()
            opt.step()
    net.eval()

    def predict(test: PairSet) -> np.ndarray:
        if not len(test):
            return np.zeros(0, np.int64)
        with torch.no_grad():
            return net(torch.from_numpy(flow_features(test)) / scale).argmax(1).numpy()

    return predict
