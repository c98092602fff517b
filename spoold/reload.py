"""Notices edits of the config file, however they are saved, and asks for a reload.

Editors save in place (truncate and write) or by rename (vim, `sed -i`, atomic
writers replace the file, so a watch on the file itself would lose it). So the
watch is on the file's folder and filters by name: a close after writing, a
create, a rename onto it, a delete. A stat of the file every `poll_seconds`
(inode, mtime, size) is the safety net for what events miss (network file
systems, no inotify). A burst of events gives one reload, once the file has
been quiet for `quiet_seconds`, and only if its bytes changed. The first look
is at start, so an edit made while the daemon was starting is not missed (the
daemon ignores a reload that loads the config it already has).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

logger = logging.getLogger(__name__)

EVENTS = {"closed", "created", "moved", "deleted", "modified"}
# What the observer asks the kernel for: without a filter it also gets every open and
# close-without-write in the folder, e.g. each flush of a spool that sits beside the config.
EVENT_FILTER = [FileClosedEvent, FileCreatedEvent, FileDeletedEvent, FileModifiedEvent,
                FileMovedEvent]  # fmt: skip
Signature = tuple[int, int, int] | None
_UNSEEN = object()


class _Handler(FileSystemEventHandler):
    def __init__(self, name: str, poke: Callable[[], None]) -> None:
        self.name = name
        self.poke = poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in EVENTS:
            return
        paths = (event.src_path, getattr(event, "dest_path", "") or "")
        if any(os.path.basename(os.fsdecode(p)) == self.name for p in paths):
            self.poke()


class ConfigWatcher:
    """Calls `changed()` in its own thread after each edit of the file at `path`."""

    def __init__(
        self,
        path: Path,
        changed: Callable[[], None],
        poll_seconds: float = 0.5,
        quiet_seconds: float = 0.1,
        events: bool = True,
    ) -> None:
        self.path = Path(path).absolute()
        self.changed = changed
        self.poll_seconds = poll_seconds
        self.quiet_seconds = quiet_seconds
        self.events = events
        self._poked = threading.Event()
        self._stop = threading.Event()
        self._observer: BaseObserver | None = None
        self._thread: threading.Thread | None = None
        self._signature: Signature = None
        self._content: object = _UNSEEN

    def start(self) -> None:
        self._poked.set()
        if self.events:
            self._start_observer()
        self._thread = threading.Thread(target=self._loop, name="spoold-reload", daemon=True)
        self._thread.start()

    def _start_observer(self) -> None:
        try:
            observer = Observer()
            handler = _Handler(self.path.name, self._poked.set)
            observer.schedule(
                handler, str(self.path.parent), recursive=False, event_filter=EVENT_FILTER
            )
            observer.start()
            self._observer = observer
        except OSError as e:
            logger.warning("no file events for %s (%s): checking it every %ss instead",
                           self.path, e, self.poll_seconds)  # fmt: skip

    @property
    def alive(self) -> bool:
        """Whether the thread that applies edits still runs (the daemon's health check)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._poked.set()
        if self._observer:
            self._observer.stop()
            self._observer.join(5)
        if self._thread:
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            poked = self._poked.wait(self.poll_seconds)
            if self._stop.is_set():
                return
            if poked or self._stat() != self._signature:
                self._settle()
                self.check()

    def _settle(self) -> None:
        """Wait until no event has come for quiet_seconds (a writer may still be at it)."""
        self._poked.clear()
        while self._poked.wait(self.quiet_seconds) and not self._stop.is_set():
            self._poked.clear()

    def check(self) -> bool:
        """Call `changed()` if the file's bytes differ from the last seen; True if called."""
        self._signature = self._stat()
        content = self._read()
        if content == self._content:
            return False
        self._content = content
        try:
            self.changed()
        except Exception:
            logger.exception("reloading %s failed; the last good config stays", self.path)
        return True

    def _stat(self) -> Signature:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except OSError:
            return None
