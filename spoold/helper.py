"""The file work the daemon hands to a helper process, and that process.

Per job, most of the daemon's kernel time is renames and writes in big folders.
Under the GIL its threads take turns at that work (see Spool.turn); a helper
process, `python -m spoold.helper commit`, does the group commit on the other
core instead (Spool.commit): write a batch of outcomes in tmp/, flush the file
system once, rename them into place, flush once more, and only then drop the
running files they replace. Without `durability: fsync` the same, without the
flushes.

What the helper bought (and why the intake has none any more) is measured in
bench/README.md ("What the design choices bought").
A helper shares nothing with the daemon but the spool folder and a pipe: a batch
goes in, each file's result comes back. The daemon keeps every decision (what
is admitted, under which name, what a job's outcome is); a helper only does the
file operations and says how each went.

A helper never outlives the daemon (the kernel kills it when the daemon's thread
that started it ends, and it ends at the end of its input), since a helper
still finishing jobs after its daemon died could race the next daemon's
recovery of the same running files. It ignores SIGINT and SIGTERM: a Ctrl-C or a
service manager's stop reaches the daemon, which finishes its work through the
helpers and then closes their input. If a helper dies anyway, its daemon logs it
and does the work itself from then on.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import marshal
import os
import signal
import site
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from spoold import logs
from spoold.errors import HelperGone
from spoold.spool import Record, Spool

if TYPE_CHECKING:
    import subprocess

logger = logging.getLogger("spoold.helper")

PR_SET_PDEATHSIG = 1
HEADER = struct.Struct("!Q")
# The pipe carries marshal's plain values (the interpreter has marshal loaded anyway;
# pickle would add ~0.4 MB to the helper, and is twice as slow here): a request is
# (verb, (items as plain tuples, *more args)), an answer a list with each item's result:
# None, True or False, or an error's fields (see _to_wire).
Wire = tuple[Any, ...] | bool | None
Result = OSError | bool | None


def commit_files(spool: Spool, records: list[tuple[Any, ...]], flush: bool) -> list[OSError | None]:
    """Spool.commit, the one way a job's file is written: a helper only carries it out.
    The records come as plain tuples, as the pipe carries them."""
    return spool.commit([Record._make(record) for record in records], flush)


def accept_files(spool: Spool, moves: list[tuple[str, str]]) -> list[bool | OSError]:
    """incoming/<name> → pending/<stem>.json for each (name, stem): True if moved, False
    if the file was gone, or the error that kept it where it was (Spool.accept)."""
    results: list[bool | OSError] = []
    for name, stem in moves:
        try:
            results.append(spool.accept(name, stem))
        except OSError as e:
            results.append(e)
    return results


VERBS: dict[str, Callable[..., list[Any]]] = {"commit": commit_files, "accept": accept_files}


class FileWork:
    """The commit's file work: done by its helper process while that runs, else here.

    A helper that stopped may have done part of a request; doing it again here is
    safe: the same bytes are written again, and a running file already dropped is
    logged."""

    def __init__(self, spool: Spool, role: str) -> None:
        self.spool = spool
        self.role = role
        self._helper: Helper | None = None

    def start(self) -> None:
        """Start the helper, from a thread that lives as long as the daemon: the helper
        ends with that thread."""
        self._helper = Helper.spawn(self.spool, self.role)

    def stop(self) -> None:
        if self._helper is not None:
            self._helper.close()
            self._helper = None

    def commit(self, records: list[Record], flush: bool) -> list[OSError | None]:
        """Spool.commit, in the helper if it runs."""
        return self._do("commit", records, flush)

    def accept(self, moves: list[tuple[str, str]]) -> list[bool | OSError]:
        """accept_files, in the helper if it runs."""
        return self._do("accept", moves)

    def _do(self, verb: str, *args: Any) -> list[Any]:
        if self._helper is not None:
            try:
                return self._helper.ask(verb, *args)
            except HelperGone as e:
                logger.error("the %s helper stopped (%s): doing its work in the daemon from"
                             " now on", self.role, e)  # fmt: skip
                self.stop()
        return VERBS[verb](self.spool, *args)


class Helper:
    """The daemon's end of a helper process: one request at a time, in any thread."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._lock = threading.Lock()

    @classmethod
    def spawn(cls, spool: Spool, role: str) -> Helper | None:
        """Start a helper for this spool (`role`, "commit", names it in ps
        and the log); None where it cannot be tied to the daemon's life (not Linux) or
        cannot start (logged): the daemon then does the work itself."""
        if not sys.platform.startswith("linux"):
            return None
        import subprocess  # here: the helper process runs this module and starts none

        node = spool.node if spool.shared else ""
        command = [sys.executable, "-m", "spoold.helper", role, str(spool.root), node,
                   str(os.getpid()), spool.owner]  # fmt: skip
        try:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       env=_same_spoold())  # fmt: skip
        except OSError as e:
            logger.warning("cannot start the %s helper (%s): working in this process", role, e)
            return None
        return cls(process)

    def ask(self, verb: str, items: list[tuple[Any, ...]], *more: Any) -> list[Any]:
        """VERBS[verb](spool, items, *more) in the helper, a result per item (items: records
        or moves, NamedTuples sent as plain tuples); HelperGone if it does not answer."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            with self._lock:
                send(self.process.stdin, (verb, ([tuple(item) for item in items], *more)))
                answer: list[Wire] = receive(self.process.stdout)
            return [_from_wire(fields) for fields in answer]
        except (OSError, EOFError, ValueError) as e:  # ValueError: marshal's bad data
            raise HelperGone(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from e

    def close(self) -> None:
        """End of input: the helper exits."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        import subprocess  # (see spawn)

        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _same_spoold() -> dict[str, str]:
    """The daemon's environment, with this very spoold first on the import path when
    the daemon found it outside the interpreter's site folders (through its working
    folder or a test runner's path). An installed spoold is found as it is: a site
    folder put first would come before the standard library."""
    env = dict(os.environ)
    here = Path(__file__).resolve().parent.parent
    sites = [*site.getsitepackages(), site.getusersitepackages()]
    if not any(here == Path(folder).resolve() for folder in sites):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(here), env.get("PYTHONPATH")]))
    return env


