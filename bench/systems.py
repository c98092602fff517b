"""The harness's side of each system: fill it, start it, feed it, collect its result.

Every system is driven through the same verbs, so each part of the benchmark
(throughput, latency, backlog) is written once for all of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from bench.common import RunResult, drop, job_bytes, python_env

# Imported, not run as __main__, so huey names the task bench.peers.bench_noop on both sides.
PEERS_MAIN = ["-c", "import bench.peers; bench.peers.main()"]


class System(Protocol):
    """One queue under test, on its own fresh folder."""

    name: str
    durability: str  # "relaxed" or "fsync": the promise it keeps
    completed_dir: Path | None  # where records appear (timed by inotify), if anywhere

    def preload(self, ids: Sequence[str]) -> None:
        """Put jobs in its queue before it starts."""

    def start(self, count: int, report_each: bool = False) -> None:
        """Start the consumer, which stops by itself after `count` jobs (or is stopped)."""

    def submit(self, job_id: str) -> None:
        """Enqueue one job while it runs (the harness is the producer)."""

    def finish(self, timeout: float) -> RunResult:
        """Wait until every job is done, stop, and say what happened."""


class ChildProcess:
    """A consumer in a subprocess that prints 'ready', then one JSON line at the end."""

    def __init__(self, args: list[str], log: Path) -> None:
        self._log = log.open("wb")
        self.started = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.PIPE, stderr=self._log, env=python_env()
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.proc.kill()
            raise RuntimeError(f"{args} did not start: {line!r}; see {log}")

    def result(self, timeout: float) -> RunResult:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        finally:
            self._log.close()
        data: dict[str, Any] = json.loads(out.splitlines()[-1])
        return RunResult(started=self.started, **data)


class Floor:
    """The bare loop of bench/floor.py in a subprocess, fed through incoming/."""

    def __init__(self, root: Path, mode: str) -> None:
        self.root = root
        self.mode = mode
        self.name = "floor" if mode == "none" else f"floor-{mode}"
        self.durability = "relaxed" if mode == "none" else "fsync"
        self.completed_dir = root / "completed"
        self.incoming = root / "incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.child: ChildProcess | None = None

    def preload(self, ids: Sequence[str]) -> None:
        for job_id in ids:
            drop(self.incoming, job_id)

    def start(self, count: int, report_each: bool = False) -> None:
        args = ["-m", "bench.floor", str(self.root), str(count), "--mode", self.mode]
        self.child = ChildProcess(args + ["--report-each"] * report_each, self.root / "log")

    def submit(self, job_id: str) -> None:
        drop(self.incoming, job_id)

    def finish(self, timeout: float) -> RunResult:
        assert self.child is not None
        return self.child.result(timeout)


class Huey:
    """huey's SqliteHuey: the harness enqueues, a consumer process with one thread runs."""

    def __init__(self, root: Path, fsync: bool) -> None:
        from bench.peers import build_huey

        self.root = root
        self.fsync = fsync
        self.name = "huey-fsync" if fsync else "huey"
        self.durability = "fsync" if fsync else "relaxed"
        self.completed_dir = None
        self.db = root / "huey.db"
        self.huey, self.task = build_huey(self.db, fsync)
        self.child: ChildProcess | None = None

    def preload(self, ids: Sequence[str]) -> None:
        for job_id in ids:
            self.task(job_id)

    def start(self, count: int, report_each: bool = False) -> None:
        args = [*PEERS_MAIN, "huey", str(self.db), str(count)]
        args += ["--fsync"] * self.fsync + ["--report-each"] * report_each
        self.child = ChildProcess(args, self.root / "log")

    def submit(self, job_id: str) -> None:
        self.task(job_id)

    def finish(self, timeout: float) -> RunResult:
        assert self.child is not None
        result = self.child.result(timeout)
        self.huey.storage.close()
        return result


class Dirq:
    """dirq's QueueSimple: the harness adds, a consumer process locks/reads/removes."""

    def __init__(self, root: Path) -> None:
        from dirq.QueueSimple import QueueSimple

        self.root = root
        self.name = "dirq"
        self.durability = "relaxed"
        self.completed_dir = None
        self.path = root / "queue"
        self.queue = QueueSimple(str(self.path))
        self.child: ChildProcess | None = None

    def preload(self, ids: Sequence[str]) -> None:
        for job_id in ids:
            self.queue.add(job_bytes(job_id))

    def start(self, count: int, report_each: bool = False) -> None:
        args = [*PEERS_MAIN, "dirq", str(self.path), str(count)]
        self.child = ChildProcess(args + ["--report-each"] * report_each, self.root / "log")

    def submit(self, job_id: str) -> None:
        self.queue.add(job_bytes(job_id))

    def finish(self, timeout: float) -> RunResult:
        assert self.child is not None
        return self.child.result(timeout)
