"""ISO 8601 in and out: every time a user reads or writes goes through here."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

# The text of the last second formatted, per format: a record has three times and a
# pending name one, mostly within the same second, and formatting costs more than
# the rest of the name.
_last_second: dict[str, tuple[int, str]] = {}


def utc_second(second: int, fmt: str) -> str:
    """time.strftime(fmt) of an epoch second in UTC, remembered for the last second."""
    cached = _last_second.get(fmt)
    if cached is None or cached[0] != second:
        cached = (second, time.strftime(fmt, time.gmtime(second)))
        _last_second[fmt] = cached
    return cached[1]


def iso(ts: float) -> str:
    """An epoch time as ISO 8601 in UTC with milliseconds: what
    datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds") gives."""
    fraction, whole = math.modf(ts)  # rounded to microseconds as datetime does
    micros = round(fraction * 1e6)
    second, micros = int(whole) + micros // 1_000_000, micros % 1_000_000
    return f"{utc_second(second, '%Y-%m-%dT%H:%M:%S')}.{micros // 1000:03d}+00:00"


def iso_or_none(ts: float | None) -> str | None:
    return None if ts is None else iso(ts)


def parse_time(value: str, tz: ZoneInfo) -> float:
    """ISO 8601 → epoch seconds; a time without an offset is read in tz. ValueError if bad,
    or if it is not a time in UTC too (9999-12-31T23:59-14:00 is year 10000 there, which
    no ISO 8601 time shown for it could hold)."""
    from datetime import UTC, datetime  # here: the helper imports this module, never this

    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    try:
        moment.astimezone(UTC)
    except OverflowError as e:
        raise ValueError(f"{value!r} is out of range in UTC") from e
    return moment.timestamp()
