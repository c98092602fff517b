"""What notices files in incoming/: watchdog events, a periodic rescan, settle timers.

Events make a dropped file start within a millisecond; the rescan is the safety
net for what events miss (inotify overflow, watch limits, network file systems
where another host's writes raise no event). Every path leads to one queue, so
a file is judged by one thread at a time.

On Linux the events come from an inotify reader of watchdog's (InotifyFD), asking
only for names moved in, created, or closed after writing, and read by a thread
of the watcher's own, which judges the names it reads itself: a dropped file
wakes one thread before its judging, not three (watchdog's shared reader hands
each read to a dispatcher thread, which would hand it on to the intake's; each
wake-up costs ~0.1-0.3 ms on an idle machine). watchdog's Observer pairs every
move-out with a move-in and holds each event up to 0.5 s behind the daemon's own
moves out of incoming/, which would make every pickup that late; it remains the
fallback where raw inotify is not available.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from watchdog.events import (
    FileClosedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

try:
    from watchdog.observers.inotify_c import (
        DEFAULT_EVENT_BUFFER_SIZE,
        CallbackId,
        InotifyConstants,
        InotifyEvent,
        InotifyFD,
        Mask,
        WatchDescriptor,
    )

    RAW_EVENTS = True
except ImportError:  # not Linux, or a watchdog without the shared reader
    RAW_EVENTS = False

from spoold.names import is_job_name

logger = logging.getLogger(__name__)

# Judges a batch of names from incoming/, then each further batch it takes from the
# iterable (see Intake.accept_files); returns (when to look again, name) for those that
# may still be being written.
Accept = Callable[[list[str], float, Iterable[list[str]]], list[tuple[float, str]]]
# Names judged per wake-up: a backlog is taken in turns of this many. 128 against 64
# (bench/README.md): fewer round trips to the helper and hand-overs between threads.
BATCH = 128
# Job names that were waiting when read mean files come in a burst: the reader then waits
# a little before reading again, so that it judges a batch per read, not a file per read.
# A lone drop is judged at once: the events of its dot-name (created, written) come just
# before its move and must not make the reader wait before reading the move. Within a
# steady stream a file may wait up to BURST_WAIT longer to be judged; each batch's round
# trips to the helper and hand-overs are shared by 4x as many files (bench/README.md).
BURST_GAP = 0.0005
BURST_WAIT = 0.004
# While incoming/ is gone (removed, or moved away), seconds between two looks for it: once
# it is there again, its events are watched again.
REWATCH_POLL = 0.5
EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name


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


class _Unused:
    """The callback InotifyFD files the watch under: never called for events, since the
    watcher reads them itself (see _RawEvents); closing the reader says the watch ended."""

    def on_event(self, event: InotifyEvent) -> None:
        """Not called: events are read, not dispatched."""

    def on_watch_deleted(self, wd: int) -> None:
        """The watcher is stopping: nothing to do."""

    def on_queue_overflow(self) -> None:
        """Not called: the overflow is an event read like the others."""

    def on_events_lost(self) -> None:
        """Not called (see on_queue_overflow)."""


class _RawEvents:
    """incoming/'s events from a private InotifyFD (not started as a thread: `run` reads
    it); each read's job names go to `judge`, in this reader's thread."""

    MASK = (
        InotifyConstants.IN_MOVED_TO
        | InotifyConstants.IN_CLOSE_WRITE
        | InotifyConstants.IN_CREATE
        | InotifyConstants.IN_MOVE_SELF
        | InotifyConstants.IN_ONLYDIR
    ) if RAW_EVENTS else 0  # fmt: skip
    GONE = (InotifyConstants.IN_IGNORED | InotifyConstants.IN_MOVE_SELF) if RAW_EVENTS else 0

    def __init__(
        self,
        folder: str,
        judge: Callable[[list[str], Iterable[list[str]]], None],
        rescan: Callable[[], None],
    ) -> None:
        self._judge = judge
        self._rescan = rescan  # asks for a rescan soon: after lost events, or a new watch
        self._folder = os.fsencode(folder)
        self._reader = InotifyFD()
        self._stopping = False
        try:
            self._wd = self._watch()
        except OSError:
            self._reader.close()
            raise

    def _watch(self) -> WatchDescriptor:
        return self._reader.add_callback(self._folder, Mask(self.MASK), _Unused(), CallbackId(0))

    def run(self) -> None:
        """Read events until stopped; a read that fails (it should not) is logged, and the
        rescan finds what it would have said."""
        while not self._stopping:
            waited = time.monotonic()
            try:
                # The bytes read_events would parse (see _job_names); pinned to watchdog 7.
                events = self._reader._read_event_buffer(DEFAULT_EVENT_BUFFER_SIZE)
            except OSError as e:
                logger.error("cannot read file events (%s): finding files by rescan only", e)
                return
            if not events:  # closed by stop(), or the reader's descriptor went bad
                if not self._stopping:
                    logger.error("file events ended: finding files by rescan only")
                return
            burst = time.monotonic() - waited < BURST_GAP
            names, gone = self._job_names(events)
            if names:
                batches = [names[start : start + BATCH] for start in range(0, len(names), BATCH)]
                self._judge(batches[0], batches[1:])
            if gone:
                self._watch_again()
            elif burst and names:  # let the next read gather a batch: not a wake-up per file
                time.sleep(BURST_WAIT)

    def _job_names(self, events: bytes) -> tuple[list[str], bool]:
        """The job names in a read of inotify events (struct inotify_event), each once, in
        order, and whether the watched folder went (removed or moved away). Parsed here,
        not as watchdog's InotifyEvent objects (read_events): a dropped file brings three
        events (created, closed after writing, moved in), ~3.5 µs of the daemon's time as
        objects against ~1 here."""
        names: dict[str, None] = {}
        gone = False
        at, end, unpack = 0, len(events), EVENT.unpack_from
        while at + EVENT.size <= end:
            wd, mask, _cookie, length = unpack(events, at)
            start = at + EVENT.size
            at = start + length
            if mask & InotifyConstants.IN_Q_OVERFLOW:
                self._lost()
            elif wd == self._wd and mask & self.GONE:
                gone = True
            elif wd == self._wd and length:
                name = os.fsdecode(events[start:at].rstrip(b"\0"))
                if is_job_name(name):
                    names[name] = None
        return list(names), gone

    def _lost(self) -> None:
        """The events were lost: a rescan finds what they said."""
        logger.warning("file events were lost (inotify queue overflow): rescanning incoming/")
        self._rescan()

    def _watch_again(self) -> None:
        """incoming/ was removed or moved away, and its watch with it: look for the folder
        at its path until it is there again (made again by hand, say), watch that one, and
        rescan it for the files dropped meanwhile. Until then no file can be dropped there."""
        if self._stopping:
            return
        logger.warning("incoming/ was removed or moved away: its events are watched again"
                       " once a folder is there again")  # fmt: skip
        with contextlib.suppress(OSError):  # the reader closed by stop() meanwhile
            self._reader.remove_callbacks([(self._wd, CallbackId(0))])  # a moved one fires on
        while not self._stopping:
            try:
                self._wd = self._watch()
            except OSError:
                time.sleep(REWATCH_POLL)
                continue
            logger.info("watching incoming/ again")
            self._rescan()
            return

    def stop(self) -> None:
        """Wake the reading thread, which then ends (InotifyFD.close writes to its pipe)."""
        self._stopping = True
        self._reader.close()


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
        self._rescan_soon = threading.Event()  # set by lost events, a new watch, or to stop
        self._events: _RawEvents | None = None
        self._stop_observer: Callable[[], None] | None = None
        self._judging = threading.Lock()  # one judge at a time: events' reader or the queue's
        self._judges_waiting = 0  # threads waiting for _judging (under _cond)
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
        threads = [(self._judge_loop, "intake"), (self._rescan_loop, "rescan")]
        if self._events is not None:
            threads.append((self._events.run, "events"))
        for target, name in threads:
            thread = threading.Thread(target=target, name=f"spoold-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def alive(self) -> bool:
        """Whether the intake, rescan and events threads still run (the daemon's health
        check: an events thread that ended leaves only the rescan to find files)."""
        return all(thread.is_alive() for thread in self._threads)

    def _start_events(self) -> None:
        try:
            if RAW_EVENTS:
                self._events = _RawEvents(self.folder, self._judge, self._rescan_soon.set)
            else:
                self._stop_observer = _watch_observer(self.folder, self.offer)
        except OSError as e:
            logger.warning("no file events for %s (%s): finding files by rescan", self.folder, e)

    def stop(self) -> None:
        self._stop.set()
        self._rescan_soon.set()
        with self._cond:
            self._cond.notify_all()
        if self._events:
            self._events.stop()
        if self._stop_observer:
            self._stop_observer()
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
                    return self._pop_batch()
                wait = self._timers[0][0] - now if self._timers else None
                self._cond.wait(wait)
            return None

    def _judge_loop(self) -> None:
        while (names := self._next()) is not None:
            self._judge(names, self._queued_batches())

    def _queued_batches(self) -> Iterator[list[str]]:
        """The batches queued after the one being judged, each taken when the intake wants
        it, while no other thread waits to judge: a backlog goes through the intake's
        pipeline in one go, yet a file the events' reader brings is not held up behind it."""
        while not self._stop.is_set():
            with self._cond:
                if not self._queue or self._judges_waiting:
                    return
                names = self._pop_batch()
            yield names

    def _pop_batch(self) -> list[str]:
        """Up to BATCH names from the queue, in arrival order (under _cond)."""
        names = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
        self._queued.difference_update(names)
        return names

    def _judge(self, names: list[str], more: Iterable[list[str]] = ()) -> None:
        """accept() the names, then those of `more`, in the calling thread (the events'
        reader, or the intake thread for the queue); those that may still be being
        written wait on a timer."""
        with self._cond:
            self._judges_waiting += 1
        with self._judging:
            with self._cond:
                self._judges_waiting -= 1
            try:
                later = self.accept(names, time.time(), more)
            except Exception:
                logger.exception("could not judge %s in incoming/; left for the rescan", names)
                return
        if later:
            with self._cond:
                for again, name in later:
                    heapq.heappush(self._timers, (again, name))
                self._cond.notify()  # the intake thread's wait ends at the first timer
