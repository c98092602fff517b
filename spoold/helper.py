"""The file work the daemon hands to a helper process, and that process.

Per job, most of the daemon's kernel time is renames, reads and writes in big
folders. Under the GIL its threads take turns at that work (see Spool.turn); a
helper process, `python -m spoold.helper <spool> ...`, does it on the other core
instead, on two pipes: on one the group commit (Spool.commit: write a batch of
outcomes in tmp/, flush the file system once, rename them into place, flush once
more, and only then drop the running files they replace; without `durability:
fsync` the same, without the flushes), on the other, served by a thread of its
own so that no flush holds it up, the intake's batches: read the new files in
incoming/, then move the admitted ones to pending/.

What the helper bought is measured in bench/README.md ("What the design choices
bought").
A helper shares nothing with the daemon but the spool folder and its pipes: a
batch goes in, each file's result comes back. The daemon keeps every decision (what
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
import enum
import fcntl
import logging
import marshal
import os
import signal
import site
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from spoold import logs
from spoold.errors import HelperGone, Rejected
from spoold.fileio import Incoming
from spoold.spool import Record, Spool

if TYPE_CHECKING:
    import subprocess

logger = logging.getLogger("spoold.helper")

PR_SET_PDEATHSIG = 1
HEADER = struct.Struct("!Q")
# A batch of reads stops at this many bytes: the pipe carries a batch as one message, held
# whole at both ends, and the intake has up to two batches read ahead (a batch of 128 files
# near maxJobBytes would be 128 MiB). The files left are LATER: to be read in a next batch.
READ_BYTES = 4 << 20


class Left(enum.Enum):
    """The result for a file left out of a full batch of reads (see READ_BYTES)."""

    LATER = "later"


LATER = Left.LATER
# The pipes carry marshal's plain values (the interpreter has marshal loaded anyway;
# pickle would add ~0.4 MB to the helper, and is twice as slow here): a request is
# (verb, (items as plain tuples, *more args)), an answer a list with each item's result:
# None, True or False, or a tagged tuple for a file read, LATER or an error (see _to_wire).
Wire = tuple[Any, ...] | bool | None
Result = Incoming | OSError | Rejected | Left | bool | None
Later = Callable[[], list[Any]]  # a request's results, once they are wanted


def commit_files(spool: Spool, records: list[tuple[Any, ...]], flush: bool) -> list[OSError | None]:
    """Spool.commit, the one way a job's file is written: a helper only carries it out.
    The records come as plain tuples, as the pipe carries them."""
    return spool.commit([Record._make(record) for record in records], flush)


def read_files(spool: Spool, names: list[tuple[str]], max_bytes: int) -> list[Result]:
    """Spool.read_incoming of each incoming/<name>: its Incoming, None if it is gone, the
    error that kept it from being read (Rejected: not to be read), or LATER once the
    batch holds READ_BYTES (at least one file is read). In a turn of the spool, as each
    batch of file work: in the helper its two threads then take turns per batch, not
    per system call (fsync, alternating runs: 9.7-10.2k → 10.4-11.3k jobs/s)."""
    results: list[Result] = []
    held = 0
    with spool.turn:
        for (name,) in names:
            if held >= READ_BYTES:
                results.append(LATER)
                continue
            try:
                read = spool.read_incoming(name, max_bytes)
            except (Rejected, OSError) as e:
                results.append(e)
                continue
            held += len(read.raw) if read else 0
            results.append(read)
    return results


def accept_files(spool: Spool, moves: list[tuple[str, str]]) -> list[bool | OSError]:
    """incoming/<name> → pending/<stem>.json for each (name, stem): True if moved, False
    if the file was gone, or the error that kept it where it was (Spool.accept). In a
    turn of the spool, as read_files."""
    results: list[bool | OSError] = []
    with spool.turn:
        for name, stem in moves:
            try:
                results.append(spool.accept(name, stem))
            except OSError as e:
                results.append(e)
    return results


VERBS: dict[str, Callable[..., list[Any]]] = {
    "commit": commit_files,
    "read": read_files,
    "accept": accept_files,
}
# The pipe each verb goes through: the intake's reads and moves have their own, served by
# a thread of their own in the helper, so that they never wait behind a group commit's
# flushes (the workers would wait for jobs meanwhile).
CHANNEL = {"commit": 0, "read": 1, "accept": 1}


class FileWork:
    """The commit's file work: done by its helper process while that runs, else here.

    A helper that stopped may have done part of a request; doing it again here is
    safe: a file is read again, a move already made is found done (Spool.accept), the
    same bytes are written again, and a running file already dropped is logged."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._helper: Helper | None = None

    def start(self) -> None:
        """Start the helper, from a thread that lives as long as the daemon: the helper
        ends with that thread."""
        self._helper = Helper.spawn(self.spool)

    def stop(self) -> None:
        if self._helper is not None:
            self._helper.close()
            self._helper = None

    def commit(self, records: list[Record], flush: bool) -> list[OSError | None]:
        """Spool.commit, in the helper if it runs."""
        return self._do("commit", records, flush)

    def read(self, names: list[str], max_bytes: int, here: bool = False) -> Later:
        """read_files, in the helper if it runs (and not `here`): asked for now, its
        results when the returned function is called (the intake judges a batch
        meanwhile)."""
        return self._ask("read", here, [(name,) for name in names], max_bytes)

    def accept(self, moves: list[tuple[str, str]], here: bool = False) -> Later:
        """accept_files, in the helper if it runs (and not `here`); asked for now, as read."""
        return self._ask("accept", here, moves)

    def _do(self, verb: str, *args: Any) -> list[Any]:
        return self._ask(verb, False, *args)()

    def _ask(self, verb: str, here: bool, *args: Any) -> Later:
        """The request sent to the helper if it runs, else (or `here`) done here now;
        its results when the returned function is called. Where the helper stops before
        it answers, the work is done here then."""
        helper = None if here else self._helper
        if helper is not None:
            try:
                ticket = helper.post(verb, *args)
            except HelperGone as e:
                self._lost(helper, e)
            else:
                return lambda: self._collect(helper, ticket, verb, args)
        results = VERBS[verb](self.spool, *args)
        return lambda: results

    def _collect(
        self, helper: Helper, ticket: Ticket, verb: str, args: tuple[Any, ...]
    ) -> list[Any]:
        try:
            return helper.collect(ticket)
        except HelperGone as e:
            self._lost(helper, e)
        return VERBS[verb](self.spool, *args)

    def _lost(self, helper: Helper, error: HelperGone) -> None:
        """Say once that the helper stopped, and work here from now on."""
        if self._helper is helper:
            logger.error("the helper stopped (%s): doing its work in the daemon from now on",
                         error)  # fmt: skip
            self.stop()


