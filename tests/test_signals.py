"""The daemon's stop request (spoold/signals.py): a signal must never be lost in it.

The signals are sent for real, in a child process, so that the handlers installed do not
touch the test runner's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from spoold.signals import StopRequest

ROOT = Path(__file__).resolve().parent.parent


def run_child(body: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    script = "import os, signal, sys, threading, time\n" + textwrap.dedent(body)
    try:
        return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the child hung for {timeout}s; its output: {e.stdout!r} {e.stderr!r}")


def test_a_signal_that_lands_anywhere_in_the_wait_is_seen() -> None:
    """Injected: SIGUSR1 every ~0.1 ms from a thread while the main thread waits with a
    zero timeout, over and over, so that signals land at every point of wait(), 2,000
    stops. With the Event the daemon used before (its handler called Event.set()), a
    signal landing while the main thread held the Event's lock inside Event.wait()
    blocked the handler for good: this child hung within its first 500 stops (each later
    signal's handler blocked inside the one before, until the recursion limit)."""
    child = run_child("""
        from spoold.signals import StopRequest
        pid = os.getpid()
        signal.signal(signal.SIGUSR1, lambda signum, frame: None)
        def send():
            while True:
                os.kill(pid, signal.SIGUSR1)
                time.sleep(0.0001)
        threading.Thread(target=send, daemon=True).start()
        for _ in range(2000):
            stop = StopRequest()
            stop.install([signal.SIGUSR1])
            while not stop.wait(0):
                pass
            stop.close()
        print("stopped 2000 times")
    """)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "stopped 2000 times"


def test_a_stop_signal_wakes_the_wait_at_once_and_closing_restores_the_wakeup() -> None:
    """Injected: SIGTERM to the child itself while its main thread waits up to 30 s."""
    child = run_child("""
        from spoold.signals import StopRequest
        stop = StopRequest()
        stop.install()
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        start = time.monotonic()
        print(stop.wait(30), stop.is_set(), round(time.monotonic() - start, 1))
        stop.close()
        print(signal.set_wakeup_fd(-1))
    """)
    assert child.returncode == 0, child.stderr
    woke, after = child.stdout.split("\n")[:2]
    assert woke.split()[:2] == ["True", "True"]
    assert float(woke.split()[2]) < 5  # not the 30 s timeout
    assert after == "-1"  # no wake-up descriptor left behind


def test_a_stop_set_by_another_thread_wakes_the_waiting_main_thread() -> None:
    child = run_child("""
        from spoold.signals import StopRequest
        stop = StopRequest()
        stop.install()
        threading.Timer(0.2, stop.set).start()
        start = time.monotonic()
        print(stop.wait(30), round(time.monotonic() - start, 1))
    """)
    assert child.returncode == 0, child.stderr
    woke, seconds = child.stdout.split()
    assert woke == "True" and float(seconds) < 5


def test_without_a_stop_the_wait_lasts_its_timeout_and_says_no() -> None:
    child = run_child("""
        from spoold.signals import StopRequest
        stop = StopRequest()
        stop.install()
        start = time.monotonic()
        print(stop.wait(0.3), time.monotonic() - start >= 0.29)
    """)
    assert child.stdout.split() == ["False", "True"], child.stderr


def test_before_install_a_stop_is_only_a_flag_and_waiting_is_an_error() -> None:
    """Tests drive the daemon's start() and stop() without run(): set() must work there
    (from any thread) and touch no descriptor."""
    stop = StopRequest()
    thread = threading.Thread(target=stop.set)
    thread.start()
    thread.join()
    assert stop.is_set()
    with pytest.raises(RuntimeError, match="before install"):
        stop.wait(0)
    stop.close()  # nothing to close: no error
