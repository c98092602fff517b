"""Finding and killing a daemon's helper processes (`python -m spoold.helper`), for the
fault tests: kill -9 leaves no chance to clean up, which is the point."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from conftest import wait_until


def helpers_of(pid: int) -> list[int]:
    """The daemon's child processes that are spoold helpers."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            if b"spoold.helper" in _cmdline(child):
                found.append(child)
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def gone(pid: int) -> bool:
    """Dead: no /proc entry, or a zombie whose other threads have exited too (a thread
    group's leader turns zombie first; the others may still be closing files)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X") and threads <= 1


def stopped(pid: int) -> bool:
    """Every thread of pid is stopped (SIGSTOP took effect: none is mid-syscall)."""
    try:
        states = [(task / "stat").read_text().rsplit(")", 1)[1].split()[0]
                  for task in Path(f"/proc/{pid}/task").iterdir()]  # fmt: skip
    except OSError:
        return False
    return all(state in ("T", "t") for state in states)


def freeze(pid: int) -> None:
    """SIGSTOP pid and wait until it has stopped: what it wrote is final then, and, alive,
    it is nobody's to clean up after yet."""
    os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: stopped(pid), timeout=10)


def kill9(pids: list[int]) -> None:
    """SIGKILL each process, then wait until every one is dead."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    wait_gone(pids)


def wait_gone(pids: list[int]) -> None:
    wait_until(lambda: all(gone(pid) for pid in pids), timeout=10)
