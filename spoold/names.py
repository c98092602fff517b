"""The spool's names, spelled once: job ids, priorities, and the file names a job gets.

A pending job's name is its *stem* plus ``.json``: ``<rank>-<priority>-<accepted
UTC>Z-<id>``, so that plain ``ls pending/`` shows dispatch order and ``grep`` finds an
id in any folder. A running job's name adds ``@<owner>`` (the daemon holding it).
Every other module reads and makes these names through this one.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from spoold.times import utc_second

PRIORITIES = ("critical", "high", "normal", "low")
RANKS = {priority: rank for rank, priority in enumerate(PRIORITIES)}

ID_PATTERN = r"^[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,127}$"
# \Z, not $: "$" also matches before a final newline, and "a\n" is no id.
ID_RE = re.compile(ID_PATTERN[:-1] + r"\Z")
ID_RULE = "1-128 of A-Z a-z 0-9 . _ - (not starting with .)"

# A follow-up job's id names its parent (followups.py); a producer's id may not look like one.
FOLLOW_UP_ID_RE = re.compile(r"\.(then|onFailure)\.[0-9]+\Z")


def follow_up_id(parent_id: str, key: str, index: int) -> str:
    """The id of a job's follow-up: `<parent id>.then.0`, `<parent id>.onFailure.1`..."""
    return f"{parent_id}.{key}.{index}"


STEM_RE = re.compile(
    rf"^(?P<rank>[0-{len(PRIORITIES) - 1}])-(?P<priority>{'|'.join(PRIORITIES)})-"
    rf"(?P<ts>\d{{8}}T\d{{6}}\.\d{{9}})Z-(?P<id>{ID_PATTERN[1:-1]})\Z"
)
NAME_PRIORITY_RE = re.compile(rf"^({'|'.join(PRIORITIES)})[-_.]")
JSON = ".json"
ERROR_SUFFIX = ".error.json"


class Stem(NamedTuple):
    """What a pending name says: priority, acceptance time, id."""

    priority: str
    accepted: float
    id: str
    text: str


def make_stem(priority: str, accepted_ns: int, job_id: str) -> str:
    """The dispatch-order name of a job, without '.json'."""
    seconds, nanos = divmod(accepted_ns, 1_000_000_000)
    ts = utc_second(seconds, "%Y%m%dT%H%M%S")
    return f"{RANKS[priority]}-{priority}-{ts}.{nanos:09d}Z-{job_id}"


def parse_stem(stem: str) -> Stem | None:
    """Read a stem back; None for names spoold did not make."""
    match = STEM_RE.match(stem)
    if not match:
        return None
    ts = match.group("ts")
    accepted = _epoch_second(ts) + int(ts[16:]) / 1e9
    return Stem(match.group("priority"), accepted, match.group("id"), stem)


def accepted_ns(stem: Stem) -> int:
    """The acceptance time a stem spells, to the nanosecond (Stem.accepted is a float)."""
    ts = STEM_RE.match(stem.text).group("ts")  # type: ignore[union-attr]
    return _epoch_second(ts) * 1_000_000_000 + int(ts[16:])


def _epoch_second(ts: str) -> int:
    """'20260131T090000.123456789' → the epoch second of 2026-01-31 09:00:00 UTC."""
    import calendar  # here: it loads datetime and locale, which the helper never needs

    year, month, day = int(ts[0:4]), int(ts[4:6]), int(ts[6:8])
    return calendar.timegm((year, month, day, int(ts[9:11]), int(ts[11:13]), int(ts[13:15])))


def stem_of(name: str) -> Stem | None:
    """The stem of a job's file name ('<stem>.json' in pending/, completed/, failed/);
    None for any other name."""
    return parse_stem(name[: -len(JSON)]) if name.endswith(JSON) else None


def running_stem(name: str) -> tuple[str, str] | None:
    """'<stem>@<owner>.json' → (stem, owner)."""
    if not name.endswith(JSON) or "@" not in name:
        return None
    stem, owner = name[: -len(JSON)].rsplit("@", 1)
    return stem, owner


def is_job_name(name: str) -> bool:
    """Names in incoming/ that spoold takes: '*.json', not a dot-file."""
    return name.endswith(JSON) and not name.startswith(".")


def priority_from_name(name: str) -> str | None:
    """'high-invoice-42.json' → 'high'; None when the name names no priority."""
    match = NAME_PRIORITY_RE.match(name)
    return match.group(1) if match else None
