"""Real servers on 127.0.0.1 for tests: an SMTP server (aiosmtpd) and a scriptable HTTP server.

Each is a context manager that binds a free port, runs in its own thread and
joins it on exit, so tests (and the daemon's end-to-end tests) can use them
as fixtures without sleeping or leaking threads::

    with smtp_server() as smtp:
        ... send to smtp.host:smtp.port ...
        mail = smtp.wait_for(1)[0]

    with http_server(503, 200) as web:   # first answer 503, then 200 for ever
        ... POST to web.url + "/hook" ...
        first, second = web.wait_for(2)
"""

from __future__ import annotations

import email
import email.policy
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from spoold.config import SmtpConfig

HOST = "127.0.0.1"
WAIT = 5.0


def _wait(condition: threading.Condition, ready: Any, timeout: float, what: str) -> None:
    """Block until ready() under condition, or fail the test saying what never came."""
    with condition:
        if not condition.wait_for(ready, timeout):
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def closed_port() -> Iterator[int]:
    """A 127.0.0.1 port that refuses connections: bound (so nobody takes it), never listening."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        yield sock.getsockname()[1]


# --- SMTP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the SMTP server received it."""

    sender: str  # the envelope's MAIL FROM
    recipients: list[str]  # the envelope's RCPT TO, in order
    message: EmailMessage  # the parsed DATA
    data: bytes  # the DATA as sent
    tls: bool  # STARTTLS was in effect
    login: str | None  # the AUTH user name, if the client logged in


class _Collector:
    """The aiosmtpd handler: refuses the recipients it is told to, keeps every message."""

    def __init__(self, refuse: Mapping[str, str]) -> None:
        self.refuse = dict(refuse)
        self.mails: list[ReceivedMail] = []
        self.changed = threading.Condition()

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        login = session.auth_data.login.decode() if session.authenticated else None
        lines = data.replace(b"\r\n", b"\n")  # as the message reads, not as the wire carries it
        parsed = email.message_from_bytes(lines, policy=email.policy.default)
        rcpt = list(envelope.rcpt_tos)
        mail = ReceivedMail(envelope.mail_from or "", rcpt, parsed, data, bool(session.ssl), login)
        with self.changed:
            self.mails.append(mail)
            self.changed.notify_all()
        return "250 Message accepted for delivery"


class _FreePortController(Controller):
    """aiosmtpd's Controller bound to port 0: learns its port before it first connects."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class SmtpServer:
    """A running SMTP server: where it listens and what it received."""

    host: str
    port: int
    starttls: bool
    _collector: _Collector = field(repr=False)

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._collector.changed:
            return list(self._collector.mails)

    def wait_for(self, count: int = 1, timeout: float = WAIT) -> list[ReceivedMail]:
        """The first `count` messages, once they have arrived."""
        mails = self._collector.mails
        _wait(self._collector.changed, lambda: len(mails) >= count, timeout, f"{count} mail(s)")
        return self.messages[:count]

    def config(self, **changes: Any) -> SmtpConfig:
        """A spoold SmtpConfig pointing at this server (changes override fields)."""
        return SmtpConfig(**{"host": self.host, "port": self.port, "timeout": WAIT, **changes})

    def config_section(self, **changes: Any) -> dict[str, Any]:
        """The same as the config file's `smtp:` mapping, for tests that write YAML."""
        return {"host": self.host, "port": self.port, "starttls": self.starttls, **changes}


@contextmanager
def smtp_server(
    refuse: Mapping[str, str] | Iterable[str] = (),
    tls: ssl.SSLContext | None = None,
    login: tuple[str, str] | None = None,
) -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 and a free port that keeps every message it accepts.

    refuse: recipient addresses to refuse, each with its reply line (a plain list means
    "550 5.1.1 ..."). tls: offer STARTTLS with this server context (see tls_files).
    login: (user, password) AUTH requires; aiosmtpd only offers AUTH after STARTTLS.
    """
    if not isinstance(refuse, Mapping):
        refuse = {address: "550 5.1.1 No such user here" for address in refuse}
    collector = _Collector(refuse)
    options: dict[str, Any] = {"tls_context": tls, "require_starttls": tls is not None}
    if login is not None:
        options |= {"auth_required": True, "authenticator": _authenticator(*login)}
    controller = _FreePortController(
        collector, hostname=HOST, port=0, server_hostname="localhost", ready_timeout=WAIT, **options
    )
    controller.start()
    try:
        yield SmtpServer(HOST, controller.port, tls is not None, collector)
    finally:
        controller.stop()


def _authenticator(user: str, password: str) -> Any:
    """An aiosmtpd authenticator accepting one user name and password."""

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and data == (user.encode(), password.encode())
        # handled=False: aiosmtpd itself answers a failure with 535
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    return authenticate


@dataclass(frozen=True)
class TlsFiles:
    """A self-signed certificate for 127.0.0.1 and its key."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def tls_files(directory: Path) -> TlsFiles:
    """Make a certificate for IP 127.0.0.1 with the openssl command (tests skip without it).

    A client trusts it when SSL_CERT_FILE names `cert` (monkeypatch.setenv).
    """
    import pytest

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return TlsFiles(cert, key)


