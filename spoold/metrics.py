"""GET /metrics: the daemon's counters in the Prometheus text format.

A custom collector reads the daemon's own state at each scrape (nothing is
counted twice), registered in a CollectorRegistry per daemon rather than the
process-global default one, so two daemons in one process never mix.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from spoold import __version__
from spoold.status import DURATION_BUCKETS

if TYPE_CHECKING:
    from spoold.daemon import Daemon

CONTENT_TYPE = CONTENT_TYPE_LATEST
SKIP_KEYS = ("skipCount", "skippedCount", "skips")


class SpooldCollector(Collector):
    """Everything a scrape shows, read from one daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        yield from self._jobs()
        yield from self._queue()
        yield self._durations()
        yield from self._scheduler()
        yield from self._config()

    def _jobs(self) -> Iterator[Metric]:
        stats = self.daemon.stats
        jobs = CounterMetricFamily(
            "spoold_jobs", "Jobs finished, by type and outcome.", labels=["type", "outcome"]
        )
        retries = CounterMetricFamily(
            "spoold_job_retries", "Failed attempts put back for a retry, by type.", labels=["type"]
        )
        for (job_type, folder), count in sorted(stats.outcomes.items()):
            if folder == "pending":
                retries.add_metric([job_type], count)
            else:
                jobs.add_metric([job_type, folder], count)
        yield jobs
        yield retries

    def _queue(self) -> Iterator[Metric]:
        daemon = self.daemon
        depth = GaugeMetricFamily(
            "spoold_queue_depth", "Jobs waiting in pending/, by priority.", labels=["priority"]
        )
        for priority, count in daemon.dispatcher.counts().items():
            if priority != "total":
                depth.add_metric([priority], count)
        yield depth
        yield GaugeMetricFamily(
            "spoold_jobs_running", "Jobs being run now.", value=daemon.pool.active_count
        )
        records = GaugeMetricFamily(
            "spoold_records", "Files in completed/ and failed/.", labels=["folder"]
        )
        records.add_metric(["completed"], daemon.stats.completed)
        records.add_metric(["failed"], daemon.stats.failed)
        yield records
        since = daemon.dispatcher.due_since()
        age = max(time.time() - since, 0.0) if since is not None else 0.0
        yield GaugeMetricFamily(
            "spoold_oldest_due_job_age_seconds",
            "How long the longest-waiting due job has waited (0 when none is due).",
            value=age,
        )

    def _durations(self) -> Metric:
        histogram = HistogramMetricFamily(
            "spoold_job_duration_seconds", "Duration of job attempts, by type.", labels=["type"]
        )
        for job_type, (counts, total) in sorted(self.daemon.stats.duration_histograms().items()):
            histogram.add_metric([job_type], _cumulative(counts), total)
        return histogram

    def _scheduler(self) -> Iterator[Metric]:
        fires = CounterMetricFamily(
            "spoold_scheduler_fires", "Runs a scheduled task enqueued.", labels=["task"]
        )
        skips = CounterMetricFamily(
            "spoold_scheduler_skips",
            "Fires skipped because the task's last run was still pending or running.",
            labels=["task"],
        )
        errors = CounterMetricFamily(
            "spoold_scheduler_errors", "Fires that could not enqueue a job.", labels=["task"]
        )
        for task in _scheduler_tasks(self.daemon):
            name = str(task.get("name"))
            fires.add_metric([name], _number(task.get("runCount")))
            skips.add_metric([name], _number(next((task[k] for k in SKIP_KEYS if k in task), 0)))
            errors.add_metric([name], _number(task.get("errorCount")))
        yield fires
        yield skips
        yield errors

    def _config(self) -> Iterator[Metric]:
        daemon = self.daemon
        yield GaugeMetricFamily(
            "spoold_config_last_reload_success",
            "1 if the config file last read was valid (it is in force), 0 if not.",
            value=0 if getattr(daemon, "config_error", None) else 1,
        )
        yield GaugeMetricFamily(
            "spoold_config_last_reload_timestamp_seconds",
            "When the config in force was loaded (Unix time).",
            value=getattr(daemon, "config_loaded_at", 0.0),
        )
        yield GaugeMetricFamily(
            "spoold_storage_ok",
            "1 while the spool takes writes, 0 while they fail (full disk, read-only, ...).",
            value=1 if daemon.spool.health.ok else 0,
        )
        info = GaugeMetricFamily("spoold_info", "This daemon.", labels=["version", "node"])
        info.add_metric([__version__, daemon.spool.owner], 1)
        yield info


def _cumulative(counts: list[int]) -> list[tuple[str, float]]:
    """Bucket counts → (le, cumulative count) pairs, +Inf last, as Prometheus wants them."""
    bounds = [*(str(float(b)) for b in DURATION_BUCKETS), "+Inf"]
    running, pairs = 0, []
    for bound, count in zip(bounds, counts, strict=True):
        running += count
        pairs.append((bound, running))
    return pairs


def _scheduler_tasks(daemon: Daemon) -> list[dict[str, Any]]:
    """The scheduler's tasks, from its own snapshot when it has one."""
    scheduler = getattr(daemon, "scheduler", None)
    snapshot = getattr(scheduler, "snapshot", None)
    data = snapshot() if callable(snapshot) else daemon.scheduler_stats()
    tasks = data.get("tasks", []) if isinstance(data, dict) else []
    return [t for t in tasks if isinstance(t, dict)]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def registry_for(daemon: Daemon) -> CollectorRegistry:
    """A registry of its own for one daemon."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SpooldCollector(daemon))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The scrape's body (Content-Type: CONTENT_TYPE)."""
    return generate_latest(registry)
