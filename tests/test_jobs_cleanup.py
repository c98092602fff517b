"""cleanup on real folders under tmp_path: what it deletes, and everything it must leave alone."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from spoold.config import CleanupConfig, Config
from spoold.errors import JobCancelled, PermanentJobError
from spoold.jobcontext import JobContext
from spoold.jobs.cleanup import clean_directory, validate
from spoold.jobs.registry import build_registry

DAY = 86400
ANYWHERE = CleanupConfig(allowed_roots=(Path("/"),))


def cleanup_job(directory: Path | str, max_age_days: float = 7, **fields: Any) -> dict[str, Any]:
    job = {"type": "cleanup", "id": "clean-1", "attempts": 1, "timeout": 5.0}
    return {**job, "directory": str(directory), "maxAgeDays": max_age_days, **fields}


def aged(path: Path, days: float, text: str = "x") -> Path:
    """A file whose mtime lies `days` in the past."""
    path.write_text(text)
    when = time.time() - days * DAY
    os.utime(path, (when, when))
    return path


def age_link(link: Path, days: float) -> None:
    """Make a symlink itself (not its target) look old."""
    when = time.time() - days * DAY
    os.utime(link, (when, when), follow_symlinks=False)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "logs").mkdir(parents=True)
    return tmp_path / "root"


@pytest.fixture
def allowed(root: Path) -> CleanupConfig:
    return CleanupConfig(allowed_roots=(root,))


def test_old_files_go_new_files_stay(root: Path, allowed: CleanupConfig) -> None:
    logs = root / "logs"
    aged(logs / "old.log", 10)
    aged(logs / ".hidden-old", 8)
    aged(logs / "new.log", 1)
    run = build_registry(Config(cleanup=allowed), dict)["cleanup"].run
    run(cleanup_job(logs, 7))
    assert sorted(os.listdir(logs)) == ["new.log"]


def test_a_fraction_of_a_day_counts(root: Path, allowed: CleanupConfig) -> None:
    logs = root / "logs"
    aged(logs / "a-day-old", 1)
    aged(logs / "an-hour-old", 1 / 24)
    clean_directory(allowed, cleanup_job(logs, 0.5))
    assert os.listdir(logs) == ["an-hour-old"]


def test_it_does_not_recurse_into_subfolders(root: Path, allowed: CleanupConfig) -> None:
    sub = root / "logs" / "sub"
    sub.mkdir()
    aged(sub / "old-inside.log", 30)
    os.utime(sub, (time.time() - 30 * DAY,) * 2)
    clean_directory(allowed, cleanup_job(root / "logs", 7))
    assert (sub / "old-inside.log").exists()


def test_symlinks_inside_are_left_alone_and_their_targets_too(
    tmp_path: Path, root: Path, allowed: CleanupConfig
) -> None:
    outside = aged(tmp_path / "precious.txt", 30)
    logs = root / "logs"
    (logs / "to-file").symlink_to(outside)
    (logs / "to-dir").symlink_to(tmp_path, target_is_directory=True)
    (logs / "dangling").symlink_to(tmp_path / "nothing-here")
    for name in ("to-file", "to-dir", "dangling"):
        age_link(logs / name, 30)
    aged(logs / "old.log", 30)
    clean_directory(allowed, cleanup_job(logs, 7))
    assert sorted(os.listdir(logs)) == ["dangling", "to-dir", "to-file"]
    assert outside.read_text() == "x"


def test_a_symlinked_directory_argument_is_refused(root: Path, allowed: CleanupConfig) -> None:
    logs = root / "logs"
    aged(logs / "old.log", 30)
    (root / "link").symlink_to(logs, target_is_directory=True)
    with pytest.raises(PermanentJobError, match="is a symlink, and cleanup never follows symlinks"):
        clean_directory(allowed, cleanup_job(root / "link", 7))
    assert (logs / "old.log").exists()


def test_a_folder_outside_the_allowed_roots_is_refused(
    tmp_path: Path, allowed: CleanupConfig
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    aged(elsewhere / "old.log", 30)
    with pytest.raises(PermanentJobError, match=r"is not inside cleanup\.allowedRoots"):
        clean_directory(allowed, cleanup_job(elsewhere, 7))
    assert (elsewhere / "old.log").exists()


def test_dot_dot_cannot_climb_out_of_an_allowed_root(
    tmp_path: Path, root: Path, allowed: CleanupConfig
) -> None:
    aged(tmp_path / "old.log", 30)
    with pytest.raises(PermanentJobError, match=r"is not inside cleanup\.allowedRoots"):
        clean_directory(allowed, cleanup_job(f"{root}/logs/../..", 7))
    assert (tmp_path / "old.log").exists()


def test_a_path_through_a_symlink_to_outside_is_refused(
    tmp_path: Path, root: Path, allowed: CleanupConfig
) -> None:
    (tmp_path / "outside").mkdir()
    aged(tmp_path / "outside" / "old.log", 30)
    (root / "door").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(PermanentJobError, match=r"is not inside cleanup\.allowedRoots"):
        clean_directory(allowed, cleanup_job(root / "door" / "outside", 7))
    assert (tmp_path / "outside" / "old.log").exists()


def test_no_allowed_roots_refuses_cleanup_and_says_what_to_set(root: Path) -> None:
    aged(root / "logs" / "old.log", 30)
    with pytest.raises(PermanentJobError, match=r"cleanup\.allowedRoots"):
        clean_directory(CleanupConfig(allowed_roots=()), cleanup_job(root / "logs", 7))
    assert (root / "logs" / "old.log").exists()


def test_an_allowed_root_given_through_a_symlink_is_resolved(tmp_path: Path, root: Path) -> None:
    (tmp_path / "root-link").symlink_to(root, target_is_directory=True)
    aged(root / "logs" / "old.log", 30)
    clean_directory(CleanupConfig((tmp_path / "root-link",)), cleanup_job(root / "logs", 7))
    assert os.listdir(root / "logs") == []


def test_the_root_itself_may_be_cleaned(root: Path, allowed: CleanupConfig) -> None:
    aged(root / "old.log", 30)
    clean_directory(allowed, cleanup_job(root, 7))
    assert sorted(os.listdir(root)) == ["logs"]


def test_a_missing_folder_fails_permanently_naming_it(root: Path, allowed: CleanupConfig) -> None:
    with pytest.raises(PermanentJobError, match=r"'.*/root/gone': no such folder"):
        clean_directory(allowed, cleanup_job(root / "gone", 7))


def test_a_name_too_long_for_a_folder_fails_permanently(root: Path, allowed: CleanupConfig) -> None:
    with pytest.raises(PermanentJobError, match="no such folder"):
        clean_directory(allowed, cleanup_job(root / ("x" * 300), 7))


def test_a_file_given_as_the_folder_fails_permanently(root: Path, allowed: CleanupConfig) -> None:
    aged(root / "file.txt", 30)
    with pytest.raises(PermanentJobError, match="no such folder"):
        clean_directory(allowed, cleanup_job(root / "file.txt", 7))
    assert (root / "file.txt").exists()


def test_the_number_removed_is_logged(
    root: Path, allowed: CleanupConfig, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("a", "b", "c"):
        aged(root / "logs" / name, 30)
    with caplog.at_level(logging.INFO, logger="spoold.jobs.cleanup"):
        clean_directory(allowed, cleanup_job(root / "logs", 7))
    assert "removed 3 file(s)" in caplog.text


FOLDER, DAYS = "a folder path string", "a number of days, 0 or more"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"maxAgeDays": 7}, f"field 'directory' is required: {FOLDER}"),
        ({"directory": 5, "maxAgeDays": 7}, f"field 'directory' must be {FOLDER}, got 5"),
        ({"directory": "", "maxAgeDays": 7}, f"field 'directory' must be {FOLDER}, got \"\""),
        ({"directory": "/tmp"}, f"field 'maxAgeDays' is required: {DAYS}"),
        ({"directory": "/tmp", "maxAgeDays": "7"}, f"field 'maxAgeDays' must be {DAYS}, got \"7\""),
        ({"directory": "/tmp", "maxAgeDays": -1}, f"field 'maxAgeDays' must be {DAYS}, got -1"),
        ({"directory": "/tmp", "maxAgeDays": True}, f"field 'maxAgeDays' must be {DAYS}, got true"),
        ({"directory": "/tmp", "maxAgeDays": float("inf")}, "field 'maxAgeDays' must be"),
    ],
)
def test_validate_names_the_field_and_what_it_must_be(fields: dict[str, Any], problem: str) -> None:
    problems = validate(ANYWHERE, {"type": "cleanup", **fields})
    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_validate_accepts_whole_and_fractional_days() -> None:
    assert validate(ANYWHERE, {"directory": "/var/tmp", "maxAgeDays": 0}) == []
    assert validate(ANYWHERE, {"directory": "/var/tmp", "maxAgeDays": 1.5}) == []


def test_validate_refuses_a_folder_outside_the_allowed_roots_before_the_job_is_accepted(
    root: Path, allowed: CleanupConfig, tmp_path: Path
) -> None:
    (root / "logs" / "out").symlink_to(tmp_path)
    assert validate(allowed, cleanup_job(root / "logs")) == []
    for outside in (tmp_path, root / "logs" / ".." / "..", root / "logs" / "out"):
        [problem] = validate(allowed, cleanup_job(outside))
        assert problem.startswith("field 'directory': cleanup of") and "allowedRoots" in problem
    [problem] = validate(CleanupConfig(), cleanup_job(root))
    assert (
        "list the folders cleanup may delete from in the config's cleanup.allowedRoots" in problem
    )


def test_validate_refuses_days_no_clock_can_subtract() -> None:
    [problem] = validate(ANYWHERE, {"directory": "/var/tmp", "maxAgeDays": 10**400})
    assert problem.startswith("field 'maxAgeDays' must be a number of days")


def test_run_refuses_a_job_that_would_not_validate(root: Path, allowed: CleanupConfig) -> None:
    aged(root / "logs" / "old.log", 30)
    with pytest.raises(PermanentJobError, match="maxAgeDays"):
        clean_directory(allowed, cleanup_job(root / "logs", -3))
    assert (root / "logs" / "old.log").exists()


def test_a_cancel_stops_it_before_the_next_file_and_progress_is_reported(
    root: Path, allowed: CleanupConfig
) -> None:
    logs = root / "logs"
    for n in range(5):
        aged(logs / f"{n}.log", 10)
    asked = JobContext("clean-1")
    asked.request_cancel()
    with pytest.raises(JobCancelled):
        clean_directory(allowed, cleanup_job(logs, 7), asked)
    assert len(os.listdir(logs)) == 5  # not one file removed once asked to stop

    context = JobContext("clean-1")
    clean_directory(allowed, cleanup_job(logs, 7), context)
    assert os.listdir(logs) == []
    report = context.last_progress()
    assert report and (report["fraction"], report["text"]) == (1.0, "5 of 5 old files done")
