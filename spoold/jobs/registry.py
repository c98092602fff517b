"""The registry: every built-in type bound to its part of the config, plus plug-ins."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import partial
from typing import Any

from spoold.config import Config
from spoold.jobs import JobType, basic, cleanup, plugin, webhook


def build_registry(config: Config, queue_stats: Callable[[], dict[str, Any]]) -> dict[str, JobType]:
    """All built-ins configured from config, plus config.job_types plug-ins.

    Raises ConfigError naming the jobTypes key of every plug-in that cannot be
    imported, is not callable, or would shadow a built-in.
    """
    registry = builtin_types(config, queue_stats)
    registry.update(plugin.load_types(config, set(registry)))
    return registry


def builtin_types(config: Config, queue_stats: Callable[[], dict[str, Any]]) -> dict[str, JobType]:
    """The six built-in types, each bound to its part of the config."""
    types = [
        JobType(
            "send_email",
            partial(imported_at_first_call("email", "send_email"), config.smtp),
            "normal",
            3,
            imported_at_first_call("email", "validate"),
            context=True,
        ),
        JobType(
            "webhook",
            partial(webhook.post_webhook, config.webhook),
            "high",
            5,
            partial(webhook.validate, config.webhook),
            context=True,
        ),
        JobType(
            "cleanup",
            partial(cleanup.clean_directory, config.cleanup),
            "low",
            1,
            partial(cleanup.validate, config.cleanup),
            context=True,
        ),
        JobType("log", basic.log_message, "low", 1, basic.validate_log),
        JobType("queue_stats", partial(basic.log_queue_stats, queue_stats), "low", 1),
        JobType("noop", basic.noop, "normal", 1),
    ]
    return {job_type.name: job_type for job_type in types}


def imported_at_first_call(module: str, name: str) -> Callable[..., Any]:
    """spoold.jobs.<module>.<name>, its module imported when it is first called: the
    email type's loads Python's email package (~2 MB resident, bench/README.md), which a
    daemon that never sees an email job need not carry."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(f"spoold.jobs.{module}"), name)(*args, **kwargs)

    return call
