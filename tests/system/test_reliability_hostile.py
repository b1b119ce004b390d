"""Hostile input at every socket the engine and the daemon bind (issue 7, item 2).

Real processes, real sockets: `mfvan-engined` and `mfvan-streamd` run as subprocesses; the test
is the attacker. 10,000 messages at the PULL pair endpoint (wrong version, wrong frame count,
huge shapes, NaN arrays, truncated and random msgpack, random bytes, bit-flipped valid pairs),
junk subscription frames at the XPUB endpoint, non-ZMTP bytes at both TCP ports and junk HTTP at
the /metrics and /healthz ports. Each message must be dropped and counted under the reason it
was built to hit (read back from the engine's own /metrics), nothing may crash, the engine's
memory must stay bounded, and a valid pair sent afterwards must still get its Result.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import zmq

from engine.server import TRIM_IDLE_S
from engine.wire import protocol as P
from engine.wire.client import Subscriber
from streamer.harness.procs import http_get, metric_sum, peak_rss_kb, rss_kb
from streamer.harness.soak import Daemon
from tests.helpers.engine import face_pairs
from tests.helpers.reliability import (
    Engined,
    Hostile,
    good_pair,
    junk_http,
    junk_tcp,
    tcp_port,
    wait_until,
)

pytest.importorskip("torch")


def _xpub_junk(endpoint: str, rng: np.random.Generator, n: int, random_topics: bool = False) -> None:
    """An XSUB at the XPUB port: (un)subscriptions, empty and multi-part junk frames.

    `random_topics` subscribes to random 100-300 byte topics (libzmq alone would keep every one
    of them; see test_random_subscriptions_do_not_grow_engine_memory); otherwise subscriptions
    use the protocol's topic prefixes."""
    ctx = zmq.Context()
    x = ctx.socket(zmq.XSUB)
    x.linger = 0
    x.connect(endpoint)
    prefixes = (b"", b"label/", b"macro/", b"status/", b"hb/", b"label/cam1/")
    try:
        for i in range(n):
            k = i % 5
            body = rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
            if k == 0:
                topic = body if random_topics else prefixes[int(rng.integers(len(prefixes)))]
                x.send(b"\x01" + topic)
            elif k == 1:
                x.send(b"\x00" + body)  # unsubscribe from something never subscribed
            elif k == 2:
                x.send(b"")
            elif k == 3:
                x.send_multipart([b"\x01label/", body, body])
            else:
                x.send(body if not body.startswith((b"\x00", b"\x01")) else b"\x02" + body)
        time.sleep(0.5)
    finally:
        x.close(0)
        ctx.term()