def send(stream: IO[bytes], value: Any) -> None:
    """value (plain values only: see Wire) as one message."""
    data = marshal.dumps(value)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def receive(stream: IO[bytes]) -> Any:
    """The next value sent; EOFError at the end of the stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        raise EOFError("end of stream")
    (size,) = HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("stream ended inside a message")
    return marshal.loads(data)


def _to_wire(result: Result) -> Wire:
    """None, True, False, or what rebuilds the error: its errno (which picks its class
    again: FileExistsError for EEXIST...), message and file names; or its text alone."""
    if not isinstance(result, OSError):
        return result
    if result.errno is None:
        return (str(result),)
    return (result.errno, result.strerror, _plain(result.filename), _plain(result.filename2))


def _plain(filename: Any) -> Any:
    """An error's file name as marshal can carry it: a Path (os.open(spool.root)) as text."""
    return os.fspath(filename) if isinstance(filename, os.PathLike) else filename


def _from_wire(fields: Wire) -> Result:
    if not isinstance(fields, tuple):
        return fields
    if len(fields) == 1:
        return OSError(fields[0])
    code, message, filename, filename2 = fields
    return OSError(code, message, filename, None, filename2)


def _die_with(parent: int) -> None:
    """Be killed when the daemon dies, and ignore the signals meant for it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the daemon died before the line above
        raise SystemExit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def serve(role: str, root: str, node: str, parent: int, owner: str) -> int:
    """The helper: do each request read from stdin, answer on stdout, until EOF. Its
    files in tmp/ carry the daemon's name (`owner`) and its own pid: if it is killed,
    the daemon (or another) knows whose they were (Ownership.clean_dead_tmp)."""
    logs.setup(logging.INFO, os.environ.get(logs.FORMAT_VARIABLE, "text"))  # as the daemon's
    _die_with(parent)
    spool = Spool(Path(root), node or None, durable=True, owner=owner)
    stdin, stdout = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the answers: stdout is theirs alone
    sys.stdout = sys.stderr
    try:
        while True:
            try:
                verb, args = receive(stdin)
            except EOFError:
                return 0
            send(stdout, _answer(role, spool, verb, args))
    finally:
        spool.close()


def _answer(role: str, spool: Spool, verb: str, args: tuple[Any, ...]) -> list[Wire]:
    """One request's results, as the pipe carries them; an error for each of its items
    if the request failed (a bug: say so, and go on serving)."""
    items = args[0]
    try:
        results: list[Result] = VERBS[verb](spool, *args)
    except Exception as e:
        logger.exception("%s helper: %s of %d file(s) failed", role, verb, len(items))
        results = [OSError(f"internal error in the {role} helper: {e!r}")] * len(items)
    return [_to_wire(result) for result in results]


if __name__ == "__main__":
    raise SystemExit(serve(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
