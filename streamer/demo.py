"""`make demo`: run the daemon on a bundled sample. Until the streamer lands it says so."""

from __future__ import annotations

import sys


def main() -> int:
    print("mfvan demo: not yet — the streamer (issue: streamer and daemon) has not landed.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
