"""Ratios, the goals of issue 15, the printed table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import REPO
from bench.sections import Row

PEERS = ("huey", "huey-fsync", "dirq")
FLOORS = {"relaxed": "floor", "fsync": "floor-fsync"}


def add_ratios(rows: list[Row]) -> None:
    """Each row's figure over the floor's and the best peer's in the same scenario.

    The floor is the one that keeps the same promise (no fsync, or fsync per job);
    the best peer is the best of the same durability class if there is one, else
    of any. Rates: > 1 is better. Latencies: a multiple of the reference, < 1 is better.
    """
    for row in rows:
        key, higher = _figure(row)
        if key is None:
            continue
        same = [r for r in rows if _comparable(r, row) and r.get(key) is not None]
        floor = next((r for r in same if r["system"] == FLOORS.get(row["durability"])), None)
        peers = [r for r in same if r["system"] in PEERS]
        peers = [r for r in peers if r["durability"] == row["durability"]] or peers
        best = (max if higher else min)(peers, key=lambda r: r[key]) if peers else None
        if floor and floor is not row:
            row["x_floor"] = round(row[key] / floor[key], 3)
        if best and best is not row:
            row["x_best_peer"] = round(row[key] / best[key], 3)
            row["best_peer"] = best["system"]


def _figure(row: Row) -> tuple[str | None, bool]:
    if row["section"] == "latency":
        return ("p50_ms" if "p50_ms" in row else None), False
    return ("rate" if "rate" in row else None), True


def _comparable(a: Row, b: Row) -> bool:
    return a["section"] == b["section"] and a["scenario"] == b["scenario"]


def _find(rows: list[Row], **match: Any) -> Row | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def goals(rows: list[Row]) -> list[dict[str, Any]]:
    """The goals of issue 15, each with what this run measured. spoold's throughput is its
    best of 1 and 4 workers, checked in both scenarios: jobs waiting at start, and jobs
    dropped while it runs."""
    spoold = {"system": "spoold"}
    lat_relaxed = _find(rows, section="latency", durability="relaxed", **spoold)
    lat_fsync = _find(rows, section="latency", durability="fsync", **spoold)
    small = _find(rows, section="backlog", size="small", **spoold)
    large = _find(rows, section="backlog", size="large", **spoold)
    http = _find(rows, section="http", **spoold)
    return [
        *_rate_goals(rows, "relaxed / huey (no fsync)", "relaxed", "huey", 1.0),
        *_rate_goals(rows, "relaxed / floor (no fsync)", "relaxed", "floor", 0.6),
        *_cpu_goals(rows, 2.0),
        *_rate_goals(rows, "fsync / huey-fsync", "fsync", "huey-fsync", 3.0),
        _goal("latency p50 relaxed (ms)", _get(lat_relaxed, "p50_ms"), "<=", 1.0),
        _goal("latency p99 relaxed (ms)", _get(lat_relaxed, "p99_ms"), "<=", 3.0),
        _goal("latency p50 fsync (ms)", _get(lat_fsync, "p50_ms"), "<=", 5.0),
        _goal("backlog large / small rate", _ratio(large, small, "rate"), ">=", 0.8),
        _goal("first job with large backlog (s)", _get(large, "first_job_s"), "<=", 5.0),
        _goal("peak RSS, large backlog (MB)", _get(large, "peak_rss_mb"), "<", 200.0),
        _goal("peak RSS, throughput runs (MB)", _most_rss(rows), "<=", 64.0),
        _goal("POST /jobs per s (fsync)", _get(http, "rate"), ">=", 1000.0),
    ]


def _best_spoold(rows: list[Row], durability: str, scenario: str) -> Row | None:
    """spoold's faster row of 1 and 4 workers in a throughput scenario."""
    where = {"section": "throughput", "scenario": scenario, "system": "spoold"}
    found = [r for r in rows if r.get("rate") and all(r.get(k) == v for k, v in where.items())]
    found = [r for r in found if r.get("durability") == durability]
    return max(found, key=lambda r: r["rate"], default=None)


def _rate_goals(
    rows: list[Row], name: str, durability: str, base: str, target: float
) -> list[dict[str, Any]]:
    """spoold at its best against a base system, preloaded and live."""
    found = []
    for scenario in ("preloaded", "live"):
        base_row = _find(rows, section="throughput", scenario=scenario, system=base)
        ratio = _ratio(_best_spoold(rows, durability, scenario), base_row, "rate")
        found.append(_goal(f"{name}, {scenario}", ratio, ">=", target))
    return found


def _cpu_goals(rows: list[Row], target: float) -> list[dict[str, Any]]:
    """CPU per job of spoold's best relaxed row (its helper's included) over the floor's."""
    found = []
    for scenario in ("preloaded", "live"):
        base_row = _find(rows, section="throughput", scenario=scenario, system="floor")
        ours = _best_spoold(rows, "relaxed", scenario)
        ratio = _ratio(ours, base_row, "cpu_us_per_job")
        found.append(_goal(f"CPU per job relaxed / floor, {scenario}", ratio, "<=", target))
    return found


