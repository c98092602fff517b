"""The HTTP API (SPEC 6) through real sockets against spoold running as a subprocess."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from conftest import (
    DaemonProcess,
    base_config,
    daemon_env,
    free_port,
    none_running,
    records,
    spoold_cli,
    wait_until,
)
from helpers_api import Client, Reply, folder_of, ids_in_spool, raw, raw_json, raw_status
from helpers_servers import http_server
from prometheus_client.parser import text_string_to_metric_families

import spoold

TOKEN = "s3cret-token"
LATER = (datetime.now(UTC) + timedelta(days=1)).isoformat()


def http_config(**overrides: object) -> dict[str, object]:
    return {"host": "127.0.0.1", "port": free_port(), **overrides}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon for the tests that do not need a config of their own."""
    config = base_config(http=http_config(maxBodyBytes=4096), workers=3)
    daemon = DaemonProcess(tmp_path_factory.mktemp("served"), config, []).wait_ready()
    yield daemon
    assert daemon.stop() == 0, daemon.log()
    assert "Traceback" not in daemon.log() and "internal error" not in daemon.log()


@pytest.fixture
def client(served: DaemonProcess) -> Iterator[Client]:
    with Client(served.config["http"]["port"]) as c:
        yield c


def still_serving(client: Client) -> None:
    with Client(client.port, client.token) as fresh:
        assert fresh.get("/healthz").json == {"status": "ok"}


# ----- the original endpoints -------------------------------------------------------------


def test_post_job_is_in_the_spool_when_the_answer_comes(client, served):
    reply = client.post("/jobs", {"type": "noop", "id": "posted-1", "priority": "high"})
    assert reply.status == 200
    assert reply.json == {"success": True, "jobId": "posted-1", "type": "noop", "priority": "high"}
    assert folder_of(served.spool, "posted-1") in ("pending", "running", "completed")
    wait_until(lambda: folder_of(served.spool, "posted-1") == "completed")


def test_post_job_without_id_gets_one_and_type_defaults(client, served):
    reply = client.post("/jobs", {"type": "log", "message": "hello over HTTP"})
    assert reply.status == 200
    body = reply.json
    assert body["type"] == "log" and body["priority"] == "low" and body["success"] is True
    assert folder_of(served.spool, body["jobId"]) is not None


def test_missing_or_unknown_type_lists_the_registered_types(client):
    for job in ({"message": "no type"}, {"type": "nope"}, {"type": 5}, {"type": {}}):
        reply = client.post("/jobs", job)
        assert reply.status == 400
        assert "type" in reply.error
        assert "noop" in reply.json["registeredTypes"]


def test_other_bad_fields_are_400_without_the_type_list(client):
    cases = [
        ({"type": "noop", "priority": "urgent"}, "priority"),
        ({"type": "noop", "maxAttempts": 0}, "maxAttempts"),
        ({"type": "noop", "runAt": "tomorrow"}, "runAt"),
        ({"type": "noop", "status": "completed"}, "status"),
        ({"type": "noop", "id": "../../etc/passwd"}, "id"),
        ({"type": "log"}, "message"),
    ]
    for job, word in cases:
        reply = client.post("/jobs", job)
        assert reply.status == 400, job
        assert word in reply.error
        assert "registeredTypes" not in reply.json


def test_a_taken_id_is_refused(client):
    assert client.post("/jobs", {"type": "noop", "id": "twice"}).status == 200
    reply = client.post("/jobs", {"type": "noop", "id": "twice"})
    assert reply.status == 400
    assert "already in the spool" in reply.error


def test_batch_is_judged_item_by_item(client, served):
    jobs = [{"type": "noop", "id": "b-1"}, {"type": "nope"}, 7, {"type": "noop", "id": "b-1"}]
    reply = client.post("/jobs/batch", jobs)
    assert reply.status == 200
    first, unknown, number, duplicate = reply.json["jobs"]
    assert first == {"jobId": "b-1", "status": "enqueued"}
    assert unknown["status"] == "failed" and "unknown job type" in unknown["error"]
    assert number["status"] == "failed" and "object" in number["error"]
    assert duplicate["status"] == "failed" and "already" in duplicate["error"]
    assert folder_of(served.spool, "b-1") is not None
    wrapped = client.post("/jobs/batch", {"jobs": [{"type": "noop", "id": "b-2"}]})
    assert wrapped.json == {"jobs": [{"jobId": "b-2", "status": "enqueued"}]}
    assert client.post("/jobs/batch", []).json == {"jobs": []}
    assert client.post("/jobs/batch", {"type": "noop"}).status == 400


def test_stats_types_and_scheduler_shapes(client):
    stats = client.get("/jobs/stats").json
    assert set(stats) == {"queue", "worker"}
    assert set(stats["queue"]) == {"pending", "running", "completed", "failed"}
    assert set(stats["queue"]["pending"]) == {"total", "critical", "high", "normal", "low"}
    assert set(stats["worker"]) == {
        "workerId", "isRunning", "activeJobs", "processedJobs", "concurrency"
    }  # fmt: skip
    assert stats["worker"]["concurrency"] == 3
    types = client.get("/types").json["types"]
    assert {"send_email", "webhook", "cleanup", "log", "queue_stats", "noop"} <= set(types)
    scheduler = client.get("/scheduler").json
    assert {"isRunning", "taskCount", "tasks"} <= set(scheduler)
    assert scheduler["taskCount"] == len(scheduler["tasks"])


