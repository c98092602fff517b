"""The peers: huey with SQLite storage and dirq's QueueSimple.

Each consumer runs in its own process (as spoold does), started by the harness
as `python -c 'import bench.peers; bench.peers.main()' huey|dirq ...` (imported,
so huey's task has the same name on both sides); the harness is the producer.
A consumer records when it took its first job and when each job finished (the
clock is the same on both sides: time.time()), and reports that on stdout.

What each does per job, for the reader of the table:
    huey   one thread takes a task out of SQLite (WAL; synchronous FULL with
           fsync=True, OFF without) and runs it; a result for None is not stored.
           It polls an empty queue (0.1 s, backing off to 10 s): its latency shows that.
    dirq   QueueSimple: lock (link), read, json.loads, remove; no record is
           written; it is polled every 10 ms when empty, as its docs suggest.
"""

from __future__ import annotations

import argparse
import json
import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import job_bytes, report_line, say_ready


class Tally:
    """Completion times, and an event set when the expected count is reached."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.first: float | None = None
        self.done_at: dict[str, float] = {}
        self.all_done = threading.Event()

    def started(self) -> None:
        if self.first is None:
            self.first = time.time()

    def finished(self, job_id: str) -> None:
        self.done_at[job_id] = time.time()
        if len(self.done_at) >= self.count:
            self.all_done.set()

    def report(self, report_each: bool) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        report_line(
            {
                "jobs": len(self.done_at),
                "first_claim": self.first,
                "last_record": max(self.done_at.values()),
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "peak_rss_kb": usage.ru_maxrss,
                "done_at": self.done_at if report_each else {},
            }
        )


TALLY = Tally(0)


# ----- huey --------------------------------------------------------------------------------


def build_huey(db: Path, fsync: bool) -> tuple[Any, Callable[[str], Any]]:
    """A SqliteHuey on db and its no-op task; producer and consumer build the same one."""
    from huey import SqliteHuey

    huey = SqliteHuey("bench", filename=str(db), fsync=fsync)

    def bench_noop(job_id: str) -> None:
        TALLY.started()
        json.loads(job_bytes(job_id))  # the same decode the other systems do
        TALLY.finished(job_id)

    return huey, huey.task(name="bench_noop")(bench_noop)


def consume_huey(db: Path, fsync: bool) -> None:
    huey, _ = build_huey(db, fsync)
    consumer = huey.create_consumer(workers=1, worker_type="thread", periodic=False)
    consumer.start()
    say_ready()
    TALLY.all_done.wait()
    consumer.stop(graceful=True)


# ----- dirq --------------------------------------------------------------------------------


def consume_dirq(path: Path) -> None:
    from dirq.QueueSimple import QueueSimple

    queue = QueueSimple(str(path))
    say_ready()
    while not TALLY.all_done.is_set():
        if not drain_dirq(queue):
            time.sleep(0.01)


def drain_dirq(queue: Any) -> int:
    """Take every element the queue lists now; how many were taken."""
    taken = 0
    name = queue.first()
    while name:
        if queue.lock(name):
            TALLY.started()
            job = json.loads(queue.get(name))
            queue.remove(name)
            TALLY.finished(job["id"])
            taken += 1
        name = queue.next()
    return taken


def main() -> None:
    parser = argparse.ArgumentParser(description="a peer's consumer, for the benchmark")
    parser.add_argument("kind", choices=("huey", "dirq"))
    parser.add_argument("path", type=Path)
    parser.add_argument("count", type=int)
    parser.add_argument("--fsync", action="store_true")
    parser.add_argument("--report-each", action="store_true")
    args = parser.parse_args()
    TALLY.count = args.count
    if args.kind == "huey":
        consume_huey(args.path, args.fsync)
    else:
        consume_dirq(args.path)
    TALLY.report(args.report_each)
