"""The config: defaults, every key honoured, and every mistake named with file, line and key."""

import time
from pathlib import Path

import pytest
from conftest import alias_bomb

from spoold.config import Config, load_config, parse_config, parse_duration
from spoold.errors import ConfigError

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "spoold.yaml"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, Path("c.yaml"))
    return info.value.problems


def test_shipped_config_is_valid_and_has_the_original_tasks():
    config = load_config(SHIPPED)
    assert [t.name for t in config.schedule] == ["health_log", "queue_stats"]
    assert config.workers == 3 and config.durability == "fsync"
    assert config.http is not None and config.http.host == "127.0.0.1"


def test_empty_document_gives_defaults():
    config = parse_config("")
    assert config == Config(path=None)
    assert config.jobs.timeout == 300 and config.retention.completed == 7 * 86400


def test_every_key_is_read():
    config = parse_config(
        """
spool: /tmp/s
node: host-a
workers: 7
jobs: {timeout: 12, maxBackoff: 60, jitter: true}
maxJobBytes: 2048
settleSeconds: 1.5
rescanSeconds: 3
leaseSeconds: 10
shutdownGrace: 4
durability: relaxed
http: {host: 127.0.0.2, port: 9000, token: s3cret, maxBodyBytes: 99}
smtp: {host: mail, port: 2525, starttls: true, username: u, password: p, from: a@b.c}
cleanup: {allowedRoots: [/var/tmp]}
webhook: {allowedHosts: [Example.COM]}
retention: {completed: 12h, failed: 2w}
timezone: Europe/Berlin
jobTypes: {resize: "pkg.mod:fn"}
"""
    )
    assert config.spool == Path("/tmp/s") and config.node == "host-a" and config.workers == 7
    assert (config.jobs.timeout, config.jobs.max_backoff, config.jobs.jitter) == (12, 60, True)
    assert config.max_job_bytes == 2048 and config.settle_seconds == 1.5
    assert (config.rescan_seconds, config.lease_seconds, config.shutdown_grace) == (3, 10, 4)
    assert config.durability == "relaxed" and not config.fsync
    assert config.http.port == 9000 and config.http.token == "s3cret"
    assert config.http.max_body_bytes == 99
    assert config.smtp.starttls and config.smtp.sender == "a@b.c" and config.smtp.port == 2525
    assert config.cleanup.allowed_roots == (Path("/var/tmp"),)
    assert config.webhook.allowed_hosts == ("example.com",)
    assert config.retention.completed == 12 * 3600 and config.retention.failed == 14 * 86400
    assert config.timezone == "Europe/Berlin"
    assert config.job_types == {"resize": "pkg.mod:fn"}


def test_http_null_turns_the_api_off():
    assert parse_config("http: null").http is None


def test_token_from_environment(monkeypatch):
    monkeypatch.setenv("SPOOLD_TOKEN", "from-env")
    assert parse_config("").http.token == "from-env"


def test_typo_is_an_error_with_line_and_suggestion():
    [problem] = problems("workers: 2\nshedule: []\n")
    assert problem.startswith("c.yaml:2: shedule: unknown key")
    assert "did you mean 'schedule'" in problem


def test_nested_typo_names_the_full_key():
    [problem] = problems("jobs:\n  timeout: 5\n  maxBackof: 9\n")
    assert problem.startswith("c.yaml:3: jobs.maxBackof: unknown key")


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("workers: two", "workers", "expected an integer or a number"),
        ("workers: 0", "workers", "at least 1"),
        ("workers: true", "workers", "expected"),
        ("durability: sometimes", "durability", "fsync or relaxed"),
        ("jobs: {timeout: -1}", "jobs.timeout", "at least"),
        ("http: {port: 70000}", "http.port", "0-65535"),
        ("retention: {completed: 7 days}", "retention.completed", "not a duration"),
        ("timezone: Mars/Olympus", "timezone", "unknown time zone"),
        ("timezone: America", "timezone", "unknown time zone"),
        ("node: 'a b'", "node", "A-Z a-z 0-9"),
        ("jobs: [1, 2]", "jobs", "expected a mapping"),
        ("cleanup: {allowedRoots: [3]}", "cleanup.allowedRoots.0", "folder path"),
        ("jobTypes: {x: nocolon}", "jobTypes.x", "package.module:function"),
        ("smtp: {starttls: maybe}", "smtp.starttls", "true or false"),
    ],
)
def test_bad_values_are_named(text, key, words):
    found = problems(text)
    assert any(f": {key}: " in p and words in p for p in found), found
    assert all(p.startswith("c.yaml:1") for p in found)


def test_all_problems_are_reported_at_once():
    assert len(problems("workers: x\ndurability: y\nbogus: 1\n")) == 3


def test_bad_yaml_names_the_line():
    [problem] = problems("workers: 3\njobs: {timeout: 3\n")
    assert problem.startswith("c.yaml:") and "not valid YAML" in problem


def test_schedule_entries_are_checked():
    found = problems(
        """
schedule:
  - name: a
    cron: "* * * * *"
    job: {type: noop}
  - name: a
    cron: "61 * * * *"
    job: {}
    catchUp: always
"""
    )
    text = "\n".join(found)
    assert "schedule.1.cron" in text and "minute" in text
    assert "schedule.1.catchUp" in text
    assert "schedule.1.job.type" in text


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value) and "cannot read" in str(info.value)


