"""Limits per job type: the dispatcher's logic with an injected clock, and the config's
`limits` section with its errors (key and line)."""

from __future__ import annotations

import time

import pytest

from spoold.config import parse_config
from spoold.dispatch import Dispatcher
from spoold.errors import ConfigError
from spoold.limits import Limit, Rate, parse_rate


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limited(clock: Clock, **limits: Limit) -> Dispatcher:
    d = Dispatcher(clock)
    d.set_limits(limits)
    return d


def add(d: Dispatcher, *jobs: str) -> None:
    """Each job as 'type:stem', normal priority, due now, its type known (as intake adds)."""
    for job in jobs:
        job_type, stem = job.split(":")
        d.add(stem, "normal", 0.0, due_known=True, job_type=job_type)


def take_all(d: Dispatcher) -> list[str]:
    taken = []
    while (item := d.take(timeout=0)) is not None:
        taken.append(item.stem)
    return taken


ONE_AT_A_TIME = Limit(concurrency=1)


def test_a_type_at_its_concurrency_holds_up_no_other_type():
    d = limited(Clock(), slow=ONE_AT_A_TIME)
    add(d, "slow:2-a", "slow:2-b", "noop:2-c", "noop:2-d")
    first = d.take(timeout=0)
    assert first is not None and (first.stem, first.slot) == ("2-a", "slow")
    assert take_all(d) == ["2-c", "2-d"]  # 2-b waits for its slot, the noop jobs do not
    assert "2-b" in d and d.counts()["total"] == 1
    d.release("slow")
    assert take_all(d) == ["2-b"]


def test_held_jobs_keep_priority_then_fifo_order():
    d = limited(Clock(), slow=ONE_AT_A_TIME)
    for stem, priority in [
        ("2-b", "normal"),
        ("3-a", "low"),
        ("2-a", "normal"),
        ("0-z", "critical"),
    ]:
        d.add(stem, priority, 0.0, due_known=True, job_type="slow")
    order = []
    while (taken := d.take(timeout=0)) is not None:
        order.append(taken.stem)
        d.release("slow")
    assert order == ["0-z", "2-a", "2-b", "3-a"]


def test_limited_and_other_jobs_interleave_in_dispatch_order():
    d = limited(Clock(), slow=Limit(concurrency=5))
    add(d, "noop:2-b", "slow:2-a", "slow:2-c", "noop:2-d")
    assert take_all(d) == ["2-a", "2-b", "2-c", "2-d"]


def test_a_rate_lets_a_burst_through_then_one_as_each_start_is_a_period_old():
    clock = Clock()
    d = limited(clock, hook=Limit(rate=Rate(2, 1.0)))
    add(d, *(f"hook:2-{i}" for i in range(5)), "noop:2-x")
    assert take_all(d) == ["2-0", "2-1", "2-x"]
    clock.now += 0.99
    assert take_all(d) == []
    clock.now += 0.01
    assert take_all(d) == ["2-2", "2-3"]  # running jobs do not matter to a rate alone
    clock.now += 0.5
    assert take_all(d) == []
    clock.now += 0.5
    assert take_all(d) == ["2-4"]


def test_a_start_that_did_not_happen_gives_its_place_in_the_rate_back():
    clock = Clock()
    d = limited(clock, hook=Limit(rate=Rate(1, 60.0)))
    add(d, "hook:2-a", "hook:2-b")
    lost = d.take(timeout=0)
    assert lost is not None and d.take(timeout=0) is None
    d.release(lost.slot, lost.at)  # e.g. another daemon claimed it first
    assert take_all(d) == ["2-b"]


def test_take_wakes_when_the_rate_allows_the_next_start():
    d = Dispatcher()  # the real clock: take() must wake by itself, not wait for a timeout
    d.set_limits({"hook": Limit(rate=Rate(1, 0.5))})
    add(d, "hook:2-a", "hook:2-b")
    assert d.take(timeout=0) is not None
    start = time.monotonic()
    taken = d.take(timeout=5)
    assert taken is not None and taken.stem == "2-b"
    assert 0.4 < time.monotonic() - start < 2.0