def test_history_counts_this_daemons_outcomes_per_minute(client, served):
    before = client.get("/jobs/history").json["minutes"]
    assert client.post("/jobs", {"type": "noop", "id": "charted-ok"}).status == 200
    unreachable = f"http://127.0.0.1:{free_port()}/"
    doomed = {"type": "webhook", "id": "charted-bad", "url": unreachable, "maxAttempts": 1}
    assert client.post("/jobs", doomed).status == 200
    earlier = {m["minute"]: m for m in before}

    def counted() -> dict[str, list[int]]:
        """Per outcome, what each minute gained since `before`."""
        now = client.get("/jobs/history").json["minutes"]
        return {o: [m[o] - earlier.get(m["minute"], {}).get(o, 0) for m in now]
                for o in ("completed", "failed")}  # fmt: skip

    gained = wait_until(lambda: (c := counted()) and all(map(sum, c.values())) and c)
    assert all(min(per_minute) >= 0 for per_minute in gained.values()), gained
    assert folder_of(served.spool, "charted-bad") == "failed"
    minutes = client.get("/jobs/history").json["minutes"]
    assert len(minutes) == 60 and set(minutes[0]) == {"minute", "completed", "failed"}
    starts = [datetime.fromisoformat(m["minute"]) for m in minutes]
    assert all(s.second == 0 and s.microsecond == 0 and s.utcoffset() == timedelta(0)
               for s in starts)  # fmt: skip
    assert [b - a for a, b in itertools.pairwise(starts)] == [timedelta(minutes=1)] * 59
    assert starts[-1] <= datetime.now(UTC) < starts[-1] + timedelta(minutes=1, seconds=5)


def test_status_is_the_snapshot_with_version_and_uptime(client, served):
    status = client.get("/status").json
    on_disk = served.status()
    expected = set(on_disk) | {"version", "uptimeSeconds"}
    assert set(status) == expected
    assert status["pid"] == on_disk["pid"] and status["startedAt"] == on_disk["startedAt"]
    assert status["version"] == spoold.__version__
    assert 0 < status["uptimeSeconds"] < 600
    assert set(status["queue"]) == {"pending", "running", "completed", "failed"}
    assert client.request("POST", "/status").status == 405


def test_status_shows_running_and_next_pending_jobs_for_the_dashboard(start_daemon, plugins):
    daemon = start_daemon(http=http_config(), workers=1, jobTypes=plugins.types)
    daemon.drop("a.json", {"type": "slow", "id": "busy"})
    wait_until(lambda: plugins.calls("busy"))
    daemon.drop("low-b.json", {"type": "noop", "id": "due-low"})
    daemon.drop("c.json", {"type": "noop", "id": "later", "runAt": LATER})
    daemon.drop("high-d.json", {"type": "noop", "id": "due-high"})
    with Client(daemon.config["http"]["port"]) as client:

        def three_pending() -> dict | None:
            jobs = client.get("/status").json["jobs"]
            return jobs if len(jobs["nextPending"]) == 3 else None

        jobs = wait_until(three_pending)
        [running] = jobs["running"]
        assert (running["id"], running["type"], running["attempts"]) == ("busy", "slow", 1)
        started = datetime.fromisoformat(running["startedAt"]).timestamp()
        assert abs(started - plugins.calls("busy")[0]["at"]) < 1
        # dispatch order: due ones by priority, then the one waiting for its time
        high, low, later = jobs["nextPending"]
        assert [(j["id"], j["priority"]) for j in (high, low, later)] == [
            ("due-high", "high"), ("due-low", "low"), ("later", "normal")]  # fmt: skip
        assert high["dueAt"] is None and low["dueAt"] is None
        due = datetime.fromisoformat(later["dueAt"]) - datetime.fromisoformat(LATER)
        assert abs(due) < timedelta(milliseconds=1)
        oldest = datetime.fromisoformat(jobs["oldestDueAt"])
        assert oldest == min(datetime.fromisoformat(j["acceptedAt"]) for j in (high, low))
        wait_until(lambda: daemon.status().get("jobs") == client.get("/status").json["jobs"])
    plugins.release()


def test_completed_newest_first_with_a_limit(client, served):
    for n in range(3):
        assert client.post("/jobs", {"type": "noop", "id": f"order-{n}"}).status == 200
        wait_until(lambda n=n: folder_of(served.spool, f"order-{n}") == "completed")
    assert len(client.get("/jobs/completed?limit=2").json["jobs"]) == 2
    newest = client.get("/jobs/completed").json["jobs"]
    assert len(newest) <= 10
    assert [j["id"] for j in newest if j["id"].startswith("order-")] == [
        "order-2", "order-1", "order-0"
    ]  # fmt: skip
    assert newest[0]["status"] == "completed" and newest[0]["attempts"] == 1


