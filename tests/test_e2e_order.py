"""End to end, dispatch order (SPEC 1): priority, FIFO within a priority, priority from the
file name, and runAt, with one worker so that order is observable."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from conftest import DaemonProcess, job_files, records, wait_until


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def pending_stems(daemon: DaemonProcess) -> list[str]:
    return job_files(daemon.spool, "pending")


def accepted(daemon: DaemonProcess, name: str) -> None:
    """Wait until incoming/name was taken (FIFO is by acceptance, so drop one at a time).

    These tests rescan every 0.05 s: watchdog holds events up to 0.5 s behind the
    daemon's own moves out of incoming/, and ten drops one at a time add up."""
    wait_until(lambda: not (daemon.incoming / name).exists())


def test_one_worker_runs_critical_high_normal_low_and_fifo_within(start_daemon, plugins):
    daemon = start_daemon(jobTypes=plugins.types, workers=1, rescanSeconds=0.05)
    daemon.drop("gate.json", {"type": "slow", "id": "gate"})
    wait_until(lambda: plugins.calls("gate"))
    drops = [
        ("low-1", {"priority": "low"}),
        ("normal-1", {}),
        ("high-1", {"priority": "high"}),
        ("critical-1", {"priority": "critical"}),
        ("low-2", {"priority": "low"}),
        ("normal-2", {"priority": "normal"}),
        ("high-2", {"priority": "high"}),
        ("critical-2", {"priority": "critical"}),
        ("normal-3", {}),
        ("critical-3", {"priority": "critical"}),
    ]
    for job_id, fields in drops:
        name = f"job-{job_id}.json"  # 'job-' so the name names no priority
        daemon.drop(name, {"type": "trace", "id": job_id, **fields})
        accepted(daemon, name)
    # `ls pending/` shows the dispatch order
    expected = [f"{p}-{n}" for p in ("critical", "high", "normal", "low") for n in (1, 2, 3)]
    expected = [job_id for job_id in expected if job_id in dict(drops)]
    assert [n.rsplit("Z-", 1)[1][:-5] for n in pending_stems(daemon)] == expected
    plugins.release("gate")
    wait_until(lambda: len(records(daemon.spool, "completed")) == len(drops) + 1)
    assert plugins.order() == ["gate", *expected]
    by_start = sorted(records(daemon.spool, "completed"), key=lambda r: r["startedAt"])
    assert [r["id"] for r in by_start] == ["gate", *expected]
    for record in by_start[1:]:
        assert record["priority"] == record["id"].split("-")[0]
    assert daemon.stop() == 0


def test_the_priority_in_the_file_name_wins_over_the_field(start_daemon, plugins):
    daemon = start_daemon(jobTypes=plugins.types, workers=1, rescanSeconds=0.05)
    daemon.drop("gate.json", {"type": "slow", "id": "gate"})
    wait_until(lambda: plugins.calls("gate"))
    names = {
        "low-report.json": {"type": "trace", "id": "named-low", "priority": "critical"},
        "critical_fire.json": {"type": "trace", "id": "named-critical", "priority": "low"},
        "high.nightly.json": {"type": "trace", "id": "named-high"},
        "lowercase-is-a-name.json": {"type": "trace", "id": "field-high", "priority": "high"},
        "Critical-capital.json": {"type": "trace", "id": "field-normal"},
    }
    for name, job in names.items():
        daemon.drop(name, job)
        accepted(daemon, name)
    plugins.release("gate")
    wait_until(lambda: len(records(daemon.spool, "completed")) == len(names) + 1)
    priority = {r["id"]: r["priority"] for r in records(daemon.spool, "completed")}
    assert priority == {
        "gate": "normal",
        "named-low": "low",
        "named-critical": "critical",
        "named-high": "high",
        "field-high": "high",
        "field-normal": "normal",
    }
    order = plugins.order()[1:]
    assert order[0] == "named-critical"
    assert order[-1] == "named-low"
    assert order.index("named-high") < order.index("field-normal")
    assert daemon.stop() == 0


