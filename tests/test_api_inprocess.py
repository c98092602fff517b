"""The API's parts in this process: routing, the recent lists, metrics; and a
daemon started in-process where a test needs to look inside it (dispatcher, scheduler)."""

from __future__ import annotations

import ast
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import records, wait_until
from helpers_api import Client
from prometheus_client.parser import text_string_to_metric_families

import spoold
from spoold.api import segments
from spoold.browser import is_loopback, loopback_host_header
from spoold.config import load_config, parse_config
from spoold.daemon import Daemon
from spoold.errors import ConfigError
from spoold.history import History
from spoold.job import ID_RE
from spoold.openapi import RESERVED_IDS
from spoold.recent import MAX_RECORD_BYTES, Recent
from spoold.routes import ROUTES, route
from spoold.spool import Spool, make_stem
from spoold.taskstate import run_now_id

# ----- routing ------------------------------------------------------------------------------


def test_segments_decode_after_splitting():
    assert segments("/") == []
    assert segments("/jobs/a%2Fb") == ["jobs", "a/b"]
    assert segments("/jobs/../x") == ["jobs", "..", "x"]
    assert segments("jobs") == ["", "jobs"]  # not absolute: matches nothing
    with pytest.raises(UnicodeDecodeError):
        segments("/jobs/%ff")


def test_routes_prefer_fixed_names_and_report_allowed_methods():
    assert route("GET", ["jobs", "stats"])[0] == ("stats", False)
    assert route("DELETE", ["jobs", "stats"]) == (None, {}, {"GET"})  # not a job named stats
    assert route("GET", ["jobs", "batch"]) == (None, {}, {"POST"})
    assert route("GET", ["jobs", "x"])[:2] == (("job", False), {"id": "x"})
    assert route("POST", ["jobs", "history", "retry"])[:2] == (("retry", False), {"id": "history"})
    assert route("POST", ["jobs"])[0] == ("submit", True)
    endpoint, _, allowed = route("PUT", ["jobs", "x"])
    assert endpoint is None and allowed == {"GET", "DELETE"}
    assert route("GET", ["nowhere"]) == (None, {}, set())


def test_the_document_reserves_every_fixed_name_under_jobs():
    fixed = {p[1] for p in ROUTES if len(p) == 2 and p[0] == "jobs" and not p[1].startswith("{")}
    assert set(RESERVED_IDS) == fixed


# ----- the recent lists ------------------------------------------------------------------------


def finished_record(job_id: str, status: str = "completed", **extra: Any) -> dict[str, Any]:
    return {"type": "noop", "id": job_id, "status": status, "attempts": 1, **extra}


def put_records(spool: Spool, folder: str, ids: list[str]) -> None:
    """Records in folder, each a second newer than the one before."""
    base = time.time() - 1000
    for n, job_id in enumerate(ids):
        stem = make_stem("normal", time.time_ns() + n, job_id)
        spool.write(folder, stem + ".json", json.dumps(finished_record(job_id)).encode())
        os.utime(spool.path(folder, stem + ".json"), (base + n, base + n))


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "spool", durable=False)
    spool.ensure()
    return spool


def counting_reads(spool: Spool) -> list[str]:
    reads: list[str] = []
    original = spool.read

    def read(folder: str, name: str) -> bytes | None:
        reads.append(name)
        return original(folder, name)

    spool.read = read  # type: ignore[method-assign]
    return reads


def test_records_on_disk_at_start_are_answered_newest_first_reading_only_those(spool):
    put_records(spool, "completed", [f"old-{n}" for n in range(200)])
    reads = counting_reads(spool)
    recent = Recent(spool, alive=lambda job_id: True)
    newest = recent.newest("completed", 10)
    assert [r["id"] for r in newest] == [f"old-{n}" for n in range(199, 189, -1)]
    assert len(reads) == 10


def test_finished_jobs_come_before_older_records_and_are_not_read_back(spool):
    put_records(spool, "completed", ["old-1", "old-2"])
    recent = Recent(spool, alive=lambda job_id: True)
    recent.add("completed", finished_record("new-1"))
    recent.add("completed", finished_record("new-2"))
    reads = counting_reads(spool)
    assert [r["id"] for r in recent.newest("completed", 3)] == ["new-2", "new-1", "old-2"]
    assert len(reads) == 1
    assert [r["id"] for r in recent.newest("completed", 2)] == ["new-2", "new-1"]
    assert len(reads) == 1


