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

import contextlib
import ctypes
import errno
import fcntl
import functools
import itertools
import logging
import os
import shutil
import stat
import struct
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from spoold import rejects, strictjson
from spoold.errors import InvalidJob, Rejected, SpoolUnusable
from spoold.names import ERROR_SUFFIX, is_job_name, running_stem
from spoold.storage import StorageHealth, errno_name

logger = logging.getLogger(__name__)

FOLDERS = ("incoming", "pending", "running", "completed", "failed", "tmp")
# Made when first needed (spool.ensure_extra), not by ensure(): schedule/ by the scheduler,
# cancel/ by the first request to cancel a running job.
EXTRA_FOLDERS = ("schedule", "cancel")
GONE = (errno.ENOENT, errno.ESTALE)  # a file another daemon or host took from under us
PROBE = b"spoold write test\n" * 64  # about as large as a job's record
RESERVE_BYTES = 16384  # space held in tmp/ for the status file on a full disk (see rewrite)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)  # a file system without flock
STARTED = 0  # a running file's mtime once its attempt has started (1970-01-01, see mark_started)


@dataclass(frozen=True)
class Incoming:
    """A file read from incoming/: its bytes and when it last changed."""

    raw: bytes
    mtime: float


class Record(NamedTuple):
    """A job's file to make durable at folder/<stem>.json (its final record, its retry,
    or a new job), and the running file it replaces, if any. With `exclusive`, the name
    must be free (a scheduled run's name decides who fires it): FileExistsError if not."""

    folder: str
    stem: str
    data: bytes
    running: str | None = None
    exclusive: bool = False


