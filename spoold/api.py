"""The HTTP API (SPEC section 6) on the standard library's ThreadingHTTPServer.

This module owns the protocol and its safety rules: routing, the bearer token
(compared in constant time), CORS, body limits, socket timeouts, JSON errors
and access logs. What each endpoint does is in routes.py.
"""

from __future__ import annotations

import hmac
import io
import logging
import queue
import re
import socket
import sys
import threading
import time
from dataclasses import replace
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from spoold.browser import Cors, is_loopback, loopback_host_header, same_origin
from spoold.config import HttpConfig
from spoold.connections import (
    WRITE_SECONDS,
    Connection,
    Connections,
    Deadline,
    Evicted,
    HeadTooLarge,
    raise_open_file_limit,
)
from spoold.errors import SpoolError
from spoold.routes import JSON, QUERY_NAMES, Answer, ApiError, Endpoints, Request, route
from spoold.service import Service

logger = logging.getLogger(__name__)

LINGER_SECONDS = 1.0  # after answering, how long unread input is drained so the answer arrives
LINGER_BYTES = 4 << 20
MAX_CONNECTIONS = 256  # open connections (one thread each); see connections.py
ADMIT_WAIT = 0.5  # past the limit with every connection busy, a new one waits this, then 503
OPEN_FILES = 4096  # the soft limit of open files asked for at start
BUSY_BODY = b'{"error": "too many open connections: try again soon"}'
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")  # methods that change nothing
Address = tuple[str, int]
LENGTH_RE = re.compile(r"^[0-9]{1,18}$")


def segments(path: str) -> list[str]:
    """'/jobs/a%2Fb' → ['jobs', 'a/b']: split first, then decode, so an encoded slash
    stays inside its segment (where the id rule refuses it)."""
    if path == "/":
        return []
    if not path.startswith("/"):
        return ["", path]  # matches no route
    return [unquote(part, errors="strict") for part in path.split("/")[1:]]


def _allow(methods: set[str]) -> str:
    extra = {"OPTIONS"} | ({"HEAD"} if "GET" in methods else set())
    return ", ".join(sorted(methods | extra))


