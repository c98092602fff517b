"""The file work of a group commit, and the helper process that does it beside the daemon.

commit_files makes a batch of files durable: write them all in tmp/, flush the
file system once, rename them into place, flush once more, and only then drop
the running files they replace. The committer (commit.py) runs it in a helper
process, `python -m spoold.flusher`, when it can: that work is about half of the
daemon's kernel time per job with `durability: fsync`, and in another process it
runs on another core instead of in turn with the daemon's threads (4 workers on 2
cores: 5.6k → 7.4-7.6k jobs/s, and the daemon's CPU per job ~195 → ~120 µs). The
helper shares nothing with the daemon but the spool folder and a pipe: batches go
in, each file's error (or None) comes back.

The helper never outlives the daemon (the kernel kills it when the daemon's
thread that started it ends, and it ends at the end of its input), since a
helper still finishing jobs after its daemon died could race the next daemon's
recovery of the same running files. It ignores SIGINT and SIGTERM: a Ctrl-C or a
service manager's stop reaches the daemon, which finishes its commits through
the helper and then closes its input.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

from spoold.spool import Spool

logger = logging.getLogger("spoold.flusher")

# (running file or None, stem, folder, bytes): a file to make durable at folder/<stem>.json
Item = tuple[str | None, str, str, bytes]
PR_SET_PDEATHSIG = 1
HEADER = struct.Struct("!Q")


def commit_files(spool: Spool, items: list[Item]) -> list[OSError | None]:
    """Make every item durable, then drop its running file; each item's error (None:
    done). After an error the batch is retried item by item, so one bad item fails
    alone; an item that fails keeps its running file, found again at the next start."""
    staged: list[str] = []
    try:
        with spool.turn:
            staged.extend(spool.stage(data) for *_, data in items)
        spool.flush()
        with spool.turn:
            for tmp, (_, stem, folder, _) in zip(staged, items, strict=True):
                spool.place(tmp, folder, stem + ".json")
        spool.flush()
    except OSError:
        logger.exception("cannot commit %d job outcome(s); committing one by one", len(items))
        for tmp in staged:  # those placed are gone from tmp/ already
            spool.unstage(tmp)
        return [_commit_one(spool, item) for item in items]
    with spool.turn:
        for running, *_ in items:
            if running is not None:
                spool.retire_running(running)
    return [None] * len(items)


def _commit_one(spool: Spool, item: Item) -> OSError | None:
    running, stem, folder, data = item
    try:
        spool.write(folder, stem + ".json", data)
        if running is not None:
            spool.retire_running(running)
    except OSError as e:
        return e
    return None


class HelperGone(Exception):
    """The helper process stopped answering (it died, or its pipe broke)."""


class Helper:
    """The daemon's end of a helper process running commit_files."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    @classmethod
    def spawn(cls, spool: Spool) -> Helper | None:
        """Start a helper for this spool; None where it cannot be tied to the daemon's
        life (not Linux) or cannot start (logged): the committer then works alone."""
        if not sys.platform.startswith("linux"):
            return None
        node = spool.node if spool.shared else ""
        command = [sys.executable, "-m", "spoold.flusher", str(spool.root), node, str(os.getpid())]
        try:  # the same interpreter, environment and folder: the same spoold is imported
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except OSError as e:
            logger.warning("cannot start the commit helper (%s): committing in this process", e)
            return None
        return cls(process)

    def commit(self, items: list[Item]) -> list[OSError | None]:
        """commit_files in the helper; HelperGone if it does not answer."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            send(self.process.stdin, items)
            return receive(self.process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as e:
            raise HelperGone(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from e

    def close(self) -> None:
        """End of input: the helper drops its spare files and exits."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def send(stream: BinaryIO, value: object) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def receive(stream: BinaryIO) -> list:
    """The next value sent; EOFError at the end of the stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        raise EOFError("end of stream")
    (size,) = HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("stream ended inside a message")
    return pickle.loads(data)


def _die_with(parent: int) -> None:
    """Be killed when the daemon dies, and ignore the signals meant for it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the daemon died before the line above
        raise SystemExit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def serve(root: str, node: str, parent: int) -> int:
    """The helper: commit each batch read from stdin, answer on stdout, until EOF."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    _die_with(parent)
    spool = Spool(Path(root), node or None, durable=True)
    stdin, stdout = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the answers: stdout is theirs alone
    sys.stdout = sys.stderr
    try:
        while True:
            try:
                items = receive(stdin)
            except EOFError:
                return 0
            try:
                results = commit_files(spool, items)
            except Exception as e:  # a bug: say so for each item, and go on serving
                logger.exception("could not commit %d job outcome(s)", len(items))
                results = [OSError(f"internal error in the commit helper: {e!r}")] * len(items)
            send(stdout, results)
    finally:
        spool.drop_spares()


if __name__ == "__main__":
    raise SystemExit(serve(sys.argv[1], sys.argv[2], int(sys.argv[3])))
