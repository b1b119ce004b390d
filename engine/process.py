"""The one process skeleton: logging, faulthandler and stop signals for every mfvan process.

Why one module: the supervisor, its engine and streamer children, `mfvan-engined` and the
offline commands used to configure logging each in their own way (six copies of the format,
children learning their level from an environment variable). Here:

- `setup_logging(level)`: the one format, called by every command's `main` and by every child.
- `child_entry(target, log_level, stop_event, args, kwargs)`: the module-level function a
  `spawn` context starts. The log level is an argument (spawned children inherit nothing but
  what they are given), faulthandler is on (a segfault in ONNX Runtime, OpenCV or a camera
  driver prints the Python stack of every thread instead of a bare exit -11), SIGINT is ignored
  (Ctrl-C reaches the whole process group; the supervisor owns it and stops children in order)
  and SIGTERM asks this process alone to stop cleanly through its `StopRequest`.
- `run_process(..., child=False)`: the same for a foreground command (`mfvan-engined`), where
  SIGINT stops too.

A second SIGTERM (or SIGTERM once the stop is already requested, as after the supervisor's own
stop and join timeout) falls back to the default action: the process dies at once, which is
what `Process.terminate()` expects.
"""

from __future__ import annotations

import faulthandler
import functools
import importlib
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, Protocol

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

log = logging.getLogger("mfvan.process")


class SharedEvent(Protocol):
    def is_set(self) -> bool: ...


def setup_logging(level: str | int = "INFO") -> None:
    """Root logging for a command or child: one format to stderr at `level`.

    Like `logging.basicConfig`, it leaves a root logger that already has handlers alone (a test
    harness or an embedding application owns logging then) except for the level.
    """
    if isinstance(level, str):
        name = level.upper()
        if name not in LOG_LEVELS and name != "CRITICAL":
            raise ValueError(f"log level {level!r}: choose from {', '.join(LOG_LEVELS)}")
        level = getattr(logging, name)
    root = logging.getLogger()
    if root.handlers:
        root.setLevel(level)
        return
    logging.basicConfig(level=level, format=LOG_FORMAT)


def enable_faulthandler() -> bool:
    """Print every thread's Python stack on SIGSEGV/SIGFPE/SIGABRT/SIGBUS/SIGILL.

    False where stderr has no file descriptor (an embedding that replaced it): nothing to write to.
    """
    if faulthandler.is_enabled():
        return True
    stream = sys.stderr if _has_fileno(sys.stderr) else sys.__stderr__
    if not _has_fileno(stream):
        return False
    faulthandler.enable(file=stream, all_threads=True)
    return True


def _has_fileno(stream: Any) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True


class StopRequest:
    """This process's stop flag: set by its own signal handler, or by the supervisor's event.

    Why a plain attribute and not a `threading.Event`: a signal handler runs between two
    bytecodes of the main thread, possibly while that thread holds the Event's internal lock
    (inside `wait`); `Event.set()` from the handler would then deadlock. Assigning a bool
    cannot. A SIGTERM sent to one child stops that child only; the shared event, set by the
    supervisor, stops them all.
    """

    def __init__(self, shared: SharedEvent | None = None):
        self.shared = shared
        self.requested = False

    def set(self) -> None:
        self.requested = True

    def is_set(self) -> bool:
        return self.requested or (self.shared is not None and self.shared.is_set())


def install_stop_signals(stop: StopRequest, *, child: bool) -> None:
    """SIGTERM (and SIGINT in the foreground) request a clean stop; a repeat ends the process.

    In a child, SIGINT is ignored: a Ctrl-C on the terminal reaches every process of the group,
    and the supervisor, not each child, decides the order of the shutdown.
    """

    def handler(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():  # asked again, or after the supervisor's stop: die now, as terminate() expects
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        stop.set()
        log.info("%s received: stopping", name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.SIG_IGN if child else handler)
    if child and hasattr(signal, "SIGHUP"):
        # a hangup is the supervisor's to act on (it forwards SIGHUP to the engine, which then
        # re-reads its allow-list); by default it would end the child
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


Target = Callable[..., int | None] | str


def resolve(target: Target) -> Callable[..., int | None]:
    """A callable, or "package.module:function" imported here (keeps heavy imports out of the parent)."""
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise ValueError(f"target {target!r}: expected 'package.module:function'")
    return getattr(importlib.import_module(module), attr)


def run_process(target: Target, log_level: str | int, stop_event: SharedEvent | None = None,
                args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *, child: bool = True) -> int:
    """Set the process up, then `target(*args, stop_event=StopRequest, **kwargs)`; its exit code."""
    setup_logging(log_level)
    faults = enable_faulthandler()
    stop = StopRequest(stop_event)
    install_stop_signals(stop, child=child)
    func = resolve(target)
    log.debug("%s (pid %d): %s at log level %s, faulthandler %s, SIGINT %s", multiprocessing.current_process().name,
              os.getpid(), target if isinstance(target, str) else func.__qualname__, logging.getLevelName(
                  logging.getLogger().level), "on" if faults else "off", "ignored" if child else "stops")
    code = func(*args, stop_event=stop, **dict(kwargs or {}))
    return int(code or 0)


def die_with_parent() -> None:
    """Linux: SIGTERM this process when its parent dies, even by SIGKILL (PR_SET_PDEATHSIG).

    Why: after a `kill -9` of mfvan-streamd its engine child kept running and publishing
    forever, an orphan nobody supervised (and a second daemon then found its ports taken).
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the parent died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


@functools.cache
def _libc() -> Any:
    """glibc's handle, or None (musl, macOS, Windows: their allocators need none of this)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def mmap_large_buffers(threshold: int = 1 << 20) -> bool:
    """glibc: serve buffers ≥ `threshold` from mmap, always; False where unavailable.

    Why: the engine's pairs arrive as multi-kB..16 MiB frames allocated by ZeroMQ's I/O thread.
    glibc's default raises its mmap threshold after the first large free, so later large frames
    come from heap arenas that are not returned to the OS: RSS ratchets up under a flood of big
    (even rejected) messages although nothing leaks. A fixed threshold keeps RSS flat.
    """
    libc = _libc()
    if libc is None:
        return False
    libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD
    return True


def release_freed_memory() -> bool:
    """Hand the heap's free pages back to the OS (glibc `malloc_trim`); False where unavailable.

    Why: a frame (640x480 BGR, 0.9 MB) is below glibc's mmap threshold once the first large
    block was freed, so frames come from the heap arenas; after a burst fills the capture ring
    (hundreds of frames) and it drains, the arenas keep those pages and the process's RSS stays
    at the burst's level for good (the one-way steps of the earlier soaks, docs/reliability.md).
    Trimming once the ring has drained returns them, at no cost while frames flow (a fixed mmap
    threshold, as the engine uses, would page-fault every frame instead).
    """
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def child_entry(target: Target, log_level: str | int, stop_event: SharedEvent | None,
                args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> NoReturn:
    """What a spawned child runs (module level, so `spawn` finds it by name); exits with the target's code."""
    die_with_parent()
    sys.exit(run_process(target, log_level, stop_event, args, kwargs, child=True))