class Handler(BaseHTTPRequestHandler):
    """One connection; keep-alive, every request answered (and logged) here."""

    server: Server
    protocol_version = "HTTP/1.1"
    # An answer is one write (see _send), but a "100 Continue" goes before it; with
    # Nagle on, the second write waits for the client's delayed ACK (40 ms).
    disable_nagle_algorithm = True
    server_version = "spoold"
    timeout = WRITE_SECONDS  # reads set their own, from their deadline (connections.py)
    connection_entry: Connection

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        """Reads through a DeadlineReader: a deadline per request, not per recv."""
        super().setup()
        self.rfile.close()
        self.connection_entry = self.server.connections.get(self.request)
        self.rfile = io.BufferedReader(self.connection_entry.reader)

    def handle_one_request(self) -> None:
        """One request, its request line and headers read by a deadline; until it is read
        in full the connection may be closed for a new client (connections.py)."""
        self.server.connections.waiting(self.connection_entry)
        self.connection_entry.expect_head()
        self.requestline, self.command = "", ""
        try:
            super().handle_one_request()
        except HeadTooLarge as e:
            self.close_connection = True
            self._body_read = True
            self._send(ApiError(431, f"{e}: send a shorter request").answer())
        except ConnectionError as e:
            logger.debug("http %s: dropped: %s", self.client_address[0], e)
            self.close_connection = True

    def do_GET(self) -> None:
        self._body_read = False
        try:
            answer = self._answer()
        except ApiError as e:
            answer = e.answer()
        except Deadline as e:
            logger.debug("http %s: %s", self.client_address[0], e)
            self.close_connection = True
            answer = ApiError(408, f"{e}: send the whole request at once").answer()
        except (TimeoutError, ConnectionError) as e:
            logger.debug("dropping a client: %s", e)
            self.close_connection = True
            return
        except Exception:
            logger.exception("internal error answering %s %s", self.command, self.path)
            answer = ApiError(500, "internal error: see the daemon's log").answer()
        self._send(answer)

    do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_OPTIONS = do_GET
    do_TRACE = do_CONNECT = do_GET

    def _answer(self) -> Answer:
        method = "GET" if self.command == "HEAD" else self.command
        url = urlsplit(self.path)
        try:
            parts = segments(url.path)
        except UnicodeDecodeError as e:
            raise ApiError(400, "the path is not UTF-8 once %-decoded") from e
        self._check_host(url.netloc)
        if method == "OPTIONS":
            return Answer(204, b"", "")
        if parts != ["healthz"] and parts[:1] != ["static"]:  # these need no token
            refusal = self._refusal()
            if refusal and not parts:  # the page holds no data: it comes with the 401, to
                page = self.server.api.endpoints.page(Request(method))  # ask for the token
                return replace(page, status=401, headers=page.headers | refusal.headers)
            if refusal:
                raise refusal
        endpoint, params, allowed = route(method, parts)
        if endpoint is None:
            raise _not_found(method, url.path, allowed)
        name, takes_body = endpoint
        query = _query(url.query, QUERY_NAMES.get(name, set()))
        if method not in SAFE_METHODS:
            self._json_only()
            self._check_origin()
        body = self._body() if takes_body else self._skip_body()
        if not self.server.connections.busy(self.connection_entry):
            raise Evicted("closed for a new client before its request was acted on")
        request = Request(method, params, query, body)
        answer: Answer = getattr(self.server.api.endpoints, name)(request)
        return answer

    # ----- safety ------------------------------------------------------------------------

    def _check_host(self, target_host: str) -> None:
        """While listening on loopback, only requests for a loopback name (browser.py): the
        request target's host when it has one (absolute form), else the Host headers."""
        if not self.server.api.loopback:
            return
        names = [target_host] if target_host else self.headers.get_all("Host") or []
        for name in names:
            if not loopback_host_header(name):
                raise ApiError(403, f"Host {name[:100]!r} is not a loopback name: this API"
                                    " listens on loopback and answers requests for localhost,"
                                    " 127.0.0.1 or [::1] only (a defence against DNS"
                                    " rebinding); use one of those in the URL")  # fmt: skip

    def _refusal(self) -> ApiError | None:
        """The 401 for a request without the right token, where one is set; else None."""
        token = self.server.api.token()
        if token is None:
            return None
        scheme, _, given = self.headers.get("Authorization", "").partition(" ")
        good = hmac.compare_digest(given.strip().encode(), token.encode())
        if good and scheme.lower() == "bearer":
            return None
        error = ApiError(401, "this API needs its token: send Authorization: Bearer <token>")
        error.headers["WWW-Authenticate"] = 'Bearer realm="spoold"'
        return error

    def _length(self) -> int | None:
        """The declared body length; None when not declared; ApiError when unusable."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise ApiError(411, "chunked bodies are not accepted: send a Content-Length")
        values = set(self.headers.get_all("Content-Length") or [])
        if not values:
            return None
        text = values.pop().strip()
        if values or not LENGTH_RE.match(text):
            raise ApiError(400, "Content-Length must be one whole number of bytes")
        length = int(text)
        limit = self.server.api.max_body()
        if length > limit:
            raise ApiError(413, f"the body is {length} bytes; the limit is {limit}"
                                " (http.maxBodyBytes)")  # fmt: skip
        return length

    def _json_only(self) -> None:
        """A request that changes state is JSON or has no type at all: a web page can send
        a form or text/plain to any site without asking first (no CORS preflight), and
        must not be able to enqueue, retry or cancel that way (415)."""
        media = self.headers.get("Content-Type", JSON).split(";")[0].strip().lower()
        if media != JSON and not media.endswith("+json"):
            raise ApiError(415, f"send JSON with Content-Type: {JSON} (got {media[:60]!r})")

    def _check_origin(self) -> None:
        """A browser names the page behind a request in Origin (other clients send none):
        one that CORS does not allow, and that is not the API's own page, may not change
        anything, whatever it sends (a fetch of a typeless body needs no preflight)."""
        origin = self.headers.get("Origin")
        if origin is None or self.server.api.cors.allows(origin):
            return
        if same_origin(origin, self.headers.get("Host")):
            return
        raise ApiError(403, f"a web page from {origin[:100]!r} may not change anything here:"
                            " list its origin in http.corsOrigins to let it")  # fmt: skip

    def _body(self) -> bytes:
        length = self._length()
        if length is None:
            raise ApiError(411, "send the body with a Content-Length header")
        return self._read(length)

    def _skip_body(self) -> bytes:
        """Read and drop a body an endpoint does not use, keeping the connection in step."""
        length = self._length()
        return self._read(length) if length else b""

    def _read(self, length: int) -> bytes:
        self.connection_entry.expect_body(length)
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) < length:
            self.close_connection = True
            raise ApiError(400, f"the body ended after {len(body)} of {length} bytes")
        return body

    def _declares_body(self) -> bool:
        headers = getattr(self, "headers", None)
        if headers is None:
            return False
        chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        return chunked or headers.get("Content-Length", "0").strip() not in ("", "0")

    # ----- answers and logs ------------------------------------------------------------------

    def _send(self, answer: Answer) -> None:
        """The status line, headers and body in one write (http.server's send_header
        costs a call and an encode per header, and its Date an email.utils call)."""
        if not self._body_read and self._declares_body():
            self.close_connection = True  # an unread body would be taken for the next request
        self.log_request(answer.status)
        status = HTTPStatus(answer.status)
        headers = {"Server": self.server_version, "Date": _http_date(),
                   **self._cors(), "Cache-Control": "no-store", **answer.headers}  # fmt: skip
        if status != HTTPStatus.NO_CONTENT:
            headers |= {"Content-Type": answer.content_type, "X-Content-Type-Options": "nosniff",
                        "Content-Length": str(len(answer.body))}  # fmt: skip
        if self.close_connection:
            headers["Connection"] = "close"
        lines = [f"{self.protocol_version} {status.value} {status.phrase}"]
        lines += [f"{key}: {value}" for key, value in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "strict")
        with_body = self.command != "HEAD" and status != HTTPStatus.NO_CONTENT
        self.connection.settimeout(WRITE_SECONDS)
        self.wfile.write(head + answer.body if with_body else head)

    def _cors(self) -> dict[str, str]:
        headers = getattr(self, "headers", None)  # None when the request line was refused
        return self.server.api.cors.headers(headers.get("Origin") if headers else None)

    def handle_expect_100(self) -> bool:
        """`Expect: 100-continue` asks whether to send the body: a declared length over
        the limit (or unusable) is refused at once, so the client sends none, rather than
        told to go on and refused after it has sent it all."""
        try:
            self._length()
        except ApiError as e:
            self._body_read = False  # nothing of it was read: the connection closes
            self._send(e.answer())
            return False
        return super().handle_expect_100()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors http.server finds itself (a bad request line, an unknown method, headers
        too long) as JSON like every other answer."""
        self._body_read = False
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # so that the error has a status line and headers
        if code == HTTPStatus.NOT_IMPLEMENTED:
            error = ApiError(405, f"method {self.command} is not allowed here")
            error.headers["Allow"] = _allow(route("", _safe_segments(self.path))[2])
        else:
            error = ApiError(code, message or HTTPStatus(code).phrase)
        self._send(error.answer())

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug('%s "%s" %s', self.client_address[0], self.requestline, code)

    def log_error(self, format: str, *args: object) -> None:
        # a client too slow for its deadline is the client's problem, not the operator's
        level = logging.DEBUG if format.startswith("Request timed out") else logging.WARNING
        logger.log(level, "http %s: " + format, self.client_address[0], *args)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("http %s: " + format, self.client_address[0], *args)