def _most_rss(rows: list[Row]) -> float | None:
    """The highest peak RSS of spoold's throughput runs (20,000 jobs in a full run)."""
    peaks = [r["peak_rss_mb"] for r in rows if r.get("section") == "throughput"
             and r.get("system") == "spoold" and r.get("peak_rss_mb") is not None]  # fmt: skip
    return max(peaks, default=None)


def _get(row: Row | None, key: str) -> float | None:
    return None if row is None else row.get(key)


def _ratio(a: Row | None, b: Row | None, key: str) -> float | None:
    x, y = _get(a, key), _get(b, key)
    return None if x is None or not y else round(x / y, 3)


def _goal(name: str, value: float | None, op: str, target: float) -> dict[str, Any]:
    met = None
    if value is not None:
        met = {">=": value >= target, "<=": value <= target, "<": value < target}[op]
    return {"goal": name, "value": value, "target": f"{op} {target:g}", "met": met}


# ----- output -----------------------------------------------------------------------------

COLUMNS = (
    "section",
    "scenario",
    "system",
    "dur.",
    "w",
    "jobs",
    "result",
    "x floor",
    "x best peer",
    "cost and notes",
)


def table(rows: list[Row], goal_rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, then the goals."""
    lines = [_md_row(COLUMNS), _md_row(["---"] * len(COLUMNS))]
    lines += [_md_row(_cells(r)) for r in rows]
    lines += ["", _md_row(("goal", "this run", "target", "met")), _md_row(["---"] * 4)]
    for g in goal_rows:
        met = {True: "yes", False: "**no**", None: "n/a"}[g["met"]]
        value = "n/a" if g["value"] is None else f"{g['value']:g}"
        lines.append(_md_row((g["goal"], value, g["target"], met)))
    return "\n".join(lines)


def _md_row(cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _cells(r: Row) -> list[str]:
    if "skipped" in r or "failed" in r:
        note = r.get("skipped") or r.get("failed")
        head = [r["section"], r.get("scenario", ""), r.get("system", "")]
        return [*head, "", "", "", note, "", "", ""]
    peer = f"{r['x_best_peer']:g} ({r['best_peer']})" if "x_best_peer" in r else ""
    return [
        r["section"],
        r["scenario"],
        r["system"],
        r["durability"],
        str(r["workers"]),
        f"{r['jobs']:,}",
        _result(r),
        _num(r.get("x_floor")),
        peer,
        _notes(r),
    ]


def _result(r: Row) -> str:
    if "p50_ms" in r and r["section"] == "latency":
        return f"p50 {r['p50_ms']:.2f} / p99 {r['p99_ms']:.2f} / max {r['max_ms']:.1f} ms"
    if "rate" in r:
        return f"{r['rate']:,.0f} jobs/s"
    return "n/a"


def _notes(r: Row) -> str:
    notes = []
    if "e2e_rate" in r:
        notes.append(f"e2e {r['e2e_rate']:,.0f}/s")
    if "first_job_s" in r and r["section"] == "backlog":
        notes.append(f"first job {r['first_job_s']:.2f} s")
    if "cpu_us_per_job" in r:
        notes.append(f"{r['cpu_us_per_job']:.0f} µs CPU/job")
    if "peak_rss_mb" in r:
        notes.append(f"RSS {r['peak_rss_mb']:.0f} MB")
    if r["section"] == "http" and "p50_ms" in r:
        notes.append(f"request p50 {r['p50_ms']:.1f} / p99 {r['p99_ms']:.1f} ms")
    if r.get("runs"):
        notes.append(f"median of {r['runs']}")
    for key in ("missing", "errors", "http_failures"):
        if r.get(key):
            notes.append(f"{key} {r[key]}")
    return ", ".join(notes)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def machine(tmp: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "tmp": tmp,
        "tmp_fs": _fs_type(Path(tmp)),
        "versions": {p: _version(p) for p in ("spoold", "huey", "dirq", "watchdog")},
        "commit": _commit(),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _fs_type(path: Path) -> str | None:
    """The type of the mount holding path (longest mount point that prefixes it)."""
    best: tuple[int, str] | None = None
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    resolved = str(path.resolve())
    for line in mounts:
        parts = line.split()
        point = parts[1]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > best[0]):
            best = (len(point), parts[2])
    return best[1] if best else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _commit() -> str | None:
    """The commit measured: from .git, or BENCH_COMMIT when run from an exported tree."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"][:12]
    head = REPO / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (REPO / ".git" / ref[5:]).read_text().strip()[:12]
        return ref[:12]
    except OSError:
        return None


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
