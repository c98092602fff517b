"""The bare-loop floor: the file operations spoold must do per job, and nothing more.

Per job: rename incoming → pending, rename pending → running, read and
`json.loads` the job, write the record in tmp/ and rename it into completed/,
move the running file to tmp/. The record is written over such a spare (an
earlier job's file, `pwrite` + `ftruncate`), not into a new file: on ext4,
allocating an inode per record and freeing one per job (blocks, trim) costs
more than every rename together, and O_TRUNC would start a write-back on
close. One thread, woken by inotify (no polling), so its latency is the floor
too. The producer's write+rename into incoming/ is done by the harness,
exactly as for spoold.

Modes:
    none   no fsync at all (spoold's `durability: relaxed` must do as much)
    fsync  fsync of the record and of completed/ before the job counts as done,
           which is what spoold's `durability: fsync` promises, job by job
    group  the same promise kept by group commit: write a batch of records, then
           fsync them and completed/ once; the first fsync commits the journal
           for the whole batch, but each fsync still flushes the device's cache
    syncfs group commit with one flush: write a batch, then one syncfs(2) of the
           file system (Linux; it also flushes whatever else is dirty there)

Run as a subprocess by the harness: `python -m bench.floor DIR COUNT --mode M`.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import time
from collections import deque
from pathlib import Path

from bench.common import report_line, say_ready
from bench.inotify import Inotify, Overflow

FOLDERS = ("incoming", "pending", "running", "completed", "tmp")
MODES = ("none", "fsync", "group", "syncfs")
BATCH = 64


def syncfs(fd: int) -> None:
    """Flush the whole file system holding fd: one journal commit and one device flush."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syncfs(fd) != 0:
        raise OSError(ctypes.get_errno(), "syncfs failed")


def make_folders(root: Path) -> None:
    for name in FOLDERS:
        (root / name).mkdir(parents=True, exist_ok=True)


def is_job(name: str) -> bool:
    return name.endswith(".json") and not name.startswith(".")


class Floor:
    """The loop, its folders' fds kept open so fsync of a folder costs one call."""

    def __init__(self, root: Path, mode: str) -> None:
        self.dirs = {name: str(root / name) for name in FOLDERS}
        self.mode = mode
        self.completed_fd = os.open(self.dirs["completed"], os.O_RDONLY | os.O_DIRECTORY)
        self.queue: deque[str] = deque()
        self.unsynced: list[int] = []  # group modes: records written, not yet flushed
        self.spares: list[str] = []  # finished jobs' files in tmp/, to be rewritten as records
        self.done = 0
        self.first_claim: float | None = None
        self.done_at: dict[str, float] = {}

    def scan(self) -> None:
        """List incoming/ (at start, and after an inotify overflow)."""
        self.queue.extend(sorted(n for n in os.listdir(self.dirs["incoming"]) if is_job(n)))

    def process(self, name: str) -> str | None:
        """One job up to its record; the running file's name, or None if it was gone."""
        d = self.dirs
        try:
            os.rename(f"{d['incoming']}/{name}", f"{d['pending']}/{name}")
        except FileNotFoundError:
            return None
        os.rename(f"{d['pending']}/{name}", f"{d['running']}/{name}")
        if self.first_claim is None:
            self.first_claim = time.time()
        with open(f"{d['running']}/{name}", "rb") as f:
            job = json.loads(f.read())
        job.update(status="completed", startedAt=time.time(), completedAt=time.time())
        self.write_record(name, json.dumps(job).encode())
        return name

    def open_record(self, name: str) -> tuple[str, int]:
        """A file in tmp/ to write the record to: a spare if there is one, else a new one."""
        if self.spares:
            tmp = self.spares.pop()
            return tmp, os.open(tmp, os.O_WRONLY)
        tmp = f"{self.dirs['tmp']}/{name}"
        return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def write_record(self, name: str, data: bytes) -> None:
        tmp, fd = self.open_record(name)
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        if self.mode == "fsync":
            os.fsync(fd)
        os.rename(tmp, f"{self.dirs['completed']}/{name}")
        if self.mode == "group":
            self.unsynced.append(fd)
            return
        os.close(fd)
        if self.mode == "fsync":
            os.fsync(self.completed_fd)

    def settle(self, names: list[str]) -> None:
        """Make a batch durable (group modes), then retire the running files and count."""
        if self.mode == "syncfs" and names:
            syncfs(self.completed_fd)
        elif self.unsynced:
            for fd in self.unsynced:
                os.fsync(fd)
                os.close(fd)
            os.fsync(self.completed_fd)
        self.unsynced.clear()
        now = time.time()
        for name in names:
            spare = f"{self.dirs['tmp']}/spare-{name}"
            os.rename(f"{self.dirs['running']}/{name}", spare)
            self.spares.append(spare)
            self.done_at[name[:-5]] = now
        self.done += len(names)

    def run_batch(self) -> None:
        finished = []
        while self.queue and len(finished) < BATCH:
            name = self.process(self.queue.popleft())
            if name:
                finished.append(name)
        self.settle(finished)


def take_arrivals(watch: Inotify, floor: Floor, wait: float) -> bool:
    """Queue the names inotify reports (waiting up to `wait`); False if none came."""
    try:
        names = watch.read(wait)
    except Overflow:
        floor.scan()
        return True
    floor.queue.extend(n for n in names if is_job(n))
    return bool(names)


def serve(root: Path, count: int, mode: str, report_each: bool) -> None:
    """Process jobs until `count` are done, then report the window and the cost."""
    make_folders(root)
    floor = Floor(root, mode)
    with Inotify(floor.dirs["incoming"]) as watch:
        floor.scan()
        say_ready()
        while floor.done < count:
            wait = 0 if floor.queue else 1.0
            if not take_arrivals(watch, floor, wait) and not floor.queue and wait:
                floor.scan()  # the safety net, as spoold's rescan
            floor.run_batch()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report_line(
        {
            "jobs": floor.done,
            "first_claim": floor.first_claim,
            "last_record": max(floor.done_at.values()),
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_rss_kb": usage.ru_maxrss,
            "done_at": floor.done_at if report_each else {},
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("count", type=int)
    parser.add_argument("--mode", choices=MODES, default="none")
    parser.add_argument("--report-each", action="store_true")
    args = parser.parse_args()
    serve(args.root, args.count, args.mode, args.report_each)


if __name__ == "__main__":
    main()
