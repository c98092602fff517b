"""Cron time logic: which schedules spoold accepts and when they fire.

Pure functions only (no clock, no I/O), so the scheduler, the config check and
`spoold next` all agree, and tests pass fixed times. Parsing and stepping are
cronsim's; this module adds what spoold's contract asks on top of it: the
nicknames, the original three-field form, messages that name the bad field, a
time zone per call, and iteration that is strictly after its start and strictly
increasing in real time.

Daylight saving follows cronsim, which follows Debian cron: a schedule with a
fixed minute and hour (`30 2 * * *`) runs on the wall clock, once in a repeated
hour and at the first valid moment when its time is skipped; a schedule with a
`*` minute or hour (`0 * * * *`) runs in real time, every hour that passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice, takewhile
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from spoold.errors import CronError

FIELDS = ("minute", "hour", "day of month", "month", "day of week")
_ALLOWED = (
    "0-59",
    "0-23",
    "1-31, L (last day) or LW (last weekday)",
    "1-12 or jan-dec",
    "0-7 or sun-sat (0 and 7 are Sunday), 5L (last Friday), 5#2 (second Friday)",
)
NICKNAMES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_SHAPES = (
    "spoold takes five (minute hour day month weekday) "
    "or three (minute hour weekday), or a nickname such as @daily"
)
_COUNTS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Any fixed instant will do: cronsim checks the fields when it is built.
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)


def normalize(expr: str) -> str:
    """Five-field form of a valid schedule, so the rest of spoold sees one shape.

    Nicknames are expanded and the original design's three-field form
    'minute hour day-of-week' becomes 'minute hour * * day-of-week'.
    Raises CronError with the message `cron_problem` gives.
    """
    five = _five_fields(expr)
    _check_values(expr, five)
    return five


def cron_problem(expr: object) -> str | None:
    """None if `expr` is a valid schedule, else one short message a person can act on.

    For the config validator, which collects problems instead of stopping at
    the first one; so this never raises, whatever it is given.
    """
    if not isinstance(expr, str):
        return f"cron must be a string such as '*/5 * * * *', not {type(expr).__name__}"
    try:
        normalize(expr)
    except CronError as e:
        return str(e)
    return None


def zone(tz: ZoneInfo | str) -> ZoneInfo:
    """The zone named by `tz`; CronError for a name that is not an IANA zone."""
    if isinstance(tz, ZoneInfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(
            f"unknown time zone {tz!r} (use an IANA name such as Europe/Berlin)"
        ) from None


def next_times(expr: str, start: datetime, tz: ZoneInfo | str, n: int = 1) -> list[datetime]:
    """The next `n` fire times strictly after `start` (aware), as aware datetimes in `tz`.

    Fewer than `n` only for a schedule that cronsim finds no time for within
    50 years (e.g. `0 0 * 2 mon#5` has gaps of years, but still fires).
    """
    if n < 0:
        raise ValueError(f"n must be 0 or more, not {n}")
    return list(islice(_fire_times(normalize(expr), start, zone(tz)), n))


def fire_times_between(
    expr: str, after: datetime, until: datetime, tz: ZoneInfo | str
) -> Iterator[datetime]:
    """Fire times t with after < t <= until (both aware), in order, as datetimes in `tz`.

    The scheduler asks this for the runs due since its last tick and for the
    runs missed while the daemon was down; the bounds make consecutive windows
    meet without a gap or an overlap. Checks its arguments at once, not lazily.
    """
    five, zi = normalize(expr), zone(tz)
    end = _utc(until, "until")
    if end <= _utc(after, "after"):
        return iter(())
    return takewhile(lambda t: t.astimezone(UTC) <= end, _fire_times(five, after, zi))


def format_next(expr: str, n: int, tz: str, now: datetime) -> list[str]:
    """`spoold next`: the next `n` times after `now`, ISO 8601 with the zone's offset."""
    return [t.isoformat() for t in next_times(expr, now, tz, n)]


