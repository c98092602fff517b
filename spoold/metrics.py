"""GET /metrics: the daemon's counters in the Prometheus text format.

A custom collector reads the daemon's own state (its Service's snapshot and
counters) at each scrape (nothing is counted twice), registered in a
CollectorRegistry per daemon rather than the process-global default one, so two
daemons in one process never mix.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

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
from spoold.service import Counters, Service
from spoold.status import DURATION_BUCKETS

CONTENT_TYPE = CONTENT_TYPE_LATEST


class SpooldCollector(Collector):
    """Everything a scrape shows, read from one Service: its snapshot and its counters."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        snapshot, counters = self.service.snapshot(), self.service.counters()
        yield from self._jobs(counters)
        yield from self._queue(snapshot["queue"], counters)
        yield self._durations(counters)
        yield from self._scheduler(snapshot["scheduler"])
        yield from self._config(counters, snapshot["worker"]["workerId"])

    def _jobs(self, counters: Counters) -> Iterator[Metric]:
        jobs = CounterMetricFamily(
            "spoold_jobs", "Jobs finished, by type and outcome.", labels=["type", "outcome"]
        )
        retries = CounterMetricFamily(
            "spoold_job_retries", "Failed attempts put back for a retry, by type.", labels=["type"]
        )
        for (job_type, folder), count in sorted(counters.outcomes.items()):
            if folder == "pending":
                retries.add_metric([job_type], count)
            else:
                jobs.add_metric([job_type, folder], count)
        yield jobs
        yield retries

    def _queue(self, queue: dict[str, Any], counters: Counters) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "spoold_queue_depth", "Jobs waiting in pending/, by priority.", labels=["priority"]
        )
        for priority, count in queue["pending"].items():
            if priority != "total":
                depth.add_metric([priority], count)
        yield depth
        yield GaugeMetricFamily(
            "spoold_jobs_running", "Jobs being run now.", value=queue["running"]
        )
        records = GaugeMetricFamily(
            "spoold_records", "Files in completed/ and failed/.", labels=["folder"]
        )
        records.add_metric(["completed"], queue["completed"])
        records.add_metric(["failed"], queue["failed"])
        yield records
        since = counters.due_since
        age = max(time.time() - since, 0.0) if since is not None else 0.0
        yield GaugeMetricFamily(
            "spoold_oldest_due_job_age_seconds",
            "How long the longest-waiting due job has waited (0 when none is due).",
            value=age,
        )

    def _durations(self, counters: Counters) -> Metric:
        histogram = HistogramMetricFamily(
            "spoold_job_duration_seconds", "Duration of job attempts, by type.", labels=["type"]
        )
        for job_type, (counts, total) in sorted(counters.durations.items()):
            histogram.add_metric([job_type], _cumulative(counts), total)
        return histogram

    def _scheduler(self, scheduler: dict[str, Any]) -> Iterator[Metric]:
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
        for task in scheduler["tasks"]:
            name = task["name"]
            fires.add_metric([name], task["runCount"])
            skips.add_metric([name], task["skippedCount"])
            errors.add_metric([name], task["errorCount"])
        yield fires
        yield skips
        yield errors

    def _config(self, counters: Counters, node: str) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "spoold_config_last_reload_success",
            "1 if the config file last read was valid (it is in force), 0 if not.",
            value=1 if counters.config_ok else 0,
        )
        yield GaugeMetricFamily(
            "spoold_config_last_reload_timestamp_seconds",
            "When the config in force was loaded (Unix time).",
            value=counters.config_loaded_at,
        )
        yield GaugeMetricFamily(
            "spoold_storage_ok",
            "1 while the spool takes writes, 0 while they fail (full disk, read-only, ...).",
            value=1 if counters.storage_ok else 0,
        )
        info = GaugeMetricFamily("spoold_info", "This daemon.", labels=["version", "node"])
        info.add_metric([__version__, node], 1)
        yield info


def _cumulative(counts: list[int]) -> list[tuple[str, float]]:
    """Bucket counts → (le, cumulative count) pairs, +Inf last, as Prometheus wants them."""
    bounds = [*(str(float(b)) for b in DURATION_BUCKETS), "+Inf"]
    running, pairs = 0, list[tuple[str, float]]()
    for bound, count in zip(bounds, counts, strict=True):
        running += count
        pairs.append((bound, running))
    return pairs


def registry_for(service: Service) -> CollectorRegistry:
    """A registry of its own for one daemon."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SpooldCollector(service))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The scrape's body (Content-Type: CONTENT_TYPE)."""
    return generate_latest(registry)
