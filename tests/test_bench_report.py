"""The benchmark's goal table: each goal checked against the right rows."""

from __future__ import annotations

import os
from pathlib import Path

from bench import report


def throughput(system: str, scenario: str, rate: float, **fields: object) -> dict:
    row = {"section": "throughput", "scenario": scenario, "system": system, "rate": rate}
    return row | fields


def test_throughput_goals_take_spoolds_best_of_its_workers_in_both_scenarios() -> None:
    rows = [
        throughput("floor", "preloaded", 10_000.0, cpu_us_per_job=40.0),
        throughput("floor", "live", 10_000.0, cpu_us_per_job=50.0),
        throughput("huey", "preloaded", 8_000.0),
        throughput("huey", "live", 10_000.0),
        throughput("huey-fsync", "preloaded", 2_000.0),
        throughput("huey-fsync", "live", 2_000.0),
        throughput("spoold", "preloaded", 6_000.0, durability="relaxed", workers=4,
                   cpu_us_per_job=90.0, peak_rss_mb=60.0),
        throughput("spoold", "preloaded", 8_000.0, durability="relaxed", workers=1,
                   cpu_us_per_job=70.0, peak_rss_mb=58.0),
        throughput("spoold", "live", 4_000.0, durability="relaxed", workers=4,
                   cpu_us_per_job=120.0, peak_rss_mb=70.0),
        throughput("spoold", "live", 9_000.0, durability="relaxed", workers=1,
                   cpu_us_per_job=110.0, peak_rss_mb=61.0),
        throughput("spoold", "preloaded", 6_000.0, durability="fsync", workers=4),
        throughput("spoold", "live", 5_000.0, durability="fsync", workers=4),
        throughput("spoold", "live", 7_000.0, durability="fsync", workers=1),
    ]  # fmt: skip
    found = {g["goal"]: (g["value"], g["met"]) for g in report.goals(rows)}
    assert found["relaxed / huey (no fsync), preloaded"] == (1.0, True)  # w1's 8,000
    assert found["relaxed / huey (no fsync), live"] == (0.9, False)
    assert found["relaxed / floor (no fsync), preloaded"] == (0.8, True)
    assert found["relaxed / floor (no fsync), live"] == (0.9, True)
    assert found["CPU per job relaxed / floor, preloaded"] == (1.75, True)  # the best row's
    assert found["CPU per job relaxed / floor, live"] == (2.2, False)
    assert found["fsync / huey-fsync, preloaded"] == (3.0, True)
    assert found["fsync / huey-fsync, live"] == (3.5, True)  # w1's 7,000
    assert found["peak RSS, throughput runs (MB)"] == (70.0, False)  # the highest of all
    assert found["POST /jobs per s (fsync)"] == (None, None)  # not measured: not judged


def test_latency_goals_are_issue_15s() -> None:
    rows = [
        {"section": "latency", "system": "spoold", "durability": "relaxed", "p50_ms": 0.9,
         "p99_ms": 3.2},
        {"section": "latency", "system": "spoold", "durability": "fsync", "p50_ms": 2.0},
    ]  # fmt: skip
    found = {g["goal"]: (g["value"], g["met"]) for g in report.goals(rows)}
    assert found["latency p50 relaxed (ms)"] == (0.9, True)
    assert found["latency p99 relaxed (ms)"] == (3.2, False)
    assert found["latency p50 fsync (ms)"] == (2.0, True)


def test_a_process_cost_includes_its_live_children(tmp_path) -> None:
    """spoold with fsync runs a helper process: its CPU is part of spoold's cost."""
    import subprocess
    import sys

    from conftest import wait_until

    from bench.common import proc_stats

    script = tmp_path / "parent.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)])
    try:
        wait_until(lambda: (proc_stats(parent.pid)[0] or 0) > 0.3, 20)
        status = Path(f"/proc/{parent.pid}/status").read_text().split("VmHWM:")[1]
        assert (proc_stats(parent.pid)[1] or 0) > int(status.split()[0])  # the child's too
    finally:
        for child in Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split():
            os.kill(int(child), 9)
        parent.kill()
        parent.wait()


def test_rounds_run_every_system_in_turn_and_keep_each_median(tmp_path) -> None:
    from types import SimpleNamespace

    from bench.common import QUICK
    from bench.run import Runner

    order: list[str] = []
    rates = {"a": iter([3.0, 1.0, 2.0]), "b": iter([10.0, 30.0, 20.0])}

    def maker(name: str):
        return lambda root: SimpleNamespace(name=name, root=root)

    def how(system) -> dict:
        order.append(system.name)
        rate = next(rates[system.name])
        return {"section": "throughput", "scenario": "x", "system": system.name, "rate": rate}

    args = SimpleNamespace(systems="", tmp=str(tmp_path), keep=False)
    runner = Runner(args, QUICK)
    runner.measure_rounds("throughput x", [maker("a"), maker("b")], how, rounds=3)
    runner.scratch.remove_all()
    assert order == ["a", "b", "a", "b", "a", "b"]
    assert [(r["system"], r["rate"], r["runs"]) for r in runner.rows] == [
        ("a", 2.0, 3),
        ("b", 20.0, 3),
    ]
    assert list(tmp_path.iterdir()) == []
