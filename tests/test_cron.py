"""spoold.cron: fire times, daylight saving, and the messages for bad schedules.

Every time here is fixed; nothing reads the clock.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from spoold.cron import (
    NICKNAMES,
    CronError,
    cron_problem,
    fire_times_between,
    format_next,
    next_times,
    normalize,
    zone,
)
from spoold.errors import SpoolError

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")

# Transition days in 2026.
BERLIN_SPRING, BERLIN_FALL = date(2026, 3, 29), date(2026, 10, 25)
NY_SPRING, NY_FALL = date(2026, 3, 8), date(2026, 11, 1)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


def iso(times: list[datetime]) -> list[str]:
    return [t.isoformat() for t in times]


def between(expr: str, after: datetime, until: datetime, tz: ZoneInfo | str) -> list[datetime]:
    return list(fire_times_between(expr, after, until, tz))


def on_day(expr: str, day: date, tz: ZoneInfo) -> list[str]:
    """The fire times whose local date is `day`, from a window a day wider on each side."""
    start = datetime.combine(day - timedelta(days=1), datetime.min.time(), tz)
    times = between(expr, start, start + timedelta(days=3), tz)
    return [t.isoformat() for t in times if t.date() == day]


# --- daylight saving ---------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "day", "expected"),
    [
        (BERLIN, BERLIN_SPRING, ["2026-03-29T03:00:00+02:00"]),
        (BERLIN, BERLIN_FALL, ["2026-10-25T02:30:00+02:00"]),
        (NEW_YORK, NY_SPRING, ["2026-03-08T03:00:00-04:00"]),
        (NEW_YORK, NY_FALL, ["2026-11-01T02:30:00-05:00"]),
    ],
)
def test_daily_task_fires_once_on_transition_days(
    tz: ZoneInfo, day: date, expected: list[str]
) -> None:
    """02:30 is skipped in spring (fires at 03:00, the first valid moment) and, in
    Berlin, repeated in autumn (fires in the first pass only)."""
    assert on_day("30 2 * * *", day, tz) == expected


def test_daily_task_in_new_yorks_repeated_hour_fires_once() -> None:
    assert on_day("30 1 * * *", NY_FALL, NEW_YORK) == ["2026-11-01T01:30:00-04:00"]


def test_start_in_second_pass_of_repeated_hour_does_not_fire_again() -> None:
    """01:10 EST is after 01:30 EDT has fired; cronsim steps the wall clock and would
    offer 01:30 again, which is before the start and must not come back."""
    second_pass = utc(2026, 11, 1, 6, 10)  # 01:10-05:00
    assert iso(next_times("30 1 * * *", second_pass, NEW_YORK)) == ["2026-11-02T01:30:00-05:00"]


@pytest.mark.parametrize(
    ("tz", "after", "expected"),
    [
        (
            NEW_YORK,
            utc(2026, 11, 1, 3, 30),
            [
                "2026-11-01T00:00:00-04:00",
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T02:00:00-05:00",
            ],
        ),
        (
            BERLIN,
            utc(2026, 10, 24, 22, 30),
            [
                "2026-10-25T01:00:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T03:00:00+01:00",
            ],
        ),
    ],
)
def test_hourly_task_across_fall_back_fires_every_real_hour(
    tz: ZoneInfo, after: datetime, expected: list[str]
) -> None:
    """Debian semantics: a `*` hour runs in real time, so the repeated hour runs twice,
    an hour apart, and the instants never repeat."""
    assert iso(between("0 * * * *", after, after + timedelta(hours=4), tz)) == expected


def test_hourly_task_across_spring_forward_fires_every_real_hour() -> None:
    after = utc(2026, 3, 8, 5, 30)
    assert iso(between("0 * * * *", after, after + timedelta(hours=3), NEW_YORK)) == [
        "2026-03-08T01:00:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T04:00:00-04:00",
    ]


def every_wall_hour(tz: ZoneInfo, start: datetime, end: datetime) -> Iterator[datetime]:
    """Each instant at which the local clock reads HH:00, found by brute force."""
    t = start
    while t <= end:
        local = t.astimezone(tz)
        if local.minute == 0 and local.second == 0:
            yield local
        t += timedelta(minutes=15)


@pytest.mark.parametrize(
    "name", ["Europe/Berlin", "America/New_York", "America/Santiago", "Australia/Lord_Howe"]
)
def test_hourly_task_hits_each_existing_wall_hour_once_for_a_year(name: str) -> None:
    """Santiago skips midnight; Lord Howe moves by half an hour."""
    tz = ZoneInfo(name)
    end = utc(2027, 1, 1)
    fired = between("0 * * * *", NOW - timedelta(seconds=1), end, tz)
    assert [t.astimezone(UTC) for t in fired] == [
        t.astimezone(UTC) for t in every_wall_hour(tz, NOW, end)
    ]


@pytest.mark.parametrize(
    "name", ["Europe/Berlin", "America/New_York", "America/Santiago", "Australia/Lord_Howe"]
)
def test_daily_task_fires_exactly_once_each_local_day_for_a_year(name: str) -> None:
    tz = ZoneInfo(name)
    fired = between(
        "30 2 * * *", datetime(2026, 1, 1, tzinfo=tz), datetime(2027, 1, 1, tzinfo=tz), tz
    )
    days = [t.date() for t in fired]
    assert days == [date(2026, 1, 1) + timedelta(days=i) for i in range(365)]
    assert all(t.strftime("%H:%M") in {"02:30", "03:00", "03:30"} for t in fired)


def test_daily_task_at_skipped_midnight_fires_at_first_valid_moment() -> None:
    assert on_day("0 0 * * *", date(2026, 9, 6), ZoneInfo("America/Santiago")) == [
        "2026-09-06T01:00:00-03:00"
    ]


def test_debian_quirk_star_minute_in_a_fixed_hour_follows_real_time() -> None:
    """`*/30 1 * * *` has a `*` minute, so cronsim (like Debian cron) runs it in real
    time: four runs in New York's doubled 1 o'clock hour, and none at all when the
    2 o'clock hour is skipped. Pinned here so a change of policy is a visible one."""
    assert len(on_day("*/30 1 * * *", NY_FALL, NEW_YORK)) == 4
    assert on_day("*/30 2 * * *", NY_SPRING, NEW_YORK) == []


