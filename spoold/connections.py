"""The HTTP API's open connections: read deadlines that trickling bytes cannot stretch, and a
table that lets a new client in by closing the connection that has waited longest.

A connection is *waiting* from the moment it may send a request until that request is
read in full (idle keep-alive, request line, headers, body), and *busy* while an
endpoint acts and its answer is written. Nothing has been acted on while a connection
waits, so closing it loses nothing but the client's patience: that is how a slow or
idle client gives way to a new one (api.py's Server asks admit() before each thread).
"""

from __future__ import annotations

import contextlib
import io
import resource
import socket
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

HEAD_SECONDS = 10.0  # from ready-for-a-request to the last header byte (idle time included)
BODY_SECONDS = 10.0  # for a body, plus BODY_SECONDS_PER_MIB for each MiB of it
BODY_SECONDS_PER_MIB = 1.0
WRITE_SECONDS = 10.0  # a client not reading its answer is dropped after this
MAX_HEAD_BYTES = 65536  # the request line and headers together


class Evicted(ConnectionAbortedError):
    """The connection was closed to let a new client in."""


class HeadTooLarge(Exception):
    """The request line and headers are longer than MAX_HEAD_BYTES."""


class Deadline(TimeoutError):
    """The request (head or body) did not arrive in time, however its bytes trickled."""


class DeadlineReader(io.RawIOBase):
    """A socket's input with a deadline for the whole of what is being read, not per recv
    (a byte a second would renew a per-recv timeout forever), and a byte budget."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.deadline: float | None = None  # time.monotonic() by which the read must end
        self.what = "the request"
        self.budget: int | None = None  # bytes still allowed in this phase
        self.evicted = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise Deadline(f"{self.what} did not arrive in time")
            self.sock.settimeout(left)
        try:
            count = self.sock.recv_into(buffer)
        except TimeoutError as e:
            raise Deadline(f"{self.what} did not arrive in time") from e
        except OSError:
            if self.evicted:
                raise Evicted("closed to let a new client in") from None
            raise
        if count == 0 and self.evicted:
            raise Evicted("closed to let a new client in")
        if self.budget is not None:
            self.budget -= count
            if self.budget < 0:
                raise HeadTooLarge(f"the request line and headers are over {MAX_HEAD_BYTES} bytes")
        return count


class Connection:
    """One open connection: its socket, its reader, and since when it has been waiting."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = DeadlineReader(sock)
        self.waiting_since: float | None = time.monotonic()  # None while busy
        self.served = False  # whether a request of its own has been answered

    def expect_head(self) -> None:
        """Ready for a request: its request line and headers have HEAD_SECONDS from now."""
        self.reader.deadline = time.monotonic() + HEAD_SECONDS
        self.reader.budget = MAX_HEAD_BYTES + io.DEFAULT_BUFFER_SIZE  # the buffer reads ahead
        self.reader.what = "the request line and headers"

    def expect_body(self, length: int) -> None:
        """The head is read; a body of `length` bytes has BODY_SECONDS (and more if large)."""
        seconds = BODY_SECONDS + BODY_SECONDS_PER_MIB * length / (1 << 20)
        self.reader.deadline = time.monotonic() + seconds
        self.reader.budget = None
        self.reader.what = f"the body ({length} bytes)"


class Connections:
    """The open connections, at most `limit`; thread-safe. At the limit, a new client gets
    the place of the connection that has waited longest (a slow sender, an idle
    keep-alive), if any is waiting; only connections all busy make it wait, then refuse."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Condition()
        self._open: dict[socket.socket, Connection] = {}
        self._leaving = 0  # evicted, their threads not yet ended
        self._closing = False
        self.evictions = 0

    def admit(self, sock: socket.socket, wait: float) -> Connection | None:
        """A place for a new connection, evicting if need be; None if none freed in `wait`."""
        deadline = time.monotonic() + wait
        with self._lock:
            # Those evicted still count until their threads end (at once, as a rule), but
            # the new one need not wait for that: accepting stays quick under a flood.
            while self._staying() >= self.limit or len(self._open) >= 2 * self.limit:
                if self._staying() >= self.limit and self._evict_one():
                    continue
                left = deadline - time.monotonic()  # all busy: wait for one to end
                if left <= 0:
                    return None
                self._lock.wait(left)
            connection = Connection(sock)
            self._open[sock] = connection
            return connection

    def get(self, sock: socket.socket) -> Connection:
        with self._lock:
            return self._open[sock]

    def waiting(self, connection: Connection, since: float | None = None) -> None:
        """The connection may be closed for a newer one from now (since: for the order).
        A new connection has waited since its admission: on a busy host its thread may
        start after newer ones were admitted, and must not look newer than they are."""
        with self._lock:
            if since is not None:
                connection.waiting_since = since
            elif connection.waiting_since is None:  # back from a request it was busy with
                connection.waiting_since = time.monotonic()
            if self._closing:
                self._evict(connection)

    def close(self) -> None:
        """The server stops: close every waiting connection now, each busy one once it
        has answered (its client gets the answer, then the connection ends)."""
        with self._lock:
            self._closing = True
            for connection in list(self._open.values()):
                if connection.waiting_since is not None and not connection.reader.evicted:
                    self._evict(connection)

    def busy(self, connection: Connection) -> bool:
        """The connection's request is read and about to be acted on: never evicted while
        busy. False if it was evicted already (then nothing must be done for it)."""
        with self._lock:
            if connection.reader.evicted:
                return False
            connection.waiting_since = None
            connection.served = True
            return True

    def lingering(self, sock: socket.socket) -> None:
        """The connection is closing (its last input drained): the first to give way."""
        with self._lock:
            connection = self._open.get(sock)
            if connection is not None:
                connection.waiting_since = 0.0

    def release(self, sock: socket.socket) -> None:
        """The connection's thread has ended."""
        with self._lock:
            connection = self._open.pop(sock, None)
            if connection is not None and connection.reader.evicted:
                self._leaving -= 1
            self._lock.notify_all()

    def _staying(self) -> int:
        return len(self._open) - self._leaving

    def _evict_one(self) -> bool:
        waiting = [c for c in self._open.values()
                   if c.waiting_since is not None and not c.reader.evicted]  # fmt: skip
        if not waiting:
            return False
        # A connection that never had a request answered goes first: a flood of new ones
        # (the usual attack) then displaces itself, not a client's idle keep-alive one.
        self._evict(min(waiting, key=lambda c: (c.served, c.waiting_since or 0.0)))
        return True

    def _evict(self, victim: Connection) -> None:
        victim.reader.evicted = True
        self._leaving += 1
        self.evictions += 1
        with contextlib.suppress(OSError):
            victim.sock.shutdown(socket.SHUT_RDWR)  # its thread's recv returns at once


def raise_open_file_limit(wanted: int) -> int:
    """Raise the soft limit of open files towards `wanted` (as far as the hard limit
    allows), because each connection is a file; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinite = resource.RLIM_INFINITY
    if soft == infinite or soft >= wanted:
        return wanted if soft == infinite else soft
    new = wanted if hard == infinite else min(wanted, hard)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return max(new, soft)
