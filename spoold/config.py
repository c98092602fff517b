"""The YAML config → frozen dataclasses, validated as a whole.

Every problem is reported at once, each naming the file, the line and the key,
because an operator fixing a config wants the whole list, not one error a run.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from spoold import strictjson
from spoold.errors import ConfigError, InvalidJob
from spoold.jobs import BUILTIN_TYPES
from spoold.limits import Limit, Rate, parse_rate
from spoold.names import ID_RE, ID_RULE

DEFAULT_PATH = Path("config/spoold.yaml")
NAME_RULE = ID_RULE
DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DEPTH = 110  # lists and mappings nested in the config: a task's job may nest 100 (strictjson)
MAX_VALUES = 100_000  # keys and list items in the config, its aliases expanded


@dataclass(frozen=True)
class JobsConfig:
    timeout: float = 300.0
    max_backoff: float = 3600.0
    jitter: bool = False


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    max_body_bytes: int = 1048576
    cors_origins: tuple[str, ...] = ()  # () no CORS headers, ("*",) any origin, else these


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "localhost"
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    sender: str = "spoold@localhost"
    timeout: float = 30.0


@dataclass(frozen=True)
class CleanupConfig:
    allowed_roots: tuple[Path, ...] = ()


@dataclass(frozen=True)
class WebhookConfig:
    allowed_hosts: tuple[str, ...] | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class RetentionConfig:
    completed: float = 7 * 86400.0
    failed: float = 30 * 86400.0


@dataclass(frozen=True)
class TaskConfig:
    """One schedule entry; its cron string is checked by spoold.cron."""

    name: str
    cron: str
    job: dict[str, Any]
    timezone: str | None = None
    catch_up: str = "skip"
    line: int = 0


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    spool: Path = Path("spool")
    node: str | None = None
    workers: int = 3
    jobs: JobsConfig = field(default_factory=JobsConfig)
    max_job_bytes: int = 1048576
    settle_seconds: float = 2.0
    rescan_seconds: float = 5.0
    lease_seconds: float = 30.0
    shutdown_grace: float = 30.0
    durability: str = "fsync"
    http: HttpConfig | None = field(default_factory=HttpConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    cleanup: CleanupConfig = field(default_factory=CleanupConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    timezone: str = "UTC"
    schedule: tuple[TaskConfig, ...] = ()
    job_types: dict[str, str] = field(default_factory=dict)
    limits: dict[str, Limit] = field(default_factory=dict)

    @property
    def fsync(self) -> bool:
        return self.durability == "fsync"


def parse_duration(value: Any) -> float:
    """'7d', '12h', '90m', '30s', '2w' or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 7d, 12h, 30m or 45s")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = DURATION_RE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration such as 7d, 12h, 30m or 45s")
    return float(match.group(1)) * UNITS[match.group(2)]