@pytest.mark.parametrize("expr", ["* * * * *", "*/5 * * * *", "30 2 * * *", "0 */2 * * *"])
@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK])
def test_minute_ticks_see_each_run_once(expr: str, tz: ZoneInfo) -> None:
    """The scheduler asks for (last tick, now] every minute; across a transition the
    windows together give exactly the runs of one big window."""
    for day in (BERLIN_SPRING, BERLIN_FALL, NY_SPRING, NY_FALL):
        start = datetime.combine(day, datetime.min.time(), UTC) - timedelta(hours=12)
        ticks = [start + timedelta(minutes=m, seconds=7) for m in range(36 * 60)]
        stepped = [t for a, b in pairwise(ticks) for t in between(expr, a, b, tz)]
        assert stepped == between(expr, ticks[0], ticks[-1], tz)


# --- what the fields mean ----------------------------------------------------


def test_day_31_skips_shorter_months() -> None:
    assert [t.month for t in next_times("0 0 31 * *", NOW, "UTC", 7)] == [1, 3, 5, 7, 8, 10, 12]


def test_february_29_waits_for_a_leap_year() -> None:
    assert iso(next_times("0 0 29 2 *", NOW, "UTC", 2)) == [
        "2028-02-29T00:00:00+00:00",
        "2032-02-29T00:00:00+00:00",
    ]


def test_minute_step_restarts_each_hour() -> None:
    times = next_times("*/7 * * * *", utc(2026, 1, 1, 9, 59), "UTC", 10)
    assert [(t.hour, t.minute) for t in times] == [(10, m) for m in range(0, 60, 7)] + [(11, 0)]


def test_weekday_names_and_ranges() -> None:
    times = next_times("0 9 * * mon-fri", NOW, "UTC", 6)  # 2026-01-01 is a Thursday
    assert [t.day for t in times] == [1, 2, 5, 6, 7, 8]


def test_month_names_in_a_list() -> None:
    assert [t.month for t in next_times("0 0 1 jan,jul *", NOW, "UTC", 3)] == [7, 1, 7]


def test_names_are_case_insensitive() -> None:
    expected = next_times("0 9 1 jan,jul mon-fri", NOW, "UTC", 20)
    assert next_times("0 9 1 JAN,Jul MON-Fri", NOW, "UTC", 20) == expected
    assert next_times("0 9 1 1,7 1-5", NOW, "UTC", 20) == expected


