"""One live daemon per node name, proven by lease files rather than locks.

A daemon's lease is running/.lease-<node>+<instance>: its mtime, renewed every
leaseSeconds/3, says the daemon lives; its content says who it is (host, pid),
when it started, in the file server's time, and whether it serves yet or is
still starting. Every age is measured against the server's clock too
(Ownership.renew_lease returns it), never this host's.

A restarting daemon takes over the running files its node's earlier lives left,
so two live daemons under one node name would take each other's jobs. `flock`
cannot prevent that on a network file system (two NFS clients need not share
locks), so the rule is kept with leases alone:

- At start, a lease of our node from another instance that is still fresh is
  watched until it is renewed or lapses. Renewed by a daemon that serves, or
  by one starting too that did not start after us: refuse to start (of two
  starting at once, the later refuses; a tie, as mtimes may have whole seconds
  only, refuses both, which is safe). Lapsed: a crashed earlier life, take
  over. A lease left by a process of this very host and pid namespace that no
  longer runs is dead at once, so a restart after a crash does not wait.
- While running, a daemon that sees its node's lease renewed by another
  serving instance that started before it (one that came back after a stall
  longer than leaseSeconds, say) stops and exits with an error: the earlier
  one keeps the node.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spoold.errors import SpoolUnusable
from spoold.spool import Spool

logger = logging.getLogger(__name__)

POLL = 0.25  # seconds between looks at a lease being watched at start


def _pause(seconds: float) -> None:
    """time.sleep, but one that also works under libfaketime (the clock-skew tests), where
    time.sleep fails with EINVAL."""
    threading.Event().wait(seconds)


@dataclass(frozen=True)
class Holder:
    """Another instance's lease on our node name, as its file says."""

    owner: str
    renewed: float
    host: str
    kernel: str
    pid: int | None
    started: float
    serving: bool

    def describe(self) -> str:
        return f"instance {self.owner}, pid {self.pid or '?'} on {self.host}"


class NodeGuard:
    """Keeps `spool.node` to one live daemon (see the module's docstring)."""

    def __init__(
        self,
        spool: Spool,
        lease_seconds: Callable[[], float],
        sleep: Callable[[float], None] = _pause,
    ) -> None:
        self.spool = spool
        self.lease_seconds = lease_seconds
        self.sleep = sleep
        self.started = 0.0
        self._seen: dict[str, float] = {}  # other instances' renewals, as last looked at

    def claim_node(self) -> None:
        """Start our lease, then wait out every fresh lease of our node from another
        instance; SpoolUnusable (our lease withdrawn) if one of them keeps the node."""
        self.started = self.spool.ownership.renew_lease()
        me = {**whoami(), "started": self.started}
        self.spool.ownership.describe_lease({**me, "serving": False})
        watched = {h.owner: h for h in self._others() if not _dead_here(h)}
        try:
            self._wait_out(watched)
        except SpoolUnusable:
            self.spool.ownership.end_lease()
            raise
        self.spool.ownership.describe_lease({**me, "serving": True})

    def _wait_out(self, watched: dict[str, Holder]) -> None:
        if watched:
            logger.warning("node %r: waiting up to %.0fs to see whether %s still lives",
                           self.spool.node, self.lease_seconds(),
                           ", ".join(h.describe() for h in watched.values()))  # fmt: skip
        while watched:
            now, renewed = self.spool.ownership.renew_lease(), self.spool.ownership.leases()
            for owner, holder in list(watched.items()):
                if not self._undecided(holder, renewed.get(owner), now):
                    del watched[owner]
            if watched:
                self.sleep(POLL)

    def _undecided(self, holder: Holder, latest: float | None, now: float) -> bool:
        """Whether `holder` must still be watched: False once it is gone, its lease lapsed,
        or it renewed its lease while starting after us (it is the one to yield);
        SpoolUnusable if it renewed and serves, or did not start after us."""
        if latest is None:
            return False
        if latest != holder.renewed:
            if holder.serving or holder.started <= self.started:
                raise SpoolUnusable(self._taken_message(holder, now - latest))
            return False
        return now - latest <= self.lease_seconds()

    def _taken_message(self, holder: Holder, age: float) -> str:
        return (
            f"another spoold ({holder.describe()}) serves {self.spool.root} as node"
            f" {self.spool.node!r}: its lease was renewed {max(age, 0):.0f}s ago; stop it,"
            " or give each daemon its own --node"
        )

    def conflict(self) -> str | None:
        """Why this daemon must stop: a serving instance of our node that started before us
        renewed its lease since we last looked. None while we are the only one (one
        still starting is left to its own start check)."""
        for holder in self._others():
            last = self._seen.get(holder.owner)
            self._seen[holder.owner] = holder.renewed
            if last is None or last == holder.renewed or not holder.serving:
                continue
            if self._after(holder):
                return (
                    f"another spoold ({holder.describe()}) serves node {self.spool.node!r}"
                    " on this spool and started first: this one stops claiming and exits,"
                    " since two daemons under one node name take each other's jobs;"
                    " give each daemon its own --node"
                )
        return None

    def _after(self, holder: Holder) -> bool:
        """Whether we started after `holder` (the start times, then the names, decide: of
        two still serving, exactly one must go)."""
        return (holder.started, holder.owner) < (self.started, self.spool.owner)

    def _others(self) -> list[Holder]:
        """The fresh leases of our node held by other instances."""
        now, lease = self.spool.ownership.renew_lease(), self.lease_seconds()
        mine = f"{self.spool.node}+"
        holders = []
        for owner, renewed in self.spool.ownership.leases().items():
            if owner.startswith(mine) and owner != self.spool.owner and now - renewed <= lease:
                holders.append(_holder(owner, renewed, self.spool.ownership.lease_info(owner)))
        return holders


def _holder(owner: str, renewed: float, info: dict[str, object]) -> Holder:
    """A lease as its file says; what it does not say is taken the safe way: serving,
    and started before anyone."""
    pid, started, host, kernel, serving = (
        info.get(k) for k in ("pid", "started", "host", "kernel", "serving")
    )
    return Holder(
        owner,
        renewed,
        host if isinstance(host, str) else "an unknown host",
        kernel if isinstance(kernel, str) else "",
        pid if isinstance(pid, int) else None,
        started if isinstance(started, (int, float)) else 0.0,
        serving is not False,
    )


def whoami() -> dict[str, object]:
    """What our lease file says about us: host name (for people), this kernel and pid
    namespace (to tell whether a pid can be checked here), pid."""
    return {"host": socket.gethostname(), "kernel": _kernel_id(), "pid": os.getpid()}


def _kernel_id() -> str:
    """This boot of this kernel and this pid namespace: where a pid means one process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def _dead_here(holder: Holder) -> bool:
    """A lease left by a process of this kernel and pid namespace that no longer runs."""
    if holder.pid is None or not holder.kernel or holder.kernel != _kernel_id():
        return False
    try:
        stat = Path(f"/proc/{holder.pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")  # killed, not yet reaped