def test_pruned_retried_and_vanished_records_are_left_out(spool):
    put_records(spool, "failed", ["gone-from-disk", "pruned", "kept"])
    alive = {"gone-from-disk", "kept", "fresh", "retried"}
    recent = Recent(spool, alive=alive.__contains__)
    recent.add("failed", finished_record("retried", "failed"))
    recent.add("failed", finished_record("fresh", "failed"))
    recent.forget("retried")
    for name in spool.names("failed"):
        if name.endswith("-gone-from-disk.json"):
            spool.remove("failed", name)
    assert [r["id"] for r in recent.newest("failed", 10)] == ["fresh", "kept"]


def test_a_large_record_is_read_back_from_its_file(spool):
    recent = Recent(spool, alive=lambda job_id: True)
    assert recent.newest("completed", 1) == []  # nothing on disk at start
    big = finished_record("big", payload="x" * (MAX_RECORD_BYTES + 1))
    stem = make_stem("normal", time.time_ns(), "big")
    spool.write("completed", stem + ".json", json.dumps(big).encode())  # the worker's record
    recent.add("completed", big)  # and its hook
    assert recent.newest("completed", 5) == [big]


def test_a_job_listed_twice_is_answered_once(spool):
    recent = Recent(spool, alive=lambda job_id: True)
    recent.add("failed", finished_record("again", "failed", error="first"))
    recent.add("failed", finished_record("again", "failed", error="second"))
    assert [r["error"] for r in recent.newest("failed", 5)] == ["second"]


def test_the_recent_list_is_bounded(spool):
    recent = Recent(spool, alive=lambda job_id: True, keep=5)
    for n in range(20):
        recent.add("completed", finished_record(f"j{n}"))
    assert [r["id"] for r in recent.newest("completed", 100)] == [
        f"j{n}" for n in range(19, 14, -1)
    ]


# ----- an in-process daemon ----------------------------------------------------------------------