def test_failed_newest_first(client):
    for n in range(3):
        client.post("/jobs", {"type": "noop", "id": f"doomed-{n}", "runAt": LATER})
        assert client.delete(f"/jobs/doomed-{n}").status == 200
    failed = client.get("/jobs/failed?limit=3").json["jobs"]
    assert [j["id"] for j in failed] == ["doomed-2", "doomed-1", "doomed-0"]
    assert all(j["error"] == "cancelled" and j["status"] == "failed" for j in failed)


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "1.5", "1001", "99999999999999999999", ""])
def test_a_bad_limit_is_400(client, limit):
    for folder in ("completed", "failed"):
        reply = client.get(f"/jobs/{folder}?limit={limit}")
        assert reply.status == 400
        assert "limit" in reply.error


def test_unknown_query_parameters_are_400(client):
    assert "limit" in client.get("/jobs/completed?limt=5").error
    assert client.get("/jobs/failed?limit=5&=x").status == 400
    assert client.get("/types?verbose=1").status == 400
    assert client.get("/jobs/completed?limit=5").status == 200


# ----- beyond the original ----------------------------------------------------------------


def test_get_job_names_its_folder_and_record(client):
    client.post("/jobs", {"type": "noop", "id": "later-1", "runAt": LATER, "note": "x"})
    reply = client.get("/jobs/later-1")
    assert reply.status == 200
    assert reply.json["id"] == "later-1" and reply.json["folder"] == "pending"
    assert reply.json["record"]["note"] == "x"
    missing = client.get("/jobs/no-such-job")
    assert missing.status == 404 and "no-such-job" in missing.error


def test_cancel_a_pending_job_then_retry_it(client, served):
    client.post("/jobs", {"type": "noop", "id": "cancel-me", "runAt": LATER})
    reply = client.delete("/jobs/cancel-me")
    assert reply.json == {"success": True, "jobId": "cancel-me", "status": "failed",
                          "error": "cancelled"}  # fmt: skip
    [record] = [r for r in records(served.spool, "failed") if r["id"] == "cancel-me"]
    assert record["error"] == "cancelled"
    assert client.get("/jobs/cancel-me").json["folder"] == "failed"
    assert client.delete("/jobs/cancel-me").status == 409
    assert client.delete("/jobs/never-was").status == 404

    retried = client.post("/jobs/cancel-me/retry")
    assert retried.json == {"success": True, "jobId": "cancel-me", "folder": "pending"}
    again = client.get("/jobs/cancel-me").json
    assert again["folder"] == "pending"
    assert again["record"]["attempts"] == 0 and again["record"]["previousErrors"] == ["cancelled"]
    assert "cancel-me" not in [j["id"] for j in client.get("/jobs/failed").json["jobs"]]
    assert client.post("/jobs/cancel-me/retry").status == 409
    assert client.post("/jobs/never-was/retry").status == 404


def test_a_failed_job_retried_over_http_runs_again(client, served):
    with http_server(404, 200) as web:
        job = {"type": "webhook", "id": "second-life", "url": web.url + "/hook", "payload": {}}
        assert client.post("/jobs", job).status == 200
        wait_until(lambda: folder_of(served.spool, "second-life") == "failed")
        failed = client.get("/jobs/second-life").json["record"]
        assert "404" in failed["error"]
        assert client.post("/jobs/second-life/retry").status == 200
        wait_until(lambda: folder_of(served.spool, "second-life") == "completed")
        web.wait_for(2)
    record = client.get("/jobs/second-life").json["record"]
    assert record["status"] == "completed" and "404" in record["previousErrors"][0]


def test_run_now_again_as_soon_as_the_last_run_finished(start_daemon):
    """Over HTTP and with `spoold run-task`, back to back: every run runs (run ids are to
    the second; a second run within it gets its own)."""
    task = {"name": "again", "cron": "0 0 1 1 *", "job": {"type": "noop"}}
    daemon = start_daemon(http=http_config(), schedule=[task])
    ids = []
    with Client(daemon.config["http"]["port"]) as client:
        for how in ("http", "cli", "http", "cli"):
            if how == "http":
                reply = client.post("/scheduler/again/run")
                assert reply.status == 200, reply.body
                ids.append(reply.json["jobId"])
            else:
                result = spoold_cli("run-task", "again", "--config", str(daemon.config_path),
                                    cwd=daemon.workdir)  # fmt: skip
                assert result.returncode == 0, result.stderr
                ids.append(result.stdout.strip())
            wait_until(lambda: folder_of(daemon.spool, ids[-1]) == "completed")
            wait_until(lambda: client.get("/scheduler").json["tasks"][0]["isRunning"] is False)
    assert len(set(ids)) == 4
    assert sorted(r["id"] for r in records(daemon.spool, "completed")) == sorted(ids)
    assert daemon.stop() == 0


def test_run_now_of_an_unknown_task_is_404(client):
    reply = client.post("/scheduler/no-such-task/run")
    assert reply.status == 404
    assert "no-such-task" in reply.error


