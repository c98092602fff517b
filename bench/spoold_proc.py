"""spoold as the harness runs it: a real `python -m spoold run --config X` subprocess.

The harness drops job files into incoming/ as any producer would, and learns
what happened only from the outside: status.json to know when it is done, the
records' startedAt/completedAt for the window of work, /proc for CPU and peak
RSS (read just before SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bench.common import RunResult, drop, proc_stats, python_env, wait_for
from bench.profile import attach


def spoold_config(spool: Path, workers: int, durability: str, http_port: int | None) -> dict:
    """A production-like config: only what the benchmark needs differs from the defaults."""
    http = {"host": "127.0.0.1", "port": http_port} if http_port else None
    return {
        "spool": str(spool),
        "workers": workers,
        "durability": durability,
        "http": http,
        "shutdownGrace": 10,
    }


class Spoold:
    """One daemon on a fresh spool in `root`."""

    def __init__(
        self,
        root: Path,
        workers: int,
        durability: str,
        http_port: int | None = None,
        profile: Path | None = None,
    ) -> None:
        self.root = root
        self.profile = profile
        self.name = "spoold"
        self.workers = workers
        self.durability = durability
        self.spool = root / "spool"
        self.incoming = self.spool / "incoming"
        self.completed_dir = self.spool / "completed"
        self.incoming.mkdir(parents=True)
        self.completed_dir.mkdir()
        self.config_path = root / "spoold.yaml"
        config = spoold_config(self.spool, workers, durability, http_port)
        self.config_path.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None
        self.spy: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.count = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def preload(self, ids: Sequence[str]) -> None:
        for job_id in ids:
            drop(self.incoming, job_id)

    def start(self, count: int, report_each: bool = False) -> None:
        """Spawn the daemon and wait until it has written status.json (its scan is done)."""
        self.count = count
        command = [sys.executable, "-m", "spoold", "run", "--config", str(self.config_path)]
        with (self.root / "daemon.log").open("wb") as log:
            self.started = time.time()
            self.proc = subprocess.Popen(
                command, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, env=python_env()
            )
        if self.profile:
            out = self.profile / f"{self.root.name}-w{self.workers}-{self.durability}.txt"
            self.spy = attach(self.proc.pid, out)
        status = self.spool / "status.json"
        wait_for(lambda: status.exists() or self.proc.poll() is not None, 60, 0.01, "status.json")
        self._check_alive()

    def submit(self, job_id: str) -> None:
        drop(self.incoming, job_id)

    def finish(self, timeout: float) -> RunResult:
        """Wait until completed+failed reach the count, stop, and read the records."""
        wait_for(self._all_done, timeout, 0.1, f"{self.count} records")
        cpu, hwm = proc_stats(self.pid)
        self.stop()
        result = read_records(self.spool, self.started)
        result.cpu_seconds, result.peak_rss_kb = cpu, hwm
        return result

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.spy:
            self.spy.wait(30)

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.spool / "status.json").read_bytes())
        except (OSError, ValueError):
            return {}

    def _all_done(self) -> bool:
        self._check_alive()
        queue = self.status().get("queue", {})
        return queue.get("completed", 0) + queue.get("failed", 0) >= self.count

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            log = (self.root / "daemon.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"spoold exited {self.proc.returncode}:\n{log}")


def read_records(spool: Path, started: float) -> RunResult:
    """The window of work from the records: first startedAt → last completedAt."""
    starts, ends = [], []
    folder = spool / "completed"
    for name in os.listdir(folder):
        record = json.loads((folder / name).read_bytes())
        starts.append(_epoch(record["startedAt"]))
        ends.append(_epoch(record["completedAt"]))
    failed = [n for n in os.listdir(spool / "failed") if not n.endswith(".error.json")]
    return RunResult(
        jobs=len(ends),
        first_claim=min(starts),
        last_record=max(ends),
        started=started,
        first_record=min(ends),
        errors=len(failed),
    )


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()