def _fire_times(five: str, start: datetime, zi: ZoneInfo) -> Iterator[datetime]:
    """cronsim's times after `start`, guarded to be strictly increasing real instants.

    cronsim steps the wall clock for fixed-time schedules, where a start in the
    second pass of a repeated hour can yield a time from the first pass, which
    is before `start`. Times are compared in UTC: two datetimes that share a
    tzinfo compare by wall time, blind to which pass of the hour they are in.
    """
    last = _utc(start, "start")
    for t in CronSim(five, last.astimezone(zi)):
        at = t.astimezone(UTC)
        if at > last:
            last = at
            yield at.astimezone(zi)


def _utc(t: datetime, name: str) -> datetime:
    """`t` as UTC; a naive time would silently mean the machine's zone, so it is refused."""
    if t.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {t.isoformat()}")
    return t.astimezone(UTC)


def _five_fields(expr: str) -> str:
    """The five fields of `expr` by count alone; values are checked afterwards."""
    fields = expr.split()
    if len(fields) == 5:
        return " ".join(fields)
    if len(fields) == 3:
        return f"{fields[0]} {fields[1]} * * {fields[2]}"
    if len(fields) == 1 and fields[0].startswith("@"):
        return _nickname(fields[0])
    raise CronError(_count_problem(expr, fields))


def _nickname(word: str) -> str:
    """The five fields a nickname stands for (case-insensitive, like cron's names)."""
    key = word.lower()
    if key in NICKNAMES:
        return NICKNAMES[key]
    if key == "@reboot":
        raise CronError("@reboot is not supported: spoold runs tasks at clock times, not at start")
    raise CronError(f"unknown nickname {word!r}: use one of {', '.join(NICKNAMES)}")


def _count_problem(expr: str, fields: list[str]) -> str:
    """Why `fields` is the wrong number of fields, with the likely intent where one is clear."""
    if not fields:
        return f"empty cron expression: {_SHAPES}"
    if len(fields) == 1 and "@" + fields[0].lower() in NICKNAMES:
        return f"{expr.strip()!r} is not a schedule: did you mean '@{fields[0].lower()}'?"
    count = _COUNTS[len(fields)] if len(fields) < len(_COUNTS) else str(len(fields))
    given = f"{count} fields given ({expr.strip()!r})"
    if len(fields) == 6:
        ambiguous = "is ambiguous (seconds first, or a year last?)"
        return f"{given} {ambiguous}: {_SHAPES}; neither seconds nor years are supported"
    return f"{given}: {_SHAPES}"


def _check_values(expr: str, five: str) -> None:
    """Let cronsim judge the values; on failure, find the field and term to blame."""
    try:
        CronSim(five, _PROBE)
    except CronSimError:
        raise CronError(_value_problem(expr, five.split())) from None


def _value_problem(expr: str, fields: list[str]) -> str:
    """The first bad term, named by field, or the day/month mix no month can hold.

    cronsim only says "Bad minute"; trying each comma-separated term alone in
    an otherwise all-star schedule finds the term it objects to.
    """
    for index, text in enumerate(fields):
        for term in text.split(","):
            if not _term_ok(index, term):
                why = _term_reason(index, term)
                return f"bad {FIELDS[index]} {term!r} in {expr.strip()!r}: {why}"
    return f"day of month {fields[2]!r} never occurs in month {fields[3]!r} ({expr.strip()!r})"


def _term_ok(index: int, term: str) -> bool:
    """Whether cronsim accepts `term` as the only restriction, in field `index`."""
    fields = ["*"] * 5
    fields[index] = term
    try:
        CronSim(" ".join(fields), _PROBE)
    except CronSimError:
        return False
    return True


def _term_reason(index: int, term: str) -> str:
    """What is wrong with a term cronsim refused, as specifically as its shape tells."""
    base, slash, step = term.partition("/")
    if slash and not (step.isascii() and step.isdigit()):
        return f"the step after '/' must be a whole number, not {step!r}"
    if slash and int(step) == 0:
        return "a step of 0 never moves on; use 1 or more (*/1 is every value)"
    if not term:
        return "an empty item: two commas in a row, or a comma at an end"
    if term == "?":
        return "'?' is not supported; use '*'"
    low, dash, high = base.partition("-")
    if dash and _term_ok(index, low) and _term_ok(index, high):
        return f"a range runs from low to high (e.g. 1-5, mon-fri); {base!r} runs backwards"
    return f"{FIELDS[index]} takes {_ALLOWED[index]}"