_last_date: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The Date header's text, made once a second."""
    global _last_date
    second = int(time.time())
    if _last_date[0] != second:
        _last_date = (second, formatdate(second, usegmt=True))
    return _last_date[1]


def _not_found(method: str, path: str, allowed: set[str]) -> ApiError:
    if allowed:
        error = ApiError(405, f"{method} is not allowed on {path[:200]}; use {_allow(allowed)}")
        error.headers["Allow"] = _allow(allowed)
        return error
    return ApiError(404, f"no such endpoint: {method} {path[:200]} (see /openapi.json)")


def _query(text: str, allowed: set[str]) -> dict[str, list[str]]:
    """The query string, refusing names the endpoint does not take (a typo gets told)."""
    query = parse_qs(text, keep_blank_values=True)
    unknown = sorted(set(query) - allowed)
    if unknown:
        takes = f"it takes {', '.join(sorted(allowed))}" if allowed else "it takes none"
        raise ApiError(400, f"unknown query parameter {unknown[0][:60]!r}: {takes}")
    return query


def _safe_segments(path: str | None) -> list[str]:
    try:
        return segments(urlsplit(path or "").path)
    except UnicodeDecodeError:
        return []


def busy_answer(cors: dict[str, str]) -> bytes:
    """The 503 sent, unread, to a connection over the limit (so no Origin is known)."""
    headers = {"Content-Type": JSON, **cors, "Retry-After": "1", "Connection": "close",
               "Content-Length": str(len(BUSY_BODY))}  # fmt: skip
    lines = ["HTTP/1.1 503 Service Unavailable", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + BUSY_BODY


class Server(HTTPServer):
    """Connections are served by a pool of MAX_CONNECTIONS threads started once: accepting
    hands a connection over and goes on (no thread to start and wait for), so a flood of
    connects is taken in quickly, and connections.py decides which of them stay."""

    # the listen backlog: a burst of connects waits there rather than in SYN retries (1 s)
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], api: ApiServer) -> None:
        self.api = api
        self.connections = Connections(MAX_CONNECTIONS)
        self.busy = busy_answer(api.cors.headers(None))
        self._handoff: queue.SimpleQueue[tuple[socket.socket, Address] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def start_workers(self) -> None:
        for n in range(MAX_CONNECTIONS):
            worker = threading.Thread(target=self._work, name=f"spoold-http-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop_workers(self, timeout: float) -> None:
        """Close idle connections (and each busy one once answered), then end the pool."""
        self.connections.close()
        for _ in self._workers:
            self._handoff.put(None)
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(deadline - time.monotonic(), 0.0))

    def process_request(self, request: socket.socket, client_address: Address) -> None:  # type: ignore[override]
        """To the pool; at MAX_CONNECTIONS the longest-waiting connection is closed for it,
        and only when every one is busy is it refused with a 503."""
        if self.connections.admit(request, ADMIT_WAIT) is None:
            logger.warning("http %s: refused, %d connections open and busy", client_address[0],
                           MAX_CONNECTIONS)  # fmt: skip
            try:
                request.settimeout(1.0)
                request.sendall(self.busy)
            except OSError:
                pass
            self.close_request(request)
            return
        self._handoff.put((request, client_address))

    def _work(self) -> None:
        while (item := self._handoff.get()) is not None:
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
                self.connections.release(request)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        """Close a connection without a reset: drain what the client still sends (a body
        refused unread, say) for a moment, so that it reads our answer rather than ECONNRESET."""
        self.connections.lingering(request)
        try:
            request.shutdown(socket.SHUT_WR)
            request.settimeout(LINGER_SECONDS)
            deadline = time.monotonic() + LINGER_SECONDS
            drained = 0
            while drained < LINGER_BYTES and time.monotonic() < deadline:
                chunk = request.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass
        self.close_request(request)

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            logger.debug("http %s: connection lost: %s", client_address[0], error)
        else:
            logger.warning("http %s: error serving", client_address[0], exc_info=True)


class ApiServer:
    """The daemon's HTTP API: bind() early in start (a busy port stops the start with a
    reason), serve() once everything runs, stop() before the workers stop."""

    def __init__(self, service: Service, http: HttpConfig) -> None:
        self._http = http  # an edit of the http section waits for a restart
        self.cors = Cors(http.cors_origins)
        self.loopback = is_loopback(http.host)  # then the Host must name loopback too
        self.endpoints = Endpoints(service, lambda: self.token() is not None)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    def token(self) -> str | None:
        return self._http.token

    def max_body(self) -> int:
        return self._http.max_body_bytes

    def bind(self) -> None:
        files = raise_open_file_limit(OPEN_FILES)
        if files < MAX_CONNECTIONS * 2:
            logger.warning("http: only %d open files allowed (ulimit -n): with many clients,"
                           " new connections may fail; raise the limit", files)  # fmt: skip
        host, port = self._http.host, self._http.port
        try:
            self._server = Server((host, port), self)
        except OSError as e:
            raise SpoolError(f"http: cannot listen on {host}:{port}: {e.strerror or e}") from e

    def serve(self) -> None:
        assert self._server is not None
        self._server.start_workers()
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.2,), name="spoold-http", daemon=True
        )
        self._thread.start()
        host, port = self.address
        warning = "" if self.token() else " (no token: whoever can connect may use it)"
        logger.info("HTTP API on http://%s:%d%s", host, port, warning)

    @property
    def alive(self) -> bool:
        """Whether the serving thread still runs (the daemon's health check)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        return self._server.server_address[:2]  # type: ignore[return-value]

    def stop(self) -> None:
        if self._server is None:
            return
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
        self._server.stop_workers(5)
        self._server.server_close()
