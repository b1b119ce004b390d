"""Watching the daemon from outside: procfs (RSS, fds, threads, CPU, children), HTTP and
Prometheus text parsing, free ports.

Why a module of its own: the soak benchmark and the system tests observe the daemon the same
way, from outside the processes (so the measurement cannot change what it measures); one
implementation serves both.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict ({} when the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def rss_kb(pid: int) -> int:
    """Resident set size in kB (0 when gone)."""
    v = proc_status(pid).get("VmRSS", "0 kB").split()[0]
    return int(v)


def peak_rss_kb(pid: int) -> int:
    """VmHWM: the largest RSS the process ever had. Catches a transient spike a sample misses."""
    v = proc_status(pid).get("VmHWM", "0 kB").split()[0]
    return int(v)


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def threads(pid: int) -> int:
    return int(proc_status(pid).get("Threads", "0"))


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def children(pid: int) -> list[int]:
    """Direct children of `pid` (procfs scan: no psutil dependency)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return sorted(out)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


_GIVEN: set[int] = set()


def free_port() -> int:
    """A loopback TCP port free now and never handed out before by this process.

    Why the memory: the port is released before the caller binds it, so two calls in a row
    can return the same number (seen in CI: the daemon's and its engine's /metrics got one
    port, and the engine could not start)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


# -- HTTP endpoints --------------------------------------------------------------------------------
def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body); (0, reason) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (OSError, urllib.error.URLError) as exc:
        return 0, str(exc)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format → {'name{labels}': value} (comments skipped)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def metric_sum(values: dict[str, float], name: str) -> float:
    """Sum over the label sets of one metric (`name` exactly, with or without labels)."""
    return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))


# -- the clip ----------------------------------------------------------------------------------------