def test_healthz_head_and_the_status_page(client):
    head = client.request("HEAD", "/healthz")
    assert head.status == 200 and head.body == b""
    page = client.get("/")
    assert page.status == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert b'<script src="/static/dashboard.js" defer></script>' in page.body
    assert b"<script>" not in page.body and b"<style" not in page.body  # nothing inline
    assert b"http://" not in page.body and b"https://" not in page.body  # nothing from elsewhere


@pytest.mark.parametrize(("name", "media"), [("dashboard.js", "text/javascript"),
                                             ("dashboard.css", "text/css")])  # fmt: skip
def test_the_page_files_are_served_with_their_types(client, name, media):
    reply = client.get(f"/static/{name}")
    assert reply.status == 200
    assert reply.headers["content-type"] == f"{media}; charset=utf-8"
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in reply.headers["content-security-policy"]
    assert len(reply.body) > 1000 and b"https://" not in reply.body


@pytest.mark.parametrize(
    "path",
    [
        "/static/nothing.js",
        "/static/dashboard.html",
        "/static/..%2Fapi.py",
        "/static/..%2F__init__.py",
        "/static",
    ],
)
def test_only_the_page_files_are_served(client, path):
    reply = client.get(path)
    assert reply.status == 404 and reply.headers["content-type"] == "application/json"
    assert "no such" in reply.error  # a JSON error, not a file's bytes
    assert client.request("POST", "/static/dashboard.js").status == 405


def test_metrics_in_the_prometheus_text_format(client, served):
    client.post("/jobs", {"type": "noop", "id": "counted"})
    wait_until(lambda: folder_of(served.spool, "counted") == "completed")
    client.post("/jobs", {"type": "noop", "id": "waiting", "runAt": LATER, "priority": "low"})
    reply = client.get("/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(reply.body.decode())}
    expected = {
        "spoold_jobs", "spoold_job_retries", "spoold_queue_depth", "spoold_jobs_running",
        "spoold_oldest_due_job_age_seconds", "spoold_job_duration_seconds",
        "spoold_scheduler_fires", "spoold_scheduler_skips", "spoold_config_last_reload_success",
    }  # fmt: skip
    assert expected <= set(families)
    done = {s.labels["type"]: s.value for s in families["spoold_jobs"].samples
            if s.labels.get("outcome") == "completed" and s.name.endswith("_total")}  # fmt: skip
    assert done["noop"] >= 1
    depth = {s.labels["priority"]: s.value for s in families["spoold_queue_depth"].samples}
    assert depth["low"] >= 1
    counts = [s for s in families["spoold_job_duration_seconds"].samples
              if s.name.endswith("_count") and s.labels["type"] == "noop"]  # fmt: skip
    assert counts and counts[0].value >= 1
    assert families["spoold_config_last_reload_success"].samples[0].value == 1


def test_openapi_document_covers_every_endpoint(client):
    doc = client.get("/openapi.json").json
    assert doc["openapi"].startswith("3.")
    expected = {
        "/", "/healthz", "/metrics", "/openapi.json", "/types", "/jobs", "/jobs/batch",
        "/jobs/stats", "/jobs/completed", "/jobs/failed", "/jobs/{id}", "/jobs/{id}/retry",
        "/scheduler", "/scheduler/{name}/run", "/jobs/history", "/status", "/static/{name}",
    }  # fmt: skip
    assert set(doc["paths"]) == expected
    job_types = doc["components"]["schemas"]["Job"]["properties"]["type"]["enum"]
    assert "noop" in job_types


# ----- CORS -----------------------------------------------------------------------------------


PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


def every_kind_of_answer(client: Client, origin: str | None) -> list[Reply]:
    """200, 404, 400, 405, 415, 204 (preflight) and an http.server error, from `origin`."""
    headers = {"Origin": origin} if origin else {}
    replies = [
        client.get("/types", headers=headers),
        client.get("/nowhere", headers=headers),
        client.get("/jobs/completed?limit=0", headers=headers),
        client.request("PUT", "/jobs", headers=headers),
        client.post("/jobs", b"{}", headers={**headers, "Content-Type": "text/plain"}),
        client.request("OPTIONS", "/jobs", headers={**headers, **PREFLIGHT}),
    ]
    origin_line = f"Origin: {origin}\r\n" if origin else ""
    garbage = raw(client.port, f"BREW /pot HTTP/1.1\r\n{origin_line}\r\n".encode())
    head = garbage.split(b"\r\n\r\n")[0].decode().lower()
    headers_of_garbage = dict(line.split(": ", 1) for line in head.split("\r\n")[1:])
    replies.append(Reply(raw_status(garbage), headers_of_garbage, raw_json(garbage)))
    assert [r.status for r in replies] == [200, 404, 400, 405, 415, 204, 405]
    return replies


def test_without_cors_origins_no_answer_has_cors_headers(client):
    for reply in every_kind_of_answer(client, "http://localhost:3000"):
        assert not any(name.startswith("access-control-") for name in reply.headers), reply


def test_a_page_from_another_origin_cannot_change_anything(client, served):
    """Without CORS for it, a browser's request from another site is refused, even one a
    page may send without a preflight (a typeless body); the API's own page, and clients
    that are not browsers (no Origin), may."""
    port = client.port
    typeless = json.dumps({"type": "noop", "id": "from-a-page"}).encode()
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{port + 1}",
                   f"https://127.0.0.1:{port}x"):  # fmt: skip
        reply = client.post("/jobs", typeless, headers={"Origin": origin})
        assert reply.status == 403 and "corsOrigins" in reply.error, (origin, reply.body)
        assert client.delete("/jobs/anything", headers={"Origin": origin}).status == 403
    assert "from-a-page" not in ids_in_spool(served.spool)
    own = client.post("/jobs", {"type": "noop", "id": "from-its-own-page"},
                      headers={"Origin": f"http://127.0.0.1:{port}"})  # fmt: skip
    assert own.status == 200, own.body
    assert client.post("/jobs", typeless).status == 200  # curl, scripts: no Origin
    assert client.get("/types", headers={"Origin": "http://evil.example"}).status == 200