class Spool:
    """The spool folder and its verbs. Thread-safe; a lost race returns None."""

    def __init__(
        self, root: Path, node: str | None = None, durable: bool = True, owner: str | None = None
    ) -> None:
        """`owner`: a helper process works for its daemon, under the daemon's name."""
        self.root = Path(root)
        self.node = node or "local"
        self.shared = node is not None  # several daemons may share this spool
        self.owner = owner or f"{self.node}+{uuid.uuid4().hex[:8]}"
        self.durable = durable
        names = FOLDERS + EXTRA_FOLDERS
        self.dirs = {"": self.root} | {name: self.root / name for name in names}
        # Plain string prefixes for the per-job moves: pathlib costs more than the syscall.
        self._p = {key: f"{path}{os.sep}" for key, path in self.dirs.items()}
        self.lease_name = f".lease-{self.owner}"
        # tmp/<owner>.<pid>.<n>.tmp and .reserve: whose they are, for clean_dead_tmp
        self._tmp_prefix = f"{self._p['tmp']}{self.owner}.{os.getpid()}."
        self._reserve = f"{self._tmp_prefix}reserve"
        self._lease_data = b""  # what the lease file says (see start_lease)
        self._tmp_counter = itertools.count()
        self._clock_lock = threading.Lock()
        self._last_ns = 0
        self._held: set[str] = set()  # running names a worker of this daemon holds
        self._held_lock = threading.Lock()
        self._dir_syncs = {key: GroupSync(path) for key, path in self._p.items()}
        self._node_lock: int | None = None  # fd of running/.node-<node>.lock, held for life
        # Taken around each job's bookkeeping (accept, claim, record) by intake, workers and
        # committer: a performance device, not a correctness one. Under the GIL those threads
        # cannot do that work in parallel anyway; letting them try hands the GIL over at
        # every syscall, which cost more than the work itself (bench/README.md has the figures).
        # Never held across a job's run or the committer's flushes (only a rejected file's
        # explanation, which is rare, is written and flushed inside it).
        self.turn = threading.Lock()
        self._root: int | None = None  # fd of the spool folder, for syncfs
        self._root_lock = threading.Lock()
        self.health = StorageHealth()  # whether writes succeed now (storage.py)

    # ----- set-up -------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create missing folders and prove the spool is writable, or raise SpoolUnusable."""
        for folder in ("", *FOLDERS):
            self._make(self.dirs[folder])
        try:
            self.probe()
        except OSError as e:
            raise SpoolUnusable(f"{self.dirs['tmp']} is not writable: {e.strerror}") from e

    def probe(self) -> None:
        """Write a small file in tmp/ (flushed when durable) and drop it: OSError if the
        spool takes no writes now."""
        name = f".probe-{self.owner}"
        try:
            self.write("tmp", name, PROBE)
        finally:
            _unlink_quiet(self._p["tmp"] + name)

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
        return f"{self._tmp_prefix}{next(self._tmp_counter)}.tmp"

    def _write_tmp(self, data: bytes, sync: bool | None = None) -> str:
        """Write data to a new file in tmp/ (fdatasynced when durable, unless sync=False).

        Always a file spoold creates: a finished job's file is never rewritten, since
        its inode may be a producer's (a hard link they kept, an fd they hold)."""
        tmp = self._tmp_name()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
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

    def hold_space(self) -> None:
        """Keep tmp/<owner>.reserve, RESERVE_BYTES of blanks, for rewrite() to use when the
        disk is full; OSError if it cannot be made."""
        fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            _pwrite_all(fd, b" " * RESERVE_BYTES)
        finally:
            os.close(fd)

    def rewrite(self, folder: str, name: str, data: bytes) -> None:
        """write(), and on a full disk into the space held by hold_space(): the status file
        must still say that the disk is full. The held file is filled with data and blanks
        (still the same JSON) and swapped with folder/name in one rename (RENAME_EXCHANGE),
        so the old file becomes the space held for next time."""
        try:
            self.write(folder, name, data)
        except OSError as e:
            if e.errno not in NO_SPACE or not self._write_held(data):
                raise
            _exchange(self._reserve, self._p[folder] + name)
            self._sync_dir(folder)

    def _write_held(self, data: bytes) -> bool:
        """Overwrite the held file with data and blanks within the space it has; False if
        there is none, or too little."""
        try:
            fd = os.open(self._reserve, os.O_WRONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return False
        try:
            st = os.fstat(fd)
            room = max(st.st_size, st.st_blocks * 512)
            if len(data) > room:
                return False
            _pwrite_all(fd, data + b" " * (room - len(data)))
            if self.durable:
                os.fdatasync(fd)
        finally:
            os.close(fd)
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
        """The bytes of incoming/name; Rejected if it must not be read; None if it is gone,
        whenever it went (another daemon or host may take it between any two calls)."""
        try:
            return _read_regular(self._p["incoming"] + name, max_bytes)
        except OSError as e:
            if e.errno not in GONE:
                raise
            logger.debug("incoming/%s went while it was read (%s)", name, e.strerror)
            return None

    def accept(self, name: str, stem: str) -> bool:
        """incoming/name → pending/stem.json, the producer's bytes unchanged. True if the
        file is there now, also when this move was made before (by a helper that stopped
        before it could say so): the stem is this daemon's alone."""
        if self._move("incoming", name, "pending", stem + ".json"):
            return True
        return os.path.exists(self._p["pending"] + stem + ".json")

    def reject(self, name: str, reason: str, folder: str = "incoming") -> str | None:
        """Move a bad file to failed/, unread, beside <its name there>.error.json saying why.

        The explanation is written first and the file moved only once it exists, so no
        file is ever in failed/ unexplained: an OSError (a full disk) leaves the file where
        it was, to be judged again. The name in failed/ is the file's own, made unique if
        taken, or a safe one where the own name cannot be kept (see rejects). Returns the
        name in failed/, or None if the file is gone."""
        if folder == "running":
            self.let_go(name)
        explanation = rejects.explanation(name, reason, self.node, time.time())
        for candidate in rejects.failed_names(name):
            target = self._p["failed"] + candidate
            if os.path.lexists(target):
                continue
            if not self.write("failed", candidate + ERROR_SUFFIX, explanation, exclusive=True):
                continue  # another daemon is rejecting a file of this name right now
            try:
                if self._move(folder, name, "failed", candidate):
                    return candidate
            except OSError:
                _unlink_quiet(target + ERROR_SUFFIX)
                raise
            _unlink_quiet(target + ERROR_SUFFIX)
            return None
        return None

    # ----- pending and running ---------------------------------------------------------------

    def enqueue(self, stem: str, data: bytes, exclusive: bool = False) -> bool:
        """Write a new pending job now (tools, tests); False if exclusive and taken."""
        try:
            self.commit_one(Record("pending", stem, data, exclusive=exclusive))
        except FileExistsError:
            return False
        return True

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
        try:
            moved = self._move("pending", stem + ".json", "running", name)
        except OSError:  # a read-only spool, say: the name is free to try again
            self.let_go(name)
            raise
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
                f"another spoold (pid {holder}) already serves {self.root} as node"
                f" {self.node!r}: stop it, or give each daemon its own --node"
            ) from None
        except OSError as e:
            os.close(fd)
            if e.errno not in NO_LOCKS:
                raise SpoolUnusable(_lock_failed(path, e)) from None
            logger.warning("cannot lock %s (%s): run one daemon per node name", path, e)
            return
        self._node_lock = fd

    def start_lease(self, info: dict[str, object]) -> float:
        """Create running/.lease-<owner> holding `info` (who we are, for the others to
        read) and `started`, the file server's time now; returns that time."""
        started = self.renew_lease()
        self._lease_data = strictjson.dumps({**info, "started": started})
        self.write("running", self.lease_name, self._lease_data)
        return started

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
        """What an owner's lease file says about it (see start_lease); {} if it says
        nothing readable (gone, or created and not yet written)."""
        raw = self.read("running", f".lease-{owner}")
        try:
            info = strictjson.loads(raw) if raw else {}
        except InvalidJob:
            return {}
        return info if isinstance(info, dict) else {}

    def end_lease(self) -> None:
        """A clean stop: our running files are all settled, the lease goes."""
        _unlink_quiet(self._p["running"] + self.lease_name)
        _unlink_quiet(self._reserve)
        self.close()

    def close(self) -> None:
        """Close the spool folder (kept open for flush): we are done writing."""
        with self._root_lock:
            root, self._root = self._root, None
        if root is not None:
            os.close(root)

    def finish(self, running: str, stem: str, folder: str, data: bytes) -> None:
        """Write the final record (completed/ or failed/) or the retry (pending/), then drop
        the running file, now (recovery, cancel); OSError if it could not be written."""
        self.commit_one(Record(folder, stem, data, running))

    def commit_one(self, record: Record) -> None:
        """commit() of one record, its error raised."""
        error = self.commit([record], self.durable)[0]
        if error is not None:
            raise error

    def retire_running(self, running: str) -> None:
        """Drop a running file whose outcome is written (see commit)."""
        try:
            os.unlink(self._p["running"] + running)
        except FileNotFoundError:
            logger.warning("running/%s was already gone when the job finished", running)
        self.let_go(running)

    # ----- the one way a job's file is written --------------------------------------------

    def commit(self, records: list[Record], flush: bool) -> list[OSError | None]:
        """Write each record in tmp/, flush the file system once (with `flush`), rename
        them into place, flush once more, and only then drop the running files they
        replace; each record's error (None: done). A crash at any point leaves every
        job in running/ or at its new place (recover() drops the running file of a job
        whose record is there), so nothing is lost or recorded twice.

        Every job file spoold writes goes through here, in the daemon (commit.py) or in
        a helper process (helper.py). After an error the batch is done again record by
        record, so one bad record fails alone; a record that fails keeps its running file.
        """
        try:
            results = self._commit_batch(records, flush)
        except OSError as e:
            if len(records) == 1:
                return [e]
            logger.debug("cannot commit %d job file(s) together (%s): one by one",
                         len(records), e)  # fmt: skip
            return [self.commit([record], flush)[0] for record in records]
        with self.turn:
            for record, error in zip(records, results, strict=True):
                if error is None and record.running is not None:
                    self.retire_running(record.running)
        return results

    def _commit_batch(self, records: list[Record], flush: bool) -> list[OSError | None]:
        """commit()'s writes and renames; OSError (nothing placed for sure) if one fails."""
        staged: list[str] = []
        try:
            with self.turn:
                # Where flush() cannot reach the data (FUSE), each file is synced itself.
                sync = flush and not self.flush_reaches
                staged.extend(self._write_tmp(record.data, sync=sync) for record in records)
            if flush:
                self.flush()
            with self.turn:
                results = [self._place(tmp, r) for tmp, r in zip(staged, records, strict=True)]
            if flush:
                self.flush()
                self.sync_names({record.folder for record in records})
        except OSError:
            for tmp in staged:  # those placed are gone from tmp/ already
                _unlink_quiet(tmp)
            raise
        return results

    def _place(self, tmp: str, record: Record) -> OSError | None:
        """Rename a written file to its place; FileExistsError for a taken exclusive name."""
        target = f"{self._p[record.folder]}{record.stem}.json"
        if not record.exclusive:
            os.replace(tmp, target)
            return None
        try:
            os.link(tmp, target)
        except FileExistsError as e:
            return e
        finally:
            _unlink_quiet(tmp)
        return None

    @functools.cached_property
    def flush_reaches(self) -> bool:
        """Whether flush() makes the spool durable. Not on FUSE: the kernel passes syncfs
        and sync on to no FUSE server but virtiofs, so a FUSE file system never hears
        of them; there each staged file (see stage) and each folder whose names changed
        (see sync_names) is synced on its own."""
        return not _on_fuse(self.root)

    def sync_names(self, folders: Collection[str]) -> None:
        """After a flush: fsync the folders whose names changed, where flush() does not
        reach the file system (see flush_reaches); elsewhere the flush did that."""
        if not self.flush_reaches:
            for folder in folders:
                self._sync_dir(folder, sync=True)

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

    def clean_tmp(self) -> None:
        """Remove what earlier lives of this node left in tmp/ (interrupted writes)."""
        mine = f"{self.node}+"
        for name in self.names("tmp"):
            if name.startswith(mine) and not name.startswith(self.owner):
                _unlink_quiet(self._p["tmp"] + name)

    def clean_dead_tmp(self, now: float, lease: float) -> list[str]:
        """Remove files in tmp/ whose writer provably stopped: on this node, a process that
        is gone (a helper killed mid-write, say); on another, a daemon whose lease file is
        missing or older than `lease` seconds. Returns the names removed."""
        removed = []
        leases: dict[str, bool] = {}
        for name in self.names("tmp"):
            writer = tmp_writer(name)
            if writer is None:
                continue
            owner, pid = writer
            if owner.rsplit("+", 1)[0] == self.node:
                dead = not _process_alive(pid)
            else:
                if owner not in leases:
                    renewed = self.mtime("running", f".lease-{owner}")
                    leases[owner] = renewed is not None and now - renewed <= lease
                dead = not leases[owner]
            if dead:
                _unlink_quiet(self._p["tmp"] + name)
                removed.append(name)
        return removed

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

    # ----- requests to cancel a running job ---------------------------------------------------

    def request_cancel(self, job_id: str) -> None:
        """Ask whichever daemon runs job_id to stop it: an empty file cancel/<id> (so the
        request reaches the daemon holding the job, whether or not it serves HTTP)."""
        self.ensure_extra("cancel")
        (self.dirs["cancel"] / job_id).touch()

    def cancel_requests(self) -> list[str]:
        """The ids of the running jobs someone asked to stop (read twice a second while
        jobs run: the folder is empty but for a moment after each request)."""
        return self.names("cancel")

    def drop_cancel_request(self, job_id: str) -> None:
        """The request is answered (the job's outcome is recorded) or has nothing to stop."""
        _unlink_quiet(self._p["cancel"] + job_id)

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
        """failed/<rejected file> → incoming/ under the name it had there (or its name in
        failed/, made unique if taken) to be judged again; its .error.json goes."""
        original = rejects.original_name(self.read("failed", name + ERROR_SUFFIX))
        for candidate in rejects.restored_names(name, original):
            if os.path.lexists(self._p["incoming"] + candidate):
                continue
            if not self._move("failed", name, "incoming", candidate):
                return None
            self.remove("failed", name + ERROR_SUFFIX)
            return candidate
        return None


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


def _find_syncfs() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _find_syncfs()
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


def _exchange(a: str, b: str) -> None:
    """Swap two names in one step (renameat2 RENAME_EXCHANGE, Linux); OSError if the file
    system or the C library cannot."""
    if _renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not in this C library", b)
    if _renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), b)


def _pwrite_all(fd: int, data: bytes) -> None:
    """data at the start of the file, whatever pwrite() takes per call."""
    view, offset = memoryview(data), 0
    while offset < len(data):
        offset += os.pwrite(fd, view[offset:], offset)


FUSE_SUPER_MAGIC = 0x65735546


def _on_fuse(path: Path) -> bool:
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


def _read_regular(path: str, max_bytes: int) -> Incoming:
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