def test_node_override_is_validated(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("workers: 1\n")
    assert load_config(path, "n1").node == "n1"
    with pytest.raises(ConfigError):
        load_config(path, "../evil")


@pytest.mark.parametrize(
    ("value", "seconds"), [("7d", 604800), ("12h", 43200), ("30m", 1800), ("45s", 45), (90, 90)]
)
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


def test_a_yaml_alias_bomb_is_refused_at_once_not_walked():
    """Hostile: a YAML of 1 KiB whose aliases expand to 10^10 values. Before, finding each
    key's line walked every one (check-config ran for minutes, a reload hung its thread)."""
    started = time.monotonic()
    assert problems("spool: spool\n" + alias_bomb()) == [
        "c.yaml: over 100000 keys and list items once its aliases (*name) are expanded:"
        " use fewer aliases"
    ]
    assert time.monotonic() - started < 5


def test_lists_nested_past_the_limit_are_refused_with_their_line():
    """Hostile: 5,000 nested lists. Before, PyYAML's composer ended in a RecursionError
    and a traceback; now the line and what to do."""
    assert problems("spool: spool\nx:\n  " + "[" * 5000 + "]" * 5000) == [
        "c.yaml:3: lists and mappings nested more than 110 deep: flatten the config"
    ]
    nested = "[" * 99 + "]" * 99  # with the job's own object, as deep as a job may nest
    config = parse_config(f"schedule: [{{name: t, cron: '* * * * *', job: {{type: noop,"
                          f" deep: {nested}}}}}]")  # fmt: skip
    expected: list = []
    for _ in range(98):
        expected = [expected]
    assert config.schedule[0].job["deep"] == expected


def test_aliases_used_as_intended_still_work():
    """One job shared by two tasks through an anchor and its aliases."""
    config = parse_config(
        "schedule:\n"
        "  - {name: a, cron: '0 * * * *', job: &job {type: log, message: hi}}\n"
        "  - {name: b, cron: '30 * * * *', job: *job}\n"
    )
    assert [t.job for t in config.schedule] == [{"type": "log", "message": "hi"}] * 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-01-01", "a YAML date is not a JSON value: quote it ('2026-01-01')"),
        (
            "2026-01-01 10:00:00",
            "a YAML datetime is not a JSON value: quote it ('2026-01-01 10:00:00')",
        ),
        (".nan", "nan is not a JSON number: give a finite number"),
        ("-.inf", "-inf is not a JSON number: give a finite number"),
        ("!!binary aGk=", "binary data (!!binary) is not a JSON value: give it as a string"),
        ("{1: x}", "key 1 is not a string: quote it"),
        ("[{yes: x}]", "key True is not a string: quote it"),
    ],
)
def test_a_task_job_value_json_cannot_hold_is_named_with_its_line(value, message):
    """A task's job is written as JSON at each run. Before, check-config passed such a
    job and every run ended in a traceback ('Object of type date is not JSON
    serializable'); an unquoted date is an easy slip in YAML."""
    text = (
        "schedule:\n  - name: t\n    cron: '* * * * *'\n    job:\n      type: log\n"
        f"      message: hi\n      when: {value}\n"
    )
    [problem] = problems(text)
    where = "schedule.0.job.when" + (".0" if value.startswith("[") else "")
    assert problem == f"c.yaml:7: {where}: {message}"


def test_a_task_job_nested_past_the_job_limit_is_refused():
    nested = "[" * 100 + "]" * 100
    [problem] = problems(
        f"schedule: [{{name: t, cron: '* * * * *', job: {{type: noop, deep: {nested}}}}}]"
    )
    assert problem.endswith(
        "schedule.0.job: nested too deeply: lists and objects may nest at most 100 levels"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("workers: .inf", "c.yaml:1: workers: must be a finite number, got inf"),
        ("workers: .nan", "c.yaml:1: workers: must be a finite number, got nan"),
        ("workers: 2.9", "c.yaml:1: workers: must be a whole number, got 2.9"),
        ("maxJobBytes: .inf", "c.yaml:1: maxJobBytes: must be a finite number, got inf"),
        ("http: {port: 8080.7}", "c.yaml:1: http.port: must be a whole number, got 8080.7"),
        ("smtp: {port: 99999}", "c.yaml:1: smtp.port: must be 0-65535, got 99999"),
        ("smtp: {port: .inf}", "c.yaml:1: smtp.port: must be a finite number, got inf"),
        ("workers: 2\nworkers: 5", "c.yaml:2: workers: given twice (first on line 1): keep one"),
        ("http:\n  port: 1\n  port: 2", "c.yaml:3: port: given twice (first on line 2): keep one"),
        ("spool: ''", "c.yaml:1: spool: is empty: name the spool's folder"),
    ],
)
def test_numbers_counts_ports_and_keys_a_config_gets_wrong(text, problem):
    """Before: .inf or .nan ended check-config in a traceback, 2.9 workers ran 2, a port
    past 65535 passed, a key given twice kept the last without a word, and an empty
    spool meant the current folder."""
    assert any(p.startswith(problem) for p in problems(text)), problems(text)