def test_cors_star_as_the_original_design(start_daemon):
    daemon = start_daemon(http=http_config(corsOrigins=["*"]))
    with Client(daemon.config["http"]["port"]) as client:
        for origin in ("http://localhost:3000", None):
            for reply in every_kind_of_answer(client, origin):
                assert reply.headers["access-control-allow-origin"] == "*", reply.status
        posted = client.post("/jobs", {"type": "noop"}, headers={"Origin": "http://x.example"})
        assert posted.status == 200  # '*': any page may, as the original design had it
        preflight = client.request("OPTIONS", "/jobs", headers={"Origin": "https://x.example",
                                                                 **PREFLIGHT})  # fmt: skip
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert daemon.stop() == 0


def test_cors_for_listed_origins_only(start_daemon):
    listed = ["http://localhost:3000", "https://Dash.Example:8443"]
    daemon = start_daemon(http=http_config(corsOrigins=listed))
    with Client(daemon.config["http"]["port"]) as client:
        for origin in ("http://localhost:3000", "https://dash.example:8443"):
            for reply in every_kind_of_answer(client, origin)[:-1]:  # garbage: Origin unread
                assert reply.headers["access-control-allow-origin"] == origin, reply
                assert reply.headers["vary"] == "Origin"
            preflight = client.request("OPTIONS", "/jobs", headers={"Origin": origin, **PREFLIGHT})
            assert "POST" in preflight.headers["access-control-allow-methods"]
            posted = client.post("/jobs", {"type": "noop"}, headers={"Origin": origin})
            assert posted.status == 200, posted.body  # a listed page may change state
        for origin in ("http://localhost:3001", "http://evil.example", "null", None):
            for reply in every_kind_of_answer(client, origin):
                assert "access-control-allow-origin" not in reply.headers, (origin, reply)
                assert "access-control-allow-methods" not in reply.headers, (origin, reply)
            if origin:
                posted = client.post("/jobs", {"type": "noop"}, headers={"Origin": origin})
                assert posted.status == 403, posted.body
    assert daemon.stop() == 0


# ----- DNS rebinding: the Host header -----------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST:{port}", "localhost:{port}", "127.0.0.1", "127.0.0.1:{port}",
     "127.200.3.4:80", "[::1]", "[::1]:{port}"],
)  # fmt: skip
def test_loopback_host_names_are_served(client, served, host):
    reply = client.get("/types", headers={"Host": host.format(port=client.port)})
    assert reply.status == 200, reply.body


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil.example",
     "10.0.0.1:{port}", "0.0.0.0", "[::2]:{port}", "::1", "localhost:{port}@evil", "",
     "127.0.0.1:port", "[::1]x"],
)  # fmt: skip
def test_a_host_that_is_not_loopback_is_403(client, served, host):
    job_id = f"rebound-{abs(hash(host))}"
    headers = {"Host": host.format(port=client.port)}
    reply = client.post("/jobs", {"type": "noop", "id": job_id}, headers=headers)
    assert reply.status == 403 and "DNS rebinding" in reply.error, reply.body
    assert client.get("/healthz", headers=headers).status == 403
    assert client.request("OPTIONS", "/jobs", headers=headers).status == 403
    assert job_id not in ids_in_spool(served.spool)
    still_serving(client)


IN_A_NETWORK_NAMESPACE = r"""
import http.client, json, subprocess, sys, time
from pathlib import Path
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "addr", "add", "10.200.0.1/32", "dev", "lo"], check=True)
work = Path(sys.argv[1])
daemon = subprocess.Popen([sys.executable, "-m", "spoold", "run", "--config",
                           str(work / "spoold.yaml")], cwd=work)
found = {}
try:
    for _ in range(300):
        try:
            conn = http.client.HTTPConnection("10.200.0.1", 18080, timeout=5)
            conn.request("GET", "/types", headers={"Host": "spoold.example:18080"})
            reply = conn.getresponse()
            found = {"status": reply.status, "body": reply.read().decode()}
            break
        except OSError:
            time.sleep(0.05)
finally:
    daemon.terminate()
    daemon.wait(30)
print(json.dumps(found))
"""


