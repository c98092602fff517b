"""The only file-system code: folders, names and atomic moves.

Every state change of a job is one rename(2) inside one file system, so a
file is never in two folders and never half-written. Files spoold writes
itself are written in tmp/, flushed, fsynced and renamed into place; with
`durability: fsync` the folders whose names changed are fsynced too before
the change is reported.

Names carry the state a reader needs without opening files:

    pending/   <rank>-<priority>-<accepted UTC>-<id>.json      (ls shows dispatch order)
    running/   <pending stem>@<node>+<instance>.json           (who holds it; its mtime is
               1970-01-01 once the attempt started), .lease-<node>+<instance> (a daemon's
               lease: its mtime, renewed, says the daemon lives)
    completed/ <pending stem>.json                              (the final record)
    failed/    <pending stem>.json, or a rejected file under its own name
               beside <that name>.error.json
    schedule/  the scheduler's own files: <job id>.fire (who decided a run),
               <task>.last (a task's latest run), state[-<node>].json
"""

from __future__ import annotations

import calendar
import contextlib
import ctypes
import fcntl
import itertools
import json
import logging
import os
import re
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from spoold.errors import SpoolUnusable
from spoold.times import iso, utc_second

logger = logging.getLogger(__name__)

FOLDERS = ("incoming", "pending", "running", "completed", "failed", "tmp")
# Made by the scheduler when it starts (spool.ensure_extra), not by ensure().
EXTRA_FOLDERS = ("schedule",)
RANKS = {"critical": 0, "high": 1, "normal": 2, "low": 3}
STEM_RE = re.compile(
    r"^(?P<rank>[0-3])-(?P<priority>critical|high|normal|low)-"
    r"(?P<ts>\d{8}T\d{6}\.\d{9})Z-(?P<id>[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,127})$"
)
ERROR_SUFFIX = ".error.json"
MAX_SPARES = 256  # as many as the committer's batch, so a batch reuses files
STARTED = 0  # a running file's mtime once its attempt has started (1970-01-01, see mark_started)


@dataclass(frozen=True)
class Stem:
    """What a pending name says: priority, acceptance time, id."""

    priority: str
    accepted: float
    id: str
    text: str


def make_stem(priority: str, accepted_ns: int, job_id: str) -> str:
    """The dispatch-order name of a job, without '.json'."""
    seconds, nanos = divmod(accepted_ns, 1_000_000_000)
    ts = utc_second(seconds, "%Y%m%dT%H%M%S")
    return f"{RANKS[priority]}-{priority}-{ts}.{nanos:09d}Z-{job_id}"


def parse_stem(stem: str) -> Stem | None:
    """Read a stem back; None for names spoold did not make."""
    match = STEM_RE.match(stem)
    if not match:
        return None
    ts = match.group("ts")
    fields = (int(ts[0:4]), int(ts[4:6]), int(ts[6:8]), int(ts[9:11]), int(ts[11:13]))
    accepted = calendar.timegm((*fields, int(ts[13:15]))) + int(ts[16:]) / 1e9
    return Stem(match.group("priority"), accepted, match.group("id"), stem)


def running_stem(name: str) -> tuple[str, str] | None:
    """'<stem>@<owner>.json' → (stem, owner)."""
    if not name.endswith(".json") or "@" not in name:
        return None
    stem, owner = name[:-5].rsplit("@", 1)
    return stem, owner


def is_job_name(name: str) -> bool:
    """Names in incoming/ that spoold takes: '*.json', not a dot-file."""
    return name.endswith(".json") and not name.startswith(".")


@dataclass(frozen=True)
class Incoming:
    """A file read from incoming/: its bytes and when it last changed."""

    raw: bytes
    mtime: float


class Rejected(Exception):
    """An incoming file that must go to failed/ unread; the message says why."""


