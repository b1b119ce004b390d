"""`mfvan-engined`: the inference server in the foreground (GPU hosts, scale-out).

SIGINT/SIGTERM request the stop (engine/process.py, the skeleton every mfvan process runs in);
the server finishes its batch, says `stopping` on `status/<engine_id>/` and exits 0; a second
signal ends it at once. A bad config exits 2 with `file:line` messages; an artefact
that fails verification exits 2 with the rebuild command.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from engine.backends import BACKENDS
from engine.config.cli import add_config_args, config_from_args
from engine.config.engine import EngineConfig
from engine.process import LOG_LEVELS, run_process


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="mfvan-engined",
        description="Serve an engine artefact: PULL (onset, apex) pairs, PUB labelled results with heatmaps.",
    )
    p.add_argument("--artefact", metavar="DIR", help="artefact folder (default: the bundled demo artefact)")
    p.add_argument("--backend", choices=BACKENDS.names(), help="a registered backend (its options: engine.backend in --config)")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"])
    p.add_argument("--pair-endpoint", metavar="URL", help="PULL endpoint pairs arrive on")
    p.add_argument("--pub-endpoint", metavar="URL", help="PUB endpoint results leave from")
    p.add_argument("--threads", type=int, dest="intra_op_threads", help="intra-op threads (CPU backends)")
    p.add_argument("--metrics-port", type=int, help="Prometheus /metrics and /healthz port (0 = off)")
    p.add_argument("--engine-id", help="name in hb/ and status/ topics (default host-pid)")
    p.add_argument("--log-level", default="INFO", choices=LOG_LEVELS)
    add_config_args(p)
    args = p.parse_args(argv)
    flags = ("artefact", "backend", "precision", "pair_endpoint", "pub_endpoint", "intra_op_threads", "metrics_port", "engine_id")
    overrides = {k: getattr(args, k) for k in flags if getattr(args, k) is not None}
    cfg = config_from_args(args, EngineConfig, overrides=overrides)
    return run_process("engine.server:run", args.log_level, args=(cfg,), child=False)