# --- HTTP -----------------------------------------------------------------------------------

DROP = "drop"  # answer nothing and close the connection
HANG = "hang"  # answer nothing until the server stops (for client timeouts)


@dataclass(frozen=True)
class Answer:
    """What the HTTP server sends back to one request."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


AnswerLike = int | str | Answer


@dataclass(frozen=True)
class Request:
    """One request as the HTTP server received it; `at` is time.monotonic() on arrival,
    `wall` time.time() (spoold's retry times are wall-clock ones: nextAttemptAt)."""

    method: str
    path: str
    headers: http.client.HTTPMessage  # case-insensitive .get()
    body: bytes
    at: float
    wall: float

    def json(self) -> Any:
        return json.loads(self.body)


class HttpServer:
    """A running HTTP server that answers by script and records every request."""

    def __init__(self, answers: Iterable[AnswerLike]) -> None:
        self._changed = threading.Condition()
        self._requests: list[Request] = []
        self._released = threading.Event()
        self.script(*answers)
        self._server = ThreadingHTTPServer((HOST, 0), _Handler)
        self._server.owner = self  # type: ignore[attr-defined]
        self.host, self.port = HOST, self._server.server_address[1]
        self.url = f"http://{HOST}:{self.port}"

    def script(self, *answers: AnswerLike) -> None:
        """Answer the next requests with these, in order; the last one repeats for ever.

        An answer is a status code, an Answer, DROP or HANG.
        """
        if not answers:
            raise ValueError("script needs at least one answer")
        with self._changed:
            self._answers = [_answer(a) for a in answers]

    @property
    def requests(self) -> list[Request]:
        with self._changed:
            return list(self._requests)

    def wait_for(self, count: int = 1, timeout: float = WAIT) -> list[Request]:
        """The first `count` requests, once they have arrived."""
        got = self._requests
        _wait(self._changed, lambda: len(got) >= count, timeout, f"{count} HTTP request(s)")
        return self.requests[:count]

    def _take(self, request: Request) -> Answer | str:
        """Record a request and pick its answer."""
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()
            return self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]

    def _serve(self) -> Iterator[HttpServer]:
        serve = partial(self._server.serve_forever, poll_interval=0.02)  # a quick shutdown()
        thread = threading.Thread(target=serve, name="test-http", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._released.set()
            self._server.shutdown()
            self._server.server_close()  # joins the request threads
            thread.join(WAIT)


def _answer(answer: AnswerLike) -> Answer | str:
    if isinstance(answer, int):
        return Answer(answer)
    if isinstance(answer, Answer) or answer in (DROP, HANG):
        return answer
    raise ValueError(f"not an answer: {answer!r} (a status, an Answer, DROP or HANG)")


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, asks the HttpServer how to answer, answers."""

    timeout = WAIT  # a client that never sends its request cannot hold the server open

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        owner: HttpServer = self.server.owner  # type: ignore[attr-defined]
        request = Request(self.command, self.path, self.headers, body, time.monotonic(),
                          time.time())  # fmt: skip
        answer = owner._take(request)
        if answer == HANG:
            owner._released.wait()
        if isinstance(answer, str):  # DROP, or HANG once released
            self.close_connection = True
            return
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `requests`, not stderr."""


@contextmanager
def http_server(*answers: AnswerLike) -> Iterator[HttpServer]:
    """An HTTP server on 127.0.0.1 and a free port; answers 200 to everything unless scripted."""
    yield from HttpServer(answers or (200,))._serve()
