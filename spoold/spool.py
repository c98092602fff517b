"""The spool's folders and the verbs that move jobs through them.

The names it gives files are spelled in names.py, the durable-write and safe-read
primitives it uses are in fileio.py, and which daemon holds what (leases, the node
lock) is ownership.py's, reached as spool.ownership.

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

import ctypes
import errno
import functools
import itertools
import logging
import os
import stat
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from spoold import rejects, strictjson
from spoold.errors import Rejected, SpoolUnusable
from spoold.fileio import (
    GONE,
    GroupSync,
    Incoming,
    alone,
    exchange,
    on_fuse,
    pwrite_all,
    read_file,
    read_regular,
    syncfs,
    unlink_quiet,
)
from spoold.names import ERROR_SUFFIX, ID_RE, is_job_name
from spoold.ownership import Ownership
from spoold.storage import StorageHealth, advice, errno_name

logger = logging.getLogger(__name__)

FOLDERS = ("incoming", "pending", "running", "completed", "failed", "tmp")
# Made when first needed (spool.ensure_extra), not by ensure(): schedule/ by the scheduler,
# cancel/ by the first request to cancel a running job.
EXTRA_FOLDERS = ("schedule", "cancel")
PROBE = b"spoold write test\n" * 64  # about as large as a job's record
RESERVE_BYTES = 16384  # space held in tmp/ for the status file on a full disk (see rewrite)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
STARTED = 0  # a running file's mtime once its attempt has started (1970-01-01, see mark_started)
MAX_SPARES = 512  # as many as the committer's biggest batch, so a batch reuses files


class Record(NamedTuple):
    """A job's file to make durable at folder/<stem>.json (its final record, its retry,
    or a new job), and the running file it replaces, if any. With `exclusive`, the name
    must be free (a scheduled run's name decides who fires it): FileExistsError if not."""

    folder: str
    stem: str
    data: bytes
    running: str | None = None
    exclusive: bool = False


def with_follow_ups(record: Record, follow: Sequence[Record]) -> list[Record]:
    """A job's record, then the pending files of its follow-ups (followups.py), to commit
    together: the record's running file goes with the last of them, so it is dropped only
    once all are in place, and a crash in between leaves it for recovery to find."""
    if not follow:
        return [record]
    last = follow[-1]._replace(running=record.running)
    return [record._replace(running=None), *follow[:-1], last]


class Spool:
    """The spool folder and its verbs. Thread-safe; a lost race returns None."""

    def __init__(
        self, root: Path, node: str | None = None, durable: bool = True, owner: str | None = None
    ) -> None:
        """`owner`: a helper process works for its daemon, under the daemon's name."""
        self.root = Path(root)
        self.node = node or "local"
        self.shared = node is not None  # several daemons may share this spool
        self.owner = owner or f"{self.node}+{os.urandom(4).hex()}"
        self.durable = durable
        names = FOLDERS + EXTRA_FOLDERS
        self.dirs = {"": self.root} | {name: self.root / name for name in names}
        # Plain string prefixes for the per-job moves: pathlib costs more than the syscall.
        self._p = {key: f"{path}{os.sep}" for key, path in self.dirs.items()}
        # tmp/<owner>.<pid>.<n>.tmp and .reserve: whose they are, for clean_dead_tmp
        self._tmp_prefix = f"{self._p['tmp']}{self.owner}.{os.getpid()}."
        self._reserve = f"{self._tmp_prefix}reserve"
        self._tmp_counter = itertools.count()
        self._clock_lock = threading.Lock()
        self._last_ns = 0
        self._held: set[str] = set()  # running names a worker of this daemon holds
        self._held_lock = threading.Lock()
        self._dir_syncs = {key: GroupSync(path) for key, path in self._p.items()}
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
        self.ownership = Ownership(self)  # this daemon's lease and node lock (ownership.py)
        self._spares: list[str] = []  # finished running files no one else can reach (_retire)
        self._extras: set[str] = set()  # the EXTRA_FOLDERS this daemon uses (ensure_extra)

    # ----- set-up -------------------------------------------------------------------------

    def ensure_for_command(self) -> None:
        """ensure() for the commands that work on a spool whether or not a daemon runs
        (submit, retry, cancel, run-task), but never in an empty folder: that is what an
        NFS mount point looks like while its file system is not mounted, and a spool made
        there is one no other host reads, which a daemon stopped there would take for the
        real one. A new spool's folder is missing, or holds something (a .gitkeep)."""
        try:
            empty = not os.listdir(self.root)
        except FileNotFoundError:
            empty = False
        if empty:
            raise SpoolUnusable(f"{self.root.absolute()} is an empty folder, as a mount point is"
                                " while its file system is not mounted: mount it, or start the"
                                " daemon there once (spoold run)")  # fmt: skip
        self.ensure()

    def ensure(self) -> None:
        """Create missing folders and prove the spool is writable, or raise SpoolUnusable."""
        for folder in ("", *FOLDERS):
            self._make(self.dirs[folder])
        try:
            self.probe()
        except OSError as e:
            raise SpoolUnusable(
                f"{self.dirs['tmp'].absolute()} is not writable: {errno_name(e)}"
                f" ({e.strerror}): {advice(e)}, then start again"
            ) from e

    def probe(self) -> None:
        """Write a small file in tmp/ (flushed when durable) and drop it: OSError if the
        spool takes no writes now. Named as our other files there, so that one left by a
        kill is cleaned as they are (clean_dead_tmp)."""
        path = f"{self._tmp_prefix}probe.tmp"
        try:
            self.write("tmp", os.path.basename(path), PROBE)
        finally:
            unlink_quiet(path)

    def ensure_extra(self, folder: str) -> None:
        """Create one of EXTRA_FOLDERS (e.g. schedule/) if missing, else SpoolUnusable."""
        self._make(self.dirs[folder])
        self._extras.add(folder)

    def remake_missing(self) -> list[str]:
        """Make again each of the spool's folders that is gone (removed by hand, or by a
        clean-up of empty folders such as `find -empty -delete`): until then nothing
        could move into it, and files would wait in the folder before it without a word.
        The folders made; OSError where one cannot be (a file in its place). When every
        folder is gone, the spool's file system is likely unmounted (an NFS mount point
        left empty): nothing is made there, where other hosts would never see it."""
        folders = (*FOLDERS, *sorted(self._extras))
        missing = [folder for folder in folders if not os.path.isdir(self.dirs[folder])]
        if set(FOLDERS) <= set(missing):
            raise OSError(errno.ENOENT, "every spool folder is gone: is its file system"
                          " unmounted? Nothing is made there", str(self.root))  # fmt: skip
        for folder in missing:
            path = self.dirs[folder]
            try:
                os.mkdir(path)
            except FileExistsError as e:  # another daemon made it meanwhile, or a file is there
                if not os.path.isdir(path):
                    why = "a file is where this spool folder should be: move it away"
                    raise NotADirectoryError(errno.ENOTDIR, why, str(path)) from e
        return missing

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

    def _open_tmp(self) -> tuple[str, int]:
        """A file in tmp/ to write: a spare (a finished job's file that no one else can
        reach, see _retire) when there is one, since allocating and freeing an inode per
        job costs more than the renames; else a new file."""
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
            unlink_quiet(tmp)
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
                    unlink_quiet(tmp)
            else:
                os.replace(tmp, target)
        except BaseException:
            unlink_quiet(tmp)
            raise
        self._sync_dir(folder, sync)
        return True

    def hold_space(self) -> None:
        """Keep tmp/<owner>.reserve, RESERVE_BYTES of blanks, for rewrite() to use when the
        disk is full; OSError if it cannot be made."""
        fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            pwrite_all(fd, b" " * RESERVE_BYTES)
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
            exchange(self._reserve, self._p[folder] + name)
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
            pwrite_all(fd, data + b" " * (room - len(data)))
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
            return read_regular(self._p["incoming"] + name, max_bytes)
        except OSError as e:
            if e.errno not in GONE:
                raise
            logger.debug("incoming/%s went while it was read (%s)", name, e.strerror)
            return None

    def read_regular(self, folder: str, name: str, max_bytes: int) -> Incoming:
        """A file that must be a regular file of at most max_bytes, never following or
        opening anything else: Rejected saying what it is; FileNotFoundError if gone."""
        return read_regular(self._p[folder] + name, max_bytes)

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
                unlink_quiet(target + ERROR_SUFFIX)
                raise
            unlink_quiet(target + ERROR_SUFFIX)
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
            os.utime(self._p["running"] + running, ns=(STARTED, STARTED), follow_symlinks=False)
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
        """The bytes of a file in the spool, None if it is gone; Rejected (saying what it
        is) for one that is no regular file: never followed or opened (fileio.read_file)."""
        try:
            return read_file(self._p[folder] + name)
        except FileNotFoundError:
            return None

    def read_object(self, folder: str, name: str) -> dict[str, Any] | None:
        """The JSON object in a file spoold wrote (a record, a marker, a lease); None when
        it is gone, no regular file, or not a JSON object: the caller treats it as
        unreadable."""
        try:
            return strictjson.object_or_none(self.read(folder, name))
        except Rejected:
            return None

    def close(self) -> None:
        """We are done writing: delete the spare files and the space held for a full disk
        (hold_space) in tmp/, and close the spool folder (kept open for flush)."""
        unlink_quiet(self._reserve)
        while self._spares:
            unlink_quiet(self._spares.pop())
        with self._root_lock:
            root, self._root = self._root, None
        if root is not None:
            os.close(root)

    def finish(
        self, running: str, stem: str, folder: str, data: bytes, follow: Sequence[Record] = ()
    ) -> None:
        """Write the final record (completed/ or failed/) or the retry (pending/), and its
        follow-ups, then drop the running file, now (recovery, cancel); OSError if it could
        not be written."""
        self.commit_all(with_follow_ups(Record(folder, stem, data, running), follow))

    def commit_all(self, records: list[Record]) -> None:
        """commit() now, durably as configured; the first error raised."""
        for error in self.commit(records, self.durable):
            if error is not None:
                raise error

    def commit_one(self, record: Record) -> None:
        """commit() of one record, its error raised."""
        error = self.commit([record], self.durable)[0]
        if error is not None:
            raise error

    def retire_running(self, running: str) -> None:
        """Drop a running file whose outcome is written (see commit)."""
        try:
            self._retire(self._p["running"] + running)
        except FileNotFoundError:
            logger.warning("running/%s was already gone when the job finished", running)
        self.let_go(running)

    def _retire(self, path: str) -> None:
        """Drop a finished running file: moved to tmp/ and kept there as a spare to write
        a later record into if no one else can reach it (alone), else deleted. spoold
        never writes into a file a producer can still see: one published as a hard link
        keeps its bytes, and so does one whose producer holds it open."""
        spare = self._tmp_name()
        os.rename(path, spare)
        if len(self._spares) < MAX_SPARES and alone(spare):
            self._spares.append(spare)
        else:
            os.unlink(spare)

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
                unlink_quiet(tmp)
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
            unlink_quiet(tmp)
        return None

    @functools.cached_property
    def flush_reaches(self) -> bool:
        """Whether flush() makes the spool durable. Not on FUSE: the kernel passes syncfs
        and sync on to no FUSE server but virtiofs, so a FUSE file system never hears
        of them; there each staged file (see stage) and each folder whose names changed
        (see sync_names) is synced on its own."""
        return not on_fuse(self.root)

    def sync_names(self, folders: Collection[str]) -> None:
        """After a flush: fsync the folders whose names changed, where flush() does not
        reach the file system (see flush_reaches); elsewhere the flush did that."""
        if not self.flush_reaches:
            for folder in folders:
                self._sync_dir(folder, sync=True)

    def flush(self) -> None:
        """Make everything written to the spool's file system durable: one syncfs(2)
        (os.sync() where there is none) instead of a flush per file."""
        if syncfs is None:
            os.sync()
            return
        if syncfs(self._root_fd()) != 0:
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
                unlink_quiet(self._p["tmp"] + name)

    def cancel(self, stem: str, data: bytes) -> bool:
        """Take a pending job from the workers (by claiming it) and fail it with data. If
        its record cannot be written (a read-only failed/, say), the job goes back to
        pending/ as it was: a claim held by a command that has ended would keep it in
        running/ until a daemon recovered it."""
        running = self.claim(stem)
        if running is None:
            return False
        try:
            self.finish(running, stem, "failed", data)
        except OSError:
            self.unclaim(running, stem)
            raise
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

    def drop_running(self, running: str) -> None:
        (self.dirs["running"] / running).unlink(missing_ok=True)
        self.let_go(running)

    # ----- requests to cancel a running job ---------------------------------------------------

    def request_cancel(self, job_id: str) -> None:
        """Ask whichever daemon runs job_id to stop it: an empty file cancel/<id> (so the
        request reaches the daemon holding the job, whether or not it serves HTTP). Put
        there by rename, so a symlink someone left under that name is replaced, never
        followed (opening it to create would make a file wherever it points)."""
        self.ensure_extra("cancel")
        self.write("cancel", job_id, b"")

    def cancel_requests(self) -> list[str]:
        """The ids of the running jobs someone asked to stop (read twice a second while
        jobs run: the folder is empty but for a moment after each request)."""
        return [name for name in self.names("cancel") if ID_RE.match(name)]

    def cancel_request_time(self, job_id: str) -> float | None:
        """When cancel/<id> was written, if it is a request as spoold writes one (an empty
        regular file); else None, so that a name that is no request is never dropped as
        a stale one."""
        try:
            st = os.lstat(self._p["cancel"] + job_id)
        except FileNotFoundError:
            return None
        return st.st_mtime if stat.S_ISREG(st.st_mode) and st.st_size == 0 else None

    def drop_cancel_request(self, job_id: str) -> None:
        """The request is answered (the job's outcome is recorded) or has nothing to stop."""
        unlink_quiet(self._p["cancel"] + job_id)

    # ----- records ----------------------------------------------------------------------------

    def remove(self, folder: str, name: str) -> bool:
        """Delete a record, or a rejected file whatever its kind (a folder goes whole)."""
        path = self.dirs[folder] / name
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except IsADirectoryError:
            import shutil  # here: the helper never removes a folder

            shutil.rmtree(path, ignore_errors=True)
        return True

    def mtime(self, folder: str, name: str) -> float | None:
        """When folder/name last changed; None if there is no such file (a name too long
        for the file system, from a command line, is none either)."""
        try:
            return os.lstat(self._p[folder] + name).st_mtime
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno != errno.ENAMETOOLONG:
                raise
            return None

    def restore_rejected(self, name: str) -> str | None:
        """failed/<rejected file> → incoming/ under the name it had there (or its name in
        failed/, made unique if taken) to be judged again; its .error.json goes."""
        original = rejects.original_name(self.read_object("failed", name + ERROR_SUFFIX))
        for candidate in rejects.restored_names(name, original):
            if os.path.lexists(self._p["incoming"] + candidate):
                continue
            if not self._move("failed", name, "incoming", candidate):
                return None
            self.remove("failed", name + ERROR_SUFFIX)
            return candidate
        return None