class Spool:
    """The spool folder and its verbs. Thread-safe; a lost race returns None."""

    def __init__(self, root: Path, node: str | None = None, durable: bool = True) -> None:
        self.root = Path(root)
        self.node = node or "local"
        self.shared = node is not None  # several daemons may share this spool
        self.owner = f"{self.node}+{uuid.uuid4().hex[:8]}"
        self.durable = durable
        names = FOLDERS + EXTRA_FOLDERS
        self.dirs = {"": self.root} | {name: self.root / name for name in names}
        # Plain string prefixes for the per-job moves: pathlib costs more than the syscall.
        self._p = {key: f"{path}{os.sep}" for key, path in self.dirs.items()}
        self.lease_name = f".lease-{self.owner}"
        self._lease_data = b""  # what the lease file says (see describe_lease)
        self._tmp_counter = itertools.count()
        self._clock_lock = threading.Lock()
        self._last_ns = 0
        self._held: set[str] = set()  # running names a worker of this daemon holds
        self._held_lock = threading.Lock()
        self._dir_syncs = {key: GroupSync(path) for key, path in self._p.items()}
        self._spares: list[str] = []  # finished running files, kept in tmp/ to be rewritten
        self._node_lock: int | None = None  # fd of running/.node-<node>.lock, held for life
        # Taken around each job's bookkeeping (accept, claim, record) by intake, workers and
        # committer: a performance device, not a correctness one. Under the GIL those threads
        # cannot do that work in parallel anyway; letting them try hands the GIL over at
        # every syscall, which cost more than the work itself (4 workers: 3.4k → 5.5k jobs/s).
        # Never held across a job's run or the committer's flushes (only a rejected file's
        # explanation, which is rare, is written and flushed inside it).
        self.turn = threading.Lock()
        self._root: int | None = None  # fd of the spool folder, for syncfs
        self._root_lock = threading.Lock()

    # ----- set-up -------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create missing folders and prove the spool is writable, or raise SpoolUnusable."""
        for folder in ("", *FOLDERS):
            self._make(self.dirs[folder])
        probe = self.dirs["tmp"] / f".probe-{self.owner}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise SpoolUnusable(f"{self.dirs['tmp']} is not writable: {e.strerror}") from e

    def ensure_extra(self, folder: str) -> None:
        """Create one of EXTRA_FOLDERS (e.g. schedule/) if missing, else SpoolUnusable."""
        self._make(self.dirs[folder])

    @staticmethod
    def _make(folder: Path) -> None:
        if folder.exists() and not folder.is_dir():
            raise SpoolUnusable(f"{folder} is not a folder: move it away or set 'spool'")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SpoolUnusable(f"cannot create {folder}: {e.strerror}") from e

    def path(self, folder: str, name: str) -> Path:
        return self.dirs[folder] / name

    def names(self, folder: str) -> list[str]:
        """The names in one folder (start-up scans, rescans, lookups: never per job)."""
        try:
            return os.listdir(self.dirs[folder])
        except FileNotFoundError:
            return []

    # ----- time and names -----------------------------------------------------------------

    def accept_ns(self) -> int:
        """A strictly increasing acceptance time, so FIFO holds within one daemon."""
        with self._clock_lock:
            self._last_ns = max(time.time_ns(), self._last_ns + 1)
            return self._last_ns

    # ----- low-level writes ----------------------------------------------------------------

    def _sync_dir(self, folder: str, sync: bool | None = None) -> None:
        if self.durable if sync is None else sync:
            self._dir_syncs[folder].sync()

    def _tmp_name(self) -> str:
        return f"{self._p['tmp']}{self.owner}.{next(self._tmp_counter)}.tmp"

    def _open_tmp(self) -> tuple[str, int]:
        """A file in tmp/ to write: a spare (a finished job's file, rewritten in place) when
        there is one, since allocating and freeing an inode per job costs more than the
        renames; else a new file."""
        while self._spares:
            try:
                tmp = self._spares.pop()
                # No O_TRUNC: ext4 flushes a file truncated to zero when it is closed;
                # overwriting and then cutting to length (see _write_tmp) does not.
                return tmp, os.open(tmp, os.O_WRONLY | os.O_NOFOLLOW)
            except (IndexError, FileNotFoundError):
                continue
        tmp = self._tmp_name()
        return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def _write_tmp(self, data: bytes, sync: bool | None = None) -> str:
        """Write data to a file in tmp/ (fdatasynced when durable, unless sync=False)."""
        tmp, fd = self._open_tmp()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if os.fstat(fd).st_size > len(data):  # a spare that was longer: cut it
                os.ftruncate(fd, len(data))  # (ext4 truncates even to the same size)
            if self.durable if sync is None else sync:
                os.fdatasync(fd)
        except BaseException:
            os.close(fd)
            _unlink_quiet(tmp)
            raise
        os.close(fd)
        return tmp

    def write(
        self, folder: str, name: str, data: bytes, exclusive: bool = False, sync: bool | None = None
    ) -> bool:
        """Atomically put data at folder/name ('' = the spool's root); with exclusive,
        False if the name is taken. Flushed when durable (or as `sync` says)."""
        tmp = self._write_tmp(data, sync)
        target = self._p[folder] + name
        try:
            if exclusive:
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    return False
                finally:
                    _unlink_quiet(tmp)
            else:
                os.replace(tmp, target)
        except BaseException:
            _unlink_quiet(tmp)
            raise
        self._sync_dir(folder, sync)
        return True

    def _move(self, src_folder: str, src: str, dst_folder: str, dst: str) -> bool:
        """rename(2); False when the source is gone (someone else moved it first).

        No fsync: a rename that a power loss undoes leaves the file in its old folder,
        where it is found again, so nothing is lost. Only the records spoold writes
        (see write) must reach the disk before the change is reported.
        """
        try:
            os.rename(self._p[src_folder] + src, self._p[dst_folder] + dst)
        except FileNotFoundError:
            return False
        return True

    # ----- incoming -------------------------------------------------------------------------

    def incoming_names(self) -> Iterator[str]:
        return (n for n in self.names("incoming") if is_job_name(n))

    def read_incoming(self, name: str, max_bytes: int) -> Incoming | None:
        """The bytes of incoming/name; None if gone; Rejected if it must not be read."""
        path = self._p["incoming"] + name
        try:
            st = os.lstat(path)
            _check_regular(st, max_bytes)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise Rejected(f"cannot be opened without following it: {e.strerror}") from e
        try:
            opened = os.fstat(fd)
            _check_regular(opened, max_bytes)
            raw = _read_all(fd, max_bytes + 1, opened.st_size + 1)
        except FileNotFoundError:  # an NFS client that looks files up by name, not by
            return None  # handle: another host took the file after our open
        finally:
            os.close(fd)
        if len(raw) > max_bytes:
            raise Rejected(f"larger than maxJobBytes ({max_bytes} bytes)")
        return Incoming(raw, st.st_mtime)

    def accept(self, name: str, stem: str) -> bool:
        """incoming/name → pending/stem.json, the producer's bytes unchanged. True if the
        file is there now, also when this move was made before (by a helper that stopped
        before it could say so): the stem is this daemon's alone."""
        if self._move("incoming", name, "pending", stem + ".json"):
            return True
        return os.path.exists(self._p["pending"] + stem + ".json")

    def reject(self, name: str, reason: str, folder: str = "incoming") -> str | None:
        """Move a bad file to failed/ under its own name (made unique if taken), unread,
        and write <name>.error.json beside it. Returns the name in failed/, or None if gone."""
        if folder == "running":
            self.let_go(name)
        for candidate in _unique_names(name):
            target = self.dirs["failed"] / candidate
            if os.path.lexists(target) or os.path.lexists(str(target) + ERROR_SUFFIX):
                continue
            if not self._move(folder, name, "failed", candidate):
                return None
            explanation = {"file": name, "error": reason, "rejectedAt": iso(time.time())}
            explanation["node"] = self.node
            self.write("failed", candidate + ERROR_SUFFIX, _dump(explanation))
            return candidate
        return None

    # ----- pending and running ---------------------------------------------------------------

    def enqueue(self, stem: str, data: bytes, exclusive: bool = False) -> bool:
        """Write a new pending job (HTTP, schedules, retries); False if exclusive and taken."""
        return self.write("pending", stem + ".json", data, exclusive)

    def claim(self, stem: str) -> str | None:
        """pending → running under a name only this daemon uses; None if another took it.

        The unique target is what makes a claim safe on a network file system, where
        an error code alone cannot be trusted: the claim is ours if our name exists and
        no other worker of ours holds it (the index may offer one stem twice).
        """
        name = f"{stem}@{self.owner}.json"
        with self._held_lock:  # reserve the name; the rename itself runs unlocked
            if name in self._held:
                return None
            self._held.add(name)
        moved = self._move("pending", stem + ".json", "running", name)
        if not moved and not os.path.exists(self._p["running"] + name):
            self.let_go(name)
            return None
        return name

    def mark_started(self, running: str) -> bool:
        """Stamp a claimed job's running file as started (mtime STARTED, one setattr and no
        data write) just before it runs, so that recovery counts an attempt only for a
        job that ran. False if the file is gone: another daemon judged us dead and took
        it back, so the job is not ours to run."""
        try:
            os.utime(self._p["running"] + running, ns=(STARTED, STARTED))
        except FileNotFoundError:
            self.let_go(running)
            return False
        return True

    def was_started(self, running: str) -> bool | None:
        """Whether a running file's attempt started (see mark_started); None if it is gone."""
        mtime = self.mtime("running", running)
        return None if mtime is None else mtime == STARTED

    def let_go(self, running: str) -> None:
        """The running file is no longer held by a worker of ours."""
        with self._held_lock:
            self._held.discard(running)

    def read(self, folder: str, name: str) -> bytes | None:
        try:
            with open(self._p[folder] + name, "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None

    def lock_node(self) -> None:
        """Hold running/.node-<node>.lock for this process's life, so a second daemon under
        the same node name (two with `node` unset, say) is refused at once where locks
        are shared. Only a quick check: NFS clients need not share locks, so the rule
        itself is kept by the leases (lease.py). Where the file system has no locks,
        only warn."""
        path = f"{self._p['running']}.node-{self.node}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SpoolUnusable(
                f"another spoold (pid {holder}) already serves {self.root} as node"
                f" {self.node!r}: stop it, or give each daemon its own --node"
            ) from None
        except OSError as e:
            logger.warning("cannot lock %s (%s): run one daemon per node name", path, e)
            os.close(fd)
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._node_lock = fd

    def describe_lease(self, info: dict[str, object]) -> None:
        """Write what running/.lease-<owner> says about us, for the others to read (see
        lease.py); kept, and written again if the file is lost."""
        self._lease_data = _dump(info)
        self.write("running", self.lease_name, self._lease_data)

    def renew_lease(self) -> float:
        """Touch running/.lease-<owner>: its fresh mtime is our lease on every running file
        we hold (one touch per daemon, not one per job). Returns that mtime: the file
        server's time now, which every lease is judged by (a touch without a time asks
        the server for its own), so a host whose clock is off judges leases right."""
        path = self._p["running"] + self.lease_name
        try:
            os.utime(path)
        except FileNotFoundError:
            if self._lease_data:
                logger.warning("our lease %s was gone (did another daemon judge this one"
                               " dead?): written again", self.lease_name)  # fmt: skip
            self.write("running", self.lease_name, self._lease_data)
        return os.lstat(path).st_mtime

    def leases(self) -> dict[str, float]:
        """Every daemon's lease in running/: owner → when it was last renewed (server time);
        one lost while we look is left out."""
        found = {}
        for name in self.names("running"):
            if name.startswith(".lease-"):
                renewed = self.mtime("running", name)
                if renewed is not None:
                    found[name.removeprefix(".lease-")] = renewed
        return found

    def lease_info(self, owner: str) -> dict[str, object]:
        """What an owner's lease file says about it (see describe_lease); {} if it says
        nothing readable (gone, or created and not yet written)."""
        raw = self.read("running", f".lease-{owner}")
        try:
            info = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return info if isinstance(info, dict) else {}

    def end_lease(self) -> None:
        """A clean stop: our running files are all settled, the lease and spares go."""
        _unlink_quiet(self._p["running"] + self.lease_name)
        self.drop_spares()

    def drop_spares(self) -> None:
        """Delete the spare files in tmp/ and close the spool folder: we are done writing."""
        while self._spares:
            _unlink_quiet(self._spares.pop())
        with self._root_lock:
            root, self._root = self._root, None
        if root is not None:
            os.close(root)

    def finish(self, running: str, stem: str, folder: str, data: bytes) -> None:
        """Write the final record (completed/ or failed/) or the retry (pending/), then drop
        the running file. A crash between the two leaves both; recover() sees the record
        and drops the running file, so no job appears twice."""
        self.write(folder, stem + ".json", data)
        self.retire_running(running)

    def retire_running(self, running: str) -> None:
        """Drop a running file whose outcome is written (see finish and commit.py)."""
        try:
            self._retire(self._p["running"] + running)
        except FileNotFoundError:
            logger.warning("running/%s was already gone when the job finished", running)
        self.let_go(running)

    # ----- group commit (commit.py): stage many, flush once, place, flush once ---------------

    def stage(self, data: bytes) -> str:
        """Write data to tmp/ without a flush; returns the file to place()."""
        return self._write_tmp(data, sync=False)

    def place(self, tmp: str, folder: str, name: str) -> None:
        """Rename a staged file to folder/name."""
        os.replace(tmp, self._p[folder] + name)

    def unstage(self, tmp: str) -> None:
        """Drop a staged file that will not be placed (gone already if it was)."""
        _unlink_quiet(tmp)

    def flush(self) -> None:
        """Make everything written to the spool's file system durable: one syncfs(2)
        (os.sync() where there is none) instead of a flush per file."""
        if _syncfs is None:
            os.sync()
            return
        if _syncfs(self._root_fd()) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(self.root))

    def _root_fd(self) -> int:
        """The spool folder, opened once: an open per flush costs two syscalls and, for
        anyone watching the folder above, two file events."""
        with self._root_lock:
            if self._root is None:
                self._root = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            return self._root

    def _retire(self, path: str) -> None:
        """Drop a finished running file: kept in tmp/ as a spare to rewrite, or deleted."""
        if len(self._spares) >= MAX_SPARES:
            os.unlink(path)
            return
        spare = self._tmp_name()
        os.rename(path, spare)
        self._spares.append(spare)

    def clean_tmp(self) -> None:
        """Remove what earlier lives of this node left in tmp/ (spares, interrupted writes)."""
        mine = f"{self.node}+"
        for name in self.names("tmp"):
            if name.startswith(mine) and not name.startswith(self.owner):
                _unlink_quiet(self._p["tmp"] + name)

    def cancel(self, stem: str, data: bytes) -> bool:
        """Take a pending job from the workers (by claiming it) and fail it with data."""
        running = self.claim(stem)
        if running is None:
            return False
        self.finish(running, stem, "failed", data)
        return True

    def unclaim(self, running: str, stem: str) -> bool:
        """running → pending unchanged (a job claimed before its time)."""
        moved = self._move("running", running, "pending", stem + ".json")
        self.let_go(running)
        return moved

    def has_record(self, stem: str) -> bool:
        """Whether a job already has a final record or a queued retry (crash dedup)."""
        name = stem + ".json"
        return any(os.path.exists(self.dirs[f] / name) for f in ("completed", "failed", "pending"))

    def job_folder(self, stem: str) -> str | None:
        """Which folder holds the job `stem` now: pending, running, completed or failed;
        None if it is in none (never written, cancelled by hand, or pruned).

        Looked at in the order a job moves, twice, so a job moving while we look is
        still found; running/ is listed (it holds at most the workers' jobs).
        """
        name = stem + ".json"
        for _ in range(2):
            if os.path.exists(self.dirs["pending"] / name):
                return "pending"
            if any(n.startswith(stem + "@") for n in self.names("running")):
                return "running"
            for folder in ("completed", "failed"):
                if os.path.exists(self.dirs[folder] / name):
                    return folder
        return None

    def stale_running(self, now: float, lease: float, own_node_too: bool) -> list[str]:
        """Running files whose holder stopped: any of our node's earlier lives (at start),
        and any whose holder's lease file is missing or older than `lease` seconds."""
        stale = []
        alive: dict[str, bool] = {}
        for name in self.names("running"):
            parsed = running_stem(name)
            if parsed is None or parsed[1] == self.owner:
                continue
            holder = parsed[1]
            if own_node_too and holder.rsplit("+", 1)[0] == self.node:
                stale.append(name)
                continue
            if holder not in alive:
                renewed = self.mtime("running", f".lease-{holder}")
                alive[holder] = renewed is not None and now - renewed <= lease
            if not alive[holder]:
                stale.append(name)
        return stale

    def drop_dead_leases(self, now: float, age: float) -> None:
        """Remove lease files of daemons that stopped without a clean stop (kill -9) once
        they are `age` seconds old; their running files were recovered by then."""
        for name in self.names("running"):
            if name.startswith(".lease-") and name != self.lease_name:
                renewed = self.mtime("running", name)
                if renewed is not None and now - renewed > age:
                    _unlink_quiet(self._p["running"] + name)

    def drop_running(self, running: str) -> None:
        (self.dirs["running"] / running).unlink(missing_ok=True)
        self.let_go(running)

    # ----- records ----------------------------------------------------------------------------

    def remove(self, folder: str, name: str) -> bool:
        """Delete a record, or a rejected file whatever its kind (a folder goes whole)."""
        path = self.dirs[folder] / name
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except IsADirectoryError:
            shutil.rmtree(path, ignore_errors=True)
        return True

    def mtime(self, folder: str, name: str) -> float | None:
        try:
            return os.lstat(self._p[folder] + name).st_mtime
        except FileNotFoundError:
            return None

    def restore_rejected(self, name: str) -> str | None:
        """failed/<rejected file> → incoming/ to be judged again; its .error.json goes."""
        for candidate in _unique_names(name):
            if os.path.lexists(self.dirs["incoming"] / candidate):
                continue
            if not self._move("failed", name, "incoming", candidate):
                return None
            self.remove("failed", name + ERROR_SUFFIX)
            return candidate
        return None


def _find_syncfs() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _find_syncfs()


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
                        _fsync_path(self.path)
                    finally:
                        self._cond.acquire()
                finally:
                    self._busy = False
                    self._cond.notify_all()
                self._done = round_


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quiet(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


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


def _unique_names(name: str) -> Iterator[str]:
    """name, then name.1.json, name.2.json, ...: '.json' kept at the end."""
    yield name
    base = name[:-5] if name.endswith(".json") else name
    for n in itertools.count(1):
        yield f"{base}.{n}.json"


def _dump(value: dict) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1).encode() + b"\n"