def test_off_loopback_any_host_is_served(tmp_path):
    """Listening on an address that is not loopback (here 10.200.0.1, on the loopback
    device of a network namespace this test makes), the Host is not checked."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, unshare and ip (iproute2) for a network namespace")
    config = base_config(http={"host": "10.200.0.1", "port": 18080})
    (tmp_path / "spoold.yaml").write_text(yaml.safe_dump(config))
    script = [sys.executable, "-c", IN_A_NETWORK_NAMESPACE, str(tmp_path)]
    result = subprocess.run(["unshare", "--net", *script], capture_output=True, text=True,
                            env=daemon_env(), timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found.get("status") == 200, (found, result.stderr[-2000:])
    assert "noop" in json.loads(found["body"])["types"]


def test_host_without_a_header_by_absolute_target_and_twice(served):
    port = served.config["http"]["port"]
    old = raw(port, b"GET /types HTTP/1.0\r\n\r\n")  # HTTP/1.0 needs no Host
    assert raw_status(old) == 200
    target = raw(port, b"GET http://evil.example/types HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert raw_status(target) == 403  # the request target's host is the one that counts
    twice = raw(port, b"GET /types HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n")
    assert raw_status(twice) == 403 and "evil.example" in raw_json(twice)["error"]


# ----- bad requests -------------------------------------------------------------------------


def test_malformed_json_and_wrong_shapes_are_400(client):
    bodies = [b"{", b'{"type": "noop"', b"null", b"[1, 2]", b'"text"', b"\xff\xfe", b""]
    for body in bodies:
        reply = client.post("/jobs", body, headers={"Content-Type": "application/json"})
        assert reply.status == 400, body
        assert reply.error
    assert (
        client.post("/jobs/batch", b"{", headers={"Content-Type": "application/json"}).status == 400
    )
    still_serving(client)


def test_wrong_content_type_is_415(client, served):
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        reply = client.post("/jobs", b'{"type": "noop"}', headers={"Content-Type": content_type})
        assert reply.status == 415
        assert "application/json" in reply.error
        batch = client.post("/jobs/batch", b'[{"type": "noop", "id": "by-form"}]',
                            headers={"Content-Type": content_type})  # fmt: skip
        assert batch.status == 415
    assert "by-form" not in ids_in_spool(served.spool)
    ok = client.post("/jobs", b'{"type":"noop"}',
                     headers={"Content-Type": "application/json; charset=utf-8"})  # fmt: skip
    assert ok.status == 200


def test_a_form_cannot_change_state_even_where_no_body_is_read(client, served):
    """A page's <form> or fetch() without a preflight sends these types: refused before the
    verb runs, so the job stays where it was."""
    client.post("/jobs", {"type": "noop", "id": "formed", "runAt": LATER})
    form = "application/x-www-form-urlencoded"
    for content_type in (form, "text/plain", "multipart/form-data; boundary=x"):
        headers = {"Content-Type": content_type}
        assert client.request("DELETE", "/jobs/formed", headers=headers).status == 415
        assert client.post("/jobs/formed/retry", b"a=1", headers=headers).status == 415
        assert client.post("/scheduler/none/run", b"", headers=headers).status == 415
    assert folder_of(served.spool, "formed") == "pending"
    assert client.request("DELETE", "/jobs/formed").status == 200  # no body, no type: fine
    assert client.post("/jobs/formed/retry", b"{}", headers={"Content-Type": "application/json"}
                       ).status == 200  # fmt: skip
    assert client.get("/types", headers={"Content-Type": form}).status == 200  # reads are not


def test_unknown_paths_and_methods(client):
    assert client.get("/nowhere").status == 404
    assert client.get("/jobs/stats/more").status == 404
    wrong = client.request("PUT", "/jobs")
    assert wrong.status == 405 and "POST" in wrong.headers["allow"]
    patch = client.request("PATCH", "/jobs/some-id")
    assert patch.status == 405 and "DELETE" in patch.headers["allow"]
    assert client.get("/jobs").status == 405
    reads = "GET, HEAD, OPTIONS"
    for path, allow in (("/jobs/stats", reads), ("/jobs/history", reads),
                        ("/jobs/batch", "OPTIONS, POST")):  # fmt: skip
        for method in ("DELETE", "POST", "GET"):
            reply = client.request(method, path, body=b"" if method == "POST" else None)
            if method in allow:
                continue
            assert reply.status == 405, (method, path, reply.body)
            assert reply.headers["allow"] == allow and "no job" not in reply.error
    for method in ("FOO", "TRACE", "PROPFIND"):
        reply = client.request(method, "/types")
        assert reply.status == 405, method
        assert reply.error
    still_serving(client)


@pytest.mark.parametrize(
    "path",
    [
        "/jobs/..",
        "/jobs/../status.json",
        "/jobs/../../etc/passwd",
        "/jobs/%2E%2E",
        "/jobs/..%2Fstatus.json",
        "/jobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/jobs/%2Fetc%2Fpasswd",
        "/jobs//etc/passwd",
        "/jobs/.hidden",
        "/jobs/a%00b",
        "/jobs/%ff",
        "/jobs/" + "a" * 129,
    ],
)
def test_ids_that_could_name_a_path_are_refused(client, served, path):
    canaries = [served.workdir / "status.json", served.spool / "canary.json"]
    for canary in canaries:
        canary.write_text('{"type": "noop", "status": "failed"}')
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/retry")):
        reply = client.request(method, path + suffix)
        assert reply.status in (400, 404), (method, path, reply.status)
        assert reply.error
    for canary in canaries:
        assert canary.read_text() == '{"type": "noop", "status": "failed"}'


def test_an_absolute_form_request_target(served):
    port = served.config["http"]["port"]
    answer = raw(port, f"GET http://127.0.0.1:{port}/healthz HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert raw_status(answer) == 200


def test_an_answer_is_one_well_formed_http_message(served):
    """Status line, the usual headers, and exactly Content-Length bytes of body."""
    port = served.config["http"]["port"]
    answer = raw(port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    assert status == "HTTP/1.1 200 OK"
    assert headers["Server"] == "spoold" and headers["Connection"] == "close"
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", headers["Date"])
    assert headers["Content-Type"].startswith("application/json")
    assert int(headers["Content-Length"]) == len(body) and json.loads(body)


def test_missing_or_bad_content_length(served):
    port = served.config["http"]["port"]
    no_length = raw(port, b"POST /jobs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                          b"Content-Type: application/json\r\n\r\n")  # fmt: skip
    assert raw_status(no_length) == 411
    chunked = raw(port, b"POST /jobs HTTP/1.1\r\nHost: localhost\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n5\r\n{}{}{\r\n0\r\n\r\n")  # fmt: skip
    assert raw_status(chunked) == 411
    for bad in (b"abc", b"-5", b"1e3", b"\xc2\xb2"):
        request = b"POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Length: " + bad + b"\r\n\r\n"
        answer = raw(port, request)
        assert raw_status(answer) == 400, bad
        assert "Content-Length" in raw_json(answer)["error"]


def test_a_body_over_the_limit_is_413_before_it_is_sent(served):
    port = served.config["http"]["port"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 5000\r\n\r\n")  # fmt: skip
        answer = sock.makefile("rb").read()  # the server answers and closes, unread body and all
    assert raw_status(answer) == 413
    assert "4096" in raw_json(answer)["error"]
    big = {"type": "noop", "pad": "x" * 5000}
    with Client(port) as client:
        assert client.post("/jobs", big).status == 413
        assert client.post("/jobs/batch", [big]).status == 413
        assert client.post("/jobs", {"type": "noop", "pad": "x" * 3000}).status == 200
        still_serving(client)


def test_expect_100_continue_is_refused_at_once_over_the_limit_and_answered_under_it(served):
    """A client that asks before it sends (curl does for large bodies) is told 413 at
    once, not '100 Continue' and then 413 once it has sent the whole body."""
    port = served.config["http"]["port"]
    head = (b"POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: ")  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + b"9999999\r\n\r\n")
        answer = sock.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in answer
    body = b'{"type": "noop"}'
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + str(len(body)).encode() + b"\r\n\r\n")
        reader = sock.makefile("rb")
        assert reader.readline() == b"HTTP/1.1 100 Continue\r\n" and reader.readline() == b"\r\n"
        sock.sendall(body)
        assert raw_status(reader.read()) == 200


def test_a_short_body_is_400_not_a_hang(served):
    port = served.config["http"]["port"]
    answer = raw(port, b"POST /jobs HTTP/1.1\r\nHost: localhost\r\n"
                       b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                       b'{"type": ')  # fmt: skip
    assert raw_status(answer) == 400


def test_garbage_request_lines_get_json_errors(served):
    port = served.config["http"]["port"]
    too_long = (b"GET /" + b"a" * 70000)[:65537]  # exactly what the server reads, nothing left
    for junk in (b"HELLO\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\r\n\r\n",
                 too_long):  # fmt: skip
        answer = raw(port, junk)
        assert 400 <= raw_status(answer) < 600
        assert "error" in raw_json(answer)
    with Client(port) as client:
        still_serving(client)


def test_keep_alive_serves_many_requests_on_one_connection(client):
    for _ in range(20):
        assert client.get("/healthz").status == 200
    assert client._conn is not None


# ----- slow clients ---------------------------------------------------------------------------


def test_a_stalled_client_does_not_stall_the_others(served):
    port = served.config["http"]["port"]
    stalled = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
    try:
        stalled[0].sendall(b"POST /jobs HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        stalled[1].sendall(b"GET /heal")
        started = time.monotonic()
        with Client(port) as client:
            for _ in range(10):
                assert client.get("/healthz").status == 200
        assert time.monotonic() - started < 5
    finally:
        for sock in stalled:
            sock.close()


# ----- many clients ---------------------------------------------------------------------------


def test_fifty_clients_posting_twenty_jobs_each_are_all_accepted_once(start_daemon):
    daemon = start_daemon(http=http_config(), workers=4)
    port = daemon.config["http"]["port"]
    answers: list[tuple[str, int, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(50)

    def producer(n: int) -> None:
        with Client(port, timeout=30) as client:
            barrier.wait()
            for i in range(20):
                job_id = f"c{n}-{i}"
                reply = client.post("/jobs", {"type": "noop", "id": job_id})
                with lock:
                    answers.append((job_id, reply.status, reply.json.get("jobId")))

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 1000
    assert all(status == 200 and job_id == echoed for job_id, status, echoed in answers)
    wait_until(lambda: len(records(daemon.spool, "completed")) == 1000, timeout=60)
    wait_until(lambda: none_running(daemon.spool))  # else a job just done counts twice
    counts = Counter(ids_in_spool(daemon.spool))
    assert len(counts) == 1000 and set(counts.values()) == {1}
    assert counts.keys() == {job_id for job_id, _, _ in answers}
    assert daemon.stop() == 0


# ----- the token --------------------------------------------------------------------------------


def test_the_token_guards_everything_but_healthz_and_options(start_daemon):
    daemon = start_daemon(http=http_config(token=TOKEN))
    port = daemon.config["http"]["port"]
    with Client(port) as anonymous, Client(port, "wrong-token") as wrong, \
            Client(port, TOKEN) as good:  # fmt: skip
        for path in (
            "/types",
            "/jobs/stats",
            "/metrics",
            "/",
            "/openapi.json",
            "/nowhere",
            "/status",
            "/jobs/history",
        ):
            reply = anonymous.get(path)
            assert reply.status == 401, path
            assert reply.headers["www-authenticate"].startswith("Bearer")
            assert "access-control-allow-origin" not in reply.headers
            assert wrong.get(path).status == 401
        assert anonymous.post("/jobs", {"type": "noop", "id": "sneaky"}).status == 401
        assert good.get("/types").status == 200
        assert good.post("/jobs", {"type": "noop", "id": "allowed"}).status == 200
        basic = anonymous.get("/types", headers={"Authorization": f"Basic {TOKEN}"})
        assert basic.status == 401
        assert anonymous.get("/healthz").status == 200
        # The page and its files hold no data: the page comes with its 401 and asks for it.
        page = anonymous.get("/")
        assert page.status == 401 and b'id="token-form"' in page.body
        assert page.headers["content-type"].startswith("text/html")
        assert anonymous.get("/static/dashboard.js").status == 200
        assert anonymous.request("HEAD", "/healthz").status == 200
        assert anonymous.request("TRACE", "/healthz").status == 405
        assert anonymous.request("OPTIONS", "/jobs").status in (200, 204)
    assert "sneaky" not in ids_in_spool(daemon.spool)
    assert "allowed" in ids_in_spool(daemon.spool)
    status = json.loads((daemon.spool / "status.json").read_bytes())
    assert status["worker"]["isRunning"] is True
    assert daemon.stop() == 0


def test_http_null_serves_nothing(start_daemon):
    daemon = start_daemon()  # base_config has http: null
    assert "HTTP API" not in daemon.log()
    assert daemon.stop() == 0


def test_a_busy_port_stops_the_start_with_a_reason(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        config = base_config(http={"host": "127.0.0.1", "port": port})
        daemon = DaemonProcess(tmp_path, config, [])
        assert daemon.proc.wait(30) != 0
        daemon.kill()
        assert f"cannot listen on 127.0.0.1:{port}" in daemon.log()


def test_with_fsync_a_200_means_the_job_survives_kill_9_and_runs_once(tmp_path):
    """With durability: fsync, POST /jobs answers once the job is on disk (jobs posted
    together share the committer's flushes): after kill -9 right after the last answer,
    every answered job is in the spool, and after a restart each is recorded exactly once."""
    config = base_config(http=http_config(), durability="fsync", workers=2)
    daemon = DaemonProcess(tmp_path, config, []).wait_ready()
    answered: list[str] = []

    def post(client_no: int) -> None:
        with Client(config["http"]["port"]) as client:
            for n in range(10):
                job_id = f"c{client_no}-{n}"
                if client.post("/jobs", {"type": "noop", "id": job_id}).status == 200:
                    answered.append(job_id)

    threads = [threading.Thread(target=post, args=(c,)) for c in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    daemon.kill()
    assert len(answered) == 80
    # a job killed between its record and its running file's removal is in both
    assert set(ids_in_spool(daemon.spool)) == set(answered)
    restarted = DaemonProcess(tmp_path, config, []).wait_ready()

    def finished() -> list[dict]:
        return records(daemon.spool, "completed") + records(daemon.spool, "failed")

    wait_until(lambda: len(finished()) == 80)
    assert Counter(r["id"] for r in finished()) == Counter(answered)
    # a noop has one attempt: one the kill interrupted is failed, and says so
    assert all("interrupted" in r["error"] for r in records(daemon.spool, "failed"))
    assert restarted.stop() == 0
    assert "Traceback" not in restarted.log()
