"""Record calibration pairs off the wire: `python -m calibration.record --endpoint URL --count N --out pairs.npz`.

Why: the best INT8 calibration data are the crops the deployed streamer really sends (its
camera, lighting, alignment). Point a streamer's `engine.pair_endpoint` at this recorder (it
binds a PULL socket like the engine does) and it keeps N valid pairs; invalid messages are
dropped and counted, exactly as the engine would. Labels of recorded pairs are unknown (-1),
so their INT8 report gives label agreement and output drift, not accuracy; the subject of a
pair is `camera:track`, which keeps one face out of both calibration and held-out sets.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np
import zmq
from tqdm import tqdm

from calibration.pairs import PairSet, save_pairs
from engine.wire.protocol import Pair, ProtocolError, decode


def record(endpoint: str, count: int, labels: list[str], *, bind: bool = True, timeout_s: float = 0.0,
           ctx: zmq.Context | None = None, progress: bool = True) -> tuple[PairSet, Counter]:
    """Receive up to `count` valid pairs (stop early after `timeout_s` of silence if > 0)."""
    ctx = ctx or zmq.Context.instance()
    sock = ctx.socket(zmq.PULL)
    sock.linger = 0
    (sock.bind if bind else sock.connect)(endpoint)
    onsets, apexes, subjects = [], [], []
    dropped: Counter = Counter()
    try:
        with tqdm(total=count, desc="recording pairs", unit="pair", disable=not progress, file=sys.stderr) as bar:
            last = time.monotonic()
            while len(onsets) < count:
                if not sock.poll(200):
                    if timeout_s and time.monotonic() - last > timeout_s:
                        break
                    continue
                last = time.monotonic()
                try:
                    _, header, arrays = decode(sock.recv_multipart(), has_topic=False)
                except ProtocolError as exc:
                    dropped[exc.reason] += 1
                    continue
                if not isinstance(header, Pair):
                    continue  # macro/status events travel on the same channel; not calibration data
                if onsets and arrays[0].shape != onsets[0].shape:
                    dropped["crop_size"] += 1
                    continue
                onsets.append(arrays[0].copy())
                apexes.append(arrays[1].copy())
                subjects.append(f"{header.camera}:{header.track}")
                bar.update()
    finally:
        sock.close(0)
    if not onsets:
        raise SystemExit(f"no pairs received on {endpoint}")
    pairs = PairSet(onset=np.stack(onsets), apex=np.stack(apexes), labels=np.full(len(onsets), -1, np.int64),
                    label_names=list(labels), subjects=subjects)
    return pairs, dropped


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m calibration.record", description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", required=True, help="PULL endpoint (the streamer's engine.pair_endpoint)")
    p.add_argument("--connect", action="store_true", help="connect instead of bind")
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--labels", default="negative,positive,surprise", help="the model's labels, comma-separated")
    p.add_argument("--timeout", type=float, default=0.0, help="stop after this many silent seconds (0 = wait)")
    p.add_argument("--out", required=True, help="pair file to write (.npz)")
    args = p.parse_args(argv)
    pairs, dropped = record(args.endpoint, args.count, args.labels.split(","), bind=not args.connect, timeout_s=args.timeout)
    save_pairs(args.out, pairs)
    print(f"{args.out}: {len(pairs)} pairs from {len(set(pairs.subjects))} tracks; dropped {dict(dropped) or 0}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
