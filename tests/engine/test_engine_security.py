"""CURVE, the allow-list and subscription limits on the real engine sockets (`engine.server.run`,
its XPUB and PULL), with real keys from `mfvan-keys`: no stand-in PUB socket.

Why these tests exist: the engine's XPUB had ZMQ_MAXMSGSIZE at the 73-byte subscription cap,
which libzmq applies to the CURVE handshake too (HELLO is 200 bytes), so no CURVE subscriber
ever received anything; the allow-list was read once; one peer's repeated subscribe messages
filled a global cap for everyone, for good.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
import zmq

from engine.config.engine import EngineConfig
from engine.keys import main as keys_main
from engine.server import MAX_TOPICS_PER_PEER, run
from engine.wire import protocol as P
from engine.wire.client import Subscriber
from engine.wire.security import Security, secure_connect
from streamer.harness.procs import free_port
from tests.helpers.engine import face_pairs

pytest.importorskip("onnxruntime")


class EngineThread:
    """`engine.server.run` in a thread on TCP (loopback) or ipc endpoints."""

    def __init__(self, artefact: Path, security: Security | None = None, ipc: Path | None = None):
        if ipc is None:
            pairs, pub = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        else:
            pairs, pub = f"ipc://{ipc}/pairs", f"ipc://{ipc}/pub"
        self.cfg = EngineConfig(artefact=str(artefact), backend="onnxruntime", pair_endpoint=pairs,
                                pub_endpoint=pub, engine_id="eng-sec", heartbeat_s=0.1, intra_op_threads=1,
                                security=security or Security())
        self.stop = threading.Event()
        self.rc: list[int] = []
        self.thread = threading.Thread(target=lambda: self.rc.append(run(self.cfg, self.stop)), daemon=True)

    def __enter__(self) -> EngineThread:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive()


def heard(sub: Subscriber, timeout_s: float, kind: type = P.Heartbeat) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        ev = sub.recv(timeout_ms=max(1, int((end - time.monotonic()) * 1000)))
        if ev is not None and isinstance(ev.header, kind):
            return True
    return False


def final_counters(sub: Subscriber, eng: EngineThread) -> dict[str, int]:
    """The engine's last Status (state `stopping`), read by a subscriber to `status/`."""
    eng.stop.set()
    end = time.monotonic() + 15
    while time.monotonic() < end:
        ev = sub.recv(timeout_ms=500)
        if ev is not None and isinstance(ev.header, P.Status) and ev.header.state == "stopping":
            return dict(ev.header.counters)
    raise AssertionError("no final engine Status")


