"""The measurements: each takes a fresh system and returns one row of the table.

A row is a plain dict (it goes to the JSON as it is): section, scenario,
system, durability, workers, jobs, and the figures of that section.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import RunResult, percentile, quiesce
from bench.inotify import Inotify
from bench.systems import System

Row = dict[str, Any]
PATIENCE = 5.0  # seconds one latency job may take before it counts as missing


def base_row(section: str, scenario: str, system: System, jobs: int) -> Row:
    return {
        "section": section,
        "scenario": scenario,
        "system": system.name,
        "durability": system.durability,
        "workers": getattr(system, "workers", 1),
        "jobs": jobs,
    }


def cost_fields(result: RunResult) -> Row:
    """CPU per job and peak RSS: what each job cost the consumer process."""
    row: Row = {"errors": result.errors}
    if result.cpu_seconds is not None and result.jobs:
        row["cpu_us_per_job"] = round(result.cpu_seconds / result.jobs * 1e6, 1)
    if result.peak_rss_kb is not None:
        row["peak_rss_mb"] = round(result.peak_rss_kb / 1024, 1)
    return row


def throughput(
    system: System,
    ids: Sequence[str],
    scenario: str,
    section: str = "throughput",
    settle: float = 0.5,
) -> Row:
    """Jobs/s from first claim to last record; `preloaded` or `live` (dropped while it runs)."""
    first_drop = None
    if scenario == "live":
        system.start(len(ids))
        first_drop = time.time()
        for job_id in ids:
            system.submit(job_id)
    else:
        system.preload(ids)
        quiesce(settle)
        system.start(len(ids))
    result = system.finish(timeout=max(30.0, len(ids) / 50))
    row = base_row(section, scenario, system, result.jobs)
    row["rate"] = round(result.rate, 1)
    if first_drop is not None:
        row["e2e_rate"] = round(result.jobs / max(result.last_record - first_drop, 1e-9), 1)
    if result.started is not None and result.first_record is not None:
        row["first_job_s"] = round(result.first_record - result.started, 3)
    return row | cost_fields(result)


def latency(system: System, ids: Sequence[str], gap: float) -> Row:
    """Single jobs dropped `gap` apart into an idle system: drop → done, in ms."""
    system.start(len(ids), report_each=True)
    time.sleep(0.5)  # let it go idle, as a daemon waiting for work would be
    if system.completed_dir is not None:
        seen = _time_by_inotify(system, ids, gap)
        result = system.finish(timeout=60)
    else:
        dropped = _drop_paced(system, ids, gap)
        result = system.finish(timeout=60 + PATIENCE)
        seen = {i: result.done_at[i] - dropped[i] for i in ids if i in result.done_at}
    row = base_row("latency", f"idle, {gap * 1000:.0f} ms apart", system, len(ids))
    return row | _spread(list(seen.values()), len(ids)) | cost_fields(result)


def _time_by_inotify(system: System, ids: Sequence[str], gap: float) -> dict[str, float]:
    """Drop on a fixed schedule (open loop: a slow job does not delay the next drop)
    while a thread stamps each record as inotify reports it in completed/."""
    assert system.completed_dir is not None
    arrived: dict[str, float] = {}
    stop = threading.Event()
    with Inotify(system.completed_dir) as watch:
        thread = threading.Thread(target=_stamp, args=(watch, arrived, stop), daemon=True)
        thread.start()
        dropped = _drop_paced(system, ids, gap, time.perf_counter)
        deadline = time.perf_counter() + PATIENCE
        while len(arrived) < len(ids) and time.perf_counter() < deadline:
            time.sleep(0.01)
        stop.set()
        thread.join()
    by_id = {_job_id(name): t for name, t in arrived.items()}
    return {i: by_id[i] - dropped[i] for i in ids if i in by_id}


def _stamp(watch: Inotify, arrived: dict[str, float], stop: threading.Event) -> None:
    while not stop.is_set():
        names = watch.read(0.05)
        now = time.perf_counter()
        for name in names:
            arrived.setdefault(name, now)


def _job_id(record_name: str) -> str:
    """'2-normal-<time>Z-l-000001.json' (spoold) or 'l-000001.json' (floor) → 'l-000001'."""
    stem = record_name.removesuffix(".json")
    return stem[stem.rindex("Z-") + 2 :] if "Z-" in stem else stem


def _drop_paced(
    system: System, ids: Sequence[str], gap: float, clock: Callable[[], float] = time.time
) -> dict[str, float]:
    """Enqueue one job every `gap` seconds; when each was dropped, by `clock`."""
    dropped = {}
    begin = time.perf_counter()
    for n, job_id in enumerate(ids):
        _sleep_until(begin + n * gap)
        dropped[job_id] = clock()
        system.submit(job_id)
    return dropped


def _sleep_until(moment: float) -> None:
    left = moment - time.perf_counter()
    if left > 0:
        time.sleep(left)


def _spread(seconds: list[float], expected: int) -> Row:
    if not seconds:
        return {"missing": expected}
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(percentile(ms, 0.50), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "max_ms": round(max(ms), 3),
        "missing": expected - len(ms),
    }
