"""The registry, the small built-ins (log, queue_stats, noop) and plug-ins named by the config."""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spoold.config import Config, parse_config
from spoold.errors import ConfigError
from spoold.jobcontext import JobContext
from spoold.jobs import JobType
from spoold.jobs.registry import build_registry
from spoold.names import PRIORITIES

PLUGIN = "spoold_test_plugin"


def registry(**config: Any) -> dict[str, JobType]:
    return build_registry(Config(**config), lambda: {"pending": {"total": 3}, "failed": 1})


def test_the_built_ins_and_their_defaults() -> None:
    defaults = {name: (t.priority, t.max_attempts) for name, t in registry().items()}
    assert defaults == {
        "send_email": ("normal", 3),
        "webhook": ("high", 5),
        "cleanup": ("low", 1),
        "log": ("low", 1),
        "queue_stats": ("low", 1),
        "noop": ("normal", 1),
    }
    assert all(t.priority in PRIORITIES for t in registry().values())
    assert all(name == t.name for name, t in registry().items())


def test_log_writes_the_message_at_info(caplog: pytest.LogCaptureFixture) -> None:
    log = registry()["log"]
    with caplog.at_level(logging.INFO, logger="spoold.jobs.log"):
        log.run({"type": "log", "id": "l1", "message": "System OK", "attempts": 1})
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("spoold.jobs.log", logging.INFO, "System OK")
    ]


def test_log_needs_a_string_message() -> None:
    validate = registry()["log"].validate
    assert validate({"type": "log", "message": "hi"}) == []
    assert validate({"type": "log"}) == ["field 'message' is required: a string"]
    assert validate({"type": "log", "message": ["a"]}) == [
        "field 'message' must be a string, got [\"a\"]"
    ]


def test_queue_stats_logs_what_the_daemon_counts(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="spoold.jobs"):
        registry()["queue_stats"].run({"type": "queue_stats", "id": "q1"})
    assert "{'pending': {'total': 3}, 'failed': 1}" in caplog.text


def test_noop_does_nothing_and_accepts_anything() -> None:
    noop = registry()["noop"]
    job = {"type": "noop", "id": "n1", "extra": [1, 2]}
    assert noop.run(job) is None
    assert job == {"type": "noop", "id": "n1", "extra": [1, 2]}
    assert noop.validate(job) == []


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path holding a real plug-in module; forgotten again afterwards."""
    (tmp_path / f"{PLUGIN}.py").write_text(
        textwrap.dedent(
            """
            calls = []
            NOT_CALLABLE = 42

            def handle(job):
                calls.append(dict(job))

            class Tasks:
                @staticmethod
                def nested(job):
                    calls.append(("nested", job["id"]))

            def listens(job, context):
                context.progress(0.5, "half")
                calls.append(("listens", context.cancelled()))

            def anything(*args):
                calls.append(("anything", len(args)))

            def greedy(job, context, extra):
                pass
            """
        )
    )
    (tmp_path / "spoold_broken_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in (PLUGIN, "spoold_broken_plugin"):
        sys.modules.pop(name, None)


def test_a_plugin_is_called_with_the_jobs_dict(plugin_dir: Path) -> None:
    types = registry(job_types={"report": f"{PLUGIN}:handle", "deep": f"{PLUGIN}:Tasks.nested"})
    job = {"type": "report", "id": "r1", "attempts": 1, "timeout": 300.0, "month": "2024-05"}
    types["report"].run(job)
    types["deep"].run({"type": "deep", "id": "d1"})
    assert sys.modules[PLUGIN].calls == [job, ("nested", "d1")]
    assert (types["report"].priority, types["report"].max_attempts) == ("normal", 3)
    assert types["report"].validate({"anything": object()}) == []


def test_plugins_come_from_the_config_file(plugin_dir: Path) -> None:
    config = parse_config(f"jobTypes:\n  report: '{PLUGIN}:handle'\n")
    types = build_registry(config, dict)
    assert set(types) == {
        "send_email",
        "webhook",
        "cleanup",
        "log",
        "queue_stats",
        "noop",
        "report",
    }


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("spoold_no_such_module:run", "cannot import 'spoold_no_such_module': ModuleNotFoundError"),
        (f"{PLUGIN}:missing", f"'{PLUGIN}' has no attribute 'missing'"),
        (f"{PLUGIN}:Tasks.missing", f"'{PLUGIN}' has no attribute 'Tasks.missing'"),
        (f"{PLUGIN}:NOT_CALLABLE", f"'{PLUGIN}:NOT_CALLABLE' is not a function (its type is int)"),
        ("spoold_broken_plugin:run", "RuntimeError: boom at import"),
        (PLUGIN, "expected 'package.module:function'"),
    ],
)
def test_a_bad_plugin_target_is_a_config_error_naming_the_key(
    plugin_dir: Path, target: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        registry(job_types={"report": target}, path=Path("conf/spoold.yaml"))
    [message] = caught.value.problems
    assert message.startswith("conf/spoold.yaml: jobTypes.report: ")
    assert problem in message


def test_a_plugin_that_takes_a_second_parameter_is_handed_the_context(plugin_dir: Path) -> None:
    types = registry(job_types={"l": f"{PLUGIN}:listens", "a": f"{PLUGIN}:anything",
                                "h": f"{PLUGIN}:handle"})  # fmt: skip
    assert (types["l"].context, types["a"].context, types["h"].context) == (True, True, False)
    context = JobContext("j1")
    types["l"].call({"id": "j1"}, context)
    context.request_cancel()
    types["l"].call({"id": "j1"}, context)
    types["a"].call({"id": "j1"}, context)
    types["h"].call({"id": "j1"}, context)
    calls = sys.modules[PLUGIN].calls
    assert calls == [("listens", False), ("listens", True), ("anything", 2), {"id": "j1"}]
    report = context.last_progress()
    assert report and report.pop("at").startswith("20")
    assert report == {"fraction": 0.5, "text": "half"}


def test_a_plugin_that_needs_more_than_the_job_and_the_context_is_refused(
    plugin_dir: Path,
) -> None:
    with pytest.raises(ConfigError) as caught:
        registry(job_types={"g": f"{PLUGIN}:greedy"}, path=Path("conf/spoold.yaml"))
    [message] = caught.value.problems
    assert message.startswith("conf/spoold.yaml: jobTypes.g: ")
    assert "needs 3 arguments" in message and "JobContext" in message


def test_a_plugin_may_not_shadow_a_built_in(plugin_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"jobTypes\.webhook: 'webhook' is a built-in job type"):
        registry(job_types={"webhook": f"{PLUGIN}:handle"})


def test_every_bad_plugin_is_reported_at_once(plugin_dir: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        registry(job_types={"a": "spoold_nope:x", "ok": f"{PLUGIN}:handle", "b": f"{PLUGIN}:y"})
    assert [p.split(": ")[1] for p in caught.value.problems] == ["jobTypes.a", "jobTypes.b"]
