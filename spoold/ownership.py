"""Which daemon holds what on a spool: the node lock, lease files, and what a stopped
daemon left (its running files, its tmp/ files).

One daemon's Ownership is spool.ownership. It is the one part of the spool about
daemons rather than jobs; lease.py decides, with it, whether this daemon may serve
its node name, and the daemon's recovery asks it which running files are stale.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from typing import TYPE_CHECKING

from spoold import strictjson
from spoold.errors import SpoolUnusable
from spoold.fileio import unlink_quiet
from spoold.names import running_stem
from spoold.storage import errno_name

if TYPE_CHECKING:
    from spoold.spool import Spool

logger = logging.getLogger(__name__)

NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)  # a file system without flock


class Ownership:
    """One daemon's part in a shared spool: its lease and node lock, and its view of the
    others' leases."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.lease_name = f".lease-{spool.owner}"
        self._lease_data = b""  # what the lease file says (see describe_lease)
        self._node_lock: int | None = None  # fd of running/.node-<node>.lock, held for life

    def _running(self, name: str) -> str:
        return str(self.spool.path("running", name))

    def lock_node(self) -> None:
        """Hold running/.node-<node>.lock for this process's life, so a second daemon under
        the same node name (two with `node` unset, say) is refused at once where locks
        are shared. Only a quick check: NFS clients need not share locks, so the rule
        itself is kept by the leases (lease.py). Where the file system has no locks,
        only warn."""
        path = self._running(f".node-{self.spool.node}.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise SpoolUnusable(_lock_failed(path, e)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SpoolUnusable(
                f"another spoold (pid {holder}) already serves {self.spool.root} as node"
                f" {self.spool.node!r}: stop it, or give each daemon its own --node"
            ) from None
        except OSError as e:
            os.close(fd)
            if e.errno not in NO_LOCKS:
                raise SpoolUnusable(_lock_failed(path, e)) from None
            logger.warning("cannot lock %s (%s): run one daemon per node name", path, e)
            return
        self._node_lock = fd

    def describe_lease(self, info: dict[str, object]) -> None:
        """Write what running/.lease-<owner> says about us, for the others to read (see
        lease.py); kept, and written again if the file is lost."""
        self._lease_data = strictjson.dumps(info)
        self.spool.write("running", self.lease_name, self._lease_data)

    def renew_lease(self) -> float:
        """Touch running/.lease-<owner>: its fresh mtime is our lease on every running file
        we hold (one touch per daemon, not one per job). Returns that mtime: the file
        server's time now, which every lease is judged by (a touch without a time asks
        the server for its own), so a host whose clock is off judges leases right."""
        path = self._running(self.lease_name)
        try:
            os.utime(path, follow_symlinks=False)  # a link put in its place is not followed
        except FileNotFoundError:
            if self._lease_data:
                logger.warning("our lease %s was gone (did another daemon judge this one"
                               " dead?): written again", self.lease_name)  # fmt: skip
            self.spool.write("running", self.lease_name, self._lease_data)
        return os.lstat(path).st_mtime

    def leases(self) -> dict[str, float]:
        """Every daemon's lease in running/: owner → when it was last renewed (server time);
        one lost while we look is left out."""
        found = {}
        for name in self.spool.names("running"):
            if name.startswith(".lease-"):
                renewed = self.spool.mtime("running", name)
                if renewed is not None:
                    found[name.removeprefix(".lease-")] = renewed
        return found

    def lease_info(self, owner: str) -> dict[str, object]:
        """What an owner's lease file says about it (see describe_lease); {} if it says
        nothing readable (gone, or created and not yet written)."""
        return self.spool.read_object("running", f".lease-{owner}") or {}

    def end_lease(self) -> None:
        """A clean stop: our running files are all settled; the lease, the space held for
        the status file and the spares go."""
        unlink_quiet(self._running(self.lease_name))
        self.spool.close()

    def clean_dead_tmp(self, now: float, lease: float) -> list[str]:
        """Remove files in tmp/ whose writer provably stopped: on this node, a process that
        is gone (a helper killed mid-write, say); on another, a daemon whose lease file is
        missing or older than `lease` seconds, for a file itself older than that (a daemon
        that is starting writes in tmp/ before its lease exists). `now` is the file
        server's time (renew_lease). Returns the names removed."""
        removed = []
        leases: dict[str, bool] = {}
        for name in self.spool.names("tmp"):
            writer = tmp_writer(name)
            if writer is None:
                continue
            owner, pid = writer
            if owner.rsplit("+", 1)[0] == self.spool.node:
                dead = not _process_alive(pid)
            else:
                if owner not in leases:
                    renewed = self.spool.mtime("running", f".lease-{owner}")
                    leases[owner] = renewed is not None and now - renewed <= lease
                dead = not leases[owner] and self._older(name, now, lease)
            if dead:
                unlink_quiet(str(self.spool.path("tmp", name)))
                removed.append(name)
        return removed

    def _older(self, name: str, now: float, age: float) -> bool:
        """Whether tmp/name was last changed more than `age` seconds before `now`."""
        changed = self.spool.mtime("tmp", name)
        return changed is not None and now - changed > age

    def stale_running(self, now: float, lease: float, own_node_too: bool) -> list[str]:
        """Running files whose holder stopped: any of our node's earlier lives (at start),
        and any whose holder's lease file is missing or older than `lease` seconds."""
        stale = []
        alive: dict[str, bool] = {}
        for name in self.spool.names("running"):
            parsed = running_stem(name)
            if parsed is None or parsed[1] == self.spool.owner:
                continue
            holder = parsed[1]
            if own_node_too and holder.rsplit("+", 1)[0] == self.spool.node:
                stale.append(name)
                continue
            if holder not in alive:
                renewed = self.spool.mtime("running", f".lease-{holder}")
                alive[holder] = renewed is not None and now - renewed <= lease
            if not alive[holder]:
                stale.append(name)
        return stale

    def drop_dead_leases(self, now: float, age: float) -> None:
        """Remove lease files of daemons that stopped without a clean stop (kill -9) once
        they are `age` seconds old; their running files were recovered by then."""
        for name in self.spool.names("running"):
            if name.startswith(".lease-") and name != self.lease_name:
                renewed = self.spool.mtime("running", name)
                if renewed is not None and now - renewed > age:
                    unlink_quiet(self._running(name))


def tmp_writer(name: str) -> tuple[str, int] | None:
    """'<owner>.<pid>.<n>.tmp' or '<owner>.<pid>.reserve' → (owner, pid); None for others."""
    parts = name.rsplit(".", 3 if name.endswith(".tmp") else 2)
    if len(parts) < 3 or parts[-1] not in ("tmp", "reserve"):
        return None
    if "+" not in parts[0] or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _process_alive(pid: int) -> bool:
    """Whether a process of this host runs (a zombie, killed and not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            return stat_file.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_failed(path: str, error: OSError) -> str:
    """The one-line reason a start ends on the node lock's unexpected error."""
    return (f"cannot lock {os.path.abspath(path)}: {errno_name(error)}"
            f" ({error.strerror or error}) from its file system: check that mount (an NFS"
            " client's lock options) or put the spool on a local disk")  # fmt: skip