@pytest.fixture
def start_inprocess(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """start(**config) → a started Daemon with the HTTP API on a free port; stopped after."""
    started: list[Daemon] = []

    def start(name: str = "a", **overrides: Any) -> Daemon:
        config = {
            "spool": str(tmp_path / name / "spool"),
            "workers": 2,
            "durability": "relaxed",
            "rescanSeconds": 0.2,
            "http": {"host": "127.0.0.1", "port": 0},
            **overrides,
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        daemon = Daemon(load_config(path))
        daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop(graceful=False)


def client_of(daemon: Daemon) -> Client:
    assert daemon.api is not None
    return Client(daemon.api.address[1])


def test_cancel_takes_the_job_out_of_the_dispatcher(start_inprocess):
    daemon = start_inprocess()
    with client_of(daemon) as client:
        client.post("/jobs", {"type": "noop", "id": "held", "runAt": "2999-01-01T00:00:00Z"})
        assert any(stem.endswith("-held") for stem in daemon.dispatcher.stems())
        assert client.delete("/jobs/held").status == 200
    assert not any(stem.endswith("-held") for stem in daemon.dispatcher.stems())
    assert daemon.queue_stats()["pending"]["total"] == 0
    assert daemon.queue_stats()["failed"] == 1


def test_run_now_enqueues_and_a_busy_task_is_409(start_inprocess):
    task = {"name": "later", "cron": "0 0 1 1 *",
            "job": {"type": "noop", "runAt": "2999-01-01T00:00:00Z"}}  # fmt: skip
    daemon = start_inprocess(schedule=[task])
    with client_of(daemon) as client:
        first = client.post("/scheduler/later/run")
        assert first.status == 200
        assert first.json["success"] is True and first.json["task"] == "later"
        assert client.get(f"/jobs/{first.json['jobId']}").json["folder"] == "pending"
        busy = client.post("/scheduler/later/run")
        assert busy.status == 409 and "busy" in busy.error
        assert client.post("/scheduler/other/run").status == 404
        tasks = client.get("/scheduler").json["tasks"]
        assert [t["name"] for t in tasks] == ["later"]


def test_run_now_twice_within_one_second_runs_twice(start_inprocess):
    daemon = start_inprocess(schedule=[{"name": "again", "cron": "0 0 1 1 *",
                                        "job": {"type": "noop"}}])  # fmt: skip
    frozen = datetime.now(UTC).replace(microsecond=0)
    daemon.scheduler.clock = lambda: frozen  # both requests in the same second, surely
    ids: list[str] = []
    with client_of(daemon) as client:
        for _ in range(3):
            reply = client.post("/scheduler/again/run")
            assert reply.status == 200, reply.body
            ids.append(reply.json["jobId"])
            wait_until(lambda: client.get(f"/jobs/{ids[-1]}").json["folder"] == "completed")
        wait_until(lambda: client.get("/scheduler").json["tasks"][0]["runCount"] == 3)
    stamp = f"{frozen:%Y%m%dT%H%M%SZ}"
    assert ids == [f"again.run-{stamp}", f"again.run-{stamp}-2", f"again.run-{stamp}-3"]
    done = [r["id"] for r in records(daemon.spool.root, "completed")]
    assert sorted(done) == sorted(ids)


def test_run_ids_of_one_second_stay_distinct_and_short():
    moment = datetime(2026, 6, 1, 10, 0, 30, tzinfo=UTC)
    for task in ("t", "x" * 128):
        ids = [run_now_id(task, moment, n) for n in (1, 2, 99)]
        assert len(set(ids)) == 3 and all(len(i) <= 128 and ID_RE.match(i) for i in ids), ids
    assert run_now_id("t", moment) == "t.run-20260601T100030Z"  # the first keeps its name
    assert run_now_id("t", moment, 2) == "t.run-20260601T100030Z-2"


def test_two_daemons_in_one_process_have_their_own_metrics(start_inprocess):
    first, second = start_inprocess("a"), start_inprocess("b")
    with client_of(first) as client:
        for n in range(3):
            client.post("/jobs", {"type": "noop", "id": f"m{n}"})
        client.post("/jobs", {"type": "noop", "id": "due-later", "runAt": "2999-01-01T00:00:00Z"})
    wait_until(lambda: first.stats.completed == 3)

    def samples(daemon: Daemon) -> dict[str, float]:
        with client_of(daemon) as client:
            text = client.get("/metrics").body.decode()
        found = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                found[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
        return found

    mine, theirs = samples(first), samples(second)
    assert mine['spoold_jobs_total{"outcome": "completed", "type": "noop"}'] == 3
    assert mine['spoold_job_duration_seconds_count{"type": "noop"}'] == 3
    assert mine['spoold_job_duration_seconds_bucket{"le": "+Inf", "type": "noop"}'] == 3
    assert mine['spoold_queue_depth{"priority": "normal"}'] == 1
    assert mine["spoold_oldest_due_job_age_seconds{}"] == 0  # the pending job is not due
    assert not any(key.startswith("spoold_jobs_total") for key in theirs)


def test_the_oldest_due_job_age_grows_while_no_worker_is_free(start_inprocess):
    daemon = start_inprocess()
    daemon.pool.stop(0)  # nobody takes jobs any more: what is due stays due
    with client_of(daemon) as client:
        client.post("/jobs", {"type": "noop", "id": "stuck"})
        wait_until(lambda: daemon.dispatcher.due_since() is not None)
        text = client.get("/metrics").body.decode()
    [age] = [s.value for f in text_string_to_metric_families(text) for s in f.samples
             if s.name == "spoold_oldest_due_job_age_seconds"]  # fmt: skip
    assert 0 < age < 60


def test_the_token_can_come_from_spoold_token(start_inprocess, monkeypatch):
    monkeypatch.setenv("SPOOLD_TOKEN", "from-the-environment")
    daemon = start_inprocess()
    port = daemon.api.address[1]
    with Client(port) as anonymous, Client(port, "from-the-environment") as good:
        assert anonymous.get("/types").status == 401
        assert good.get("/types").status == 200


def test_access_logs_at_debug_and_refusals_are_not_warnings(start_inprocess, caplog):
    daemon = start_inprocess()
    with caplog.at_level(logging.DEBUG, logger="spoold.api"), client_of(daemon) as client:
        client.get("/healthz")
        client.get("/nowhere")
    access = [r for r in caplog.records if r.name == "spoold.api" and "GET /" in r.getMessage()]
    assert [r.levelno for r in access] == [logging.DEBUG, logging.DEBUG]
    assert '"GET /nowhere HTTP/1.1" 404' in access[1].getMessage()


# ----- the per-minute history ------------------------------------------------------------------


def test_history_counts_outcomes_per_minute_and_forgets_after_an_hour():
    history = History()
    start = 1_800_000_000.0  # a minute start (divisible by 60)
    history.record("completed", start + 1)
    history.record("completed", start + 59.9)
    history.record("failed", start + 60)
    history.record("pending", start + 61)  # a retry is not an outcome
    minutes = history.minutes(start + 90)
    assert len(minutes) == 60
    assert minutes[-2:] == [
        {"minute": "2027-01-15T08:00:00.000+00:00", "completed": 2, "failed": 0},
        {"minute": "2027-01-15T08:01:00.000+00:00", "completed": 0, "failed": 1},
    ]
    assert all(m["completed"] == m["failed"] == 0 for m in minutes[:-2])
    assert minutes[0]["minute"] == "2027-01-15T07:02:00.000+00:00"
    later = history.minutes(start + 3600)  # the first minute has left the window
    assert sum(m["completed"] for m in later) == 0 and later[0]["failed"] == 1


# ----- the seam between the HTTP layer and the daemon --------------------------------------------


def test_the_http_layer_sees_a_service_never_the_daemon():
    for module in ("api", "routes", "metrics"):
        tree = ast.parse((Path(spoold.__file__).parent / f"{module}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "spoold.service" in imported and "spoold.daemon" not in imported, module
        names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        assert "Daemon" not in names, module
        if module != "api":  # api.py's getattr finds an endpoint by the route table's name
            assert "getattr" not in names, module  # no guessing at the daemon's shape


def test_every_finish_listener_hears_each_outcome(start_inprocess):
    daemon = start_inprocess()
    heard: list[tuple[str, str]] = []
    daemon.finish_listeners.append(lambda job, folder: heard.append((job.id, folder)))
    with client_of(daemon) as client:
        client.post("/jobs", {"type": "noop", "id": "listened"})
        wait_until(lambda: heard == [("listened", "completed")])
        assert client.get("/jobs/completed").json["jobs"][0]["id"] == "listened"
        minutes = client.get("/jobs/history").json["minutes"]
        assert sum(m["completed"] for m in minutes) == 1
    assert daemon.stats.completed == 1


# ----- browser safety: config and names ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("http: {corsOrigins: '*'}", "http.corsOrigins", "expected a list"),
        ("http: {corsOrigins: ['*', 'http://a.example']}", "http.corsOrigins.0", "list it alone"),
        ("http: {corsOrigins: ['http://a.example/app']}", "http.corsOrigins.0", "no path"),
        ("http: {corsOrigins: [localhost:3000]}", "http.corsOrigins.0", "scheme://host"),
        ("http: {corsOrigins: ['http://ok.example', 3]}", "http.corsOrigins.1", "got 3"),
        ("http: {corsOrigin: ['*']}", "http.corsOrigin", "did you mean 'corsOrigins'"),
    ],
)
def test_bad_cors_origins_are_named_with_key_and_line(tmp_path, text, key, words):
    path = tmp_path / "c.yaml"
    path.write_text("workers: 1\n" + text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}:2: {key}: ") and words in problem, problem


def test_cors_origins_default_to_none_and_are_kept_lower_case():
    assert parse_config("").http.cors_origins == ()
    assert parse_config("http: {corsOrigins: ['*']}").http.cors_origins == ("*",)
    listed = parse_config("http: {corsOrigins: ['HTTP://Dash.Example:8443']}").http
    assert listed.cors_origins == ("http://dash.example:8443",)


def test_which_names_are_loopback():
    for host in ("127.0.0.1", "127.9.9.9", "::1", "localhost", "LocalHost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", ""):
        assert not is_loopback(host), host
    for value in ("localhost:8080", "[::1]:8080", "[::1]", "127.0.0.1:1"):
        assert loopback_host_header(value), value
    for value in ("::1", "[::1", "[::1]:", "localhost:", "localhost:80:80", "[127.0.0.1]x"):
        assert not loopback_host_header(value), value


def test_a_stop_closes_idle_connections_at_once(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"spool": str(tmp_path / "spool"), "durability": "relaxed",
                                    "http": {"host": "127.0.0.1", "port": 0}}))  # fmt: skip
    daemon = Daemon(load_config(path))
    daemon.start()
    assert daemon.api is not None
    port = daemon.api.address[1]
    kept, silent = Client(port), socket.create_connection(("127.0.0.1", port))
    try:
        assert kept.get("/healthz").status == 200  # then idle, kept alive
        started = time.monotonic()
        daemon.stop(graceful=False)
        stopped_in = time.monotonic() - started
        silent.settimeout(5)
        assert silent.recv(10) == b""  # closed by the server, not left to its deadline
    finally:
        kept.close()
        silent.close()
    assert stopped_in < 3, stopped_in  # and no HTTP thread is left (no_leaked_threads)
