"""What notices files in incoming/: watchdog events, a periodic rescan, settle timers.

Events make a dropped file start within a millisecond; the rescan is the safety
net for what events miss (inotify overflow, watch limits, network file systems
where another host's writes raise no event). Every path leads to one queue, so
a file is judged by one thread at a time.

On Linux the events come straight from watchdog's shared inotify reader, asking
only for names moved in, created, or closed after writing. watchdog's Observer
pairs every move-out with a move-in and holds each event up to 0.5 s behind the
daemon's own moves out of incoming/, which would make every pickup that late;
it remains the fallback where raw inotify is not available.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from watchdog.events import (
    FileClosedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

try:
    from watchdog.observers.inotify_c import (
        CallbackId,
        InotifyConstants,
        InotifyEvent,
        InotifyFD,
        Mask,
    )

    RAW_EVENTS = True
except ImportError:  # not Linux, or a watchdog without the shared reader
    RAW_EVENTS = False

from spoold.names import is_job_name

logger = logging.getLogger(__name__)

# Judges a batch of names from incoming/; returns (when to look again, name) for those
# that may still be being written.
Accept = Callable[[list[str], float], list[tuple[float, str]]]
BATCH = 64  # names judged per wake-up: a backlog is taken in turns of this many


class _Handler(FileSystemEventHandler):
    """Turns watchdog events in incoming/ into names for the queue."""

    def __init__(self, offer: Callable[[str], None]) -> None:
        self.offer = offer

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileMovedEvent):
            path = event.dest_path
        elif isinstance(event, FileClosedEvent) or event.event_type == "created":
            path = event.src_path
        else:
            return
        self.offer(os.path.basename(os.fsdecode(path)))


class _InotifyCallback:
    """What watchdog's shared inotify reader calls for events in incoming/."""

    def __init__(self, offer: Callable[[str], None], overflow: Callable[[], None]) -> None:
        self.offer = offer
        self.overflow = overflow

    def on_event(self, event: InotifyEvent) -> None:
        self.offer(os.fsdecode(event.name))

    def on_watch_deleted(self, wd: int) -> None:
        logger.warning("incoming/ was removed or replaced: finding files by rescan only")

    def on_queue_overflow(self) -> None:
        logger.warning("file events were lost (inotify queue overflow): rescanning incoming/")
        self.overflow()

    def on_events_lost(self) -> None:
        """Nothing more to do: on_queue_overflow already asked for a rescan."""


def _watch_raw(
    folder: str, offer: Callable[[str], None], overflow: Callable[[], None]
) -> Callable[[], None]:
    """Watch folder with watchdog's shared inotify reader; returns the stop function."""
    mask = Mask(
        InotifyConstants.IN_MOVED_TO
        | InotifyConstants.IN_CLOSE_WRITE
        | InotifyConstants.IN_CREATE
        | InotifyConstants.IN_ONLYDIR
    )
    reader = InotifyFD.get_instance()
    callback = _InotifyCallback(offer, overflow)
    callback_id = CallbackId(id(callback))
    wd = reader.add_callback(os.fsencode(folder), mask, callback, callback_id)
    return lambda: reader.remove_callbacks([(wd, callback_id)])


def _watch_observer(folder: str, offer: Callable[[str], None]) -> Callable[[], None]:
    """Watch folder with a watchdog Observer (any platform); returns the stop function."""
    observer = Observer()
    observer.schedule(_Handler(offer), folder, recursive=False)
    observer.start()

    def stop() -> None:
        observer.stop()
        observer.join(5)

    return stop


class Watcher:
    """Feeds names from incoming/ to `accept`; re-offers settling files when due."""

    def __init__(
        self,
        folder: str,
        accept: Accept,
        list_names: Callable[[], Iterable[str]],
        rescan_seconds: float,
    ) -> None:
        self.folder = folder
        self.accept = accept
        self.list_names = list_names
        self.rescan_seconds = rescan_seconds
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._timers: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._rescan_soon = threading.Event()  # set by an overflow, or to stop
        self._stop_events: Callable[[], None] | None = None
        self._threads: list[threading.Thread] = []

    def offer(self, name: str) -> None:
        """Queue a name (once) for judging."""
        self.offer_many((name,))

    def offer_many(self, names: Iterable[str]) -> None:
        """Queue names (each once) for judging, taking the queue's lock once."""
        with self._cond:
            queued = len(self._queue)
            for name in names:
                if name not in self._queued and is_job_name(name):
                    self._queued.add(name)
                    self._queue.append(name)
            if len(self._queue) > queued:  # a rescan that finds nothing new wakes no one
                self._cond.notify()

    def start(self) -> None:
        self._start_events()
        for target, name in ((self._judge_loop, "intake"), (self._rescan_loop, "rescan")):
            thread = threading.Thread(target=target, name=f"spoold-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def alive(self) -> bool:
        """Whether the intake and rescan threads still run (the daemon's health check)."""
        return all(thread.is_alive() for thread in self._threads)

    def _start_events(self) -> None:
        try:
            if RAW_EVENTS:
                self._stop_events = _watch_raw(self.folder, self.offer, self._overflowed)
            else:
                self._stop_events = _watch_observer(self.folder, self.offer)
        except OSError as e:
            logger.warning("no file events for %s (%s): finding files by rescan", self.folder, e)

    def _overflowed(self) -> None:
        self._rescan_soon.set()

    def stop(self) -> None:
        self._stop.set()
        self._rescan_soon.set()
        with self._cond:
            self._cond.notify_all()
        if self._stop_events:
            self._stop_events()
        for thread in self._threads:
            thread.join(5)

    def rescan(self) -> None:
        """Offer every job name in the folder (start, periodic, and on demand)."""
        self.offer_many(list(self.list_names()))  # listed before the queue's lock is taken

    def _rescan_loop(self) -> None:
        self.rescan()
        while True:
            self._rescan_soon.wait(self.rescan_seconds)
            self._rescan_soon.clear()
            if self._stop.is_set():
                return
            try:
                self.rescan()
            except OSError as e:
                logger.error("cannot list %s: %s; trying again", self.folder, e)

    def _next(self) -> list[str] | None:
        """The next names to judge (up to BATCH, in arrival order); None once stopped."""
        with self._cond:
            while not self._stop.is_set():
                now = time.time()
                while self._timers and self._timers[0][0] <= now:
                    _, name = heapq.heappop(self._timers)
                    if name not in self._queued:
                        self._queued.add(name)
                        self._queue.append(name)
                if self._queue:
                    names = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
                    self._queued.difference_update(names)
                    return names
                wait = self._timers[0][0] - now if self._timers else None
                self._cond.wait(wait)
            return None

    def _judge_loop(self) -> None:
        while (names := self._next()) is not None:
            try:
                later = self.accept(names, time.time())
            except Exception:
                logger.exception("could not judge %s in incoming/; left for the rescan", names)
                continue
            if later:  # seen by _next, in this same thread: no one else to wake
                with self._cond:
                    for again, name in later:
                        heapq.heappush(self._timers, (again, name))
