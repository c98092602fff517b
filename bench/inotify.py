"""A minimal inotify reader (Linux, ctypes): names that arrived in one folder.

The harness watches completed/ with it to time drop → record honestly, and the
floor uses it to wake on new files. It is deliberately bare: no threads, no
move-pairing delay, so it adds nothing to what it measures.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
ARRIVALS = IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE

_HEADER = struct.Struct("iIII")
_libc = ctypes.CDLL(None, use_errno=True)


class Overflow(Exception):
    """The kernel dropped events: the reader must list the folder to catch up."""


class Inotify:
    """Watches one folder for names that arrive (rename in, close after write, create)."""

    def __init__(self, folder: str | os.PathLike[str], mask: int = ARRIVALS) -> None:
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if _libc.inotify_add_watch(self.fd, os.fsencode(folder), mask) < 0:
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder} failed")
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)

    def read(self, timeout: float | None = None) -> list[str]:
        """Names that arrived, waiting up to timeout seconds (0: don't wait; None: forever).

        Raises Overflow when the kernel's queue overflowed.
        """
        wait_ms = None if timeout is None else max(int(timeout * 1000), 0)
        if not self._poll.poll(wait_ms):
            return []
        try:
            buffer = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        return _parse(buffer)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse(buffer: bytes) -> list[str]:
    names = []
    offset = 0
    while offset < len(buffer):
        _wd, mask, _cookie, length = _HEADER.unpack_from(buffer, offset)
        offset += _HEADER.size
        if mask & IN_Q_OVERFLOW:
            raise Overflow()
        raw = buffer[offset : offset + length].rstrip(b"\0")
        offset += length
        if raw:
            names.append(os.fsdecode(raw))
    return names
