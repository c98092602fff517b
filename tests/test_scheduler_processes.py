"""The scheduler across processes: `spoold run-task`, `check-config`, `next`, and several
daemons sharing one spool. Real subprocesses on tmp_path; waits poll, never sleep."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import (
    DaemonProcess,
    base_config,
    daemon_env,
    job_files,
    records,
    spoold_cli,
    wait_until,
)

SLOW_TASK = {"name": "t", "cron": "0 0 1 1 *", "job": {"type": "slow"}}


def write_config(folder: Path, **overrides) -> Path:
    path = folder / "spoold.yaml"
    path.write_text(yaml.safe_dump(base_config(**overrides)))
    return path


def task_status(daemon: DaemonProcess, name: str = "t") -> dict:
    return next(t for t in daemon.status()["scheduler"]["tasks"] if t["name"] == name)


def job_ids(spool: Path, folder: str) -> list[str]:
    return [json.loads((spool / folder / n).read_bytes())["id"] for n in job_files(spool, folder)]


# --- run-task -------------------------------------------------------------------------------


def test_run_task_without_a_daemon_refuses_while_the_last_run_is_pending(tmp_path):
    task = {"name": "t", "cron": "0 0 1 1 *", "job": {"type": "noop"}}
    config = write_config(tmp_path, schedule=[task])
    first = spoold_cli("run-task", "t", "--config", str(config), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.strip()
    assert re.fullmatch(r"t\.run-\d{8}T\d{6}Z", job_id)
    assert job_ids(tmp_path / "spool", "pending") == [job_id]
    again = spoold_cli("run-task", "t", "--config", str(config), cwd=tmp_path)
    assert again.returncode == 1
    assert f"task 't' is busy: its job {job_id} is still pending" in again.stderr
    unknown = spoold_cli("run-task", "nope", "--config", str(config), cwd=tmp_path)
    assert unknown.returncode == 1
    assert "no task named 'nope' (tasks: t)" in unknown.stderr


def test_run_task_against_a_daemon_is_busy_while_the_job_runs_and_counted_after(
    start_daemon, plugins
):
    daemon = start_daemon(schedule=[SLOW_TASK], jobTypes=plugins.types)
    args = ("run-task", "t", "--config", str(daemon.config_path))
    job_id = spoold_cli(*args, cwd=daemon.workdir).stdout.strip()
    wait_until(lambda: plugins.calls(job_id))  # the daemon found it and runs it
    busy = spoold_cli(*args, cwd=daemon.workdir)
    assert busy.returncode == 1 and "is still running" in busy.stderr
    wait_until(lambda: task_status(daemon)["isRunning"])
    plugins.release(job_id)
    wait_until(lambda: task_status(daemon)["runCount"] == 1)
    status = task_status(daemon)
    assert not status["isRunning"] and status["lastRun"] is not None
    summary = spoold_cli("status", "--config", str(daemon.config_path), cwd=daemon.workdir)
    assert "    t: '0 0 1 1 *' next " in summary.stdout
    assert "runs 1, errors 0, skipped 0" in summary.stdout
    assert daemon.stop() == 0


def test_run_task_at_a_time_from_two_processes_at_once_fires_it_once(tmp_path):
    names = ["t1", "t2", "t3"]
    tasks = [{"name": n, "cron": "*/5 * * * *", "job": {"type": "noop"}} for n in names]
    config = write_config(tmp_path, schedule=tasks)
    command = [sys.executable, "-m", "spoold", "run-task", "--config", str(config)]
    at = ["--at", "2026-01-01T00:05:00Z"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [
        subprocess.Popen([*command, name, *at], cwd=tmp_path, env=daemon_env(), **pipes)
        for name in names
        for _ in range(2)
    ]
    results = [(p.wait(30), *p.communicate()) for p in procs]
    assert sorted(rc for rc, _, _ in results) == [0, 0, 0, 1, 1, 1]
    fired = sorted(out.strip() for rc, out, _ in results if rc == 0)
    assert fired == [f"{name}.20260101T0005Z" for name in names]
    assert all("already decided" in err for rc, _, err in results if rc == 1)
    assert sorted(job_ids(tmp_path / "spool", "pending")) == fired


def test_run_task_at_a_time_the_task_never_runs_is_refused(tmp_path):
    config = write_config(tmp_path, schedule=[{"name": "t", "cron": "*/5 * * * *",
                                                "job": {"type": "noop"}}])  # fmt: skip
    result = spoold_cli(
        "run-task", "t", "--at", "2026-01-01T00:03:00Z", "--config", str(config), cwd=tmp_path
    )
    assert result.returncode == 2
    assert "has no scheduled run at 2026-01-01T00:03:00+00:00" in result.stderr


# --- several daemons on one spool --------------------------------------------------------------


def start_together(tmp_path: Path, nodes: list[str], **overrides) -> list[DaemonProcess]:
    """Daemons in their own folders on one spool, started at once (not one after another)."""
    spool = tmp_path / "spool"
    daemons = []
    for node in nodes:
        workdir = tmp_path / node
        workdir.mkdir()
        config = base_config(spool=str(spool), node=node, **overrides)
        daemons.append(DaemonProcess(workdir, config, []))
    return daemons


def test_two_daemons_catching_up_the_same_run_enqueue_it_once(tmp_path):
    """Both daemons wake to a yearly run they missed (state files two years old, catchUp:
    once) and decide it in their first tick, at the same moment: one job runs."""
    schedule = tmp_path / "spool" / "schedule"
    schedule.mkdir(parents=True)
    for node in ("a", "b"):
        state = {"version": 1, "tasks": {"t": {"checked": 1.7e9 - 2 * 366 * 86400}}}
        (schedule / f"state-{node}.json").write_text(json.dumps(state))
    task = {"name": "t", "cron": "0 0 1 1 *", "catchUp": "once", "job": {"type": "noop"}}
    daemons = start_together(tmp_path, ["a", "b"], schedule=[task])
    try:
        for daemon in daemons:
            daemon.wait_ready()
            wait_until(lambda d=daemon: task_status(d)["runCount"] == 1)
        [done] = records(tmp_path / "spool", "completed")
        assert re.fullmatch(r"t\.20\d\d0101T0000Z", done["id"])
        assert sum("enqueued job" in d.log() for d in daemons) == 1
        assert [d.stop() for d in daemons] == [0, 0]
    finally:
        for daemon in daemons:
            daemon.kill()


@pytest.mark.slow
def test_two_daemons_on_one_spool_fire_each_minute_once(tmp_path):
    """The real thing, on the wall clock: up to a minute's wait for the next fire."""
    task = {"name": "m", "cron": "* * * * *", "job": {"type": "noop"}}
    daemons = start_together(tmp_path, ["a", "b", "c"], schedule=[task])
    try:
        for daemon in daemons:
            daemon.wait_ready()
        for daemon in daemons:
            wait_until(lambda d=daemon: task_status(d, "m")["runCount"] >= 1, timeout=75)
        ids = Counter(r["id"] for r in records(tmp_path / "spool", "completed"))
        assert ids and all(count == 1 for count in ids.values()), ids
        markers = [n for n in (tmp_path / "spool" / "schedule").iterdir() if n.suffix == ".fire"]
        assert sorted(m.stem for m in markers) == sorted(ids)
        assert [d.stop() for d in daemons] == [0, 0, 0]
    finally:
        for daemon in daemons:
            daemon.kill()


