"""`python -m streamer.harness.ab`: `mfvan-bench streamer` on two or more source trees, alternated.

Why: these VMs run the same code 2-3x apart from one machine to another and +-30 % from run to
run, so a speed claim is a ratio measured in one session: each tree runs in its own fresh
process, the order flips every round (a machine that slows down during the session penalises
every tree alike), and the medians and their ratio to the first tree are printed.

    git worktree add --detach /tmp/old <commit>
    python -m streamer.harness.ab old=/tmp/old new=. --rounds 6 -- --repeat 2 --paced-rate 200

A tree is a checkout of this repository (any commit since the bench existed: `streamer.harness.bench`
or the older `streamer.bench`). The installed package is hidden from the child so each tree's own
code runs; the child asserts that it imported the tree it was given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import sys
tree = sys.argv[1]
# an editable install puts its own finder in front of sys.path: drop it so `tree` is imported
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()
                    and "editable" not in type(f).__module__.lower()]
sys.path.insert(0, tree)
import streamer
assert streamer.__file__.startswith(tree), f"imported {streamer.__file__}, not {tree}"
try:
    from streamer.harness.bench import main_streamer
except ImportError:
    from streamer.bench import main_streamer
sys.exit(main_streamer(sys.argv[2:]))
"""


def run_once(tree: Path, bench_args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tree), "--json", *bench_args],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{tree}: exit {out.returncode}: {out.stderr.strip()[-400:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    bench_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog="python -m streamer.harness.ab", description=__doc__.split("\n\n")[0])
    p.add_argument("trees", nargs="+", metavar="NAME=PATH", help="two or more trees; ratios are to the first")
    p.add_argument("--rounds", type=int, default=5, help="runs per tree (order alternates every round)")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = p.parse_args(own)
    trees: dict[str, Path] = {}
    for spec in args.trees:
        name, sep, path = spec.partition("=")
        if not sep or not name or not Path(path).is_dir():
            print(f"ab: {spec!r}: give NAME=PATH with PATH a checkout of this repository", file=sys.stderr)
            return 2
        trees[name] = Path(path).resolve()
    if len(trees) < 2 or args.rounds < 1:
        print("ab: give at least two trees and --rounds >= 1", file=sys.stderr)
        return 2
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    order = list(trees)
    for r in range(args.rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            try:
                j = run_once(trees[name], bench_args)
            except (RuntimeError, ValueError) as exc:
                print(f"ab: {exc}", file=sys.stderr)
                return 1
            runs[name].append(j)
            lost = j.get("paced", {}).get("lost_overruns")
            print(f"round {r + 1} {name}: {j['fps']:.1f} frames/s, p50 {j['ms_per_frame']['p50']} ms, lost {lost}",
                  flush=True)
    med = {name: statistics.median(j["fps"] for j in v) for name, v in runs.items()}
    first = order[0]
    summary = {name: {"fps": [j["fps"] for j in v], "median": med[name], "ratio": round(med[name] / med[first], 3),
                      "lost": [j.get("paced", {}).get("lost_overruns") for j in v]} for name, v in runs.items()}
    for name, s in summary.items():
        print(f"{name}: median {s['median']:.1f} frames/s, {name}/{first} {s['ratio']:.3f}, lost {s['lost']}")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
