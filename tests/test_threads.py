"""The one way spoold runs a periodic thread: steps, a failing step, stop, at_once."""

import logging
import threading

from conftest import wait_until

from spoold.threads import Loop


def test_a_loop_steps_until_stopped_and_a_failing_step_does_not_end_it(caplog):
    turns = []

    def step():
        turns.append(threading.current_thread().name)
        if len(turns) == 2:
            raise RuntimeError("one bad turn")

    loop = Loop("probe", step, lambda: 0.01)
    with caplog.at_level(logging.ERROR, logger="spoold.threads"):
        loop.start()
        wait_until(lambda: len(turns) >= 4)
        assert loop.alive and not loop.stopping
        loop.stop()
    assert not loop.alive and loop.stopping
    assert set(turns) == {"spoold-probe"}
    assert "probe: a turn failed" in caplog.text and "one bad turn" in caplog.text
    count = len(turns)
    threading.Event().wait(0.05)  # an absence: no turn after stop
    assert len(turns) == count


def test_the_first_step_waits_a_pause_unless_at_once():
    first, later = threading.Event(), threading.Event()
    waits = Loop("waits", first.set, lambda: 60.0)
    at_once = Loop("at-once", later.set, lambda: 60.0, at_once=True)
    waits.start()
    at_once.start()
    try:
        assert later.wait(5)
        assert not first.wait(0.1)  # an absence: still in its first pause
    finally:
        waits.stop()
        at_once.stop()
    assert not waits.alive and not at_once.alive