def test_three_field_form_is_minute_hour_weekday() -> None:
    assert normalize("30 8 mon") == "30 8 * * mon"
    assert {t.strftime("%a %H:%M") for t in next_times("30 8 mon", NOW, "UTC", 5)} == {"Mon 08:30"}


@pytest.mark.parametrize(
    ("nickname", "first"),
    [
        ("@hourly", "2026-01-01T01:00:00+00:00"),
        ("@daily", "2026-01-02T00:00:00+00:00"),
        ("@midnight", "2026-01-02T00:00:00+00:00"),
        ("@weekly", "2026-01-04T00:00:00+00:00"),  # a Sunday
        ("@monthly", "2026-02-01T00:00:00+00:00"),
        ("@yearly", "2027-01-01T00:00:00+00:00"),
        ("@annually", "2027-01-01T00:00:00+00:00"),
    ],
)
def test_each_nickname(nickname: str, first: str) -> None:
    assert normalize(nickname) == NICKNAMES[nickname]
    assert normalize(nickname.upper()) == NICKNAMES[nickname]
    assert iso(next_times(nickname, NOW, "UTC")) == [first]


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    """Classic cron: the 13th and every Friday (January 2026: Fridays 2, 9, 16, 23, 30)."""
    times = between("0 0 13 * fri", NOW, utc(2026, 1, 31), "UTC")
    assert [t.day for t in times] == [2, 9, 13, 16, 23, 30]


def test_star_prefixed_day_field_means_and() -> None:
    """Vixie/Debian quirk kept by cronsim: `*/2` counts as a star, so days must match both."""
    times = between("0 0 */2 * fri", NOW, utc(2026, 1, 31), "UTC")
    assert [t.day for t in times] == [9, 23]


def test_extensions_cronsim_adds_are_accepted() -> None:
    assert [t.day for t in next_times("0 0 L 2 *", NOW, "UTC", 1)] == [28]
    assert [t.day for t in next_times("0 0 * * 5L", NOW, "UTC", 1)] == [30]
    assert [t.day for t in next_times("0 0 * * mon#2", NOW, "UTC", 1)] == [12]


def test_whitespace_is_normalized() -> None:
    assert normalize("  */5\t*  * * *\n") == "*/5 * * * *"


# --- bad schedules -----------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("", ["empty", "five", "three"]),
        ("   ", ["empty"]),
        ("*", ["one field", "five"]),
        ("0 0", ["two fields"]),
        ("0 0 * *", ["four fields", "five (minute hour day month weekday)"]),
        ("0 0 * * * *", ["six fields", "'0 0 * * * *'", "ambiguous", "seconds", "year"]),
        ("0 0 1 1 * 2026 x", ["seven fields"]),
        ("60 * * * *", ["minute", "'60'", "0-59"]),
        ("* 24 * * *", ["hour", "'24'", "0-23"]),
        ("0 0 32 * *", ["day of month", "'32'"]),
        ("0 0 * 13 *", ["month", "'13'"]),
        ("0 0 * * 8", ["day of week", "'8'"]),
        ("0 0 * foo *", ["month", "'foo'", "jan-dec"]),
        ("0 0 * * funday", ["day of week", "'funday'", "sun-sat"]),
        ("0 0 * * fri-mon", ["day of week", "backwards"]),
        ("*/0 * * * *", ["minute", "'*/0'", "step of 0"]),
        ("*/x * * * *", ["minute", "step", "'x'"]),
        ("1,,2 * * * *", ["minute", "empty item"]),
        ("0 0 ? * *", ["day of month", "'?'", "'*'"]),
        ("0 0 30 2 *", ["day of month '30'", "month '2'"]),
        ("0 60 mon", ["hour", "'60'"]),
        ("!!! ??? ### $$$ %%%", ["minute", "'!!!'"]),
        ("@reboot", ["@reboot", "not supported"]),
        ("@often", ["unknown nickname", "@daily"]),
        ("daily", ["did you mean '@daily'"]),
    ],
)
def test_bad_schedule_messages_name_the_problem(expr: str, words: list[str]) -> None:
    problem = cron_problem(expr)
    assert problem is not None
    for word in words:
        assert word in problem
    with pytest.raises(CronError) as raised:
        normalize(expr)
    assert str(raised.value) == problem


@pytest.mark.parametrize("garbage", [None, 5, 1.5, b"* * * * *", ["*"] * 5, {"cron": "x"}])
def test_cron_problem_takes_anything(garbage: object) -> None:
    problem = cron_problem(garbage)
    assert problem is not None
    assert "must be a string" in problem


