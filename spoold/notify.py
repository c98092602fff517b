"""The sd_notify protocol: what spoold tells a service manager (systemd, Type=notify).

systemd passes a datagram socket in $NOTIFY_SOCKET (a path, or `@name` for an
abstract socket) and, with WatchdogSec=, the watchdog period in $WATCHDOG_USEC.
spoold sends `READY=1` once it serves (spool scanned, API listening),
`WATCHDOG=1` every half period while it is healthy, `STATUS=` with its queue
counts when they change (at most once a second) and `STOPPING=1` on a stop.

The pings come from the daemon's main loop, and only while every part's threads
are alive (Daemon.troubles): a daemon whose workers died, or whose main loop
hangs, falls silent and systemd restarts it. Without $NOTIFY_SOCKET nothing is
sent and nothing is checked. Sending never stops the daemon: a socket that is
gone is a one-line warning.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, MutableMapping
from typing import Any

logger = logging.getLogger(__name__)

STATUS_EVERY = 1.0  # seconds: STATUS= at most this often
IDLE_TICK = 0.5  # seconds between the main loop's wake-ups when nothing is due sooner
SEND_TIMEOUT = 2.0  # seconds a full socket may hold the main loop
STOP_MARGIN = 15.0  # seconds a stop takes beyond the jobs' grace (helpers, status, lease)
VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Datagrams to the service manager's socket; a failure is logged, never raised."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._target = "\0" + address[1:] if address.startswith("@") else address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.settimeout(SEND_TIMEOUT)
        self._failing = False

    def send(self, *fields: str) -> bool:
        """One datagram of `KEY=value` lines; False if it failed (a warning at the first
        failure of a run, not at each: pings fail every few seconds)."""
        try:
            self._socket.sendto("\n".join(fields).encode(), self._target)
        except OSError as e:
            if not self._failing:
                logger.warning("cannot notify the service manager at NOTIFY_SOCKET=%s (%s);"
                               " spoold runs on without it", self.address, e)  # fmt: skip
            self._failing = True
            return False
        self._failing = False
        return True

    def close(self) -> None:
        self._socket.close()


class SystemdLink:
    """When to send what: READY, WATCHDOG pings while healthy, STATUS on change, STOPPING.

    `troubles()` names the parts that are not working (empty: healthy); `counts()` is
    the queue as in status.json. Times are time.monotonic(); tests pass their own."""

    def __init__(
        self,
        notifier: Notifier | None,
        watchdog: float | None,
        troubles: Callable[[], list[str]],
        counts: Callable[[], dict[str, Any]],
    ) -> None:
        self.notifier = notifier
        self.ping_every = watchdog / 2 if watchdog else None
        self.troubles = troubles
        self.counts = counts
        self._next_ping = 0.0
        self._next_look = 0.0
        self._status = ""
        self._unwell: list[str] = []

    @classmethod
    def from_env(
        cls,
        troubles: Callable[[], list[str]],
        counts: Callable[[], dict[str, Any]],
        environ: MutableMapping[str, str] = os.environ,
    ) -> SystemdLink:
        """The service manager the environment names, if any. The variables are taken out
        of it, as sd_notify(unset_environment=1) does: they are for spoold, not for the
        processes its jobs start."""
        address, usec, pid = (environ.pop(name, None) for name in VARIABLES)
        notifier = _notifier(address) if address else None
        watchdog = _watchdog(usec, pid) if notifier and usec else None
        return cls(notifier, watchdog, troubles, counts)

    def ready(self, now: float) -> None:
        """The daemon serves: READY=1 with the first STATUS, and the first ping."""
        if self.notifier:
            self._look(now)
            self.notifier.send("READY=1", f"STATUS={self._status}")
            self._ping(now)

    def tick(self, now: float) -> None:
        """Send STATUS if it changed, and a ping if one is due and the daemon is healthy."""
        if not self.notifier:
            return
        if now >= self._next_look:
            before = self._status
            self._look(now)
            if self._status != before:
                self.notifier.send(f"STATUS={self._status}")
        self._ping(now)

    def wait(self, now: float) -> float:
        """Seconds until the next tick is due (the main loop sleeps this long)."""
        due = [IDLE_TICK]
        if self.notifier:
            due.append(self._next_look - now)
        if self.notifier and self.ping_every:
            due.append(self._next_ping - now)
        return max(min(due), 0.0)

    def stopping(self, grace: float) -> None:
        """The daemon stops, giving running jobs `grace` seconds: STOPPING=1, that in
        STATUS, and a stop timeout that lasts at least that long (EXTEND_TIMEOUT_USEC),
        so that systemd does not kill jobs a longer shutdownGrace than the unit's
        TimeoutStopSec= promised time to finish."""
        if self.notifier:
            extend = int((grace + STOP_MARGIN) * 1_000_000)
            self.notifier.send("STOPPING=1", f"STATUS=stopping: running jobs get {grace:g}s",
                               f"EXTEND_TIMEOUT_USEC={extend}")  # fmt: skip
            self.notifier.close()

    def _look(self, now: float) -> None:
        """Check the daemon's health and read its queue: at most once a second, as both
        take locks the workers use."""
        self._next_look = now + STATUS_EVERY
        self._check_health()
        self._status = status_text(self.counts(), self._unwell)

    def _ping(self, now: float) -> None:
        if self.notifier and self.ping_every and now >= self._next_ping and not self._unwell:
            self._next_ping = now + self.ping_every
            self.notifier.send("WATCHDOG=1")

    def _check_health(self) -> None:
        unwell = self.troubles()
        if unwell and not self._unwell:
            logger.error("unhealthy: %s; no more watchdog pings, so a service manager"
                         " restarts spoold", ", ".join(unwell))  # fmt: skip
        elif self._unwell and not unwell:
            logger.info("healthy again: watchdog pings resume")
        self._unwell = unwell


def status_text(queue: dict[str, Any], troubles: list[str]) -> str:
    """What `systemctl status` shows: the queue (as in status.json), and what is broken."""
    text = (f"pending {queue['pending']['total']}, running {queue['running']},"
            f" completed {queue['completed']}, failed {queue['failed']}")  # fmt: skip
    return f"{text}; UNHEALTHY: {', '.join(troubles)}" if troubles else text


def _notifier(address: str) -> Notifier | None:
    if not address.startswith(("/", "@")):
        logger.warning("NOTIFY_SOCKET=%s is neither a path nor an @abstract socket name:"
                       " not notifying the service manager", address)  # fmt: skip
        return None
    return Notifier(address)


def _watchdog(usec: str, pid: str | None) -> float | None:
    """The watchdog period in seconds; None if it is not meant for this process."""
    if pid and pid != str(os.getpid()):
        return None
    try:
        seconds = int(usec) / 1_000_000
    except ValueError:
        seconds = 0
    if seconds <= 0:
        logger.warning("WATCHDOG_USEC=%s is not a positive number of microseconds:"
                       " no watchdog pings", usec)  # fmt: skip
        return None
    return seconds
