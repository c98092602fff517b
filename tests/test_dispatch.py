"""Dispatch order and backoff: pure policy with an injected clock."""

import threading

from spoold.dispatch import Dispatcher, backoff_seconds


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def drain(d):
    out = []
    while (item := d.take(timeout=0)) is not None:
        out.append(item[0])
    return out


def test_priority_then_fifo():
    d = Dispatcher(Clock())
    for stem, priority in [("2-b", "normal"), ("3-a", "low"), ("2-a", "normal"),
                           ("0-z", "critical"), ("1-q", "high")]:  # fmt: skip
        d.add(stem, priority)
    assert drain(d) == ["0-z", "1-q", "2-a", "2-b", "3-a"]


def test_a_job_not_due_waits_for_its_time():
    clock = Clock()
    d = Dispatcher(clock)
    d.add("0-later", "critical", due=1010.0)
    d.add("3-now", "low")
    assert drain(d) == ["3-now"]
    assert d.counts()["total"] == 1 and d.counts()["critical"] == 1
    clock.now = 1010.0
    assert drain(d) == ["0-later"]


def test_take_wakes_when_a_job_arrives():
    d = Dispatcher()
    got = []
    t = threading.Thread(target=lambda: got.append(d.take(timeout=5)))
    t.start()
    d.add("2-x", "normal")
    t.join(5)
    assert [taken[:5] for taken in got] == [("2-x", "normal", None, False, None)]


def test_close_wakes_takers_with_none():
    d = Dispatcher()
    got = []
    t = threading.Thread(target=lambda: got.append(d.take()))
    t.start()
    d.close()
    t.join(5)
    assert got == [None]


def test_discard_and_duplicates():
    d = Dispatcher(Clock())
    d.add("2-x", "normal")
    d.add("2-x", "normal")
    d.add("2-y", "normal")
    d.discard("2-y")
    assert drain(d) == ["2-x"]


def test_bulk_add_counts():
    d = Dispatcher(Clock())
    d.add_many((f"2-{i:05d}", "normal") for i in range(1000))
    assert d.counts() == {"total": 1000, "critical": 0, "high": 0, "normal": 1000, "low": 0}
    assert drain(d)[:2] == ["2-00000", "2-00001"]


def test_backoff_doubles_and_is_capped():
    assert [backoff_seconds(a, 3600, False, lambda: 0.5) for a in (1, 2, 3, 10)] == [2, 4, 8, 1024]
    assert backoff_seconds(20, 3600, False, lambda: 0.5) == 3600
    assert backoff_seconds(3, 3600, True, lambda: 0.5) == 4


def test_kept_jobs_come_back_once_and_only_within_the_memory_cap():
    from spoold.dispatch import JOB_OVERHEAD, MAX_KEPT_BYTES, PER_JSON_BYTE

    d = Dispatcher(Clock())
    job = object()
    big = (MAX_KEPT_BYTES - JOB_OVERHEAD) // PER_JSON_BYTE  # one such job fills the cap
    d.add("2-a", "normal", job=job, size=big)
    d.add("2-b", "normal", job=object(), size=1)  # over the cap: not kept
    d.add("2-c", "normal")
    assert d.take(timeout=0)[:4] == ("2-a", "normal", job, False)
    d.add("2-d", "normal", job=job, size=1)  # the cap is free again
    d.defer("2-d", "normal", 0.0)  # put back with new bytes: the job is stale
    assert [d.take(timeout=0)[:3] for _ in range(3)] == [
        ("2-b", "normal", None), ("2-c", "normal", None), ("2-d", "normal", None)
    ]  # fmt: skip


def test_the_index_says_which_due_times_it_knows():
    """Stems whose due time is a guess are read by the worker before it claims them."""
    d = Dispatcher(Clock())
    d.add_many([("2-scanned", "normal"), ("2-deferred", "normal")])
    d.add("2-new", "normal", 0.0, due_known=True)
    d.add("2-guessed", "normal", 0.0)  # a retry by hand, a shared spool's job: a guess
    d.defer("2-deferred", "normal", 0.0)  # its due time is known from now on
    d.add("2-recovered", "normal", 0.0, due_known=True)
    d.defer("2-recovered", "normal", 0.0, due_known=False)  # its file changed
    taken = {t.stem: t.due_known for t in iter(lambda: d.take(timeout=0), None)}
    assert taken == {"2-scanned": False, "2-deferred": True, "2-new": True,
                     "2-guessed": False, "2-recovered": False}  # fmt: skip
    d.add_many([("2-scanned", "normal")])
    d.discard("2-scanned")
    d.add("2-scanned", "normal", 0.0, due_known=True)  # a stem that left starts afresh
    assert d.take(timeout=0).due_known


def test_upcoming_lists_the_next_jobs_in_dispatch_order_without_taking_them():
    d = Dispatcher(Clock())
    stems = [(f"2-{n:04}", "normal") for n in range(500, 0, -1)]
    d.add_many([*stems, ("3-low", "low"), ("0-first", "critical"), ("0-gone", "critical")])
    d.add("1-later", "high", due=1500.0)
    d.add("1-soon", "high", due=1100.0)
    d.discard("0-gone")
    assert d.upcoming(4) == [("0-first", None), ("2-0001", None), ("2-0002", None),
                             ("2-0003", None)]  # fmt: skip
    everything = d.upcoming(1000)
    assert everything[-3:] == [("3-low", None), ("1-soon", 1100.0), ("1-later", 1500.0)]
    assert len(everything) == 504 and d.counts()["total"] == 504
    assert d.upcoming(0) == []
