"""POST /jobs with 8 concurrent keep-alive clients against a real daemon (durability fsync).

Each client is a thread with one `http.client.HTTPConnection`, posting its share
of no-op jobs back to back; the rate is answered 200s over the wall time from
the first request to the last answer. Skipped, with a note, while spoold has no
HTTP API (spoold/api.py).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path

from bench.common import REPO, percentile, wait_for
from bench.sections import Row, cost_fields
from bench.spoold_proc import Spoold

CLIENTS = 8


def api_missing() -> str | None:
    """Why the HTTP part cannot run, or None."""
    if not (REPO / "spoold" / "api.py").exists():
        return "skipped: spoold/api.py is not there yet (the HTTP API is being written)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_rate(root: Path, posts: int, workers: int = 4, profile: Path | None = None) -> Row:
    """Start a daemon with HTTP on, post `posts` jobs from CLIENTS threads, measure."""
    row: Row = {
        "section": "http",
        "scenario": f"POST /jobs, {CLIENTS} keep-alive clients",
        "system": "spoold",
        "durability": "fsync",
        "workers": workers,
        "jobs": posts,
    }
    port = free_port()
    daemon = Spoold(root, workers, "fsync", http_port=port, profile=profile)
    daemon.start(posts)
    try:
        wait_for(lambda: _healthy(port), 15, 0.05, "GET /healthz")
        row |= _load(port, posts)
        daemon.count = posts - row["http_failures"]
        result = daemon.finish(timeout=max(120.0, posts / 100))
    finally:
        daemon.stop()
    return row | cost_fields(result)


def _healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False


def _load(port: int, posts: int) -> Row:
    shares = [posts // CLIENTS + (i < posts % CLIENTS) for i in range(CLIENTS)]
    timings: list[list[float]] = [[] for _ in shares]
    failures = [0] * CLIENTS
    gate = threading.Barrier(CLIENTS + 1)
    threads = [
        threading.Thread(target=_client, args=(port, i, n, gate, timings[i], failures))
        for i, n in enumerate(shares)
    ]
    for thread in threads:
        thread.start()
    gate.wait()
    begin = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - begin
    answered = [t * 1000 for client in timings for t in client]
    ok = len(answered) - sum(failures)
    return {
        "rate": round(ok / elapsed, 1),
        "p50_ms": round(percentile(answered, 0.5), 3),
        "p99_ms": round(percentile(answered, 0.99), 3),
        "http_failures": sum(failures),
    }


def _client(
    port: int,
    index: int,
    count: int,
    gate: threading.Barrier,
    timings: list[float],
    failures: list[int],
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    gate.wait()
    for n in range(count):
        body = json.dumps({"type": "noop", "id": f"http-{index}-{n:06d}"})
        t0 = time.perf_counter()
        conn.request("POST", "/jobs", body, headers)
        response = conn.getresponse()
        response.read()
        timings.append(time.perf_counter() - t0)
        if response.status != 200:
            failures[index] += 1
    conn.close()
