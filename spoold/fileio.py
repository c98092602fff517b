"""The file primitives the spool is built on: durable writes and safe reads.

Durable: syncfs(2) of a whole file system (one flush for a batch of files), a group
fsync of a folder shared by every thread that needs one, renameat2's exchange, whether
a path is on FUSE (where syncfs reaches no server), and whether a file is ours alone to
write into. Safe: reading a file a producer gave without following a link, blocking on
a FIFO or reading past a limit. spool.py decides what goes where; this module knows how.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import signal
import stat
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from spoold.errors import Rejected

GONE = (errno.ENOENT, errno.ESTALE)  # a file another daemon or host took from under us


class Incoming(NamedTuple):
    """A file read from incoming/: its bytes and when it last changed."""

    raw: bytes
    mtime: float


def _find_syncfs() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


syncfs = _find_syncfs()
AT_FDCWD = -100
RENAME_EXCHANGE = 2


def _find_renameat2() -> Callable[..., int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint)  # fmt: skip
    return function


_renameat2 = _find_renameat2()


def exchange(a: str, b: str) -> None:
    """Swap two names in one step (renameat2 RENAME_EXCHANGE, Linux); OSError if the file
    system or the C library cannot."""
    if _renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not in this C library", b)
    if _renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), b)


def pwrite_all(fd: int, data: bytes) -> None:
    """data at the start of the file, whatever pwrite() takes per call."""
    view, offset = memoryview(data), 0
    while offset < len(data):
        offset += os.pwrite(fd, view[offset:], offset)


FUSE_SUPER_MAGIC = 0x65735546


def on_fuse(path: Path) -> bool:
    """Whether path is on a FUSE file system (statfs(2)'s f_type, its first field)."""
    try:
        statfs = ctypes.CDLL(None, use_errno=True).statfs
    except (OSError, AttributeError):
        return False
    buf = ctypes.create_string_buffer(512)  # struct statfs: 120 bytes on 64-bit Linux
    if statfs(os.fsencode(path), buf) != 0:
        return False
    return bool(struct.unpack_from("l", buf)[0] == FUSE_SUPER_MAGIC)


class GroupSync:
    """fsync of one folder shared by every thread that needs it: a caller waits for a
    sync that started after it arrived, and one sync serves all who waited (group
    commit), so N workers finishing together cost one folder flush, not N."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._started = 0
        self._done = 0
        self._busy = False

    def sync(self) -> None:
        with self._cond:
            ticket = self._started + 1
            while self._done < ticket:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                self._started += 1
                round_ = self._started
                try:
                    self._cond.release()
                    try:
                        fsync_path(self.path)
                    finally:
                        self._cond.acquire()
                finally:
                    self._busy = False
                    self._cond.notify_all()
                self._done = round_


def fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quiet(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def read_regular(path: str, max_bytes: int) -> Incoming:
    """Read a file that must be a regular file of at most max_bytes, never following
    or opening anything else (Rejected); OSError as the system gives it."""
    st = os.lstat(path)
    _check_regular(st, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        if e.errno in GONE:
            raise
        raise Rejected(f"cannot be opened: {e.strerror}") from e
    try:
        opened = os.fstat(fd)
        _check_regular(opened, max_bytes)
        raw = _read_all(fd, max_bytes + 1, opened.st_size + 1)
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        raise Rejected(f"larger than maxJobBytes ({max_bytes} bytes)")
    return Incoming(raw, st.st_mtime)


def read_file(path: str) -> bytes:
    """The bytes of a file spoold wrote into its spool, which someone with access to the
    spool may have swapped: opened without following a link (whose target the HTTP API
    would show) or blocking on a FIFO (which would hold a worker or a request for good).
    Rejected if it is no regular file; FileNotFoundError if it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise Rejected("not a regular file (a symlink)") from e
        raise
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise Rejected(f"not a regular file ({_file_kind(opened.st_mode)})")
        return _read_all(fd, sys.maxsize, opened.st_size + 1)  # its size is spoold's own
    finally:
        os.close(fd)


def _check_regular(st: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise Rejected(f"not a regular file ({_file_kind(st.st_mode)}): drop a plain JSON file")
    if st.st_size > max_bytes:
        raise Rejected(
            f"{st.st_size} bytes is larger than maxJobBytes ({max_bytes}): make the job"
            " smaller or raise maxJobBytes in the config"
        )


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO")]
    kinds += [(stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")]
    return next((label for test, label in kinds if test(mode)), "not a file")


def _read_all(fd: int, limit: int, expected: int) -> bytes:
    """Up to limit bytes of a regular file, asking first for the `expected` size; a
    short read is its end, so a small job costs one read() instead of two."""
    chunks = []
    remaining = limit
    want = min(remaining, max(expected, 1))
    while remaining > 0:
        chunk = os.read(fd, want)
        chunks.append(chunk)
        remaining -= len(chunk)
        if len(chunk) < want:
            break
        want = min(remaining, 1 << 20)
    return b"".join(chunks)


LEASES = hasattr(fcntl, "F_SETLEASE") and hasattr(fcntl, "F_SETSIG")  # Linux


def alone(path: str) -> bool:
    """Whether the file at path has no other name (st_nlink 1) and no open file anywhere
    else, now and until we let go: Linux grants a write lease only to the sole opener,
    and an open by anyone while we hold it breaks it (and waits), which we see. False
    where that cannot be shown: no leases on this file system or for this user.

    A lease broken by an open is signalled to its holder: SIGURG, ignored by default,
    instead of SIGIO, which would end the process."""
    if not LEASES:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
    except OSError:
        os.close(fd)
        return False
    try:
        return os.fstat(fd).st_nlink == 1 and fcntl.fcntl(fd, fcntl.F_GETLEASE) == fcntl.F_WRLCK
    finally:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        os.close(fd)
