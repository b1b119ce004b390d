"""Policy: nothing in the product unpickles data (over a socket or from a file it did not write)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("streamer", "engine", "calibration", "trainer")
FORBIDDEN = re.compile(r"\b(import pickle|from pickle|cPickle|cloudpickle|dill\b|send_pyobj|recv_pyobj|marshal\.loads|"
                       r"numpy\.load\([^)]*allow_pickle=True|np\.load\([^)]*allow_pickle=True)")
TORCH_LOAD = re.compile(r"torch\.load\(([^)]*)\)")


def _sources() -> list[Path]:
    return [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]


def test_policy_scans_the_real_tree() -> None:
    names = {p.name for p in _sources()}
    assert {"protocol.py", "client.py"} <= names


def test_no_pickle_anywhere() -> None:
    offenders = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in _sources()
                 for i, line in enumerate(p.read_text().splitlines(), 1) if FORBIDDEN.search(line)]
    assert not offenders, "pickle-family calls found:\n" + "\n".join(offenders)


def test_torch_load_is_weights_only() -> None:
    offenders = []
    for p in _sources():
        text = p.read_text()
        for m in TORCH_LOAD.finditer(text):
            if "weights_only=True" not in m.group(1):
                line = text[: m.start()].count("\n") + 1
                offenders.append(f"{p.relative_to(ROOT)}:{line}: {m.group(0)}")
    assert not offenders, "torch.load without weights_only=True:\n" + "\n".join(offenders)