def test_cron_problem_never_raises_on_random_text() -> None:
    rng = random.Random(20260101)
    alphabet = "0123456789*/,-#?LW@ abcdefjmnorstuwyz\t"
    for _ in range(3000):
        expr = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        if cron_problem(expr) is None:
            assert len(next_times(expr, NOW, "UTC", 2)) <= 2


def test_valid_schedules_have_no_problem() -> None:
    for expr in ("* * * * *", "0 9 mon-fri", "@daily", "0 0 13 * fri", "5,35 */2 1-15 jan-jun *"):
        assert cron_problem(expr) is None


def test_cron_error_is_a_value_error_and_a_spool_error() -> None:
    assert issubclass(CronError, ValueError)
    assert issubclass(CronError, SpoolError)


def test_unknown_zone_is_a_cron_error() -> None:
    for name in ("Mars/Olympus", "America", "", "../etc/passwd"):
        with pytest.raises(CronError, match="unknown time zone"):
            next_times("* * * * *", NOW, name)
    assert zone(BERLIN) is BERLIN


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_times("* * * * *", datetime(2026, 1, 1), "UTC")
    with pytest.raises(ValueError, match="timezone-aware"):
        fire_times_between("* * * * *", NOW, datetime(2026, 1, 2), "UTC")


# --- next_times and fire_times_between ---------------------------------------


def test_next_times_is_strictly_after_start() -> None:
    assert iso(next_times("0 * * * *", utc(2026, 1, 1, 5), "UTC")) == ["2026-01-01T06:00:00+00:00"]
    assert iso(next_times("0 * * * *", utc(2026, 1, 1, 4, 59, 59, 999999), "UTC")) == [
        "2026-01-01T05:00:00+00:00"
    ]


def test_next_times_are_in_the_given_zone_whatever_the_start_zone() -> None:
    (t,) = next_times("0 9 * * *", utc(2026, 6, 1), "Europe/Berlin")
    assert t.tzinfo is BERLIN
    assert t.isoformat() == "2026-06-01T09:00:00+02:00"


def test_next_times_counts() -> None:
    assert next_times("* * * * *", NOW, "UTC", 0) == []
    assert len(next_times("* * * * *", NOW, "UTC", 61)) == 61
    with pytest.raises(ValueError):
        next_times("* * * * *", NOW, "UTC", -1)


def test_window_excludes_start_and_includes_end() -> None:
    times = between("0 * * * *", utc(2026, 1, 1, 1), utc(2026, 1, 1, 3), "UTC")
    assert iso(times) == ["2026-01-01T02:00:00+00:00", "2026-01-01T03:00:00+00:00"]


@pytest.mark.parametrize(
    ("after", "until"),
    [
        (utc(2026, 1, 1, 1), utc(2026, 1, 1, 1)),  # empty window on a fire time
        (utc(2026, 1, 1, 3), utc(2026, 1, 1, 1)),  # backwards
        (utc(2026, 1, 1, 1, 1), utc(2026, 1, 1, 1, 59)),  # no fire time inside
    ],
)
def test_windows_with_nothing_due(after: datetime, until: datetime) -> None:
    assert between("0 * * * *", after, until, "UTC") == []


def test_window_reports_a_bad_schedule_at_once() -> None:
    with pytest.raises(CronError):
        fire_times_between("61 * * * *", NOW, NOW, "UTC")


def test_a_long_outage_yields_every_missed_run_in_order() -> None:
    times = between("*/5 * * * *", NOW, NOW + timedelta(days=30), "UTC")
    assert len(times) == 30 * 24 * 12
    assert times == sorted(set(times))


# --- spoold next -------------------------------------------------------------


def test_format_next_is_iso_8601_with_offset() -> None:
    assert format_next("30 2 * * *", 2, "Europe/Berlin", utc(2026, 3, 28, 12)) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    assert format_next("@daily", 1, "UTC", NOW) == ["2026-01-02T00:00:00+00:00"]
    assert format_next("@daily", 0, "UTC", NOW) == []


def test_format_next_round_trips() -> None:
    lines = format_next("0 12 * * *", 3, "America/New_York", NOW)
    assert [datetime.fromisoformat(s) for s in lines] == next_times("0 12 * * *", NOW, NEW_YORK, 3)