class Channel:
    """A pair of pipes to the helper, from any thread. A request may be sent before the
    answers to the earlier ones are read (the helper answers them in order): the intake
    asks for a batch's reading before it judges the batch before. Neither end can then
    block the other for good: the requests not answered yet never hold more than the
    request pipe does, so the daemon's write always finds room; the helper, held up
    only by an answer no one reads, gets it read before any request that could wait."""

    def __init__(self, requests: IO[bytes], answers: IO[bytes]) -> None:
        self.requests, self.answers = requests, answers
        self._room = pipe_room(requests)
        self._lock = threading.Lock()
        self._answered = 0  # the ticket of the last answer read; a request's is its number
        self._unanswered: deque[int] = deque()  # the size of each request sent, not answered
        self._answers: dict[int, list[Wire]] = {}  # read, not yet collected

    def post(self, verb: str, items: list[tuple[Any, ...]], *more: Any) -> int:
        """Send a request; its ticket, to collect its answer with."""
        data = message((verb, ([tuple(item) for item in items], *more)))
        with self._lock:
            while self._unanswered and sum(self._unanswered) + len(data) > self._room:
                self._read_answer()
            self.requests.write(data)
            self.requests.flush()
            self._unanswered.append(len(data))
            return self._answered + len(self._unanswered)

    def collect(self, ticket: int) -> list[Result]:
        """The answer to the request of that ticket, a result per item."""
        with self._lock:
            while ticket not in self._answers:
                self._read_answer()
            answer = self._answers.pop(ticket)
        return [_from_wire(fields) for fields in answer]

    def _read_answer(self) -> None:
        answer: list[Wire] = receive(self.answers)
        self._unanswered.popleft()
        self._answered += 1
        self._answers[self._answered] = answer

    def close(self) -> None:
        """End of this channel's input: the helper's thread serving it ends."""
        with contextlib.suppress(OSError):
            self.requests.close()


def pipe_room(stream: IO[bytes]) -> int:
    """How many bytes of requests may wait in the pipe: half of what it holds (a pipe's
    pages are not always filled to the end), or 4 KiB where its size is unknown."""
    try:
        return fcntl.fcntl(stream.fileno(), fcntl.F_GETPIPE_SZ) // 2
    except (AttributeError, OSError, ValueError):  # not Linux, or not a pipe
        return 4096


