#!/usr/bin/env python3
"""Minimal FUSE filesystem that forwards every call to an NFS server through
libnfs (userspace NFS client, Debian package libnfs13) -- a stand-in for the
kernel NFS client on kernels built without CONFIG_NFS_FS.

Usage: nfsfuse.py SERVER EXPORT MOUNTPOINT [3|4]   (needs: apt libnfs13, pip mfusepy)

Use NFSv3: libnfs 4.0.0 over NFSv4 answers an open or create that follows a
setattr on an open file with NFS4ERR_BAD_SEQID (seen by programs as ERANGE).

Each mount is its own NFS client (own TCP connection, own client id), so two
mounts of the same export behave like two hosts. Runs single-threaded; every
operation is one synchronous NFS RPC round trip (no client-side data cache;
FUSE's kernel attribute/entry cache is turned off with *_timeout=0).
"""

import ctypes as C
import os
import sys
import time

import mfusepy as fuse

lib = C.CDLL("libnfs.so.13")
VP = C.c_void_p


class Stat64(C.Structure):
    _fields_ = [
        (n, C.c_uint64)
        for n in (
            "dev",
            "ino",
            "mode",
            "nlink",
            "uid",
            "gid",
            "rdev",
            "size",
            "blksize",
            "blocks",
            "atime",
            "mtime",
            "ctime",
            "atime_nsec",
            "mtime_nsec",
            "ctime_nsec",
            "used",
        )
    ]


class Dirent(C.Structure):
    pass


Dirent._fields_ = [("next", C.POINTER(Dirent)), ("name", C.c_char_p), ("inode", C.c_uint64)]

lib.nfs_init_context.restype = VP
lib.nfs_get_error.restype = C.c_char_p
lib.nfs_get_error.argtypes = [VP]
lib.nfs_readdir.restype = C.POINTER(Dirent)
lib.nfs_readdir.argtypes = [VP, VP]
lib.nfs_opendir.argtypes = [VP, C.c_char_p, C.POINTER(VP)]
lib.nfs_closedir.argtypes = [VP, VP]
for fn in ("nfs_mount",):
    getattr(lib, fn).argtypes = [VP, C.c_char_p, C.c_char_p]
for fn in ("nfs_stat64", "nfs_lstat64"):
    getattr(lib, fn).argtypes = [VP, C.c_char_p, C.POINTER(Stat64)]
lib.nfs_open.argtypes = [VP, C.c_char_p, C.c_int, C.POINTER(VP)]
lib.nfs_create.argtypes = [VP, C.c_char_p, C.c_int, C.c_int, C.POINTER(VP)]
lib.nfs_close.argtypes = [VP, VP]
lib.nfs_fsync.argtypes = [VP, VP]
lib.nfs_pread.argtypes = [VP, VP, C.c_uint64, C.c_uint64, C.c_void_p]
lib.nfs_pwrite.argtypes = [VP, VP, C.c_uint64, C.c_uint64, C.c_void_p]
lib.nfs_ftruncate.argtypes = [VP, VP, C.c_uint64]
lib.nfs_truncate.argtypes = [VP, C.c_char_p, C.c_uint64]
for fn in ("nfs_rename", "nfs_link"):
    getattr(lib, fn).argtypes = [VP, C.c_char_p, C.c_char_p]
for fn in ("nfs_unlink", "nfs_rmdir", "nfs_mkdir"):
    getattr(lib, fn).argtypes = [VP, C.c_char_p]
lib.nfs_chmod.argtypes = [VP, C.c_char_p, C.c_int]
lib.nfs_set_version.argtypes = [VP, C.c_int]
lib.nfs_set_dircache.argtypes = [VP, C.c_int]


class Timeval(C.Structure):
    _fields_ = [("tv_sec", C.c_long), ("tv_usec", C.c_long)]


lib.nfs_utimes.argtypes = [VP, C.c_char_p, C.POINTER(Timeval)]
# mfusepy hands utimens UTIME_NOW / UTIME_OMIT as tv_sec 0 + those nanoseconds, as floats
UTIME_NOW = ((1 << 30) - 1) / 1e9
UTIME_OMIT = ((1 << 30) - 2) / 1e9


def _is(t, marker):
    # NOW and OMIT differ by 1 ns, so the tolerance must be well under that
    return t is not None and abs(t - marker) < 1e-10


def b(p):
    return p.encode()


