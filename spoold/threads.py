"""spoold's one way to run a periodic background thread (as watchdog's BaseThread).

A Loop calls its step, then pauses, until stopped: one stop event, start/stop/alive, and
a step that raises is logged and tried again at the next turn rather than ending the
thread, so a part of the daemon never dies of one bad turn.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Loop:
    """`step()` every `pause()` seconds (a pause may vary: e.g. up to the next whole
    second) in a daemon thread named spoold-<name>, until stop(); the first step comes
    after a pause too, unless `at_once`."""

    def __init__(
        self,
        name: str,
        step: Callable[[], None],
        pause: Callable[[], float],
        at_once: bool = False,
    ) -> None:
        self.name = name
        self._step = step
        self._pause = pause
        self._at_once = at_once
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"spoold-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to end after its current step, and wait up to `timeout` for it."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        """Whether stop() was called: a long step checks this between its parts."""
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        """Whether the thread runs (the daemon's health check)."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        delay = 0.0 if self._at_once else self._pause()
        while not self._stop.wait(delay):
            try:
                self._step()
            except Exception:
                logger.exception("%s: a turn failed; trying again at the next", self.name)
            delay = self._pause()
