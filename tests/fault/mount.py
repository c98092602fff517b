"""lazyfs.py mounted in its own process, for the tests: mount, power loss, unmount."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until

LAZYFS = Path(__file__).with_name("lazyfs.py")


def _fuse_missing() -> str | None:
    if os.geteuid() != 0:
        return "mounting the FUSE layer needs root (CI runs as root)"
    if not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None:
        return "needs /dev/fuse and fusermount3: apt-get install fuse3 libfuse3-3"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as e:
        return f"needs mfusepy and libfuse3 (pip install mfusepy; apt-get install libfuse3-3): {e}"
    return None


FUSE_MISSING = _fuse_missing()
needs_fuse = pytest.mark.skipif(FUSE_MISSING is not None, reason=str(FUSE_MISSING))


class Mount:
    """lazyfs.py mounted at `mountpoint` over `backing`, in its own process."""

    def __init__(self, backing: Path, mountpoint: Path, log: Path) -> None:
        self.mountpoint = mountpoint
        self._log_path = log
        self._log = log.open("ab")
        command = [sys.executable, str(LAZYFS), str(backing), str(mountpoint)]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log, text=True)
        assert self._line() == "ready", f"lazyfs did not mount; see {log}"

    def _line(self, timeout: float = 20.0) -> str:
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert readable, f"lazyfs said nothing for {timeout}s"
        return self.proc.stdout.readline().strip()

    def power_loss(self) -> dict[str, Any]:
        """Drop every unsynced change; what was dropped."""
        self.proc.send_signal(signal.SIGUSR1)
        report: dict[str, Any] = json.loads(self._line())
        return report

    def unmount(self) -> None:
        """Unmount and let lazyfs exit. A plain unmount, retried while busy (files of a
        killed process may still be being released); still busy after 10 s fails the
        test: some process outlived its kill. Once unmounted, the backing folder is
        final; a lazyfs that lingers then (seen twice in some twenty runs, not since)
        is killed after its stacks are dumped to its log, with a warning."""
        try:
            if self.proc.poll() is not None:
                return
            try:
                wait_until(self._unmounted, timeout=10, interval=0.1)
            except AssertionError:
                subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], check=False)
                self._kill()
                raise AssertionError(f"{self.mountpoint} stayed busy after the kill") from None
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self._kill()
                warnings.warn(f"lazyfs lingered after its unmount; stacks in {self._log_path}",
                              stacklevel=2)  # fmt: skip
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self._log.close()

    def _kill(self) -> None:
        self.proc.send_signal(signal.SIGUSR2)  # its threads' stacks, into the log
        time.sleep(1)  # (time for the dump to be written)
        self.proc.kill()
        self.proc.wait()

    def _unmounted(self) -> bool:
        command = ["fusermount3", "-u", str(self.mountpoint)]
        return subprocess.run(command, capture_output=True, check=False).returncode == 0