class NfsFuse(fuse.Operations):
    def __init__(self, server, export, version):
        self.ctx = lib.nfs_init_context()
        lib.nfs_set_dircache(self.ctx, 0)
        if lib.nfs_set_version(self.ctx, version) != 0:
            sys.exit("set_version failed")
        r = lib.nfs_mount(self.ctx, b(server), b(export))
        if r != 0:
            sys.exit(f"nfs_mount failed: {lib.nfs_get_error(self.ctx)}")
        self.fhs = {}
        self.next_fh = 1

    def _chk(self, r):
        if r < 0:
            raise fuse.FuseOSError(-r)
        return r

    def getattr(self, path, fh=None):
        st = Stat64()
        self._chk(lib.nfs_lstat64(self.ctx, b(path), C.byref(st)))
        return dict(
            st_mode=st.mode,
            st_nlink=st.nlink,
            st_uid=st.uid,
            st_gid=st.gid,
            st_size=st.size,
            st_ino=st.ino,
            st_atime=st.atime,
            st_mtime=st.mtime,
            st_ctime=st.ctime,
        )

    def readdir(self, path, fh):
        d = VP()
        self._chk(lib.nfs_opendir(self.ctx, b(path), C.byref(d)))
        names = []
        try:
            while True:
                e = lib.nfs_readdir(self.ctx, d)
                if not e:
                    break
                names.append(e.contents.name.decode())
        finally:
            lib.nfs_closedir(self.ctx, d)
        return names

    def _store(self, h):
        n = self.next_fh
        self.next_fh += 1
        self.fhs[n] = h
        return n

    def create(self, path, mode, fi=None):
        h = VP()
        self._chk(
            lib.nfs_create(
                self.ctx, b(path), os.O_CREAT | os.O_RDWR | os.O_EXCL, mode & 0o7777, C.byref(h)
            )
        )
        return self._store(h)

    def open(self, path, flags):
        h = VP()
        acc = flags & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
        self._chk(lib.nfs_open(self.ctx, b(path), acc, C.byref(h)))
        return self._store(h)

    def read(self, path, size, offset, fh):
        buf = C.create_string_buffer(size)
        n = self._chk(lib.nfs_pread(self.ctx, self.fhs[fh], offset, size, buf))
        return buf.raw[:n]

    def write(self, path, data, offset, fh):
        return self._chk(lib.nfs_pwrite(self.ctx, self.fhs[fh], offset, len(data), data))

    def truncate(self, path, length, fh=None):
        if fh in self.fhs:
            self._chk(lib.nfs_ftruncate(self.ctx, self.fhs[fh], length))
        else:
            self._chk(lib.nfs_truncate(self.ctx, b(path), length))

    def fsync(self, path, datasync, fh):
        return self._chk(lib.nfs_fsync(self.ctx, self.fhs[fh]))

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        h = self.fhs.pop(fh, None)
        if h is not None:
            self._chk(lib.nfs_close(self.ctx, h))
        return 0

    def rename(self, old, new):
        return self._chk(lib.nfs_rename(self.ctx, b(old), b(new)))

    def link(self, target, source):
        return self._chk(lib.nfs_link(self.ctx, b(source), b(target)))

    def unlink(self, path):
        return self._chk(lib.nfs_unlink(self.ctx, b(path)))

    def mkdir(self, path, mode):
        return self._chk(lib.nfs_mkdir(self.ctx, b(path)))

    def rmdir(self, path):
        return self._chk(lib.nfs_rmdir(self.ctx, b(path)))

    def chmod(self, path, mode):
        return self._chk(lib.nfs_chmod(self.ctx, b(path), mode & 0o7777))

    def chown(self, path, uid, gid):
        return 0

    def utimens(self, path, times=None):
        """touch / os.utime reach the server (a lease that is an mtime needs this).
        "now" is this client's clock: libnfs crashed when asked for the server's time."""
        atime, mtime = times if times is not None else (UTIME_NOW, UTIME_NOW)
        if _is(atime, UTIME_OMIT) and _is(mtime, UTIME_OMIT):
            return 0
        now = time.time()
        atime = now if _is(atime, UTIME_NOW) else atime
        mtime = now if _is(mtime, UTIME_NOW) else mtime
        if _is(atime, UTIME_OMIT) or _is(mtime, UTIME_OMIT):
            st = self.getattr(path)
            atime = st["st_atime"] if _is(atime, UTIME_OMIT) else atime
            mtime = st["st_mtime"] if _is(mtime, UTIME_OMIT) else mtime
        tv = (Timeval * 2)()
        for i, t in enumerate((atime, mtime)):
            tv[i].tv_sec = int(t)
            tv[i].tv_usec = min(int((t - int(t)) * 1e6), 999999)
        return self._chk(lib.nfs_utimes(self.ctx, b(path), tv))

    def statfs(self, path):
        return dict(
            f_bsize=4096,
            f_frsize=4096,
            f_blocks=1 << 20,
            f_bfree=1 << 19,
            f_bavail=1 << 19,
            f_namemax=255,
        )


if __name__ == "__main__":
    server, export, mnt = sys.argv[1:4]
    ver = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    fuse.FUSE(
        NfsFuse(server, export, ver),
        mnt,
        foreground=True,
        nothreads=True,
        attr_timeout=0,
        entry_timeout=0,
        negative_timeout=0,
        fsname=f"nfs-libnfs:{server}:{export}",
    )
