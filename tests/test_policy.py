"""Policy: nothing in the product unpickles data (over a socket or from a file it did not write),
and the packages keep their layers (import-linter, run for real on the tree and on a broken copy)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

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


# -- the layers (pyproject.toml [tool.importlinter]) -------------------------------------------------
def _lint_imports(root: Path, cwd: Path) -> subprocess.CompletedProcess:
    """Run the real import-linter over the packages found first on PYTHONPATH=root."""
    import sys

    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(exe), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold() -> None:
    r = _lint_imports(ROOT, ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


@pytest.mark.parametrize(
    ("where", "line", "contract"),
    [
        # the cycle that issue 11 removed: the engine reaching up into the trainer, in a function
        ("engine/backends/probe.py", "def f():\n    from trainer.checkpoint import load_model\n", "Layers"),
        ("engine/wire/probe.py", "from engine.artefact import Artefact\n", "The wire"),
        ("streamer/probe.py", "def f():\n    import torch\n", "Torch lives in the trainer"),
        ("streamer/spotting/probe.py", "from streamer.harness.clip import render_test_clip\n", "harnesses"),
    ],
)
def test_import_contracts_catch_a_deliberate_violation(tmp_path: Path, where: str, line: str, contract: str) -> None:
    """A copy of the tree with one bad import (function-local ones count too) breaks its contract."""
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.onnx", "*.ckpt",
                                                                                   "*.jpg", "*.png", "results_*"))
    (tmp_path / where).write_text(line)
    r = _lint_imports(tmp_path, tmp_path)
    assert r.returncode != 0, r.stdout
    broken = [ln for ln in r.stdout.splitlines() if " BROKEN" in ln]
    assert len(broken) >= 1 and any(contract in ln for ln in broken), r.stdout
    assert Path(where).stem in r.stdout


def test_the_wire_imports_only_itself() -> None:
    """Stated the other way round from the forbidden contract (which lists what exists today):
    whatever is added to the engine later, engine.wire reaches no project module outside it."""
    import grimp

    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    wire = {m for m in graph.modules if m == "engine.wire" or m.startswith("engine.wire.")}
    outside = sorted(f"{m} -> {dep}" for m in wire for dep in graph.find_modules_directly_imported_by(m)
                     if dep.split(".")[0] in PACKAGES and dep not in wire and dep != "engine")
    assert len(wire) >= 3 and not outside, outside