def test_a_job_whose_type_the_index_does_not_know_is_admitted_by_the_worker():
    """Found by a scan: the worker reads its file (as for its due time) and asks admit()."""
    d = limited(Clock(), slow=ONE_AT_A_TIME)
    d.add_many([("2-a", "normal"), ("2-b", "normal"), ("2-c", "normal")])
    a, b = d.take(timeout=0), d.take(timeout=0)
    assert a is not None and b is not None and (a.slot, b.slot) == (None, None)
    assert d.admit(a.stem, a.priority, "slow") is not None
    assert d.admit(b.stem, b.priority, "slow") is None  # held back: pending again
    assert "2-b" in d
    assert [t.stem for t in iter(lambda: d.take(timeout=0), None)] == ["2-c"]
    d.release("slow")
    again = d.take(timeout=0)
    assert again is not None and (again.stem, again.slot) == ("2-b", "slow")


def test_an_admitted_job_does_not_pass_an_earlier_one_of_its_type():
    clock = Clock()
    d = limited(clock, hook=Limit(rate=Rate(1, 1.0)))
    add(d, "hook:2-a", "hook:2-b")
    assert take_all(d) == ["2-a"]  # 2-b waits for the rate
    d.add_many([("2-c", "normal")])
    unknown = d.take(timeout=0)
    assert unknown is not None and (unknown.stem, unknown.slot) == ("2-c", None)
    clock.now += 1.0  # the rate lets one start: 2-b's turn, not 2-c's
    assert d.admit("2-c", "normal", "hook") is None
    assert take_all(d) == ["2-b"]
    clock.now += 1.0
    assert take_all(d) == ["2-c"]


def test_a_reload_raises_lowers_and_removes_limits():
    d = limited(Clock(), slow=ONE_AT_A_TIME)
    add(d, "slow:2-a", "slow:2-b", "slow:2-c", "slow:2-d")
    assert take_all(d) == ["2-a"]
    d.set_limits({"slow": Limit(concurrency=2)})  # the running job keeps its slot
    assert take_all(d) == ["2-b"]
    d.set_limits({})  # no limit: the held jobs are ready again
    assert take_all(d) == ["2-c", "2-d"]


def test_a_type_limited_by_a_reload_gathers_its_jobs_already_waiting():
    d = Dispatcher(Clock())
    add(d, "slow:2-a", "slow:2-b", "noop:2-c")
    d.set_limits({"slow": ONE_AT_A_TIME})
    assert take_all(d) == ["2-a", "2-c"]


def test_jobs_running_when_a_limit_is_set_count_towards_it():
    d = Dispatcher(Clock())
    add(d, "slow:2-a", "slow:2-b")
    assert d.take(timeout=0) is not None
    d.set_limits({"slow": ONE_AT_A_TIME})
    assert take_all(d) == []
    d.release("slow")
    assert take_all(d) == ["2-b"]


def test_a_delayed_job_of_a_limited_type_waits_for_both_its_time_and_its_slot():
    clock = Clock()
    d = limited(clock, slow=ONE_AT_A_TIME)
    add(d, "slow:2-a")
    d.add("2-b", "normal", 1010.0, due_known=True, job_type="slow")
    assert take_all(d) == ["2-a"]
    clock.now = 1010.0
    assert take_all(d) == []
    d.release("slow")
    assert take_all(d) == ["2-b"]


def test_status_lists_held_jobs_among_the_due_ones_in_order():
    d = limited(Clock(), slow=ONE_AT_A_TIME)
    add(d, "slow:2-a", "slow:2-b", "noop:2-c")
    assert take_all(d) == ["2-a", "2-c"]
    add(d, "noop:2-d")
    assert d.upcoming(10) == [("2-b", None), ("2-d", None)]