# --- check-config and next ---------------------------------------------------------------------


def test_check_config_accepts_the_shipped_config():
    root = Path(__file__).resolve().parent.parent
    result = spoold_cli("check-config", "config/spoold.yaml", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "OK (2 task(s)" in result.stdout


def test_check_config_names_file_line_and_key_of_every_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "shedule: []\n"  # 1
        "schedule:\n"  # 2
        "  - name: a\n"  # 3
        "    cron: '61 * * * *'\n"  # 4
        "    job: {type: noop}\n"  # 5
        "  - name: a\n"  # 6
        "    cron: '@daily'\n"  # 7
        "    timezone: Mars/Olympus_Mons\n"  # 8
        "    job: {type: noop}\n"  # 9
    )
    result = spoold_cli("check-config", str(path), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert f"{path}:1: shedule: unknown key (did you mean 'schedule'?)" in lines
    assert f"{path}:4: schedule.0.cron: bad minute '61' in '61 * * * *': minute takes 0-59" in lines
    assert f"{path}:6: schedule.1.name: task name 'a' is used twice (first on line 3)" in lines
    assert any(
        line.startswith(f"{path}:8: schedule.1.timezone: unknown time zone") for line in lines
    )


def test_next_prints_times_with_their_offset(tmp_path):
    result = spoold_cli("next", "0 12 * * mon-fri", "-n", "3", "--tz", "America/New_York",
                        cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT12:00:00-0[45]:00", line) for line in lines)
    bad = spoold_cli("next", "* * * * * *", cwd=tmp_path)
    assert bad.returncode == 2 and "six fields given" in bad.stderr


@pytest.mark.parametrize("command", ["run-task", "next", "check-config"])
def test_help(tmp_path, command):
    result = spoold_cli(command, "--help", cwd=tmp_path)
    assert result.returncode == 0 and "usage: spoold " + command in result.stdout


def run_task(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return spoold_cli("run-task", *args, "--config", str(config), cwd=config.parent)


def test_run_task_at_a_run_still_to_come_is_refused_and_leaves_it_to_fire(tmp_path):
    """Before, `--at` the task's next run enqueued it at once, and at its time the daemon
    ran nothing: the run was decided already."""
    config = write_config(tmp_path, schedule=[{"name": "t", "cron": "0 0 1 1 *",
                                                "job": {"type": "noop"}}])  # fmt: skip
    result = run_task(config, "t", "--at", "2999-01-01T00:00Z")
    assert result.returncode == 2 and "is still to come and fires by itself" in result.stderr
    assert job_files(tmp_path / "spool", "pending") == []
    assert not list((tmp_path / "spool").glob("schedule/*.fire"))


def test_run_task_at_while_the_task_is_busy_refuses_and_can_be_asked_again(tmp_path):
    """Backfilling missed runs one after another: while the first is pending the second
    is refused as busy, not recorded as skipped for good (before, it could never run)."""
    config = write_config(tmp_path, schedule=[{"name": "d", "cron": "0 3 * * *",
                                                "job": {"type": "noop"}}])  # fmt: skip
    assert run_task(config, "d", "--at", "2026-12-01T03:00Z").returncode == 0
    busy = run_task(config, "d", "--at", "2026-12-02T03:00Z")
    assert busy.returncode == 1 and "task 'd' is busy: its job d.20261201T0300Z" in busy.stderr
    assert not (tmp_path / "spool" / "schedule" / "d.20261202T0300Z.fire").exists()
    for name in job_files(tmp_path / "spool", "pending"):  # as if the first run had ended
        os.rename(tmp_path / "spool" / "pending" / name, tmp_path / "spool" / "completed" / name)
    again = run_task(config, "d", "--at", "2026-12-02T03:00Z")
    assert (again.returncode, again.stdout) == (0, "d.20261202T0300Z\n"), again.stderr


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-10-25T02:30+02:00", "s.20261025T0030Z"),  # the first 02:30 of the hour repeated
        ("2026-10-25T00:30Z", "s.20261025T0030Z"),
        ("2026-03-01T02:30", "u.20260301T0730Z"),  # no offset: the task's zone, New York
    ],
)
def test_run_task_at_reads_times_as_the_tasks_schedule_does(tmp_path, at, expected):
    """Before, a run in the hour a clock repeats was never found (Python finds no time in
    that hour equal to one in another zone), and a time without an offset was read in the
    config's zone rather than the task's."""
    tasks = [{"name": "s", "cron": "30 2 * * *", "job": {"type": "noop"}},
             {"name": "u", "cron": "30 2 * * *", "timezone": "America/New_York",
              "job": {"type": "noop"}}]  # fmt: skip
    config = write_config(tmp_path, timezone="Europe/Berlin", schedule=tasks)
    result = run_task(config, expected[0], "--at", at)
    assert (result.returncode, result.stdout) == (0, f"{expected}\n"), result.stderr


@pytest.mark.parametrize(
    "at", ["", "0001-01-01T00:00", "9999-12-31T23:59", "9999-12-31T23:59-01:00"]
)
def test_run_task_at_an_empty_or_unusable_time_is_refused_in_a_line(tmp_path, at):
    """Before, '' ran the task now (an empty "$WHEN" in a script) and times at the ends
    of the calendar ended in a traceback."""
    config = write_config(tmp_path, schedule=[{"name": "t", "cron": "* * * * *",
                                                "job": {"type": "noop"}}])  # fmt: skip
    result = run_task(config, "t", "--at", at)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("spoold run-task: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert job_files(tmp_path / "spool", "pending") == []
