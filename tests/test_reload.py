"""Hot reload, as an operator does it: edit the config of a running daemon and read
status.json. Real processes, real files; waits poll, never sleep."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import yaml
from conftest import alias_bomb, base_config, records, wait_until

TASK_A = {"name": "a", "cron": "0 0 1 1 *", "job": {"type": "noop"}}
TASK_B = {"name": "b", "cron": "*/7 * * * *", "job": {"type": "log", "message": "hi"}}


def write_by_rename(path: Path, config: dict[str, Any]) -> None:
    """As vim, sed -i and atomic writers save: a new file renamed over the old one."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(yaml.safe_dump(config))
    os.replace(tmp, path)


def write_in_place(path: Path, text: str) -> None:
    """As `echo > file` and most editors' plain save: truncate and write the same inode."""
    with open(path, "r+") as f:
        f.truncate(0)
        f.write(text)


def tasks(daemon) -> list[str]:
    return [t["name"] for t in daemon.status()["scheduler"]["tasks"]]


def config_error(daemon) -> str | None:
    return daemon.status()["config"]["error"]


def applied_within(predicate, seconds: float = 3.0) -> None:
    """The edit shows in status.json within `seconds` (2 s to apply, status every second)."""
    start = time.monotonic()
    wait_until(predicate, timeout=10)
    assert time.monotonic() - start < seconds


def test_an_edit_saved_by_rename_is_applied(start_daemon):
    daemon = start_daemon(schedule=[TASK_A])
    assert tasks(daemon) == ["a"]
    write_by_rename(daemon.config_path, base_config(schedule=[TASK_A, TASK_B]))
    applied_within(lambda: tasks(daemon) == ["a", "b"])
    task_b = daemon.status()["scheduler"]["tasks"][1]
    assert task_b["schedule"] == "*/7 * * * *" and task_b["nextRun"].endswith("+00:00")
    write_by_rename(daemon.config_path, base_config(schedule=[TASK_B]))
    applied_within(lambda: tasks(daemon) == ["b"])
    assert daemon.stop() == 0


def test_an_edit_written_in_place_is_applied_and_a_time_zone_change_shows(start_daemon):
    daemon = start_daemon(schedule=[TASK_A])
    config = base_config(schedule=[TASK_A], timezone="Asia/Kolkata")
    write_in_place(daemon.config_path, yaml.safe_dump(config))
    applied_within(lambda: daemon.status()["scheduler"]["tasks"][0]["nextRun"].endswith("+05:30"))
    assert daemon.status()["scheduler"]["tasks"][0]["timezone"] == "Asia/Kolkata"
    assert daemon.stop() == 0


def test_an_invalid_edit_keeps_the_last_good_config_until_it_is_fixed(start_daemon):
    daemon = start_daemon(schedule=[TASK_A])
    bad = yaml.safe_dump(base_config(schedule=[TASK_A, {**TASK_B, "cron": "*/7 * * *"}]))
    write_in_place(daemon.config_path, bad)
    wait_until(lambda: config_error(daemon))
    error = config_error(daemon)
    line = next(n for n, text in enumerate(bad.splitlines(), 1) if "*/7 * * *" in text)
    assert error.startswith(f"{daemon.config_path}:{line}: schedule.1.cron: four fields given")
    assert tasks(daemon) == ["a"]
    # logged just after the error is kept for status.json: status may show it first
    wait_until(lambda: f"{daemon.config_path}:{line}: schedule.1.cron" in daemon.log())
    write_by_rename(daemon.config_path, base_config(schedule=[TASK_A, TASK_B]))
    applied_within(lambda: config_error(daemon) is None and tasks(daemon) == ["a", "b"])
    assert daemon.stop() == 0


def test_a_typo_in_a_key_is_an_error_not_silence(start_daemon):
    daemon = start_daemon(schedule=[TASK_A])
    config = base_config(shedule=[TASK_A, TASK_B])
    write_by_rename(daemon.config_path, config)
    wait_until(lambda: config_error(daemon))
    assert "shedule: unknown key (did you mean 'schedule'?)" in config_error(daemon)
    assert tasks(daemon) == ["a"]
    assert daemon.stop() == 0


def test_restart_only_keys_are_kept_and_named_in_the_log(start_daemon):
    daemon = start_daemon(schedule=[TASK_A])
    write_by_rename(daemon.config_path, base_config(schedule=[TASK_B], workers=7))
    applied_within(lambda: tasks(daemon) == ["b"])
    assert daemon.status()["worker"]["concurrency"] == 2
    wait_until(lambda: "workers changed; restart spoold to apply" in daemon.log())
    assert daemon.stop() == 0


def test_a_task_job_that_a_reload_would_break_is_refused(start_daemon):
    daemon = start_daemon(schedule=[TASK_A])
    broken = {**TASK_B, "job": {"type": "log"}}  # no message: every run would fail
    write_by_rename(daemon.config_path, base_config(schedule=[TASK_A, broken]))
    wait_until(lambda: config_error(daemon))
    assert "schedule.1.job: field 'message' is required" in config_error(daemon)
    assert tasks(daemon) == ["a"]
    assert daemon.stop() == 0


def test_an_alias_bomb_saved_over_the_config_is_refused_and_the_daemon_serves_on(start_daemon):
    """Hostile: a 1 KiB YAML alias bomb (10^10 values expanded) saved over the config of
    a running daemon: the reload refuses it at once, the last good config stays, and a
    dropped job still completes."""
    daemon = start_daemon(schedule=[TASK_A])
    write_in_place(daemon.config_path, alias_bomb())
    wait_until(lambda: config_error(daemon))
    expected = "over 100000 keys and list items once its aliases (*name) are expanded"
    assert config_error(daemon) == f"{daemon.config_path}: {expected}: use fewer aliases"
    assert tasks(daemon) == ["a"]
    daemon.drop("after.json", {"type": "noop", "id": "after"})
    wait_until(lambda: "after" in [r["id"] for r in records(daemon.spool, "completed")])
    assert daemon.stop() == 0
