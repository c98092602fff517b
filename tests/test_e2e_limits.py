"""Limits per job type through the daemon as a subprocess: a type at its concurrency
holds up no other, a rate measured over seconds, a reload that changes a limit, and
jobs whose type only their file tells (found by the start-up scan)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from conftest import base_config, job_files, records, wait_until
from test_reload import write_by_rename

# A plug-in that notes when each run starts and ends (outside the spool) and runs until
# the test lets it end: release/<id> or release/all.
SPAN_SOURCE = """
import json, os, time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _note(job, event):
    line = {"id": job["id"], "event": event, "at": time.time(), "pid": os.getpid()}
    with open(HERE / "spans.log", "a") as f:
        f.write(json.dumps(line) + "\\n")


def span(job):
    _note(job, "start")
    release = HERE / "release"
    while not ((release / job["id"]).exists() or (release / "all").exists()):
        time.sleep(0.01)
    _note(job, "end")
"""


class Spans:
    """The span plug-in in a daemon's working folder, and the runs it noted."""

    types = {"span": "limits_plugins:span"}

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        (workdir / "limits_plugins.py").write_text(SPAN_SOURCE)

    def notes(self) -> list[dict[str, Any]]:
        try:
            lines = (self.workdir / "spans.log").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines]

    def started(self, pid: int | None = None) -> list[str]:
        return [n["id"] for n in self.notes() if n["event"] == "start" and pid in (None, n["pid"])]

    def release(self, job_id: str = "all") -> None:
        (self.workdir / "release").mkdir(exist_ok=True)
        (self.workdir / "release" / job_id).touch()

    def most_at_once(self, pid: int) -> int:
        """The most runs of daemon `pid` that were between their start and end at once."""
        running = most = 0
        notes = sorted((n for n in self.notes() if n["pid"] == pid), key=lambda n: n["at"])
        for note in notes:
            running += 1 if note["event"] == "start" else -1
            most = max(most, running)
        return most


def pending_ids(spool: Path) -> list[str]:
    return [name.rsplit("Z-", 1)[1][:-5] for name in job_files(spool, "pending")]


def completed_ids(spool: Path) -> set[str]:
    return {record["id"] for record in records(spool, "completed")}


def test_a_type_at_its_concurrency_waits_in_pending_while_other_types_flow_past(
    start_daemon, tmp_path
):
    spans = Spans(tmp_path)
    daemon = start_daemon(workers=3, jobTypes=spans.types, limits={"span": {"concurrency": 1}})
    for job_id in ("ex-1", "ex-2"):
        daemon.drop(f"{job_id}.json", {"type": "span", "id": job_id})
    first = wait_until(spans.started)[0]
    second = ({"ex-1", "ex-2"} - {first}).pop()
    noops = [f"noop-{i}" for i in range(5)]
    for job_id in noops:
        daemon.drop(f"{job_id}.json", {"type": "noop", "id": job_id})
    wait_until(lambda: set(noops) <= completed_ids(daemon.spool))
    assert spans.started() == [first]  # two workers were free all along
    assert pending_ids(daemon.spool) == [second]  # it waits in pending/, not running/
    assert [name for name in job_files(daemon.spool, "running") if second in name] == []
    spans.release(first)
    wait_until(lambda: spans.started() == [first, second])
    spans.release(second)
    wait_until(lambda: {"ex-1", "ex-2"} <= completed_ids(daemon.spool))
    assert spans.most_at_once(daemon.proc.pid) == 1
    assert daemon.stop() == 0


def test_a_rate_spreads_starts_over_seconds(start_daemon, plugins):
    daemon = start_daemon(workers=3, jobTypes=plugins.types, limits={"trace": {"rate": "5/s"}})
    ids = [f"tick-{i:02d}" for i in range(20)]
    for job_id in ids:
        daemon.drop(f"{job_id}.json", {"type": "trace", "id": job_id})
    wait_until(lambda: set(ids) <= completed_ids(daemon.spool), timeout=20)
    starts = sorted(plugins.calls(job_id)[0]["at"] for job_id in ids)
    # 5 at once, then 5 as each of those is a second old, and so on: 3 s from first to last
    assert starts[-1] - starts[0] >= 2.8
    # at most 5 in any second; the slack is for the time from the start counted to the
    # plug-in's own note, which varies by a few milliseconds (more on a loaded machine)
    assert min(starts[i + 5] - starts[i] for i in range(len(starts) - 5)) >= 0.75
    assert daemon.stop() == 0


TWO = {"concurrency": 2}


def test_a_reload_changes_a_limit_and_a_bad_limit_changes_nothing(start_daemon, tmp_path):
    spans = Spans(tmp_path)
    config = {"workers": 3, "jobTypes": spans.types, "limits": {"span": {"concurrency": 1}}}
    daemon = start_daemon(**config)
    for job_id in ("r-1", "r-2", "r-3"):
        daemon.drop(f"{job_id}.json", {"type": "span", "id": job_id})
    wait_until(lambda: len(spans.started()) == 1 and len(pending_ids(daemon.spool)) == 2)
    write_by_rename(daemon.config_path, base_config(**{**config, "limits": {"span": TWO}}))
    wait_until(lambda: len(spans.started()) == 2)
    bad = base_config(**{**config, "limits": {"span": {"concurrency": 0}}})
    write_by_rename(daemon.config_path, bad)
    wait_until(lambda: daemon.status()["config"]["error"])
    text = daemon.config_path.read_text().splitlines()
    line = next(n for n, written in enumerate(text, 1) if "concurrency: 0" in written)
    error = daemon.status()["config"]["error"]
    assert error.startswith(f"{daemon.config_path}:{line}: limits.span.concurrency: ")
    time.sleep(0.5)  # to prove an absence: the third job still waits under the old limit of 2
    assert len(spans.started()) == 2 and len(pending_ids(daemon.spool)) == 1
    spans.release()
    wait_until(lambda: {"r-1", "r-2", "r-3"} <= completed_ids(daemon.spool))
    assert spans.most_at_once(daemon.proc.pid) == 2
    assert daemon.stop() == 0


def test_jobs_found_by_the_start_up_scan_are_limited_too(start_daemon, tmp_path):
    """After a kill -9 the index knows neither the due time nor the type of what it finds
    in pending/ and running/: each file is read once, before its claim."""
    spans = Spans(tmp_path)
    config = {"workers": 3, "jobTypes": spans.types, "limits": {"span": {"concurrency": 1}}}
    killed = start_daemon(**config)
    ids = ["k-1", "k-2", "k-3"]
    for job_id in ids:
        killed.drop(f"{job_id}.json", {"type": "span", "id": job_id, "maxAttempts": 2})
    wait_until(lambda: len(spans.started()) == 1 and len(pending_ids(killed.spool)) == 2)
    killed.kill()
    daemon = start_daemon(**config)
    wait_until(lambda: len(spans.started(daemon.proc.pid)) == 1)
    time.sleep(0.5)  # to prove an absence: three workers, and still one at a time
    assert len(spans.started(daemon.proc.pid)) == 1 and len(pending_ids(daemon.spool)) == 2
    spans.release()
    wait_until(lambda: set(ids) <= completed_ids(daemon.spool))
    assert spans.most_at_once(daemon.proc.pid) == 1
    assert daemon.stop() == 0
