"""Hostile HTTP clients against spoold run as a subprocess: idle keep-alive connections,
clients that trickle a byte at a time, huge heads, and a thousand of them at once.

Each test prints what it injected and what it found (run with -s to see it).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from statistics import median

import pytest
from conftest import DaemonProcess, base_config, free_port
from helpers_api import Client, folder_of, raw_json, raw_status

from spoold.api import MAX_CONNECTIONS, busy_answer
from spoold.browser import Cors
from spoold.connections import BODY_SECONDS, HEAD_SECONDS, Connections, raise_open_file_limit

HOSTILE = 1000
PATIENCE = 1.0  # a new client is answered within this while the API is under attack


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon for the module: each test leaves it serving (that is what they check)."""
    config = base_config(http={"host": "127.0.0.1", "port": free_port()})
    started = DaemonProcess(tmp_path_factory.mktemp("abused"), config, []).wait_ready()
    yield started
    assert started.stop() == 0, started.log()
    assert "Traceback" not in started.log()


def port_of(daemon: DaemonProcess) -> int:
    return int(daemon.config["http"]["port"])


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (EOF or reset), without waiting."""
    if sock.fileno() < 0:
        return False
    poller = select.poll()  # not select(): the thousand sockets' numbers pass 1024
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        sock.setblocking(False)
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def answered_in(port: int, path: str = "/healthz") -> float:
    """Seconds a new client (a new connection) takes to get a 200 for path."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
    finally:
        conn.close()
    return time.monotonic() - started


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes (or `limit` s pass), and when it closed."""
    started = time.monotonic()
    sock.settimeout(0.2)
    chunks = []
    while time.monotonic() - started < limit:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - started


def trickle(sock: socket.socket, data: bytes, every: float, stop: threading.Event) -> None:
    """Send data a byte at a time, `every` seconds apart, until it is sent or refused."""
    for byte in data:
        if stop.wait(every):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


# ----- idle connections ------------------------------------------------------------------------


def test_idle_connections_give_way_to_new_clients(daemon):
    port = port_of(daemon)
    idle = [connect(port) for _ in range(MAX_CONNECTIONS)]
    try:
        latencies = [answered_in(port) for _ in range(5)]
        closed = [n for n, sock in enumerate(idle) if closed_by_server(sock)]
        print(f"\ninjected: {MAX_CONNECTIONS} idle connections (the limit)"
              f"\nfound: 5 new clients answered in {[round(t, 3) for t in latencies]} s;"
              f" idle connections closed for them: {closed}")  # fmt: skip
        assert max(latencies) < PATIENCE
        assert closed and closed[0] < 10  # the longest idle gave way, not a newer one
    finally:
        for sock in idle:
            sock.close()


# ----- slow clients ----------------------------------------------------------------------------


def test_idle_and_trickling_clients_are_dropped_at_the_deadline(daemon):
    """Head and body each have a deadline for the whole of them; a byte every half second
    does not stretch it, and an idle keep-alive connection is closed at the same deadline.
    Nothing a dropped request asked for is done."""
    port = port_of(daemon)
    stop = threading.Event()
    kept = Client(port)
    assert kept.get("/healthz").status == 200
    idle = kept._conn.sock if kept._conn else None  # the kept-alive connection, now idle
    assert idle is not None
    head = connect(port)
    body = connect(port)
    job = json.dumps({"type": "noop", "id": "trickled"}).encode()
    body.sendall(b"POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(job))  # fmt: skip
    senders = [
        threading.Thread(target=trickle, args=(head, b"GET /healthz HTTP/1.1\r\n" * 10, 0.5, stop)),
        threading.Thread(target=trickle, args=(body, job, 0.5, stop)),
    ]
    for sender in senders:
        sender.start()
    try:
        results: dict[str, tuple[bytes, float]] = {}
        readers = [
            threading.Thread(target=lambda: results.update(head=read_until_closed(head, 30))),
            threading.Thread(target=lambda: results.update(body=read_until_closed(body, 30))),
            threading.Thread(target=lambda: results.update(idle=read_until_closed(idle, 30))),
        ]
        for reader in readers:
            reader.start()
        latency = answered_in(port)  # meanwhile, others are served
        for reader in readers:
            reader.join()
    finally:
        stop.set()
        for sender in senders:
            sender.join()
        head.close()
        body.close()
        kept.close()
    (head_answer, head_after), (body_answer, body_after) = results["head"], results["body"]
    idle_answer, idle_after = results["idle"]
    print(f"\ninjected: a request line and headers, and a {len(job)}-byte body, each sent a"
          f" byte every 0.5 s; a keep-alive connection left idle"
          f"\nfound: head dropped after {head_after:.1f} s ({head_answer[:40]!r}), body"
          f" answered {body_answer[:12]!r} after {body_after:.1f} s, idle closed after"
          f" {idle_after:.1f} s; a new client meanwhile answered in {latency:.3f} s")  # fmt: skip
    assert head_answer == b"" and HEAD_SECONDS - 1 < head_after < HEAD_SECONDS + 3
    assert idle_answer == b"" and HEAD_SECONDS - 1 < idle_after < HEAD_SECONDS + 3
    assert raw_status(body_answer) == 408 and "in time" in raw_json(body_answer)["error"]
    assert body_after < BODY_SECONDS + 3
    assert latency < PATIENCE
    assert folder_of(daemon.spool, "trickled") is None


# ----- huge heads ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("what", "head"),
    [
        ("one 100 KiB header", b"X-Big: " + b"a" * 100_000 + b"\r\n"),
        ("100 headers of 1 KiB", b"".join(b"X-%d: %s\r\n" % (n, b"b" * 1000) for n in range(100))),
        ("200 tiny headers", b"".join(b"X-%d: c\r\n" % n for n in range(200))),
        ("a 100 KiB request line", b""),
    ],
)
def test_huge_heads_are_refused_with_431_or_414(daemon, what, head):
    port = port_of(daemon)
    path = "/" + "p" * 100_000 if what.endswith("request line") else "/healthz"
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n".encode() + head + b"\r\n"
    with connect(port) as sock:
        with contextlib.suppress(OSError):  # refused before all was sent: the answer is there
            sock.sendall(request)
        answer, _ = read_until_closed(sock, 10)
    status_line = answer.split(b"\r\n")[0]
    print(f"\ninjected: {what} ({len(request)} bytes)\nfound: {status_line!r}"
          f" {raw_json(answer)}")  # fmt: skip
    assert raw_status(answer) in (414, 431), answer[:200]
    assert raw_json(answer)["error"]
    assert answered_in(port) < PATIENCE


# ----- a thousand at once ----------------------------------------------------------------------


class Attack:
    """HOSTILE connections of four kinds, kept open: a closed one is opened again at once
    (at most once a second each), and the slow ones send a byte a second."""

    KINDS = ("idle", "slow head", "half head", "slow body")

    def __init__(self, port: int) -> None:
        self.port = port
        self.sockets: list[tuple[str, socket.socket]] = []
        self.reopened = 0
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._drive, daemon=True)

    def open(self) -> None:
        for n in range(HOSTILE):
            kind = self.KINDS[n % len(self.KINDS)]
            self.sockets.append((kind, self._start(kind)))
        self._thread.start()

    def _start(self, kind: str) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.setblocking(False)
        opening = {
            "idle": b"",
            "slow head": b"G",
            "half head": b"GET /types HTTP/1.1\r\nHost: lo",
            "slow body": b"POST /jobs HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: 9999\r\n\r\n{",
        }
        if opening[kind]:
            sock.send(opening[kind])
        return sock

    def _drive(self) -> None:
        while not self.stop.wait(1.0):
            for n, (kind, sock) in enumerate(self.sockets):
                if self.stop.is_set():
                    return
                try:
                    if closed_by_server(sock):
                        raise ConnectionResetError
                    if kind in ("slow head", "slow body"):
                        sock.send(b"x")
                except OSError:
                    sock.close()
                    try:
                        self.sockets[n] = (kind, self._start(kind))
                        self.reopened += 1
                    except OSError:
                        pass

    def halt(self) -> None:
        self.stop.set()
        self._thread.join(10)

    def close(self) -> None:
        self.halt()
        for _, sock in self.sockets:
            sock.close()


def test_a_thousand_hostile_connections_leave_room_for_a_new_client(daemon):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = HOSTILE + 200
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"this test opens {HOSTILE} sockets; the open file limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    port = port_of(daemon)
    attack = Attack(port)
    started = time.monotonic()
    try:
        attack.open()
        opened_in = time.monotonic() - started
        latencies = []
        with Client(port) as client:
            for n in range(20):
                latencies.append(answered_in(port, "/types"))
                if n % 5 == 0:
                    reply = client.post("/jobs", {"type": "noop", "id": f"amid-attack-{n}"})
                    assert reply.status == 200, reply.body
                time.sleep(0.1)  # spread the new clients over the attack's own rhythm
        attack.halt()
        closed = sum(closed_by_server(sock) for _, sock in attack.sockets)
    finally:
        attack.close()
    print(f"\ninjected: {HOSTILE} connections ({', '.join(Attack.KINDS)}), opened in"
          f" {opened_in:.1f} s; each closed one opened again within a second"
          f"\nfound: 20 new clients answered in median {median(latencies) * 1000:.0f} ms,"
          f" max {max(latencies) * 1000:.0f} ms; the server closed {attack.reopened} hostile"
          f" connections while the test ran ({closed} more just now)")  # fmt: skip
    assert max(latencies) < PATIENCE, [round(t, 3) for t in latencies]
    assert all(folder_of(daemon.spool, f"amid-attack-{n}") for n in range(0, 20, 5))
    assert answered_in(port) < PATIENCE


# ----- the connection table itself -------------------------------------------------------------


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """Three connected socket pairs: the server's end first, the client's second."""
    made = [socket.socketpair() for _ in range(3)]
    yield made
    for a, b in made:
        a.close()
        b.close()


def evicted_for_the_third(
    table: Connections, pairs: list[tuple[socket.socket, socket.socket]], evicted: int
) -> None:
    """Admit pairs[2] to a full table: pairs[evicted] must be the one closed for it (its
    thread ends 0.1 s later, which frees its place), and its client sees it closed."""
    ended = threading.Timer(0.1, table.release, args=(pairs[evicted][0],))
    ended.start()
    third = table.admit(pairs[2][0], wait=5)
    ended.join()
    assert third is not None and table.evictions == 1
    pairs[evicted][1].settimeout(1)
    assert pairs[evicted][1].recv(10) == b""


def test_the_table_evicts_the_longest_waiting_and_refuses_only_when_all_are_busy(pairs):
    table = Connections(limit=2)
    first = table.admit(pairs[0][0], wait=0.1)
    second = table.admit(pairs[1][0], wait=0.1)
    assert first is not None and second is not None
    assert table.busy(first) and table.busy(second)
    started = time.monotonic()
    assert table.admit(pairs[2][0], wait=0.3) is None  # all busy: refused after the wait
    assert time.monotonic() - started >= 0.3
    table.waiting(second)
    table.waiting(first)  # waiting since later than second
    evicted_for_the_third(table, pairs, evicted=1)
    assert not table.busy(second)  # and its request, were it read now, is not acted on
    assert table.busy(first)


def test_a_new_connection_waits_since_its_admission_not_since_its_thread_started(pairs):
    """Under load a connection's thread may start after a newer one was admitted (seen:
    connection 91 of 256 closed for a new client): it has still waited longest."""
    table = Connections(limit=2)
    older = table.admit(pairs[0][0], wait=0.1)
    newer = table.admit(pairs[1][0], wait=0.1)
    assert older is not None and newer is not None
    table.waiting(older)  # its thread starts only now, after newer was admitted
    evicted_for_the_third(table, pairs, evicted=0)
    assert table.busy(newer)  # the newer one stays


def test_the_busy_answer_carries_cors_only_when_configured():
    for origins, expected in (((), False), (("*",), True), (("http://a.example",), False)):
        answer = busy_answer(Cors(origins).headers(None))
        assert answer.startswith(b"HTTP/1.1 503 ") and raw_json(answer)["error"]
        assert (b"Access-Control-Allow-Origin: *" in answer) is expected, origins


def test_the_open_file_limit_is_raised_towards_what_the_connections_need():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1024:
        pytest.skip(f"the hard limit of open files ({hard}) leaves nothing to raise")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert raise_open_file_limit(1024) == 1024
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 1024
        assert raise_open_file_limit(512) == 1024  # never lowered
        above = raise_open_file_limit(hard + 1) if hard != resource.RLIM_INFINITY else None
        assert above in (None, hard)  # as far as the hard limit allows
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