def test_a_job_type_default_priority_applies_without_name_or_field(start_daemon, plugins):
    daemon = start_daemon(jobTypes=plugins.types)
    daemon.drop("hush.json", {"type": "log", "id": "a-log", "message": "from a test"})
    wait_until(lambda: records(daemon.spool, "completed"))
    [record] = records(daemon.spool, "completed")
    assert record["priority"] == "low"
    wait_until(lambda: "from a test" in daemon.log())
    assert daemon.stop() == 0


def test_a_job_with_run_at_in_the_future_waits_in_pending(start_daemon, plugins):
    daemon = start_daemon(jobTypes=plugins.types)
    text = (datetime.now(UTC) + timedelta(seconds=3)).isoformat(timespec="milliseconds")
    run_at = parse(text)  # records have millisecond times: compare at that precision
    daemon.drop("later.json", {"type": "trace", "id": "later", "runAt": text})
    daemon.drop("now.json", {"type": "trace", "id": "now"})
    wait_until(lambda: plugins.calls("now"))
    # while it waits (no fixed sleep: a loaded host may take seconds to get here, and the
    # times asserted below prove it was not run early)
    wait_until(lambda: [n for n in pending_stems(daemon) if n.endswith("-later.json")])
    wait_until(lambda: daemon.status()["queue"]["pending"]["total"] == 1)
    wait_until(lambda: len(records(daemon.spool, "completed")) == 2)
    record = next(r for r in records(daemon.spool, "completed") if r["id"] == "later")
    assert parse(record["startedAt"]) >= run_at
    assert plugins.calls("later")[0]["at"] >= run_at.timestamp()
    assert record["runAt"] == text, "the producer's field is kept"
    assert daemon.stop() == 0


def test_run_at_without_an_offset_is_read_in_the_configs_timezone(start_daemon, plugins):
    zone = "America/Sao_Paulo"  # UTC-3 all year: read as UTC the job would run 3 h early
    daemon = start_daemon(jobTypes=plugins.types, timezone=zone)
    local = datetime.now(ZoneInfo(zone)) + timedelta(seconds=2)
    naive = local.replace(tzinfo=None).isoformat(timespec="milliseconds")
    run_at = parse(naive).replace(tzinfo=ZoneInfo(zone))
    daemon.drop("local.json", {"type": "trace", "id": "local", "runAt": naive})
    wait_until(lambda: records(daemon.spool, "completed"))
    [record] = records(daemon.spool, "completed")
    # not run early: the times say so whatever the load (a sleep after seeing it in
    # pending/ could outlast the 2 s on a slow host)
    assert parse(record["startedAt"]) >= run_at
    assert plugins.calls("local")[0]["at"] >= run_at.timestamp()
    assert daemon.stop() == 0


def test_a_run_at_in_the_past_runs_now(start_daemon):
    daemon = start_daemon()
    daemon.drop("past.json", {"type": "noop", "id": "past", "runAt": "2001-09-09T01:46:40Z"})
    wait_until(lambda: records(daemon.spool, "completed"))
    assert records(daemon.spool, "completed")[0]["id"] == "past"
    assert daemon.stop() == 0


def test_a_waiting_run_at_job_keeps_its_time_through_a_restart(start_daemon, plugins):
    daemon = start_daemon(jobTypes=plugins.types)
    run_at = datetime.now(UTC) + timedelta(seconds=3)
    job = {"type": "trace", "id": "kept", "runAt": run_at.isoformat()}
    daemon.drop("kept.json", job)
    wait_until(lambda: pending_stems(daemon))
    [name] = pending_stems(daemon)
    assert json.loads((daemon.spool / "pending" / name).read_bytes()) == job, "bytes as dropped"
    daemon.kill()
    again = start_daemon(jobTypes=plugins.types)
    wait_until(lambda: records(again.spool, "completed"))
    assert plugins.calls("kept")[0]["at"] >= run_at.timestamp()
    assert again.stop() == 0
