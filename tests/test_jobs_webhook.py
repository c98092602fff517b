"""webhook against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers_servers import DROP, HANG, Answer, HttpServer, closed_port, http_server

from spoold.config import Config, WebhookConfig
from spoold.errors import PermanentJobError
from spoold.jobs.registry import build_registry
from spoold.jobs.webhook import post_webhook, validate

ANY_HOST = WebhookConfig(allowed_hosts=None, timeout=5.0)


def hook_job(url: str, **fields: Any) -> dict[str, Any]:
    return {"type": "webhook", "id": "hook-1", "attempts": 1, "timeout": 5.0, "url": url, **fields}


@pytest.fixture
def web() -> Iterator[HttpServer]:
    with http_server() as server:
        yield server


def test_a_200_succeeds_and_the_payload_and_headers_arrive_as_sent(web: HttpServer) -> None:
    run = build_registry(Config(webhook=ANY_HOST), dict)["webhook"].run
    payload = {"invoice": 42, "lines": [1.5, "zwölf", None, True]}
    run(hook_job(f"{web.url}/hook?src=spoold", payload=payload, headers={"X-Token": "t0k"}))
    [request] = web.wait_for(1)
    assert (request.method, request.path) == ("POST", "/hook?src=spoold")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Token"] == "t0k"
    assert request.json() == payload


def test_without_a_payload_an_empty_object_is_posted(web: HttpServer) -> None:
    post_webhook(ANY_HOST, hook_job(web.url))
    assert web.wait_for(1)[0].body == b"{}"


def test_a_job_header_overrides_the_default_content_type(web: HttpServer) -> None:
    headers = {"content-type": "application/cloudevents+json"}
    post_webhook(ANY_HOST, hook_job(web.url, payload=[1], headers=headers))
    assert web.wait_for(1)[0].headers["Content-Type"] == "application/cloudevents+json"


@pytest.mark.parametrize("status", [500, 503, 429])
def test_5xx_and_429_are_retried_and_the_message_names_url_and_status(
    web: HttpServer, status: int
) -> None:
    web.script(Answer(status, b"overloaded, come back later"))
    with pytest.raises(OSError) as caught:
        post_webhook(ANY_HOST, hook_job(f"{web.url}/hook"))
    assert not isinstance(caught.value, PermanentJobError)
    message = str(caught.value)
    assert f"{web.url}/hook answered {status}" in message
    assert "overloaded, come back later" in message


def test_503_then_200_succeeds_on_the_second_attempt(web: HttpServer) -> None:
    web.script(503, 200)
    with pytest.raises(OSError, match="503"):
        post_webhook(ANY_HOST, hook_job(web.url, payload={"n": 1}))
    post_webhook(ANY_HOST, hook_job(web.url, payload={"n": 1}, attempts=2))
    first, second = web.wait_for(2)
    assert first.body == second.body == b'{"n": 1}'
    assert first.at <= second.at


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_other_4xx_fail_permanently(web: HttpServer, status: int) -> None:
    web.script(Answer(status, b'{"error": "no such hook"}'))
    with pytest.raises(PermanentJobError, match=f"answered {status} .*no such hook"):
        post_webhook(ANY_HOST, hook_job(f"{web.url}/hook"))


def test_the_query_string_stays_out_of_the_error_message(web: HttpServer) -> None:
    web.script(400)
    with pytest.raises(PermanentJobError) as caught:
        post_webhook(ANY_HOST, hook_job(f"{web.url}/hook?token=hunter2"))
    assert "hunter2" not in str(caught.value)
    assert "/hook" in str(caught.value)


def test_a_redirect_is_not_followed_and_fails_permanently(web: HttpServer) -> None:
    web.script(Answer(302, headers=(("Location", f"{web.url}/elsewhere"),)), 200)
    with pytest.raises(PermanentJobError, match="redirects are not followed"):
        post_webhook(ANY_HOST, hook_job(f"{web.url}/hook"))
    assert [r.path for r in web.requests] == ["/hook"]


def test_a_dropped_connection_is_retried(web: HttpServer) -> None:
    web.script(DROP)
    with pytest.raises(OSError, match="RemoteDisconnected") as caught:
        post_webhook(ANY_HOST, hook_job(web.url))
    assert not isinstance(caught.value, PermanentJobError)
    assert len(web.wait_for(1)) == 1


def test_a_refused_connection_is_retried_and_names_the_host() -> None:
    with closed_port() as port, pytest.raises(OSError, match=f"127.0.0.1:{port}") as caught:
        post_webhook(ANY_HOST, hook_job(f"http://127.0.0.1:{port}/hook"))
    assert not isinstance(caught.value, PermanentJobError)
    assert "Connection refused" in str(caught.value)


def test_the_job_timeout_bounds_the_wait_for_a_silent_server(web: HttpServer) -> None:
    web.script(HANG)
    started = time.monotonic()
    with pytest.raises(OSError, match="timed out") as caught:
        post_webhook(WebhookConfig(timeout=30), hook_job(web.url, timeout=0.2))
    assert not isinstance(caught.value, PermanentJobError)
    assert time.monotonic() - started < 5


def test_the_config_timeout_bounds_a_longer_job_timeout(web: HttpServer) -> None:
    web.script(HANG)
    started = time.monotonic()
    with pytest.raises(OSError, match="timed out"):
        post_webhook(WebhookConfig(timeout=0.2), hook_job(web.url, timeout=300))
    assert time.monotonic() - started < 5


def test_allowed_hosts_refuse_another_host_before_anything_is_sent(web: HttpServer) -> None:
    config = WebhookConfig(allowed_hosts=("hooks.example.com",))
    job = hook_job(f"{web.url}/hook")
    [problem] = validate(config, job)
    assert "'127.0.0.1' is not in webhook.allowedHosts (hooks.example.com)" in problem
    with pytest.raises(PermanentJobError, match="allowedHosts"):
        post_webhook(config, job)  # checked again at run time: the config may have changed
    assert web.requests == []


def test_allowed_hosts_let_a_listed_host_through(web: HttpServer) -> None:
    config = WebhookConfig(allowed_hosts=("127.0.0.1",), timeout=5.0)
    assert validate(config, hook_job(web.url)) == []
    post_webhook(config, hook_job(web.url))
    assert len(web.wait_for(1)) == 1


def test_allowed_hosts_compare_host_names_without_case() -> None:
    config = WebhookConfig(allowed_hosts=("hooks.example.com",))
    assert validate(config, {"url": "https://HOOKS.Example.com/x"}) == []


def test_an_empty_allowed_hosts_list_refuses_every_host() -> None:
    [problem] = validate(WebhookConfig(allowed_hosts=()), hook_job("https://example.com/"))
    assert "not in webhook.allowedHosts (none)" in problem


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, "field 'url' is required: an http:// or https:// URL string"),
        ({"url": 42}, "field 'url' must be an http:// or https:// URL string, got 42"),
        ({"url": "ftp://example.com/x"}, "field 'url' must be an http:// or https:// URL"),
        ({"url": "file:///etc/passwd"}, "field 'url' must be an http:// or https:// URL"),
        ({"url": "example.com/hook"}, "field 'url' must be an http:// or https:// URL"),
        ({"url": "http:///path-only"}, "field 'url' has no host name"),
        ({"url": "http://example.com:port/"}, "field 'url' is not a valid URL"),
        ({"url": "http://example.com/a b"}, "field 'url' must not contain spaces"),
        ({"url": "http://u:pw@example.com/"}, "field 'url' must not contain credentials"),
        ({"url": "http://example.com", "payload": float("nan")}, "field 'payload' must be"),
        ({"url": "http://example.com", "headers": ["X-A"]}, "field 'headers' must be a mapping"),
        ({"url": "http://example.com", "headers": {"X-A": 1}}, "field 'headers' must be"),
        ({"url": "http://example.com", "headers": {"X A": "1"}}, "field 'headers' must be"),
        ({"url": "http://example.com", "headers": {"X-A": "1\r\nX-B: 2"}}, "field 'headers'"),
        # What urllib would refuse at every attempt is refused when the job is accepted.
        ({"url": "http://example.com/caf\u00e9"}, "field 'url' must be ASCII after the host"),
        ({"url": "http://example.com/?q=\u2028"}, "field 'url' must be ASCII after the host"),
        ({"url": "http://a..b/"}, "field 'url' has a host name that cannot be looked up"),
        ({"url": f"http://{'a' * 64}.example/"}, "field 'url' has a host name that cannot"),
        ({"url": "http://example.com", "headers": {"X-A": "\u20ac"}}, "field 'headers' must be"),
        ({"url": "http://example.com", "headers": {"X-A": "a\u2028b"}}, "field 'headers'"),
        ({"url": "http://example.com", "headers": {"X-A\n": "1"}}, "field 'headers'"),
    ],
)
def test_validate_names_the_field_and_what_it_must_be(fields: dict[str, Any], problem: str) -> None:
    problems = validate(ANY_HOST, {"type": "webhook", **fields})
    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_validate_accepts_any_json_payload_and_string_headers() -> None:
    for payload in ({"a": [1, None]}, [1, 2], "text", 3.5, None, False):
        job = {"url": "https://example.com/h", "payload": payload, "headers": {"X-A": "b"}}
        assert validate(ANY_HOST, job) == []
    job = {"url": "http://b\u00fccher.example/%C3%A9?a=1#x", "headers": {"X-A": "caf\u00e9\t1"}}
    assert validate(ANY_HOST, job) == []


def test_run_refuses_a_scheme_it_would_not_accept() -> None:
    with pytest.raises(PermanentJobError, match="http:// or https://"):
        post_webhook(ANY_HOST, hook_job("file:///etc/passwd"))
