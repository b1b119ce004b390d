"""Scale-out proven on three "hosts" (issue 12, item 14): network namespaces on one machine.

One streamer host and two engine hosts, each a network namespace joined to the streamer's by
a veth pair (10.213.1.0/24 to engine A, 10.213.2.0/24 to engine B), CURVE on every TCP
endpoint with keys from `mfvan-keys`. `mfvan-streamd --engine A,B` replays a clip and its
PUSH balances pairs over both `mfvan-engined`; a subscriber on the streamer host reads both
engines' PUBs. Engine A is SIGKILLed mid-run: pairs move to B, every pair the streamer sent is
answered or counted as lost (by sequence), and heartbeats show no gap while an engine lives.

The test makes its namespaces and removes them (traffic never leaves them); it needs root and
iproute2 (`.ci/run` installs it), and is skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from engine.keys import main as keys_main

pytest.importorskip("torch")

FPS = 200.0
NET = "10.213"
PY = sys.executable


def command(module: str) -> list[str]:
    """`python -c` running `module.main` (not every command module has a __main__ block)."""
    return [PY, "-c", f"import sys; from {module} import main; sys.exit(main(sys.argv[1:]))"]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture()
def hosts():
    """{"s": streamer ns, "a": engine A ns, "b": engine B ns}; removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs as root)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 is not installed (apt-get install -y iproute2)")
    tag = f"mfv{os.getpid() % 100000}"
    ns = {"s": f"{tag}s", "a": f"{tag}a", "b": f"{tag}b"}
    made: list[str] = []
    try:
        for name in ns.values():
            _ip("netns", "add", name)
            made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        for i, role in ((1, "a"), (2, "b")):
            here, there = f"{tag}{role}0", f"{tag}{role}1"
            _ip("link", "add", here, "type", "veth", "peer", "name", there)
            _ip("link", "set", here, "netns", ns["s"])
            _ip("link", "set", there, "netns", ns[role])
            _ip("-n", ns["s"], "addr", "add", f"{NET}.{i}.1/24", "dev", here)
            _ip("-n", ns[role], "addr", "add", f"{NET}.{i}.2/24", "dev", there)
            _ip("-n", ns["s"], "link", "set", here, "up")
            _ip("-n", ns[role], "link", "set", there, "up")
    except subprocess.CalledProcessError as exc:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        pytest.skip(f"cannot make network namespaces here: {exc.stderr.strip()}")
    try:
        yield ns
    finally:
        for name in made:  # deleting a namespace deletes its end of each veth pair too
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A frame folder looping 4 s of a real face with a 300 ms micro-expression every second."""
    from streamer.harness.clip import ClipEvent, render_test_clip
    from streamer.harness.soak import _events_for, write_looped_folder

    n = int(4 * FPS)
    regions = ("brow", "mouth", "eye")
    evs = [ClipEvent(on, ap, off, regions[i % 3], 2.5) for i, (kind, on, ap, off) in enumerate(_events_for(n, FPS))
           if kind == "micro"]
    frames = render_test_clip(n, evs, fps=FPS, seed=3)
    return write_looped_folder(tmp_path_factory.mktemp("clip") / "cam0", frames, int(120 * FPS), name="cam0")


class Proc:
    """A command inside a namespace, its output in a file."""

    def __init__(self, ns: str, argv: list[str], out: Path, err: Path | None = None):
        self.out = out
        self._out = open(out, "wb")  # noqa: SIM115 - closed in stop()
        self._err = open(err, "wb") if err else subprocess.STDOUT  # noqa: SIM115
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        # `ip netns exec` execs the command: the pid is the command's own
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=self._out, stderr=self._err, env=env)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self._out.close()
        if self._err is not subprocess.STDOUT:
            self._err.close()
        return self.p.returncode


def _events(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # the line being written
    return out


def _wait(pred, timeout: float, what: str, procs: list[Proc]) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        for p in procs:
            assert p.p.poll() is None, f"{p.out.name} exited {p.p.returncode}:\n{p.out.read_text(errors='replace')[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_engine_hosts_with_curve_survive_one_dying(tmp_path: Path, hosts: dict, artefact: Path, clip: Path) -> None:
    keys = tmp_path / "keys"
    assert keys_main(["server", "--dir", str(keys)]) == 0
    for who in ("streamer", "watcher"):
        assert keys_main(["client", who, "--dir", str(keys)]) == 0
    server = {"server_secret_key": str(keys / "server.key_secret"), "client_allow_dir": str(keys / "clients")}

    def client(who: str) -> dict:
        return {"server_public_key": str(keys / "server.key"), "client_secret_key": str(keys / f"{who}.key_secret")}

    procs: list[Proc] = []
    try:
        engines = {}
        for i, role in ((1, "a"), (2, "b")):
            cfg = tmp_path / f"engine-{role}.yaml"
            cfg.write_text(yaml.safe_dump({
                "artefact": str(artefact), "backend": "onnxruntime", "intra_op_threads": 1, "heartbeat_s": 0.25,
                "engine_id": f"eng{role.upper()}", "pair_endpoint": f"tcp://{NET}.{i}.2:5555",
                "pub_endpoint": f"tcp://{NET}.{i}.2:5556", "security": server}))
            engines[role] = Proc(hosts[role], [*command("engine.server_cli"), "--config", str(cfg)],
                                 tmp_path / f"engine-{role}.log")
            procs.append(engines[role])
        sub_cfg = tmp_path / "sub.yaml"
        sub_cfg.write_text(yaml.safe_dump({"endpoint": f"tcp://{NET}.1.2:5556,tcp://{NET}.2.2:5556",
                                           "heartbeats": True, "security": client("watcher")}))
        sub = Proc(hosts["s"], [*command("engine.sub_cli"), "--config", str(sub_cfg), "--json", "--status"],
                   tmp_path / "sub.jsonl", tmp_path / "sub.err")
        procs.append(sub)
        beats = lambda: {e["component"] for e in _events(sub.out) if e["type"] == "heartbeat"}  # noqa: E731
        _wait(lambda: beats() >= {"engA", "engB"}, 120, "heartbeats of both engines over CURVE", procs)

        streamd_cfg = tmp_path / "streamd.yaml"
        streamd_cfg.write_text(yaml.safe_dump({"security": client("streamer"),
                                               "supervisor": {"metrics_port": 0, "status_every_s": 1.0}}))
        streamd = Proc(hosts["s"], [*command("streamer.daemon"), "--config", str(streamd_cfg), "--video", str(clip),
                                    "--fps", str(FPS), "--realtime",
                                    "--engine", f"tcp://{NET}.1.2:5555,tcp://{NET}.2.2:5555"],
                       tmp_path / "streamd.log")
        procs.append(streamd)

        def results() -> list[dict]:
            return [e for e in _events(sub.out) if e["type"] == "result"]

        _wait(lambda: {r["engine_id"] for r in results()} == {"engA", "engB"}, 180,
              "results from both engine hosts", procs)
        engines["a"].stop(signal.SIGKILL)
        procs.remove(engines["a"])
        killed_ns = time.time_ns()
        n_before = len(results())
        _wait(lambda: sum(r["engine_id"] == "engB" and r["received_ns"] > killed_ns + 1e9 for r in results()) >= 4,
              120, "results from the surviving engine after the kill", procs)
        assert len(results()) > n_before
        time.sleep(2.0)  # the last pairs sent get their results

        def accounted() -> bool:  # a streamer Status that counts every pair answered so far
            ev = _events(sub.out)
            sent = [int(e["counters"].get("pairs_sent", 0)) for e in ev
                    if e["type"] == "status" and e["component"] == "streamer-cam0"]
            seqs = [e["seq"] for e in ev if e["type"] == "result"]
            return bool(sent) and max(sent) >= max(seqs)

        _wait(accounted, 30, "a streamer Status after the last result", procs)
        streamd.stop()
        procs.remove(streamd)
        time.sleep(1.0)
        sub.stop()
        procs.remove(sub)
    finally:
        for p in procs:
            p.stop(signal.SIGKILL)
    events = _events(sub.out)
    got = [r for r in events if r["type"] == "result"]
    late_a = [r for r in got if r["engine_id"] == "engA" and r["received_ns"] > killed_ns + 1e9]
    assert not late_a, "results from the killed engine"
    seqs = [r["seq"] for r in got]
    assert len(seqs) == len(set(seqs)), "a pair answered twice"
    # the streamer's own count of pairs sent, from its last Status (republished by engine B)
    streamer_status = [e for e in events if e["type"] == "status" and e["component"] == "streamer-cam0"]
    assert streamer_status, "no streamer Status seen"
    sent = max(int(e["counters"].get("pairs_sent", 0)) for e in streamer_status)
    lost = sent - len(seqs)
    assert set(seqs) <= set(range(1, sent + 1))
    # every pair answered or lost: lost pairs are the ones queued toward engine A when it died
    # (PUSH does not resend) and the last ones still on their way at the stop
    assert 0 <= lost <= 6, f"{sent} pairs sent, {len(seqs)} answered"
    summary = (tmp_path / "sub.err").read_text()
    missing = int(summary.split(" missing by sequence")[0].rsplit(", ", 1)[1])
    gaps_inside = (max(seqs) - min(seqs) + 1) - len(seqs)
    assert missing == gaps_inside, summary  # the subscriber accounts for exactly the gaps it saw
    for eng in ("engA", "engB"):  # no heartbeat lost while an engine lived
        hb = [e["seq"] for e in events if e["type"] == "heartbeat" and e["component"] == eng]
        assert hb and np.all(np.diff(hb) == 1), eng
    print(f"netns scale-out: {sent} pairs sent, {len(seqs)} answered "
          f"({sum(r['engine_id'] == 'engA' for r in got)} by A before its kill, "
          f"{sum(r['engine_id'] == 'engB' for r in got)} by B), {lost} lost, {missing} missing by sequence")
