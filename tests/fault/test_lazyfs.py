"""The power-loss layer itself (lazyfs.py): what survives a power loss, and what does not.

The daemon-level test trusts this layer to drop exactly what was never made
durable; these cases pin its model down, one rule each, and show that spoold's
group commit (commit_files) keeps its records on it.
"""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fault.mount import Mount, needs_fuse
from spoold.helper import commit_files
from spoold.spool import Record, Spool

pytestmark = [pytest.mark.slow, needs_fuse]


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[tuple[Path, Path, Mount]]:
    """(mount point, backing folder, its Mount); unmounted at the end."""
    backing, mnt = tmp_path / "backing", tmp_path / "mnt"
    backing.mkdir()
    mnt.mkdir()
    mount = Mount(backing, mnt, tmp_path / "lazyfs.log")
    yield mnt, backing, mount
    mount.unmount()


def write(path: Path, data: bytes, sync: bool) -> None:
    with path.open("wb") as file:
        file.write(data)
        file.flush()
        if sync:
            os.fsync(file.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_data_survives_only_as_of_its_last_fsync(mounted: tuple[Path, Path, Mount]) -> None:
    mnt, backing, mount = mounted
    write(mnt / "synced", b"v1", sync=True)
    write(mnt / "never", b"lost", sync=False)
    fsync_dir(mnt)
    with (mnt / "synced").open("ab") as file:
        file.write(b" and more")
    report = mount.power_loss()
    assert tree(backing) == {"synced": b"v1", "never": b""}
    assert report["filesWithUnsyncedData"] == 2


def test_names_survive_in_order_up_to_a_folder_fsync(mounted: tuple[Path, Path, Mount]) -> None:
    mnt, backing, mount = mounted
    (mnt / "a").mkdir()
    (mnt / "b").mkdir()
    write(mnt / "a" / "moved", b"x", sync=True)
    os.rename(mnt / "a" / "moved", mnt / "b" / "moved")
    fsync_dir(mnt / "b")  # durable: everything up to the rename, the mkdirs too
    write(mnt / "a" / "late", b"y", sync=True)  # its name was never synced
    os.unlink(mnt / "b" / "moved")  # nor this unlink
    report = mount.power_loss()
    assert tree(backing) == {"b/moved": b"x"}
    assert report["droppedByKind"] == {"create": 1, "unlink": 1}


def test_syncfs_makes_nothing_durable(mounted: tuple[Path, Path, Mount]) -> None:
    """The kernel does not pass syncfs(2) on to a FUSE server (only to virtiofs)."""
    mnt, backing, mount = mounted
    write(mnt / "job.json", b"{}", sync=False)
    fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert ctypes.CDLL(None, use_errno=True).syncfs(fd) == 0
    finally:
        os.close(fd)
    mount.power_loss()
    assert tree(backing) == {}
    with pytest.raises(OSError):
        os.listdir(mnt)  # a dead disk until it is mounted again


def test_group_commit_keeps_its_records_on_fuse(mounted: tuple[Path, Path, Mount]) -> None:
    """commit_files flushes with one syncfs where that reaches the disk; on FUSE it must
    sync each file and folder instead, or a power loss empties the records."""
    mnt, backing, mount = mounted
    spool = Spool(mnt / "spool", durable=True)
    spool.ensure()
    assert spool.flush_reaches is False
    records = [Record("completed", f"stem-{n}", json.dumps({"n": n}).encode()) for n in range(5)]
    assert commit_files(spool, records, flush=True) == [None] * 5
    spool.close()  # the spool folder it kept open for syncfs, or the mount stays busy
    mount.power_loss()
    kept = tree(backing / "spool" / "completed")
    assert kept == {f"stem-{n}.json": json.dumps({"n": n}).encode() for n in range(5)}
