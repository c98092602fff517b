"""The benchmark's goal table: each goal checked against the right rows."""

from __future__ import annotations

from bench import report


def throughput(system: str, scenario: str, rate: float, **fields: object) -> dict:
    row = {"section": "throughput", "scenario": scenario, "system": system, "rate": rate}
    return row | fields


def test_throughput_goals_are_checked_in_both_scenarios() -> None:
    rows = [
        throughput("floor", "preloaded", 10_000.0),
        throughput("floor", "live", 10_000.0),
        throughput("huey-fsync", "preloaded", 4_000.0),
        throughput("huey-fsync", "live", 2_000.0),
        throughput("spoold", "preloaded", 6_000.0, durability="relaxed", workers=4),
        throughput("spoold", "live", 4_000.0, durability="relaxed", workers=4),
        throughput("spoold", "live", 9_000.0, durability="relaxed", workers=1),
        throughput("spoold", "preloaded", 6_000.0, durability="fsync", workers=4),
        throughput("spoold", "live", 5_000.0, durability="fsync", workers=4),
    ]
    found = {g["goal"]: (g["value"], g["met"]) for g in report.goals(rows)}
    assert found["relaxed w4 / floor (no fsync), preloaded"] == (0.6, True)
    assert found["relaxed w4 / floor (no fsync), live"] == (0.4, False)
    assert found["fsync w4 / huey-fsync, preloaded"] == (1.5, False)
    assert found["fsync w4 / huey-fsync, live"] == (2.5, True)
    assert found["POST /jobs per s (fsync)"] == (None, None)  # not measured: not judged
