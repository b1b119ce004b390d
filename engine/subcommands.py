"""Umbrella commands (`mfvan-bench`, `mfvan-eval`) whose subcommands live in other packages.

Each subcommand is an entry point (`mfvan.bench` / `mfvan.eval` groups in pyproject.toml) that
is imported only when chosen: `mfvan-bench engine` on an engine-only host never imports the
streamer, `mfvan-eval spot` never imports torch, and this module, at the bottom layer, never
imports the packages above it. The help line of each subcommand is its module's first
docstring line, read without importing it where the module is not installed.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points

from engine.process import setup_logging

# shown before the module's own summary; order is the help's order
HELP = {
    "mfvan.bench": {
        "engine": "engine latency and throughput per backend, torch eager beside",
        "streamer": "frames/s through faces+align+spot on one core",
        "e2e": "apex leaves the spotter -> result published, p50/p99",
        "soak": "replay through the full daemon for N minutes, RSS/fd/queues over time",
    },
    "mfvan.eval": {
        "loso": "leave-one-subject-out recognition: MFVAN, baselines, ablations",
        "spot": "score spotted events against annotations (MEGC, IoU >= 0.5)",
        "select": "score a recipe variant on validation subjects, as captured and posed",
    },
}


def _table(group: str) -> dict[str, EntryPoint]:
    eps = {ep.name: ep for ep in entry_points(group=group)}
    order = list(HELP.get(group, {}))
    return dict(sorted(eps.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])))


def _summary(group: str, ep: EntryPoint) -> str:
    text = HELP.get(group, {}).get(ep.name)
    if text:
        return text
    spec = importlib.util.find_spec(ep.module)
    return f"({ep.module})" if spec is None else ep.module


def _dispatch(prog: str, group: str, argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    table = _table(group)
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: {prog} {{{','.join(table)}}} [options]\n\nsubcommands:")
        for name, ep in table.items():
            print(f"  {name:<10} {_summary(group, ep)}")
        print(f"\n`{prog} SUBCOMMAND --help` for its options.")
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in table:
        known = ", ".join(table) or "none: is mfvan installed (pip install -e .)?"
        print(f"{prog}: unknown subcommand {name!r}; choose from {known}", file=sys.stderr)
        return 2
    setup_logging("WARNING")  # the one format (engine/process.py); a subcommand may raise it
    try:
        func = table[name].load()
    except ModuleNotFoundError as exc:
        print(f"{prog} {name}: needs {exc.name!r}, which is not installed", file=sys.stderr)
        return 2
    return int(func(rest) or 0)


def bench_main(argv: Sequence[str] | None = None) -> int:
    return _dispatch("mfvan-bench", "mfvan.bench", argv)


def eval_main(argv: Sequence[str] | None = None) -> int:
    return _dispatch("mfvan-eval", "mfvan.eval", argv)
