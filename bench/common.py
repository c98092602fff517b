"""What every part of the benchmark shares: sizes, job files, timing, process stats."""

from __future__ import annotations

import compileall
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sizes:
    """How many jobs each part uses; --quick and --scale shrink them."""

    throughput: int = 20_000
    latency: int = 300
    latency_gap: float = 0.020
    backlog_small: int = 1_000
    backlog_large: int = 100_000
    http: int = 4_000
    settle: float = 0.5  # seconds of quiet after each sync (see quiesce)
    rounds: int = 3  # throughput: every system this many times, in turn (see run.py)

    def scaled(self, factor: float) -> Sizes:
        """Every count times factor (at least a handful each), the gap kept."""

        def n(value: int, least: int) -> int:
            return max(int(value * factor), least)

        return replace(
            self,
            throughput=n(self.throughput, 50),
            latency=n(self.latency, 10),
            backlog_small=n(self.backlog_small, 20),
            backlog_large=n(self.backlog_large, 100),
            http=n(self.http, 40),
        )


FULL = Sizes()
QUICK = Sizes(
    throughput=500,
    latency=30,
    backlog_small=200,
    backlog_large=2_000,
    http=400,
    settle=0.05,
    rounds=1,
)


@dataclass
class RunResult:
    """What one run of one system tells: its window of work and what it cost."""

    jobs: int
    first_claim: float  # epoch seconds
    last_record: float
    cpu_seconds: float | None = None
    peak_rss_kb: int | None = None
    started: float | None = None  # epoch seconds the process was spawned
    first_record: float | None = None
    done_at: dict[str, float] = field(default_factory=dict)  # job id → epoch seconds
    errors: int = 0

    @property
    def rate(self) -> float:
        """Jobs per second from the first claim to the last record."""
        return self.jobs / max(self.last_record - self.first_claim, 1e-9)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("done_at")
        return data


def job_bytes(job_id: str) -> bytes:
    """The no-op job every system runs, as the producer's file."""
    return b'{"type": "noop", "id": "%s"}' % job_id.encode()


def job_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:06d}" for i in range(count)]


def drop(folder: Path, job_id: str) -> None:
    """Publish a job the safe way (SPEC 1): write a dot-name, rename it to <id>.json."""
    tmp = folder / f".{job_id}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, job_bytes(job_id))
    finally:
        os.close(fd)
    os.rename(tmp, folder / f"{job_id}.json")


def drop_many(folder: Path, ids: Sequence[str]) -> tuple[float, float]:
    """Drop every job as fast as one thread can; returns (first, last) drop times."""
    first = time.time()
    for job_id in ids:
        drop(folder, job_id)
    return first, time.time()


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(round(share * len(ordered) + 0.5) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


def proc_stats(pid: int) -> tuple[float | None, int | None]:
    """(CPU seconds, peak RSS in KiB) of a live process and its live children (spoold's
    commit helper), from /proc; Nones if the process is gone."""
    own = _one_proc_stats(pid)
    if own is None:
        return None, None
    cpu, peak = own
    for child in _children(pid):
        theirs = _one_proc_stats(child)
        if theirs is not None:
            cpu, peak = cpu + theirs[0], peak + theirs[1]
    return cpu, peak


def _one_proc_stats(pid: int) -> tuple[float, int] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    peaks = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")]
    return cpu, int(peaks[0]) if peaks else 0


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            kids += [int(k) for k in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    except OSError:
        pass
    return kids


class Scratch:
    """Fresh folders for the runs, removed together when the whole benchmark ends.

    Not after each run: on ext4 without a journal (the machine in the README), the
    inode allocator skips every inode freed in the last minute or so, reading each
    one's entry first. Removing one run's 20,000-100,000 files then made each file
    that the next runs created cost ~0.4 ms of kernel time: a system paid for the
    clean-up of the one before it (POST /jobs: ~700/s right after a clean-up,
    ~1,230/s a minute later, with 47% of the daemon's CPU in that search).
    """

    def __init__(self, root: str | None, keep: bool = False) -> None:
        self.root = root
        self.keep = keep
        self.made: list[Path] = []

    def make(self, label: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"spoold-bench-{label}-", dir=self.root))
        self.made.append(path)
        return path

    def remove_all(self) -> None:
        """Remove every folder made (whatever it holds), unless asked to keep them."""
        while self.made and not self.keep:
            shutil.rmtree(self.made.pop(), ignore_errors=True)


def quiesce(seconds: float = 0.5) -> None:
    """Flush what earlier steps left dirty (files written, a queue preloaded) and let the
    disk settle, so that it is not charged to whatever is measured next."""
    os.sync()
    time.sleep(seconds)


def wait_for(predicate: Any, timeout: float, interval: float = 0.05, what: str = "") -> None:
    """Poll predicate until truthy; TimeoutError naming what was awaited."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


def compile_spoold() -> None:
    """Write the bytecode of spoold's modules, as a pip install does for the peers' (huey
    and dirq are measured from site-packages, compiled when installed): each start of the
    daemon and its helper is then measured as installed. Where PYTHONDONTWRITEBYTECODE is
    set (as on the machine in the README) nothing else writes it, and every start compiled
    ~46 modules: ~60 ms of CPU, 3 µs per job of a 20,000-job row, and ~1 MB of RSS per
    process."""
    compileall.compile_dir(REPO / "spoold", quiet=1)


def python_env() -> dict[str, str]:
    """The environment for child processes: this repo importable, no stray token."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("SPOOLD_TOKEN", None)
    return env


def report_line(data: dict[str, Any]) -> None:
    """A worker subprocess's last word: one JSON line on stdout."""
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def say_ready() -> None:
    """A worker subprocess tells the harness it is set up and waiting for jobs."""
    sys.stdout.write("ready\n")
    sys.stdout.flush()