class Helper:
    """The daemon's end of a helper process: its two channels (see CHANNEL)."""

    def __init__(self, process: subprocess.Popen[bytes], intake: Channel) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.channels = (Channel(process.stdin, process.stdout), intake)

    @classmethod
    def spawn(cls, spool: Spool) -> Helper | None:
        """Start a helper for this spool; None where it cannot be tied to the daemon's
        life (not Linux) or cannot start (logged): the daemon then does the work itself.
        Its first channel is its stdin and stdout, the second a pair of pipes it is
        given the ends of."""
        if not sys.platform.startswith("linux"):
            return None
        import subprocess  # here: the helper process runs this module and starts none

        (their_in, our_out), (our_in, their_out) = os.pipe(), os.pipe()
        node = spool.node if spool.shared else ""
        command = [sys.executable, "-m", "spoold.helper", str(spool.root), node,
                   str(os.getpid()), spool.owner, f"{their_in},{their_out}"]  # fmt: skip
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                pass_fds=(their_in, their_out), env=_same_spoold(),
            )  # fmt: skip
        except OSError as e:
            logger.warning("cannot start the helper (%s): working in this process", e)
            os.close(our_out)
            os.close(our_in)
            return None
        finally:  # the helper's ends: it has its own copies
            os.close(their_in)
            os.close(their_out)
        return cls(process, Channel(os.fdopen(our_out, "wb"), os.fdopen(our_in, "rb")))

    def post(self, verb: str, items: list[tuple[Any, ...]], *more: Any) -> Ticket:
        """Ask for VERBS[verb](spool, items, *more) in the helper, through the verb's
        channel (items: records, names or moves, NamedTuples sent as plain tuples); its
        answer, a result per item, is collected later (HelperGone if the helper is gone)."""
        channel = self.channels[CHANNEL[verb]]
        with _gone_as_helper_gone():
            return channel, channel.post(verb, items, *more)

    def collect(self, ticket: Ticket) -> list[Any]:
        """The answer to a request posted (HelperGone if the helper does not answer)."""
        channel, number = ticket
        with _gone_as_helper_gone():
            return channel.collect(number)

    def close(self) -> None:
        """End of input on both channels: the helper exits."""
        for channel in reversed(self.channels):
            channel.close()
        import subprocess  # (see spawn)

        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for channel in self.channels:
            channel.answers.close()


Ticket = tuple[Channel, int]  # a request posted to a helper, to collect its answer with


@contextlib.contextmanager
def _gone_as_helper_gone() -> Iterator[None]:
    """A pipe that breaks, ends or carries bad data (ValueError: marshal's) means the
    helper is gone."""
    try:
        yield
    except (OSError, EOFError, ValueError) as e:
        raise HelperGone(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from e


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
    stream.write(message(value))
    stream.flush()


def message(value: Any) -> bytes:
    """value as the pipe carries it: its length, then its marshal bytes."""
    data = marshal.dumps(value)
    return HEADER.pack(len(data)) + data


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
    """None, True and False as they are; a file read as its bytes and mtime; LATER as its
    tag; an error as what rebuilds it: its errno (which picks its class again:
    FileExistsError for EEXIST...), message and file names, or its text alone."""
    if isinstance(result, Incoming):
        return ("file", result.raw, result.mtime)
    if result is LATER:
        return ("later",)
    if isinstance(result, Rejected):
        return ("rejected", str(result))
    if not isinstance(result, OSError):
        return result
    if result.errno is None:
        return ("error", str(result))
    return ("oserror", result.errno, result.strerror, _plain(result.filename),
            _plain(result.filename2))  # fmt: skip


def _plain(filename: Any) -> Any:
    """An error's file name as marshal can carry it: a Path (os.open(spool.root)) as text."""
    return os.fspath(filename) if isinstance(filename, os.PathLike) else filename


def _from_wire(fields: Wire) -> Result:
    if not isinstance(fields, tuple):
        return fields
    tag, *values = fields
    if tag == "file":
        return Incoming(*values)
    if tag == "later":
        return LATER
    if tag == "rejected":
        return Rejected(values[0])
    if tag == "error":
        return OSError(values[0])
    code, message, filename, filename2 = values
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


def serve(root: str, node: str, parent: int, owner: str, intake: str = "") -> int:
    """The helper: do each request read from stdin, answer on stdout, until EOF; and
    those of the second channel (`intake`: its two fds, "in,out") in a thread. Its
    files in tmp/ carry the daemon's name (`owner`) and its own pid: if it is killed,
    the daemon (or another) knows whose they were (Ownership.clean_dead_tmp)."""
    logs.setup(logging.INFO, os.environ.get(logs.FORMAT_VARIABLE, "text"))  # as the daemon's
    _die_with(parent)
    spool = Spool(Path(root), node or None, durable=True, owner=owner)
    stdin, stdout = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the answers: stdout is theirs alone
    sys.stdout = sys.stderr
    if intake:
        fd_in, fd_out = (int(fd) for fd in intake.split(","))
        channel = (spool, os.fdopen(fd_in, "rb"), os.fdopen(fd_out, "wb"))
        threading.Thread(target=_serve, args=channel, name="intake", daemon=True).start()
    try:
        _serve(spool, stdin, stdout)
        return 0
    finally:
        spool.close()


def _serve(spool: Spool, requests: IO[bytes], answers: IO[bytes]) -> None:
    """Answer each request of one channel until its end."""
    while True:
        try:
            verb, args = receive(requests)
        except EOFError:
            return
        send(answers, _answer(spool, verb, args))


def _answer(spool: Spool, verb: str, args: tuple[Any, ...]) -> list[Wire]:
    """One request's results, as the pipe carries them; an error for each of its items
    if the request failed (a bug: say so, and go on serving)."""
    items = args[0]
    try:
        results: list[Result] = VERBS[verb](spool, *args)
    except Exception as e:
        logger.exception("helper: %s of %d file(s) failed", verb, len(items))
        results = [OSError(f"internal error in the helper: {e!r}")] * len(items)
    return [_to_wire(result) for result in results]


if __name__ == "__main__":
    root, node, parent, owner, *intake = sys.argv[1:]
    raise SystemExit(serve(root, node, int(parent), owner, *intake))
