"""The committer's inbox: what the workers hand over, taken a batch at a time, in order,
and bounded, so that workers wait for the disk instead of piling up outcomes."""

from __future__ import annotations

import threading
import time

from conftest import wait_until

from spoold.commit import Inbox, Outcome

ANY_SIZE = 1 << 30


def outcome(n: int, data: bytes = b"{}") -> Outcome:
    return Outcome(None, f"s{n}", "completed", data, lambda: None)


def stems(items: list[Outcome | None]) -> list[str | None]:
    return [item.stem if item else None for item in items]


def test_a_batch_is_taken_oldest_first_and_no_bigger_than_asked():
    inbox = Inbox(100)
    for n in range(5):
        inbox.put(outcome(n))
    assert inbox.qsize() == 5 and not inbox.empty()
    assert stems(inbox.take(0, 3, ANY_SIZE)) == ["s0", "s1", "s2"]
    assert stems(inbox.take(0, 3, ANY_SIZE)) == ["s3", "s4"]
    assert inbox.empty()


def test_a_batch_stops_once_it_holds_the_bytes_asked_and_takes_a_big_one_alone():
    inbox = Inbox(100)
    for n, size in enumerate([400, 400, 400, 5000, 10]):
        inbox.put(outcome(n, b"x" * size))
    assert stems(inbox.take(0, 10, 1000)) == ["s0", "s1", "s2"]  # 1,200 bytes: then full
    assert stems(inbox.take(0, 10, 1000)) == ["s3"]  # bigger than a batch: alone
    assert stems(inbox.take(0, 10, 1000)) == ["s4"]


def test_an_empty_inbox_waits_up_to_the_timeout_then_gives_nothing():
    inbox = Inbox(10)
    started = time.monotonic()
    assert inbox.take(0.2, 10, ANY_SIZE) == []
    assert time.monotonic() - started >= 0.19


def test_a_sleeping_taker_wakes_at_the_first_put():
    inbox = Inbox(10)
    taken: list[list[Outcome | None]] = []
    taker = threading.Thread(target=lambda: taken.append(inbox.take(30, 10, ANY_SIZE)))
    taker.start()
    time.sleep(0.05)  # the taker sleeps now (nothing to take)
    inbox.put(outcome(1))
    taker.join(5)
    assert not taker.is_alive() and stems(taken[0]) == ["s1"]


def test_a_full_inbox_makes_the_putter_wait_until_a_batch_is_taken():
    inbox = Inbox(2)
    inbox.put(outcome(0))
    inbox.put(outcome(1))
    putter = threading.Thread(target=inbox.put, args=(outcome(2),))
    putter.start()
    time.sleep(0.1)
    assert putter.is_alive() and inbox.qsize() == 2  # waits: nothing lost, nothing over
    assert stems(inbox.take(0, 1, ANY_SIZE)) == ["s0"]
    putter.join(5)
    assert not putter.is_alive()
    assert stems(inbox.take(0, 10, ANY_SIZE)) == ["s1", "s2"]


def test_the_end_marker_is_never_held_back_by_a_full_inbox():
    inbox = Inbox(1)
    inbox.put(outcome(0))
    inbox.put(None)  # the stop's marker: must not wait behind the limit
    assert stems(inbox.take(0, 10, ANY_SIZE)) == ["s0", None]


def test_many_putters_and_one_taker_lose_nothing_and_keep_each_putters_order():
    inbox = Inbox(8)
    per_putter, putters = 500, 4

    def put_all(p: int) -> None:
        for n in range(per_putter):
            inbox.put(outcome(p * per_putter + n))

    threads = [threading.Thread(target=put_all, args=(p,)) for p in range(putters)]
    for thread in threads:
        thread.start()
    got: list[str] = []

    def drained() -> bool:
        got.extend(s for s in stems(inbox.take(0.01, 16, ANY_SIZE)) if s)
        return len(got) == per_putter * putters

    wait_until(drained, timeout=30, interval=0)
    for thread in threads:
        thread.join(5)
    numbers = [int(s[1:]) for s in got]
    assert sorted(numbers) == list(range(per_putter * putters))
    for p in range(putters):
        mine = [n for n in numbers if n // per_putter == p]
        assert mine == sorted(mine)
