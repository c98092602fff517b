"""A small HTTP client for the API tests: real sockets to 127.0.0.1, nothing normalized.

http.client sends the path exactly as given (no '..' folding, no re-encoding),
which the path-traversal tests need; `raw()` goes lower still, for requests no
well-behaved client would send.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOB_NAME_RE = re.compile(r"Z-(?P<id>[A-Za-z0-9_\-][A-Za-z0-9._\-]*?)(@[^/]*)?\.json$")
JOB_FOLDERS = ("pending", "running", "completed", "failed")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> str:
        data = self.json
        assert isinstance(data, dict) and isinstance(data.get("error"), str), data
        return data["error"]


class Client:
    """One keep-alive connection to the API at 127.0.0.1:port."""

    def __init__(self, port: int, token: str | None = None, timeout: float = 10.0) -> None:
        self.port = port
        self.token = token
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Reply:
        sent = dict(headers or {})
        if self.token and auth:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        data = body
        if body is not None and not isinstance(body, bytes):
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        conn = self._connection()
        try:
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            reply = Reply(
                response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            )
        except (ConnectionError, http.client.HTTPException):
            self.close()
            raise
        if reply.headers.get("connection", "").lower() == "close":
            self.close()
        return reply

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("POST", path, body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Reply:
        return self.request("DELETE", path, **kwargs)

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes as they are, half-close, and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def raw_status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def raw_json(answer: bytes) -> Any:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def ids_in_spool(spool: Path) -> list[str]:
    """Every job id named in pending/, running/, completed/ and failed/ (one per file)."""
    found = []
    for folder in JOB_FOLDERS:
        for path in (spool / folder).iterdir():
            match = JOB_NAME_RE.search(path.name)
            if match and not path.name.endswith(".error.json"):
                found.append(match.group("id"))
    return found


def folder_of(spool: Path, job_id: str) -> str | None:
    """The folder holding a job, by its file name."""
    for folder in JOB_FOLDERS:
        for path in (spool / folder).iterdir():
            match = JOB_NAME_RE.search(path.name)
            if match and match.group("id") == job_id:
                return folder
    return None