def run_flood(tmp: Path, artefact: Path, n_messages: int) -> dict:
    rng = np.random.default_rng(7)
    onset, apex = face_pairs(8)
    gen = Hostile(onset[0], apex[0], seed=11)
    messages = [gen.next() for _ in range(n_messages)]
    typed = [(f, r) for f, r in messages if r is not None]
    mutations = [f for f, r in messages if r is None]
    expected = Counter(r for _, r in typed)
    with Engined(tmp, artefact) as eng:
        pid = eng.proc.pid
        for i in range(8):  # warm-up: every allocator arena and ORT buffer in use before the baseline
            eng.push.send_multipart(good_pair(i, onset[i], apex[i], camera="warm"))
        for _ in range(8):
            assert eng.result_for("warm") is not None, eng.log()
        rss0, hwm0 = rss_kb(pid), peak_rss_kb(pid)
        trims0 = metric_sum(eng.metrics(), "mfvan_engine_memory_trims_total")

        # the pair channel, with junk at the XPUB port (subscription frames, raw TCP) at the same time
        side = [threading.Thread(target=_xpub_junk, args=(eng.pub, np.random.default_rng(1), n_messages // 2)),
                threading.Thread(target=junk_tcp, args=("127.0.0.1", tcp_port(eng.pub), np.random.default_rng(3)))]
        for t in side:
            t.start()
        t0 = time.perf_counter()
        for frames, _ in typed:
            eng.push.send_multipart(frames)
        wait_until(lambda: sum(eng.drops().values()) >= len(typed), 120, "every typed message counted")
        typed_s = time.perf_counter() - t0
        drops_typed = eng.drops()
        assert drops_typed == expected, (drops_typed, expected)

        pairs_before = metric_sum(eng.metrics(), "mfvan_engine_pairs_in_total")
        for frames in mutations:
            eng.push.send_multipart(frames)

        def accounted() -> int:
            m = eng.metrics()
            return int(metric_sum(m, "mfvan_engine_dropped_total") - len(typed)
                       + metric_sum(m, "mfvan_engine_pairs_in_total") - pairs_before)

        wait_until(lambda: accounted() >= len(mutations), 120, "every mutation counted (dropped or accepted)")
        assert accounted() == len(mutations)
        m = eng.metrics()
        accepted = int(metric_sum(m, "mfvan_engine_pairs_in_total") - pairs_before)
        dropped = int(metric_sum(m, "mfvan_engine_dropped_total"))
        for t in side:
            t.join(60)

        # non-ZMTP bytes at the PULL port (libzmq reads a greeting without 0xFF as ZMTP 1.0, so
        # random bytes can arrive as messages: they too must be dropped and counted)
        junk_tcp("127.0.0.1", tcp_port(eng.pair), rng)
        time.sleep(0.5)
        from_tcp = sum(eng.drops().values()) - dropped
        assert set(eng.drops()) <= set(P.REASONS) | {"crop_size", "unexpected"}

        # the same typed flood again: the first round grew the allocator's pools (glibc arenas of
        # the zmq, HTTP and ORT threads); a leak would grow RSS again by as much, a pool does not.
        # RSS is read once the engine, idle after the burst, has trimmed its heap: how far a burst
        # pushes the arenas depends on how far the engine fell behind it (the machine's load)
        def trimmed(after: float) -> int:
            wait_until(lambda: metric_sum(eng.metrics(), "mfvan_engine_memory_trims_total") > after, 30,
                       "the engine to trim its heap once idle after the burst")
            time.sleep(2 * TRIM_IDLE_S)  # and after the last burst of the round, if it trimmed earlier
            return rss_kb(pid)

        rss_mid = trimmed(trims0)
        trims = metric_sum(eng.metrics(), "mfvan_engine_memory_trims_total")
        for frames, _ in typed:
            eng.push.send_multipart(frames)
        wait_until(lambda: sum(eng.drops().values()) >= dropped + from_tcp + len(typed), 120, "the second round")

        # a valid pair after all that still gets its Result
        eng.push.send_multipart(good_pair(1, onset[1], apex[1], camera="after"))
        res = eng.result_for("after")
        assert res is not None, eng.log()[-3000:]
        assert res.header.seq == 1 and res.heatmap is not None and res.heatmap.shape == (4, 112, 112)
        assert eng.proc.poll() is None
        rss1, hwm1 = trimmed(trims), peak_rss_kb(pid)
        code = eng.stop()
    log = eng.log()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    first_mb, second_mb = (rss_mid - rss0) / 1024, (rss1 - rss_mid) / 1024
    assert first_mb < 96, f"engine RSS grew {first_mb:.1f} MB over the flood ({rss0} -> {rss_mid} kB)"
    assert second_mb < 8, f"engine RSS grew {second_mb:.1f} MB more over the same flood again ({rss_mid} -> {rss1} kB)"
    report = {"messages": n_messages, "typed": len(typed), "mutations": len(mutations),
              "mutations_still_valid": accepted, "dropped": dropped - len(typed) + len(typed),
              "by_reason": dict(sorted(drops_typed.items())), "dropped_from_raw_tcp": from_tcp,
              "typed_seconds": round(typed_s, 2), "rss_kb": (rss0, rss_mid, rss1), "peak_rss_kb": (hwm0, hwm1)}
    print("hostile flood:", report)
    return report


def test_engine_survives_10000_hostile_messages_counted_by_reason(tmp_path: Path, artefact: Path) -> None:
    run_flood(tmp_path, artefact, 10_000)


@pytest.mark.slow
def test_engine_survives_100000_hostile_messages(tmp_path: Path, artefact: Path) -> None:
    run_flood(tmp_path, artefact, 100_000)


def test_oversized_frame_is_refused_by_the_transport(tmp_path: Path, artefact: Path) -> None:
    """A 256 MB frame (16x the largest array the protocol allows) must not be buffered whole."""
    onset, apex = face_pairs(1)
    with Engined(tmp_path, artefact) as eng:
        pid = eng.proc.pid
        eng.push.send_multipart(good_pair(0, onset[0], apex[0], camera="warm"))
        assert eng.result_for("warm") is not None
        hwm0 = peak_rss_kb(pid)
        huge = bytes(256 * 1024 * 1024)
        frames = good_pair(1, onset[0], apex[0], camera="huge")
        eng.push.send_multipart([frames[0], frames[1], huge, frames[3]])
        del huge
        time.sleep(3)
        eng.push.send_multipart(good_pair(2, onset[0], apex[0], camera="after"))
        eng.result_for("after", timeout=10)
        grown_mb = (peak_rss_kb(pid) - hwm0) / 1024
        assert eng.proc.poll() is None
    assert grown_mb < 100, f"the engine's peak RSS grew {grown_mb:.0f} MB for one hostile frame"


def test_random_subscriptions_do_not_grow_engine_memory(tmp_path: Path, artefact: Path) -> None:
    """One peer at the PUB port subscribing to 10,000 random 100-300 byte topics: the engine's
    memory must stay bounded (a topic that can never match a published message is useless)."""
    with Engined(tmp_path, artefact) as eng:
        rss0 = rss_kb(eng.proc.pid)
        _xpub_junk(eng.pub, np.random.default_rng(0), 50_000, random_topics=True)
        time.sleep(1.0)
        grown_mb = (rss_kb(eng.proc.pid) - rss0) / 1024
        assert eng.proc.poll() is None
    assert grown_mb < 32, f"engine RSS grew {grown_mb:.0f} MB for 10,000 subscriptions"


def test_daemon_survives_junk_at_every_bound_socket(tmp_path: Path, artefact: Path) -> None:
    """The full daemon on TCP: typed junk at its pair endpoint, junk at its XPUB, raw TCP and junk
    HTTP at /metrics + /healthz; no child restarts, counted drops, a probe pair still answered."""
    clip = _short_clip(tmp_path)
    onset, apex = face_pairs(2)
    gen = Hostile(onset[0], apex[0], seed=5)
    typed = [(f, r) for f, r in (gen.next() for _ in range(2500)) if r is not None][:2000]
    expected = Counter(r for _, r in typed)
    rng = np.random.default_rng(9)
    d = Daemon(tmp_path / "d", [str(clip)], fps=50, artefact=str(artefact), tcp=True)
    with d:
        d.wait_running()
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.linger = 0
        push.connect(d.pair_endpoint)
        try:
            def drops() -> Counter[str]:
                return Counter({k.split('reason="')[1].split('"')[0]: int(v) for k, v in d.engine_metrics().items()
                                if k.startswith("mfvan_engine_dropped_total{")})

            for frames, _ in typed:
                push.send_multipart(frames)
            _xpub_junk(d.pub_endpoint, rng, 2000)
            wait_until(lambda: sum(drops().values()) >= len(typed), 90, "the daemon's engine to count the junk")
            assert drops() == expected
            junk_tcp("127.0.0.1", tcp_port(d.pair_endpoint), rng)
            junk_tcp("127.0.0.1", tcp_port(d.pub_endpoint), rng)
            for port in (d.metrics_port, d.engine_metrics_port):
                _, held = junk_http("127.0.0.1", port, rng)
                try:  # both servers still answer while slow clients hold connections open
                    assert d.healthz() == (200, "ok\n")
                    assert http_get(f"http://127.0.0.1:{d.engine_metrics_port}/metrics")[0] == 200
                finally:
                    for sock in held:
                        sock.close()
            with Subscriber(d.pub_endpoint, cameras=["probe"], kinds=("label/",)) as sub:
                time.sleep(0.5)  # the subscription reaches the XPUB
                push.send_multipart(good_pair(7, onset[1], apex[1]))
                ev = sub.recv(30_000)
            assert ev is not None and ev.header.seq == 7, d.log()[-3000:]
            m = d.metrics()
            assert metric_sum(m, "mfvan_child_restarts_total") == 0, d.log()[-3000:]
            assert metric_sum(m, "mfvan_streamer_frames_total") > 0
            assert d.healthz() == (200, "ok\n")
        finally:
            push.close(0)
            ctx.term()
        code = d.stop()
    assert code == 0, d.log()[-3000:]
    # no traceback may name our own code but the /metrics handler (junk HTTP tracebacks are
    # test_junk_http_leaves_no_traceback_in_the_log's business)
    ours = [ln.strip() for ln in d.log().splitlines() if re.search(r'File ".*/(engine|streamer|trainer)/', ln)]
    assert all(ln.endswith("in do_GET") for ln in ours), ours


def test_junk_http_leaves_no_traceback_in_the_log(tmp_path: Path, artefact: Path) -> None:
    """An HTTP client that sends garbage must cost one short log line at most, not a traceback:
    a flood of them would fill the journal with tracebacks (and look like a crash)."""
    clip = _short_clip(tmp_path)
    d = Daemon(tmp_path / "d", [str(clip)], fps=50, artefact=str(artefact))
    rng = np.random.default_rng(4)
    with d:
        d.wait_running()
        for port in (d.metrics_port, d.engine_metrics_port):
            for sock in junk_http("127.0.0.1", port, rng)[1]:
                sock.close()
        time.sleep(0.5)
        assert d.healthz()[0] == 200
    assert "Traceback" not in d.log(), f"{d.log().count('Traceback')} tracebacks from the HTTP servers"


def _short_clip(tmp: Path, seconds: float = 60.0, fps: float = 50.0) -> Path:
    """A looped clip long enough that the replay outlasts the test (frames as symlinks)."""
    from streamer.harness.clip import render_test_clip
    from streamer.harness.soak import write_looped_folder

    frames = render_test_clip(50, [], fps=fps, seed=1)
    return write_looped_folder(tmp / "clip", frames, int(seconds * fps))