class CountedStem(str):
    """A stem that counts how often a heap compares it."""

    compared = 0

    def __lt__(self, other: str) -> bool:
        CountedStem.compared += 1
        return str.__lt__(self, other)


def test_a_take_never_visits_the_jobs_behind_a_held_types_first():
    d = limited(Clock(), slow=ONE_AT_A_TIME)
    for i in range(20_000):
        d.add(CountedStem(f"2-a{i:06d}"), "normal", 0.0, due_known=True, job_type="slow")
    assert d.take(timeout=0) is not None  # the slot is taken: the rest are held
    add(d, *(f"noop:2-b{i:06d}" for i in range(200)))
    CountedStem.compared = 0
    assert len(take_all(d)) == 200
    assert CountedStem.compared == 0


def test_without_limits_a_taken_job_still_counts_for_its_type():
    """So that a limit added by a reload knows what runs already (see above)."""
    d = Dispatcher(Clock())
    add(d, "noop:2-a")
    taken = d.take(timeout=0)
    assert taken is not None and taken.slot == "noop"


# ----- the config ------------------------------------------------------------------------


def test_limits_parse():
    config = parse_config(
        'limits: {send_email: {concurrency: 2, rate: "10/s"}, webhook: {rate: "100/m"},\n'
        '         resize: {rate: " 5 / h "}}\n'
        'jobTypes: {resize: "pkg.mod:fn"}\n'
    )
    assert config.limits == {
        "send_email": Limit(2, Rate(10, 1.0)),
        "webhook": Limit(None, Rate(100, 60.0)),
        "resize": Limit(None, Rate(5, 3600.0)),
    }
    assert parse_config("workers: 2").limits == {}


BAD_LIMITS = """\
workers: 2
limits:
  send_email: {rate: "ten a second"}
  webhook: {concurrency: 0}
  noop: {concurrency: -1}
  log: {concurrency: 1.5}
  send_mail: {concurrency: 1}
  cleanup: {concurency: 1}
  queue_stats: {}
  resize: {rate: 10}
  mine: {rate: "0/s"}
  transcode: {concurrency: 1}
jobTypes: {mine: "pkg.mod:fn", resize: "pkg.mod:fn"}
"""


@pytest.mark.parametrize(
    ("line", "key", "says"),
    [
        (3, "limits.send_email.rate", "expected N/s, N/m or N/h"),
        (4, "limits.webhook.concurrency", "at least 1, got 0"),
        (5, "limits.noop.concurrency", "at least 1, got -1"),
        (6, "limits.log.concurrency", "expected an integer, got 1.5"),
        (7, "limits.send_mail", "no job type named 'send_mail' (did you mean 'send_email'?)"),
        (8, "limits.cleanup.concurency", "unknown key (did you mean 'concurrency'?)"),
        (9, "limits.queue_stats", "give concurrency"),
        (10, "limits.resize.rate", "got 10"),
        (11, "limits.mine.rate", "N must be at least 1"),
        (12, "limits.transcode", "a plug-in needs its jobTypes entry"),
    ],
)
def test_a_bad_limit_names_its_line_and_key(line, key, says):
    with pytest.raises(ConfigError) as caught:
        parse_config(BAD_LIMITS)
    found = [p for p in caught.value.problems if p.startswith(f"<config>:{line}: {key}: ")]
    assert len(found) == 1 and says in found[0], caught.value.problems
    assert len(caught.value.problems) == 10


def test_rates_that_do_not_parse():
    assert parse_rate("100000/h") == Rate(100_000, 3600.0)
    for text in ("10", "10/d", "10 per second", "-1/s", "1.5/s", "100001/h", 10, None):
        with pytest.raises(ValueError):
            parse_rate(text)


def test_the_config_knows_every_built_in_type_by_name():
    from spoold.config import Config
    from spoold.jobs import BUILTIN_TYPES
    from spoold.jobs.registry import builtin_types

    assert sorted(BUILTIN_TYPES) == sorted(builtin_types(Config(), dict))
