"""Real file-system faults for tests (root): a small tmpfs to fill, a read-only bind mount."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHUNK = 4096  # tmpfs hands out pages: the last one fills it to the byte


@contextmanager
def small_disk(folder: Path, size: str = "2m") -> Iterator[Path]:
    """Mount a tmpfs of `size` on folder for the block; skip the test where that needs
    root or mount(8) we do not have (CI runs as root)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs these tests as root)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs on {folder}: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(path: Path) -> int:
    """Write path until the file system is full (ENOSPC); the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as ballast:
        try:
            while True:
                written += ballast.write(b"\0" * CHUNK)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
    return written


@contextmanager
def read_only(folder: Path) -> Iterator[Callable[[], None]]:
    """A read-only bind mount over folder (what the daemon opens from now on answers
    EROFS); yields the function that makes it writable again. Root only."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root (CI runs these tests as root)")
    bound = subprocess.run(["mount", "--bind", str(folder), str(folder)],
                           capture_output=True, text=True)  # fmt: skip
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount {folder}: {bound.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield lambda: subprocess.run(["mount", "-o", "remount,bind,rw", str(folder)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
