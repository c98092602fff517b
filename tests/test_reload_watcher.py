"""ConfigWatcher alone: every kind of save calls back once, with events or by polling."""

from __future__ import annotations

import os
import threading

import pytest
from conftest import wait_until

from spoold.reload import ConfigWatcher


class Calls:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.count += 1


@pytest.mark.parametrize("events", [True, False], ids=["events", "polling"])
def test_each_kind_of_save_is_seen_once(tmp_path, events):
    path = tmp_path / "spoold.yaml"
    path.write_text("workers: 1\n")
    calls = Calls()
    watcher = ConfigWatcher(path, calls, poll_seconds=0.1, quiet_seconds=0.05, events=events)
    watcher.start()
    try:
        wait_until(lambda: calls.count == 1)  # the first look, at start
        path.write_text("workers: 2\n")  # in place
        wait_until(lambda: calls.count == 2)
        tmp = tmp_path / ".spoold.yaml.tmp"
        tmp.write_text("workers: 3\n")
        os.replace(tmp, path)  # by rename
        wait_until(lambda: calls.count == 3)
        os.utime(path)  # touched, same bytes: nothing to reload
        (tmp_path / "other.yaml").write_text("x: 1\n")  # another file in the folder
        path.write_text("workers: 4\n")
        wait_until(lambda: calls.count == 4)
        assert watcher.check() is False
    finally:
        watcher.stop()
    assert calls.count == 4
