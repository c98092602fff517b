"""The small built-ins (log, queue_stats, noop) and the field checks every built-in shares."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)
# A log job's message goes to its own logger, so an operator can route or mute it alone.
message_logger = logging.getLogger("spoold.jobs.log")
LINE_BREAKS = re.compile("[\x85\u2028\u2029]")


def validate_log(job: dict[str, Any]) -> list[str]:
    """A log job needs the text it is meant to write."""
    if not isinstance(job.get("message"), str):
        return [wrong_field(job, "message", "a string")]
    return []


def log_message(job: dict[str, Any]) -> None:
    """Write the job's message to the daemon's log at INFO."""
    message_logger.info("%s", job["message"])


def log_queue_stats(queue_stats: Callable[[], dict[str, Any]], job: dict[str, Any]) -> None:
    """Log the queue statistics the daemon hands us (counts per folder and priority)."""
    logger.info("queue stats: %s", queue_stats())


def noop(job: dict[str, Any]) -> None:
    """Do nothing, as cheaply as possible: benchmarks run it 100,000 times."""


def wrong_field(job: dict[str, Any], name: str, expected: str) -> str:
    """The problem with a field, worded for the person who wrote the job file."""
    if name not in job:
        return f"field '{name}' is required: {expected}"
    return f"field '{name}' must be {expected}, got {shown(job[name])}"


def shown(value: Any, limit: int = 60) -> str:
    """A value as the job file spells it (JSON), cut short so one bad field stays one line."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    text = LINE_BREAKS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)  # JSON keeps these as is
    return text if len(text) <= limit else text[: limit - 3] + "..."