@pytest.fixture()
def keys(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    assert keys_main(["server", "--dir", str(folder)]) == 0
    for name in ("alice", "bob"):
        assert keys_main(["client", name, "--dir", str(folder)]) == 0
    assert keys_main(["client", "mallory", "--dir", str(tmp_path / "other")]) == 0
    # bob is known but not (yet) allowed
    shutil.move(folder / "clients" / "bob.key", tmp_path / "bob.key.pending")
    return folder


def client(keys: Path, name: str, folder: Path | None = None) -> Security:
    return Security(server_public_key=str(keys / "server.key"),
                    client_secret_key=str((folder or keys) / f"{name}.key_secret"))


def test_curve_on_the_engine_sockets_allow_list_follows_the_folder_without_restart(
    tmp_path: Path, keys: Path, artefact: Path
) -> None:
    """Allowed client receives; keyless and unlisted receive nothing; a key added to the folder
    is admitted and a deleted one is cut off (its open connection too), engine still running."""
    server = Security(server_secret_key=str(keys / "server.key_secret"), client_allow_dir=str(keys / "clients"))
    kinds = (P.TOPIC_LABEL, P.TOPIC_HEARTBEAT, P.TOPIC_STATUS)
    with EngineThread(artefact, server) as eng:
        alice = Subscriber(eng.cfg.pub_endpoint, kinds=kinds, security=client(keys, "alice"))
        assert heard(alice, 60), "an allowed CURVE client got no heartbeat from the engine's XPUB"
        # a subscription longer than any mfvan topic passes the (raised) transport limit but is refused
        alice.sock.setsockopt(zmq.SUBSCRIBE, b"label/" + b"x" * 200)
        plain = Subscriber(eng.cfg.pub_endpoint, kinds=kinds)
        mallory = Subscriber(eng.cfg.pub_endpoint, kinds=kinds, security=client(keys, "mallory", tmp_path / "other"))
        bob = Subscriber(eng.cfg.pub_endpoint, kinds=kinds, security=client(keys, "bob"))
        assert not heard(plain, 1.5) and not heard(mallory, 0.1) and not heard(bob, 0.1)

        # pairs need an allowed key too: alice's PUSH gets a Result back, mallory's does not
        onset, apex = face_pairs(2)

        def push(sec: Security, seq: int) -> bool:
            """Send one pair; False if no connection would take it. A refused handshake may end
            the PUSH socket's only connection before the send (a race the load decides), and
            a PUSH with no connection blocks: a bounded send keeps that from hanging the test."""
            ctx = zmq.Context.instance()
            s = ctx.socket(zmq.PUSH)
            s.linger = 2000
            s.sndtimeo = 5000
            secure_connect(s, eng.cfg.pair_endpoint, sec)
            pair = P.Pair(camera="cam1", track=1, seq=seq, onset_index=1, apex_index=2, offset_index=3,
                          onset_ts_ns=P.now_ns(), apex_ts_ns=P.now_ns(), offset_ts_ns=P.now_ns(),
                          spotted_ns=P.now_ns(), score=0.5, crop=P.array_spec(onset[0]))
            try:
                s.send_multipart(P.encode_pair(pair, onset[seq - 1], apex[seq - 1]))
                return True
            except zmq.Again:
                return False
            finally:
                s.close()

        push(client(keys, "mallory", tmp_path / "other"), 1)  # sent or refused: either way, no Result
        assert push(client(keys, "alice"), 2)
        end, seqs = time.monotonic() + 20, []
        while time.monotonic() < end and 2 not in seqs:
            ev = alice.recv(timeout_ms=500)
            if ev is not None and isinstance(ev.header, P.Result):
                seqs.append(ev.header.seq)
        assert seqs == [2]

        # add bob's key: admitted without a restart. libzmq does not retry a handshake the
        # server refused (a protocol error ends that connection for good): bob connects anew
        shutil.copy(tmp_path / "bob.key.pending", keys / "clients" / "bob.key")
        bob.close()
        bob = Subscriber(eng.cfg.pub_endpoint, kinds=kinds, security=client(keys, "bob"))
        assert heard(bob, 15), "a key added to the allow-list was not admitted"
        # delete alice's key: her open connection is closed and she cannot come back
        (keys / "clients" / "alice.key").unlink()
        time.sleep(2.0)
        while alice.recv(timeout_ms=0) is not None:
            pass
        assert not heard(alice, 2.0), "a revoked client still receives"
        assert heard(bob, 10), "the allowed client did not come back after the revocation"
        assert not heard(plain, 0.1) and not heard(mallory, 0.1)
        counters = final_counters(bob, eng)
        for s in (alice, plain, mallory, bob):
            s.close()
    assert eng.rc == [0]
    assert counters["subscriptions_rejected"] >= 1


def _xsub(ctx: zmq.Context, source_ip: str, endpoint: str) -> zmq.Socket:
    s = ctx.socket(zmq.XSUB)
    s.linger = 0
    s.sndhwm = 0  # every message of the flood reaches the engine (XSUB drops at its HWM)
    s.connect(endpoint.replace("tcp://", f"tcp://{source_ip}:0;"))
    return s


def _sub(ctx: zmq.Context, source_ip: str, endpoint: str, *topics: bytes) -> zmq.Socket:
    s = ctx.socket(zmq.SUB)
    s.linger = 0
    for t in topics:
        s.subscribe(t)
    s.connect(endpoint.replace("tcp://", f"tcp://{source_ip}:0;"))
    return s


def _cameras(sock: zmq.Socket, timeout_s: float) -> set[str]:
    got, end = set(), time.monotonic() + timeout_s
    while time.monotonic() < end:
        if sock.poll(100):
            _, h, _ = P.decode(sock.recv_multipart(), has_topic=True)
            if isinstance(h, P.Macro):
                got.add(h.camera)
    return got


def test_one_peer_cannot_starve_subscriptions_and_its_share_is_freed_when_it_leaves(artefact: Path) -> None:
    """4,200 repeats of one subscribe plus more distinct topics than a peer may hold, from one
    peer (source 127.0.0.2): another peer (127.0.0.3) still subscribes; the flooding peer's host
    gets only its share; once it leaves, its share is free again."""
    with EngineThread(artefact) as eng:
        ctx = zmq.Context()
        status = _sub(ctx, "127.0.0.4", eng.cfg.pub_endpoint, b"status/", b"hb/")
        assert _wait_hb(status)
        flood = _xsub(ctx, "127.0.0.2", eng.cfg.pub_endpoint)
        for _ in range(4200):
            flood.send(b"\x01macro/cam1/")
        extra = 300
        for i in range(extra):
            flood.send(b"\x01macro/junk%d/" % i)
        time.sleep(1.0)
        other = _sub(ctx, "127.0.0.3", eng.cfg.pub_endpoint, b"macro/cam2/")
        same_host = _sub(ctx, "127.0.0.2", eng.cfg.pub_endpoint, b"macro/cam3/")
        time.sleep(1.0)
        pusher = ctx.socket(zmq.PUSH)
        pusher.linger = 0
        pusher.connect(eng.cfg.pair_endpoint)

        def macros(*cams: str) -> None:
            for cam in cams:
                m = P.Macro(camera=cam, track=1, seq=1, onset_index=1, apex_index=2, offset_index=3,
                            onset_ts_ns=1, apex_ts_ns=2, offset_ts_ns=3, score=0.5, spotted_ns=P.now_ns())
                pusher.send_multipart(P.encode(m))

        macros("cam1", "cam2", "cam3")
        assert _cameras(other, 2.0) == {"cam2"}, "one peer's subscriptions starved another peer"
        assert _cameras(same_host, 0.5) == set(), "the flooding host got more than its share"
        flood.close()  # its topics are freed (the departure unsubscriptions name them)
        time.sleep(1.0)
        again = _sub(ctx, "127.0.0.2", eng.cfg.pub_endpoint, b"macro/cam4/")
        time.sleep(1.0)
        macros("cam2", "cam4")
        assert _cameras(again, 2.0) == {"cam4"}, "the departed peer's share was not freed"
        assert _cameras(other, 0.5) == {"cam2"}
        counters = _final(status, eng)
        for s in (status, other, same_host, again, pusher):
            s.close()
        ctx.term()
    # applied from the flood: macro/cam1/ once + (share - 1) junk topics; refused: the rest + cam3
    assert counters["subscriptions_rejected"] == extra - (MAX_TOPICS_PER_PEER - 1) + 1


def _wait_hb(sock: zmq.Socket, timeout_s: float = 60) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if sock.poll(200):
            _, h, _ = P.decode(sock.recv_multipart(), has_topic=True)
            if isinstance(h, P.Heartbeat):
                return True
    return False


def _final(sock: zmq.Socket, eng: EngineThread) -> dict[str, int]:
    eng.stop.set()
    end = time.monotonic() + 15
    while time.monotonic() < end:
        if sock.poll(200):
            _, h, _ = P.decode(sock.recv_multipart(), has_topic=True)
            if isinstance(h, P.Status) and h.state == "stopping":
                return dict(h.counters)
    raise AssertionError("no final engine Status")


def test_engine_removes_its_ipc_socket_files_on_a_clean_exit(tmp_path: Path, artefact: Path) -> None:
    with EngineThread(artefact, ipc=tmp_path) as eng:
        sub = Subscriber(eng.cfg.pub_endpoint, kinds=(P.TOPIC_HEARTBEAT,))
        assert heard(sub, 60)
        assert (tmp_path / "pairs").exists() and (tmp_path / "pub").exists()
        assert oct((tmp_path / "pub").stat().st_mode & 0o777) == "0o660"
        sub.close()
    assert eng.rc == [0]
    assert not (tmp_path / "pairs").exists() and not (tmp_path / "pub").exists()


def test_mfvan_sub_into_head_ends_quietly(tmp_path: Path, artefact: Path) -> None:
    """`mfvan-sub --heartbeats | head -n 3` against a real engine: exit 0, no BrokenPipe traceback."""
    import subprocess
    import sys

    with EngineThread(artefact, ipc=tmp_path) as eng:
        sub = Subscriber(eng.cfg.pub_endpoint, kinds=(P.TOPIC_HEARTBEAT,))
        assert heard(sub, 60)  # serving
        sub.close()
        cmd = (f"{sys.executable} -m engine.sub_cli --endpoint {eng.cfg.pub_endpoint} --heartbeats "
               f"2>{tmp_path}/err | head -n 3; echo \"${{PIPESTATUS[0]}}\" > {tmp_path}/rc")
        proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert len(proc.stdout.splitlines()) == 3 and " hb eng-sec seq " in proc.stdout
    err = (tmp_path / "err").read_text()
    assert (tmp_path / "rc").read_text().strip() == "0", err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_plain_tcp_beyond_loopback_is_refused_unless_insecure(artefact: Path, caplog) -> None:
    """Without CURVE, a bind on every interface let anyone reachable read results and inject
    Pair/Macro/Status messages that were republished as genuine: refused at start (exit 2)."""
    import logging

    caplog.set_level(logging.WARNING)
    pub = f"tcp://0.0.0.0:{free_port()}"
    cfg = EngineConfig(artefact=str(artefact), backend="onnxruntime", pair_endpoint=f"tcp://127.0.0.1:{free_port()}",
                       pub_endpoint=pub, intra_op_threads=1)
    assert run(cfg, threading.Event()) == 2
    assert "refusing to bind" in caplog.text and "security.insecure" in caplog.text
    caplog.clear()
    stop = threading.Event()
    stop.set()  # serve no loop iteration: binding is what is checked
    assert run(cfg.model_copy(update={"security": Security(insecure=True)}), stop) == 0
    assert f"binding {pub} without CURVE" in caplog.text
