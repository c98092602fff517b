"""A FUSE pass-through file system that can lose what was never made durable (test tooling).

In the spirit of LazyFS (Jepsen's power-loss file system): it mirrors a backing
folder, and on SIGUSR1 ("power loss") rewrites that folder to hold only what
was made durable by fsync, as if the machine had lost power. Unlike LazyFS,
which caches file data only and passes renames and unlinks straight through,
this layer also loses *names*, since spoold's promise rests on both.

The model (what survives a power loss), chosen to be the strictest that the
usual Linux file systems still honour:

- File data: a file's content survives as of its last fsync/fdatasync (or as it
  was at mount); writes and truncations since then are lost. A name that
  survives for a file never synced holds an empty file (a "half-written" file).
- Names: create, mkdir, symlink, link, rename, unlink and rmdir are kept in a
  log, in order, each one atomic (a rename is never half done). fsync of a
  folder makes durable every logged operation up to the last one that touched
  that folder: a prefix of the log, as a journaling file system commits its
  journal in order. An fsync of a *file* makes no name durable (POSIX asks for
  the folder's fsync; ext4 and xfs do more, by committing their journal).
  Stricter still would be each folder durable only as of its own fsync, with
  no order between folders; tried by hand, that also loses spoold's claims
  (pending/ to running/, never fsynced) and the folders it creates at start,
  which no journaling Linux file system loses, so it is not modelled.
- syncfs(2) and sync(2) never reach a FUSE server (the kernel forwards them
  only to virtiofs), so they make nothing durable here: on a FUSE mount they
  do not make anything durable on the server's side either.
- Times, modes and owners are not modelled: after a power loss every file has
  the time of the rebuild.

Run: `python lazyfs.py BACKING MOUNTPOINT` (root, or a user allowed to mount
FUSE). It prints "ready" once mounted. SIGUSR1: drop everything not durable,
rewrite BACKING to the durable state, print one JSON line saying what was
dropped, and answer EIO to everything from then on (a dead disk) until it is
unmounted (`fusermount3 -u MOUNTPOINT`), after which it exits. Mount it again
to "power on". SIGUSR2 dumps its threads' stacks to stderr.
"""

from __future__ import annotations

import errno
import faulthandler
import itertools
import json
import os
import shutil
import signal
import stat
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import mfusepy

Op = tuple[Any, ...]  # (kind, touched folder ids, arguments...)


@dataclass
class Durable:
    """What a power loss leaves: folders' entries, file contents, symlink targets."""

    entries: dict[int, dict[str, int]] = field(default_factory=dict)  # folder id → name → id
    kinds: dict[int, str] = field(default_factory=dict)  # id → "dir" | "file" | "link"
    data: dict[int, bytes] = field(default_factory=dict)  # file id → content; link → target

    def apply(self, op: Op) -> None:
        """Make one logged name operation durable."""
        kind, _, *args = op
        if kind in ("create", "mkdir", "symlink", "link"):
            parent, name, ident = args[:3]
            self.entries.setdefault(parent, {})[name] = ident
            if kind == "mkdir":
                self.entries.setdefault(ident, {})
            if kind == "symlink":
                self.data[ident] = args[3]
        elif kind in ("unlink", "rmdir"):
            parent, name = args
            self.entries.get(parent, {}).pop(name, None)
        elif kind == "rename":
            src, src_name, dst, dst_name, ident = args
            self.entries.get(src, {}).pop(src_name, None)
            self.entries.setdefault(dst, {})[dst_name] = ident

    def materialize(self, ident: int, path: str, made: dict[int, str]) -> None:
        """Write folder `ident`'s durable tree into the existing folder `path`."""
        for name, child in sorted(self.entries.get(ident, {}).items()):
            target = os.path.join(path, name)
            kind = self.kinds.get(child, "file")
            if kind == "dir":
                os.mkdir(target)
                self.materialize(child, target, made)
            elif kind == "link":
                os.symlink(os.fsdecode(self.data.get(child, b"")), target)
            elif child in made:
                os.link(made[child], target)
            else:
                with open(target, "wb") as file:
                    file.write(self.data.get(child, b""))
                made[child] = target


