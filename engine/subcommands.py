"""Umbrella commands (`mfvan-bench`, `mfvan-eval`) whose subcommands live in other packages.

Each subcommand is imported only when chosen, so `mfvan-bench engine` on an engine-only host
never imports the streamer, and `mfvan-eval spot` never imports torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

BENCH = {
    "engine": ("engine.bench", "main", "engine latency and throughput per backend, torch eager beside"),
    "streamer": ("streamer.bench", "main_streamer", "frames/s through faces+align+spot on one core"),
    "e2e": ("streamer.bench", "main_e2e", "apex leaves the spotter -> result published, p50/p99"),
    "soak": ("streamer.soak", "main", "replay through the full daemon for N minutes, RSS/fd/queues over time"),
}
EVAL = {
    "loso": ("trainer.evaluate.loso", "main", "leave-one-subject-out recognition: MFVAN, baselines, ablations"),
    "spot": ("streamer.spotting.evaluate", "main", "score spotted events against annotations (MEGC, IoU >= 0.5)"),
}


def _dispatch(prog: str, table: dict[str, tuple[str, str, str]], argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: {prog} {{{','.join(table)}}} [options]\n\nsubcommands:")
        for name, (_, _, text) in table.items():
            print(f"  {name:<10} {text}")
        print(f"\n`{prog} SUBCOMMAND --help` for its options.")
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in table:
        print(f"{prog}: unknown subcommand {name!r}; choose from {', '.join(table)}", file=sys.stderr)
        return 2
    module, func, _ = table[name]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        print(f"{prog} {name}: needs {exc.name!r}, which is not installed", file=sys.stderr)
        return 2
    return int(getattr(mod, func)(rest) or 0)


def bench_main(argv: Sequence[str] | None = None) -> int:
    return _dispatch("mfvan-bench", BENCH, argv)


def eval_main(argv: Sequence[str] | None = None) -> int:
    return _dispatch("mfvan-eval", EVAL, argv)
