"""schemathesis over GET /openapi.json against the running daemon: whatever it generates,
no 500, and every answer conforms to the document (status, content type, body)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from conftest import DaemonProcess, base_config, free_port
from helpers_api import Client
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig

from spoold.openapi import RESERVED_IDS

TOKEN = "schema-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """A daemon with a token whose jobs cannot reach anything outside 127.0.0.1."""
    config = base_config(
        http={"host": "127.0.0.1", "port": free_port(), "token": TOKEN, "maxBodyBytes": 65536},
        webhook={"allowedHosts": ["127.0.0.1"]},
        smtp={"host": "127.0.0.1", "port": free_port()},
        jobs={"timeout": 5, "maxBackoff": 1},
    )
    daemon = DaemonProcess(tmp_path_factory.mktemp("fuzzed"), config, []).wait_ready()
    yield daemon
    assert daemon.stop() == 0, daemon.log()
    assert "Traceback" not in daemon.log()


def base_url(daemon: DaemonProcess) -> str:
    return f"http://127.0.0.1:{daemon.config['http']['port']}"


@pytest.fixture(scope="module")
def api_schema(fuzzed: DaemonProcess) -> schemathesis.BaseSchema:
    # The token through schemathesis's own auth, so that its cases without it stay without.
    config = SchemathesisConfig.from_dict(
        {"base-url": base_url(fuzzed), "auth": {"openapi": {"bearer": {"bearer": TOKEN}}}}
    )
    return schemathesis.openapi.from_url(
        base_url(fuzzed) + "/openapi.json", config=config, headers=AUTH
    )


def conforms(case: schemathesis.Case, fuzzed: DaemonProcess) -> None:
    # A schema-valid job may still be refused: its id taken, a type's own rules (a log job
    # needs a message, a webhook an allowed host). The document says so with its 400.
    excluded = [positive_data_acceptance] if case.operation.label == "POST /jobs" else []
    if case.path == "/jobs/{id}" and (case.path_parameters or {}).get("id") in RESERVED_IDS:
        return  # /jobs/stats is its own endpoint (the document's `not` says so), fuzzed there
    case.call_and_validate(excluded_checks=excluded, timeout=10)
    with Client(fuzzed.config["http"]["port"], TOKEN) as client:
        assert client.get("/healthz").status == 200


# Driven through schemathesis' Python API and hypothesis' `given`, not its pytest plugin:
# the plugin reaches into pytest's private fields, and a new pytest broke it (pytest 9.2).
def test_every_answer_conforms_to_the_document(
    api_schema: schemathesis.BaseSchema, fuzzed: DaemonProcess
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 12, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def check(case: schemathesis.Case) -> None:
            conforms(case, fuzzed)

        check()