class LazyFS(mfusepy.Operations):  # type: ignore[misc]
    """Every operation is done on the backing folder at once (so reads see it); what
    fsync has not made durable is remembered, to be undone at a power loss."""

    use_ns = True

    def __init__(self, backing: str) -> None:
        self.backing = os.path.realpath(backing)
        self._mutex = threading.Lock()
        self.frozen = False
        self._ids = itertools.count(1)
        self.ino_to_id: dict[int, int] = {}
        self.fh_id: dict[int, int] = {}  # open file handle → file id
        self.log: list[Op] = []
        self.dirty: set[int] = set()  # files written since their last fsync
        self.durable = Durable()
        self.root = self._snapshot(self.backing)

    # ----- the durable model ----------------------------------------------------------------

    def _new_id(self, path: str) -> int:
        ident = next(self._ids)
        self.ino_to_id[os.lstat(path).st_ino] = ident
        return ident

    def _snapshot(self, path: str) -> int:
        """Take the backing folder as it is at mount as durable; returns its id."""
        ident = self._new_id(path)
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            self.durable.kinds[ident] = "dir"
            self.durable.entries[ident] = {
                name: self._known(os.path.join(path, name)) for name in os.listdir(path)
            }
        elif stat.S_ISLNK(st.st_mode):
            self.durable.kinds[ident] = "link"
            self.durable.data[ident] = os.fsencode(os.readlink(path))
        else:
            self.durable.kinds[ident] = "file"
            with open(path, "rb") as file:
                self.durable.data[ident] = file.read()
        return ident

    def _known(self, path: str) -> int:
        """The id of a path already seen (a hard link), or a snapshot of a new one."""
        known = self.ino_to_id.get(os.lstat(path).st_ino)
        return known if known is not None else self._snapshot(path)

    def _id(self, path: str) -> int:
        ident = self.ino_to_id.get(os.lstat(path).st_ino)
        if ident is None:
            raise mfusepy.FuseOSError(errno.EIO)
        return ident

    def _parent(self, path: str) -> tuple[int, str]:
        head, name = os.path.split(path)
        return self._id(head), name

    def _log(self, kind: str, touched: tuple[int, ...], *args: Any) -> None:
        self.log.append((kind, touched, *args))

    def _commit_through(self, folder: int) -> None:
        """fsync of a folder: every logged operation up to the last one touching it."""
        last = max((i for i, op in enumerate(self.log) if folder in op[1]), default=-1)
        for op in self.log[: last + 1]:
            self.durable.apply(op)
        del self.log[: last + 1]

    def power_loss(self) -> dict[str, Any]:
        """Drop what is not durable: rewrite the backing folder to the durable state."""
        with self._mutex:
            self.frozen = True
            report = {
                "droppedOps": len(self.log),
                "droppedByKind": dict(Counter(op[0] for op in self.log)),
                "filesWithUnsyncedData": len(self.dirty),
            }
            for fh in list(self.fh_id):
                os.close(fh)
            self.fh_id.clear()
            for name in os.listdir(self.backing):
                path = os.path.join(self.backing, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            self.durable.materialize(self.root, self.backing, {})
            return report

    # ----- helpers for the operations ------------------------------------------------------

    def _full(self, path: str) -> str:
        if self.frozen:
            raise mfusepy.FuseOSError(errno.EIO)
        return self.backing + path

    @staticmethod
    def _attrs(st: os.stat_result) -> dict[str, int]:
        keys = ("st_mode", "st_ino", "st_nlink", "st_uid", "st_gid", "st_size")
        attrs = {key: getattr(st, key) for key in keys}
        attrs |= {"st_atime": st.st_atime_ns, "st_mtime": st.st_mtime_ns}
        return attrs | {"st_ctime": st.st_ctime_ns}

    # ----- reads: straight through ---------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        full = self._full(path)
        return self._attrs(os.fstat(fh) if fh is not None else os.lstat(full))

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._full(path))]

    def readlink(self, path: str) -> str:
        return os.readlink(self._full(path))

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        self._full(path)
        return os.pread(fh, size, offset)

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._full(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files")
        return {key: getattr(st, key) for key in (*keys, "f_flag", "f_frsize", "f_namemax")}

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._full(path), amode):
            raise mfusepy.FuseOSError(errno.EACCES)
        return 0

    # ----- file data: done now, durable at the file's fsync ---------------------------------

    def open(self, path: str, flags: int) -> int:
        with self._mutex:
            return self._open_locked(self._full(path), flags)

    def _open_locked(self, full: str, flags: int) -> int:
        fh = os.open(full, flags & ~(os.O_CREAT | os.O_EXCL))
        self.fh_id[fh] = self._id(full)
        if flags & os.O_TRUNC:
            self.dirty.add(self.fh_id[fh])
        return fh

    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        with self._mutex:
            full = self._full(path)
            try:
                fh = os.open(full, flags | os.O_CREAT | os.O_EXCL, mode)
            except FileExistsError:
                if flags & os.O_EXCL:
                    raise
                return self._open_locked(full, flags)
            parent, name = self._parent(full)
            ident = self._new_id(full)
            self.durable.kinds[ident] = "file"
            self._log("create", (parent,), parent, name, ident)
            self.fh_id[fh] = ident
            return fh

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self._mutex:
            self._full(path)
            self.dirty.add(self.fh_id[fh])
            return os.pwrite(fh, data, offset)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        with self._mutex:
            full = self._full(path)
            if fh is None:
                os.truncate(full, length)
                self.dirty.add(self._id(full))
            else:
                os.ftruncate(fh, length)
                self.dirty.add(self.fh_id[fh])
            return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self._mutex:
            self._full(path)
            ident = self.fh_id[fh]
            self.durable.data[ident] = _content(fh)
            self.dirty.discard(ident)
            return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def release(self, path: str, fh: int) -> int:
        with self._mutex:
            if self.fh_id.pop(fh, None) is not None:
                os.close(fh)
            return 0

    # ----- names: done now, durable at the folder's fsync -----------------------------------

    def opendir(self, path: str) -> int:
        self._full(path)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        with self._mutex:
            self._commit_through(self._id(self._full(path)))
            return 0

    def mkdir(self, path: str, mode: int) -> int:
        with self._mutex:
            full = self._full(path)
            os.mkdir(full, mode)
            parent, name = self._parent(full)
            ident = self._new_id(full)
            self.durable.kinds[ident] = "dir"
            self._log("mkdir", (parent,), parent, name, ident)
            return 0

    def symlink(self, target: str, source: str) -> int:
        with self._mutex:
            full = self._full(target)
            os.symlink(source, full)
            parent, name = self._parent(full)
            ident = self._new_id(full)
            self.durable.kinds[ident] = "link"
            self._log("symlink", (parent,), parent, name, ident, os.fsencode(source))
            return 0

    def link(self, target: str, source: str) -> int:
        with self._mutex:
            full = self._full(target)
            os.link(self._full(source), full)
            parent, name = self._parent(full)
            self._log("link", (parent,), parent, name, self._id(full))
            return 0

    def unlink(self, path: str) -> int:
        with self._mutex:
            full = self._full(path)
            parent, name = self._parent(full)
            os.unlink(full)
            self._log("unlink", (parent,), parent, name)
            return 0

    def rmdir(self, path: str) -> int:
        with self._mutex:
            full = self._full(path)
            parent, name = self._parent(full)
            os.rmdir(full)
            self._log("rmdir", (parent,), parent, name)
            return 0

    def rename(self, old: str, new: str) -> int:
        with self._mutex:
            src, dst = self._full(old), self._full(new)
            (src_dir, src_name), (dst_dir, dst_name) = self._parent(src), self._parent(dst)
            ident = self._id(src)
            os.rename(src, dst)
            self._log("rename", (src_dir, dst_dir), src_dir, src_name, dst_dir, dst_name, ident)
            return 0

    # ----- attributes: not modelled (see the module's docstring) ----------------------------

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._full(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._full(path), uid, gid, follow_symlinks=False)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        os.utime(self._full(path), ns=times, follow_symlinks=False)
        return 0


def _content(fh: int) -> bytes:
    """The whole content of an open file, also when it was opened write-only."""
    with open(f"/proc/self/fd/{fh}", "rb") as file:
        return file.read()


def serve(backing: str, mountpoint: str) -> None:
    """Mount until unmounted; SIGUSR1 is the power loss (handled in its own thread)."""
    fs = LazyFS(backing)
    faulthandler.register(signal.SIGUSR2, all_threads=True)  # where is it stuck?
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # FUSE's threads inherit it

    def on_power_loss() -> None:
        signal.sigwait({signal.SIGUSR1})
        print(json.dumps(fs.power_loss()), flush=True)

    threading.Thread(target=on_power_loss, daemon=True).start()

    def ready() -> None:
        """Say "ready" once the mount answers (the FUSE loop below blocks)."""
        while not os.path.ismount(mountpoint):
            threading.Event().wait(0.01)
        print("ready", flush=True)

    threading.Thread(target=ready, daemon=True).start()
    mfusepy.FUSE(fs, mountpoint, foreground=True, fsname="lazyfs")


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
