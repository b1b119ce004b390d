"""The process skeleton in real spawned children: the log level arrives as an argument, SIGINT
is ignored, SIGTERM stops that child alone through its stop flag, a second SIGTERM ends it at
once, and a segfault in native code prints a Python stack (faulthandler)."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import pytest

from engine.process import LOG_FORMAT, StopRequest, child_entry, resolve, setup_logging

CTX = mp.get_context("spawn")


# -- targets (module level: the spawned child imports them by name) ------------------------------
def loop_until_stopped(ready, stop_event) -> int:
    logging.getLogger("mfvan.test").debug("child debug line")
    logging.getLogger("mfvan.test").info("child info line")
    ready.set()
    while not stop_event.is_set():
        time.sleep(0.01)
    logging.getLogger("mfvan.test").info("stopped cleanly")
    return 7


def ignore_stop(ready, stop_event) -> int:
    ready.set()
    time.sleep(60)  # never looks at stop_event: only a forced exit ends it
    return 0


def segfault(stop_event) -> int:
    import ctypes

    ctypes.string_at(0)  # reads address 0: SIGSEGV inside native code
    return 0


def _start(target: str, level: str = "INFO", shared=None) -> tuple[mp.process.BaseProcess, object]:
    ready = CTX.Event()
    p = CTX.Process(target=child_entry, args=(target, level, shared, (ready,)), name="test-child")
    p.start()
    assert ready.wait(60), "the child did not start"
    return p, ready


def test_sigterm_stops_the_child_alone_and_sigint_is_ignored(capfd) -> None:
    shared = CTX.Event()
    p, _ = _start(f"{__name__}:loop_until_stopped", "DEBUG", shared)
    try:
        os.kill(p.pid, signal.SIGINT)  # Ctrl-C reaches the process group: the supervisor owns it
        time.sleep(0.3)
        assert p.is_alive()
        os.kill(p.pid, signal.SIGTERM)
        p.join(20)
    finally:
        if p.is_alive():
            p.kill()
    assert p.exitcode == 7  # the target returned: a clean stop, not a kill
    assert not shared.is_set()  # this child only; the supervisor's event stays for the supervisor
    err = capfd.readouterr().err
    assert "DEBUG mfvan.test: child debug line" in err  # the level came as an argument
    assert "SIGTERM received: stopping" in err and "stopped cleanly" in err
    assert "test-child (pid" in err and "faulthandler on, SIGINT ignored" in err


def test_the_shared_event_stops_children_and_level_is_explicit(capfd) -> None:
    shared = CTX.Event()
    p, _ = _start(f"{__name__}:loop_until_stopped", "WARNING", shared)
    shared.set()
    p.join(20)
    assert p.exitcode == 7
    err = capfd.readouterr().err
    assert "child info line" not in err and "child debug line" not in err


def test_second_sigterm_ends_a_child_that_does_not_stop() -> None:
    p, _ = _start(f"{__name__}:ignore_stop")
    try:
        os.kill(p.pid, signal.SIGTERM)  # asks for the clean stop, which this target ignores
        time.sleep(0.3)
        assert p.is_alive()
        p.terminate()  # what the supervisor does after its join timeout
        p.join(10)
    finally:
        if p.is_alive():
            p.kill()
    assert p.exitcode == -signal.SIGTERM


def test_segfault_in_native_code_prints_a_python_stack(capfd) -> None:
    p = CTX.Process(target=child_entry, args=(f"{__name__}:segfault", "INFO", None))
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGSEGV
    err = capfd.readouterr().err
    assert "Fatal Python error: Segmentation fault" in err
    assert "in segfault" in err and "in run_process" in err  # the Python frames that led there


def test_setup_logging_format_level_and_bad_level() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers.clear()
    try:
        setup_logging("warning")
        assert root.level == logging.WARNING and root.handlers[0].formatter._fmt == LOG_FORMAT
        setup_logging("DEBUG")  # already configured: only the level changes, no second handler
        assert root.level == logging.DEBUG and len(root.handlers) == 1
        with pytest.raises(ValueError, match="log level 'LOUD'"):
            setup_logging("LOUD")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_stop_request_and_resolve() -> None:
    shared = CTX.Event()
    s = StopRequest(shared)
    assert not s.is_set()
    shared.set()
    assert s.is_set()
    alone = StopRequest()
    alone.set()
    assert alone.is_set()
    assert resolve("engine.process:setup_logging") is setup_logging
    with pytest.raises(ValueError, match="package.module:function"):
        resolve("engine.process")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim and /proc are Linux's")
def test_release_freed_memory_returns_a_drained_rings_frames_to_the_os() -> None:
    """A burst of 300 frames (0.9 MB each, allocated on a grab-like thread) freed again leaves the
    process at the burst's RSS until `release_freed_memory` hands the pages back (soak steps)."""
    code = """
import os, threading, numpy as np
from engine.process import release_freed_memory
def rss(): return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20
def burst():
    a = np.ones((480, 640, 3), np.uint8); del a  # glibc raises its mmap threshold: frames from the heap
    ring = [np.ones((480, 640, 3), np.uint8) for _ in range(300)]
    del ring
t = threading.Thread(target=burst); t.start(); t.join()
before = rss(); ok = release_freed_memory(); print(ok, before, rss())
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ok, before, after = r.stdout.split()
    if ok != "True":
        pytest.skip("no glibc malloc_trim here")
    assert float(before) - float(after) > 150, r.stdout  # of the burst's ~270 MB