class _Reader:
    """Walks the parsed YAML beside its node tree, collecting problems with line numbers."""

    def __init__(self, source: str, lines: dict[tuple[str, ...], int]) -> None:
        self.source = source
        self.lines = lines
        self.problems: list[str] = []

    def where(self, path: tuple[str, ...]) -> str:
        line = self.lines.get(path)
        while line is None and path:
            path = path[:-1]
            line = self.lines.get(path)
        return f"{self.source}:{line}" if line else self.source

    def problem(self, path: tuple[str, ...], message: str) -> None:
        key = ".".join(path) or "(top level)"
        self.problems.append(f"{self.where(path)}: {key}: {message}")

    def section(self, data: Any, path: tuple[str, ...], known: set[str]) -> dict[str, Any]:
        """A mapping whose keys must all be known; typos are errors, not silence."""
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.problem(path, f"expected a mapping, got {type(data).__name__}")
            return {}
        for key in data:
            if key not in known:
                hint = _closest(str(key), known)
                self.problem((*path, str(key)), f"unknown key{hint}")
        return data

    def get(
        self,
        data: dict[str, Any],
        path: tuple[str, ...],
        kind: type | tuple[type, ...],
        default: Any,
    ) -> Any:
        """data[key] if present and of the right kind, else record a problem and use default."""
        key = path[-1]
        if key not in data or (data[key] is None and default is None):
            return default
        value = data[key]
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float))
        if kind == (int, float) and isinstance(value, bool):
            ok = False
        if not ok:
            self.problem(path, f"expected {_kind_name(kind)}, got {value!r}")
            return default
        return value

    def number(
        self, data: dict[str, Any], path: tuple[str, ...], default: float, minimum: float = 0
    ) -> float:
        value: float = self.get(data, path, (int, float), default)
        if not math.isfinite(value):
            self.problem(path, f"must be a finite number, got {value}")
            return default
        if value < minimum:
            self.problem(path, f"must be at least {minimum}, got {value}")
            return default
        return value

    def whole(
        self, data: dict[str, Any], path: tuple[str, ...], default: int, minimum: int = 0,
        maximum: int | None = None,
    ) -> int:  # fmt: skip
        """A count or a port: a whole number (2.9 workers is a mistake, not 2)."""
        value = self.number(data, path, default, minimum)
        if value != int(value):
            self.problem(path, f"must be a whole number, got {value}")
            return default
        if maximum is not None and value > maximum:
            self.problem(path, f"must be {minimum}-{maximum}, got {int(value)}")
            return default
        return int(value)

    def duration(self, data: dict[str, Any], path: tuple[str, ...], default: float) -> float:
        if path[-1] not in data:
            return default
        try:
            return parse_duration(data[path[-1]])
        except ValueError as e:
            self.problem(path, str(e))
            return default


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    names |= {list: "a list", dict: "a mapping"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def _closest(key: str, known: set[str], listing: str = "known keys") -> str:
    match = difflib.get_close_matches(key, sorted(known), n=1)
    if match:
        return f" (did you mean {match[0]!r}?)"
    return f"; {listing}: {', '.join(sorted(known))}"


def _check_depth(text: str, source: str) -> None:
    """Refuse lists and mappings nested deeper than MAX_DEPTH, with the line, before
    PyYAML's composer (which recurses) ends in a RecursionError; its events are read
    one by one, without recursion."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise ConfigError([f"{source}:{line}: lists and mappings nested more than"
                                   f" {MAX_DEPTH} deep: flatten the config"])  # fmt: skip
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _node_lines(root: yaml.Node | None, source: str) -> dict[tuple[str, ...], int]:
    """Map each key path of the YAML document to the 1-based line it stands on. An alias
    (*name) is walked wherever it is used, as the config's readers will walk it: past
    MAX_VALUES paths (an alias bomb expands to billions) it is refused, not walked."""
    lines: dict[tuple[str, ...], int] = {}
    stack: list[tuple[yaml.Node | None, tuple[str, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, yaml.MappingNode):
            children = [(str(key.value), key, value) for key, value in node.value]
        elif isinstance(node, yaml.SequenceNode):
            children = [(str(index), item, item) for index, item in enumerate(node.value)]
        else:
            continue
        for name, marked, child in children:
            lines[(*path, name)] = marked.start_mark.line + 1
            stack.append((child, (*path, name)))
        if len(lines) > MAX_VALUES:
            raise ConfigError([f"{source}: over {MAX_VALUES} keys and list items once its"
                               " aliases (*name) are expanded: use fewer aliases"])  # fmt: skip
    return lines


def _duplicate_keys(root: yaml.Node | None, source: str) -> list[str]:
    """A key given twice in one mapping: YAML keeps the last without a word, so
    `workers: 2` then `workers: 5` would run 5 while the first one is read."""
    problems, seen, stack = [], set(), [root]
    while stack:
        node = stack.pop()
        if id(node) in seen or not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack += node.value
            continue
        first: dict[str, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if str(key.value) in first:
                problems.append(f"{source}:{line}: {key.value}: given twice (first on line"
                                f" {first[str(key.value)]}): keep one")  # fmt: skip
            first.setdefault(str(key.value), line)
            stack.append(value)
    return problems


def load_config(path: Path | str | None = None, node: str | None = None) -> Config:
    """Read and validate a config file; None means config/spoold.yaml if present, else defaults.

    Raises ConfigError listing every problem, each with file, line and key.
    """
    explicit = path is not None
    path = Path(path) if path is not None else DEFAULT_PATH
    if not explicit and not path.exists():
        return _override_node(Config(), node)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{path}: cannot read the config: {e.strerror or e}"]) from e
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: the config is not UTF-8 text: {e}"]) from e
    return _override_node(parse_config(text, path), node)


def _override_node(config: Config, node: str | None) -> Config:
    if node is None:
        return config
    if not ID_RE.match(node):
        raise ConfigError([f"--node {node!r}: use {NAME_RULE}"])
    return replace(config, node=node)


def parse_config(text: str, path: Path | None = None) -> Config:
    """Validate a config document; see load_config."""
    source = str(path) if path else "<config>"
    try:
        _check_depth(text, source)
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        lines = _node_lines(root, source)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        reason = getattr(e, "problem", None) or str(e)
        raise ConfigError([f"{where}: not valid YAML: {reason}"]) from e
    reader = _Reader(source, lines)
    reader.problems += _duplicate_keys(root, source)
    config = _build(reader, data, path)
    if reader.problems:
        raise ConfigError(reader.problems)
    return config


TOP_KEYS = {
    "spool", "node", "workers", "jobs", "maxJobBytes", "settleSeconds", "rescanSeconds",
    "leaseSeconds", "shutdownGrace", "durability", "http", "smtp", "cleanup", "webhook",
    "retention", "timezone", "schedule", "jobTypes", "limits",
}  # fmt: skip


def _build(r: _Reader, data: Any, path: Path | None) -> Config:
    top = r.section(data, (), TOP_KEYS)
    d = Config()
    node = r.get(top, ("node",), str, None)
    if node is not None and not ID_RE.match(node):
        r.problem(("node",), f"use {NAME_RULE}")
    durability = r.get(top, ("durability",), str, d.durability)
    if durability not in ("fsync", "relaxed"):
        r.problem(("durability",), f"must be fsync or relaxed, got {durability!r}")
        durability = d.durability
    workers = r.whole(top, ("workers",), d.workers, minimum=1)
    spool = r.get(top, ("spool",), str, str(d.spool))
    if not spool.strip():
        r.problem(("spool",), "is empty: name the spool's folder (it would be the current one)")
    return Config(
        path=path,
        spool=Path(spool),
        node=node,
        workers=workers,
        jobs=_jobs(r, top),
        max_job_bytes=r.whole(top, ("maxJobBytes",), d.max_job_bytes, minimum=1),
        settle_seconds=r.number(top, ("settleSeconds",), d.settle_seconds),
        rescan_seconds=r.number(top, ("rescanSeconds",), d.rescan_seconds, minimum=0.05),
        lease_seconds=r.number(top, ("leaseSeconds",), d.lease_seconds, minimum=1),
        shutdown_grace=r.number(top, ("shutdownGrace",), d.shutdown_grace),
        durability=durability,
        http=_http(r, top),
        smtp=_smtp(r, top),
        cleanup=_cleanup(r, top),
        webhook=_webhook(r, top),
        retention=_retention(r, top),
        timezone=_timezone(r, top, ("timezone",), "UTC"),
        schedule=_schedule(r, top),
        job_types=_job_types(r, top),
        limits=_limits(r, top),
    )


def _jobs(r: _Reader, top: dict[str, Any]) -> JobsConfig:
    p = ("jobs",)
    s = r.section(top.get("jobs"), p, {"timeout", "maxBackoff", "jitter"})
    d = JobsConfig()
    return JobsConfig(
        timeout=r.number(s, (*p, "timeout"), d.timeout, minimum=0.001),
        max_backoff=r.number(s, (*p, "maxBackoff"), d.max_backoff),
        jitter=r.get(s, (*p, "jitter"), bool, d.jitter),
    )


def _http(r: _Reader, top: dict[str, Any]) -> HttpConfig | None:
    p = ("http",)
    if "http" in top and top["http"] is None:
        return None
    s = r.section(top.get("http"), p, {"host", "port", "token", "maxBodyBytes", "corsOrigins"})
    d = HttpConfig()
    port = r.whole(s, (*p, "port"), d.port, maximum=65535)
    token = r.get(s, (*p, "token"), str, None) or os.environ.get("SPOOLD_TOKEN") or None
    return HttpConfig(
        host=r.get(s, (*p, "host"), str, d.host),
        port=port,
        token=token,
        max_body_bytes=r.whole(s, (*p, "maxBodyBytes"), d.max_body_bytes, minimum=1),
        cors_origins=_cors_origins(r, s, (*p, "corsOrigins")),
    )


ORIGIN_RE = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#@\s]+$")


def _cors_origins(r: _Reader, s: dict[str, Any], path: tuple[str, ...]) -> tuple[str, ...]:
    """["*"], or origins as a browser sends them (scheme://host[:port], no path), lower-cased
    because a browser's Origin is."""
    origins = r.get(s, path, list, [])
    good = []
    for index, origin in enumerate(origins):
        if origin == "*" and len(origins) == 1:
            good.append(origin)
        elif origin == "*":
            r.problem((*path, str(index)), "'*' allows every origin: list it alone, or not at all")
        elif isinstance(origin, str) and ORIGIN_RE.match(origin.lower()):
            good.append(origin.lower())
        else:
            example = "an origin such as 'http://localhost:3000' (scheme://host[:port], no path)"
            r.problem((*path, str(index)), f"expected {example}, got {origin!r}")
    return tuple(good)


def _smtp(r: _Reader, top: dict[str, Any]) -> SmtpConfig:
    p = ("smtp",)
    known = {"host", "port", "starttls", "username", "password", "from", "timeout"}
    s = r.section(top.get("smtp"), p, known)
    d = SmtpConfig()
    return SmtpConfig(
        host=r.get(s, (*p, "host"), str, d.host),
        port=r.whole(s, (*p, "port"), d.port, maximum=65535),
        starttls=r.get(s, (*p, "starttls"), bool, d.starttls),
        username=r.get(s, (*p, "username"), str, None),
        password=r.get(s, (*p, "password"), str, None),
        sender=r.get(s, (*p, "from"), str, d.sender),
        timeout=r.number(s, (*p, "timeout"), d.timeout, minimum=0.001),
    )


def _cleanup(r: _Reader, top: dict[str, Any]) -> CleanupConfig:
    p = ("cleanup",)
    s = r.section(top.get("cleanup"), p, {"allowedRoots"})
    roots = r.get(s, (*p, "allowedRoots"), list, [])
    good = []
    for index, root in enumerate(roots):
        if isinstance(root, str) and root:
            good.append(Path(root).absolute())
        else:
            r.problem((*p, "allowedRoots", str(index)), f"expected a folder path, got {root!r}")
    return CleanupConfig(allowed_roots=tuple(good))


def _webhook(r: _Reader, top: dict[str, Any]) -> WebhookConfig:
    p = ("webhook",)
    s = r.section(top.get("webhook"), p, {"allowedHosts", "timeout"})
    hosts = r.get(s, (*p, "allowedHosts"), list, None)
    if hosts is not None:
        for index, host in enumerate(hosts):
            if not isinstance(host, str) or not host:
                r.problem((*p, "allowedHosts", str(index)), f"expected a host name, got {host!r}")
        hosts = tuple(h.lower() for h in hosts if isinstance(h, str))
    return WebhookConfig(
        allowed_hosts=hosts,
        timeout=r.number(s, (*p, "timeout"), WebhookConfig.timeout, minimum=0.001),
    )


def _retention(r: _Reader, top: dict[str, Any]) -> RetentionConfig:
    p = ("retention",)
    s = r.section(top.get("retention"), p, {"completed", "failed"})
    d = RetentionConfig()
    return RetentionConfig(
        completed=r.duration(s, (*p, "completed"), d.completed),
        failed=r.duration(s, (*p, "failed"), d.failed),
    )


_Zone = TypeVar("_Zone", str, None)


def _timezone(
    r: _Reader, data: dict[str, Any], path: tuple[str, ...], default: _Zone
) -> str | _Zone:
    """A valid zone name from data, else default (the typed default: "UTC" or None)."""
    name: str | None = r.get(data, path, str, default)
    if name is None:
        return default
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        r.problem(path, f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)")
        return default
    return name


def _schedule(r: _Reader, top: dict[str, Any]) -> tuple[TaskConfig, ...]:
    entries = r.get(top, ("schedule",), list, [])
    tasks: list[TaskConfig] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        task = _task(r, entry, ("schedule", str(index)))
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name in seen:
            first = r.lines.get(("schedule", str(seen[name]), "name"))
            where = f" (first on line {first})" if first else ""
            r.problem(("schedule", str(index), "name"), f"task name {name!r} is used twice{where}")
        elif isinstance(name, str):
            seen[name] = index
        if task is not None:
            tasks.append(task)
    return tuple(tasks)


def _check_json(r: _Reader, job: dict[str, Any], p: tuple[str, ...]) -> None:
    """A task's job is written as JSON at each run: a value YAML reads as something JSON
    cannot hold (an unquoted date, !!binary, .nan, a key that is no string) is named
    here, with its line, not found by a traceback at every run."""
    found = list(_not_json(job, p))
    for where, message in found:
        r.problem(where, message)
    if found:
        return
    try:
        strictjson.loads(strictjson.dumps(job))
    except (ValueError, InvalidJob) as e:  # a lone surrogate, nesting past strictjson's
        r.problem(p, str(e))


def _not_json(job: dict[str, Any], p: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    """Each value in job that JSON has no place for: its key path and what to do."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(job, p)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                if isinstance(key, str):
                    stack.append((child, (*where, key)))
                else:
                    yield where, f"key {key!r} is not a string: quote it"
        elif isinstance(value, list):
            stack.extend((child, (*where, str(n))) for n, child in enumerate(value))
        elif isinstance(value, bytes):
            yield where, "binary data (!!binary) is not a JSON value: give it as a string"
        elif isinstance(value, float) and not math.isfinite(value):
            yield where, f"{value} is not a JSON number: give a finite number"
        elif not isinstance(value, str | int | float | bool | None):
            yield where, f"a YAML {type(value).__name__} is not a JSON value: quote it ('{value}')"


def _task(r: _Reader, entry: Any, p: tuple[str, ...]) -> TaskConfig | None:
    s = r.section(entry, p, {"name", "cron", "job", "timezone", "catchUp"})
    before = len(r.problems)
    name = r.get(s, (*p, "name"), str, None)
    cron = r.get(s, (*p, "cron"), str, None)
    job = r.get(s, (*p, "job"), dict, None)
    for key, value in (("name", name), ("cron", cron), ("job", job)):
        if value is None and key not in s:
            r.problem((*p, key), "is required")
    if name is not None and not ID_RE.match(name):
        r.problem((*p, "name"), f"use {NAME_RULE}")
    if cron is not None:
        from spoold.cron import cron_problem

        problem = cron_problem(cron)
        if problem:
            r.problem((*p, "cron"), problem)
    if job is not None and not isinstance(job.get("type"), str):
        r.problem((*p, "job", "type"), "the job needs a type (a string)")
    if job is not None:
        _check_json(r, job, (*p, "job"))
    catch_up = r.get(s, (*p, "catchUp"), str, "skip")
    if catch_up not in ("skip", "once"):
        r.problem((*p, "catchUp"), f"must be skip or once, got {catch_up!r}")
    timezone = _timezone(r, s, (*p, "timezone"), None)
    if len(r.problems) > before:
        return None
    return TaskConfig(name, cron, job, timezone, catch_up, r.lines.get(p, 0))


def _job_types(r: _Reader, top: dict[str, Any]) -> dict[str, str]:
    types = r.get(top, ("jobTypes",), dict, {})
    good = {}
    for name, target in types.items():
        p = ("jobTypes", str(name))
        if not isinstance(target, str) or ":" not in target:
            r.problem(p, f"expected 'package.module:function', got {target!r}")
        elif not ID_RE.match(str(name)):
            r.problem(p, "a type name uses A-Z a-z 0-9 . _ -")
        else:
            good[str(name)] = target
    return good


def _limits(r: _Reader, top: dict[str, Any]) -> dict[str, Limit]:
    """`limits: {type: {concurrency: N, rate: "N/s"}}`. A type must be a built-in or one of
    jobTypes (in this same file): any other name is a typo, and a limit that silently
    limits nothing is worse than an error."""
    entries = r.get(top, ("limits",), dict, {})
    plugins = top.get("jobTypes")
    types = set(BUILTIN_TYPES) | (set(map(str, plugins)) if isinstance(plugins, dict) else set())
    good = {}
    for name, entry in entries.items():
        p = ("limits", str(name))
        if str(name) not in types:
            listing = "the job types (a plug-in needs its jobTypes entry)"
            r.problem(p, f"no job type named {name!r}{_closest(str(name), types, listing)}")
            continue
        before = len(r.problems)
        s = r.section(entry, p, {"concurrency", "rate"})
        if not s and len(r.problems) == before:
            r.problem(p, 'give concurrency (jobs at once), rate ("10/s") or both')
        limit = Limit(_concurrency(r, s, (*p, "concurrency")), _rate(r, s, (*p, "rate")))
        if len(r.problems) == before:
            good[str(name)] = limit
    return good


def _concurrency(r: _Reader, s: dict[str, Any], path: tuple[str, ...]) -> int | None:
    value: int | None = r.get(s, path, int, None)
    if value is not None and value < 1:
        r.problem(path, f"must be a whole number of jobs, at least 1, got {value}")
        return None
    return value


def _rate(r: _Reader, s: dict[str, Any], path: tuple[str, ...]) -> Rate | None:
    if s.get(path[-1]) is None:
        return None
    try:
        return parse_rate(s[path[-1]])
    except ValueError as e:
        r.problem(path, str(e))
        return None
