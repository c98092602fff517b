"""How SIGINT and SIGTERM ask the daemon to stop: with no lock on the signal's path.

A Python signal handler runs in the main thread between two of its bytecodes, so it
must not take a lock that the main thread may hold at that moment. The daemon's main
loop used to wait on a threading.Event that the handler set; but Event.set() takes the
Event's lock, which the main thread holds for a moment inside every Event.wait() (and
longer under load, when it waits there for the GIL). A signal landing in that moment
blocked the handler on a lock its own thread held: the daemon ignored that SIGINT and
every later one, for good (seen once in a test run under load; tests/test_signals.py
makes it happen in a second).

Here the Python handler only stores a flag, and the interpreter's C-level handler
writes the signal's number to a pipe (signal.set_wakeup_fd) that the main thread waits
on with select(); a stop asked for by another thread writes to the same pipe.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Iterable
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Whether the daemon was asked to stop: set() from any thread, or one of the
    installed signals; the main thread waits for it with wait()."""

    def __init__(self) -> None:
        self._requested = False
        self._pipe: tuple[int, int] | None = None  # (read, write), once installed
        self._pipe_lock = threading.Lock()  # set() against close(); never taken by a handler

    def install(self, signals: Iterable[signal.Signals] = STOP_SIGNALS) -> None:
        """From the main thread: from now on these signals ask for the stop."""
        read, write = os.pipe()
        for fd in (read, write):
            os.set_blocking(fd, False)
        with self._pipe_lock:
            self._pipe = (read, write)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)  # needs a Python handler too
        for sig in signals:
            signal.signal(sig, self._signalled)

    def _signalled(self, signum: int, frame: FrameType | None) -> None:
        self._requested = True  # a plain store: no lock

    def set(self) -> None:
        """Ask for the stop (any thread but a signal handler's)."""
        self._requested = True
        with self._pipe_lock:
            if self._pipe is not None:
                with contextlib.suppress(BlockingIOError):  # full: a wake-up is there already
                    os.write(self._pipe[1], b"\0")

    def is_set(self) -> bool:
        return self._requested

    def wait(self, timeout: float) -> bool:
        """Whether the stop was asked for, waiting up to timeout seconds for it (the main
        thread, once installed). The handler of a signal that woke select() has run by
        the time the flag is read: Python runs pending handlers at the call that follows."""
        if self._pipe is None:
            raise RuntimeError("StopRequest.wait() before install()")
        if not self._requested:
            select.select([self._pipe[0]], [], [], timeout)
            self._drain(self._pipe[0])
        return self._requested

    @staticmethod
    def _drain(read: int) -> None:
        """Empty the pipe, so that the next select() waits again."""
        with contextlib.suppress(BlockingIOError):
            while os.read(read, 512):
                pass

    def close(self) -> None:
        """Stop waking the pipe (the signals keep setting the flag) and close it."""
        with self._pipe_lock:
            pipe, self._pipe = self._pipe, None
        if pipe is not None:
            signal.set_wakeup_fd(-1)
            for fd in pipe:
                os.close(fd)
