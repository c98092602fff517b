"""cleanup: delete old regular files directly in one folder, never following symlinks.

A job file names the folder, so the config decides where deleting is allowed
at all (``cleanup.allowedRoots``). The folder is opened once, without
following a symlink, and everything after works on that open folder, so a
path swapped under us cannot redirect the deletes.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from spoold.config import CleanupConfig
from spoold.errors import PermanentJobError
from spoold.jobcontext import JobContext
from spoold.jobs.basic import wrong_field

logger = logging.getLogger(__name__)

DAY = 86400.0
NO_SUCH_FOLDER = (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG)  # no retry changes these
REPORT_EVERY = 100  # files between two progress reports (a cancel is checked at each file)


def validate(config: CleanupConfig, job: dict[str, Any]) -> list[str]:
    """Problems with directory and maxAgeDays, found before the job is accepted; a folder
    outside cleanup.allowedRoots among them (it is checked again when the job runs)."""
    problems = []
    directory = job.get("directory")
    if not isinstance(directory, str) or not directory or "\0" in directory:
        problems.append(wrong_field(job, "directory", "a folder path string"))
    elif (refusal := _root_refusal(config, directory)) is not None:
        problems.append(f"field 'directory': {refusal}")
    age = job.get("maxAgeDays")
    if not _is_days(age):
        problems.append(wrong_field(job, "maxAgeDays", "a number of days, 0 or more"))
    return problems


def _is_days(value: Any) -> bool:
    """A number of days, 0 or more, that a float holds (so that it times a day)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return value >= 0 and math.isfinite(value * DAY)
    except OverflowError:
        return False


def clean_directory(
    config: CleanupConfig, job: dict[str, Any], context: JobContext | None = None
) -> None:
    """Delete the regular files in job['directory'] last modified over maxAgeDays ago;
    a cancel stops it before the next file (JobCancelled). Without a context (called
    outside a daemon) nothing can cancel it."""
    context = context or JobContext(str(job.get("id")))
    problems = validate(config, job)  # the config may have changed since the job was accepted
    if problems:
        raise PermanentJobError("; ".join(problems))
    directory = job["directory"]
    cutoff = time.time() - job["maxAgeDays"] * DAY
    real = os.path.realpath(directory)
    fd = _open_folder(directory, real)
    try:
        removed, errors = _remove_old_files(fd, cutoff, context)
    finally:
        os.close(fd)
    logger.info("cleanup job %s removed %d file(s) from %s", job.get("id"), removed, real)
    if errors:
        raise OSError(f"cleanup of {real} removed {removed} file(s) but not: {'; '.join(errors)}")


def _root_refusal(config: CleanupConfig, directory: str) -> str | None:
    """Why cleanup may not delete in directory (its real path, symlinks resolved), or None."""
    if not config.allowed_roots:
        return (
            f"cleanup of {directory!r} refused: no folder is allowed; list the folders cleanup "
            "may delete from in the config's cleanup.allowedRoots"
        )
    real = os.path.realpath(directory)
    roots = [os.path.realpath(root) for root in config.allowed_roots]
    if not any(Path(real).is_relative_to(root) for root in roots):
        return (
            f"cleanup of {directory!r} refused: {real} is not inside cleanup.allowedRoots "
            f"({', '.join(roots)})"
        )
    return None


def _open_folder(directory: str, real: str) -> int:
    """Open the folder itself (not a symlink to one) and make sure it is the one we checked."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(directory, flags)
    except OSError as e:
        raise _open_failure(directory, e) from e
    opened, checked = os.fstat(fd), _stat_or_none(real)
    if checked is None or (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino):
        os.close(fd)
        raise OSError(f"cleanup of {directory!r}: the folder changed while it was being checked")
    return fd


def _open_failure(directory: str, error: OSError) -> Exception:
    """Why the folder cannot be cleaned; permanent unless the cause may pass."""
    if os.path.islink(directory):
        return PermanentJobError(
            f"cleanup of {directory!r} refused: it is a symlink, and cleanup never follows symlinks"
        )
    if error.errno in NO_SUCH_FOLDER:
        return PermanentJobError(f"cleanup of {directory!r}: no such folder ({error.strerror})")
    return OSError(f"cleanup cannot open {directory!r}: {error.strerror or error}")


def _stat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _remove_old_files(fd: int, cutoff: float, context: JobContext) -> tuple[int, list[str]]:
    """Unlink the old regular files in the open folder; (how many, the ones that failed)."""
    with os.scandir(fd) as entries:
        old = [entry.name for entry in entries if _is_old_file(entry, cutoff)]
    removed, errors = 0, []
    for done, name in enumerate(old):
        context.check()
        if done % REPORT_EVERY == 0:
            context.progress(done / len(old), f"{done} of {len(old)} old files done")
        try:
            os.unlink(name, dir_fd=fd)
            removed += 1
        except FileNotFoundError:
            pass  # someone else removed it first: the goal is met
        except OSError as e:
            errors.append(f"{name}: {e.strerror or e}")
    context.progress(1, f"{len(old)} of {len(old)} old files done")
    return removed, errors


def _is_old_file(entry: os.DirEntry[str], cutoff: float) -> bool:
    """A regular file (not a symlink, folder or device) last modified before cutoff."""
    try:
        return (
            entry.is_file(follow_symlinks=False)
            and entry.stat(follow_symlinks=False).st_mtime < cutoff
        )
    except OSError:
        return False
