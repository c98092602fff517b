"""ISO 8601 in and out: every time a user reads or writes goes through here."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo


def iso(ts: float) -> str:
    """An epoch time as ISO 8601 in UTC with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def iso_or_none(ts: float | None) -> str | None:
    return None if ts is None else iso(ts)


def parse_time(value: str, tz: ZoneInfo) -> float:
    """ISO 8601 → epoch seconds; a time without an offset is read in tz. ValueError if bad."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.timestamp()
