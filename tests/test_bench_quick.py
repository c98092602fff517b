"""The benchmark's smoke test: `python -m bench --quick` runs and writes its JSON.

It asserts that every section and every system ran, not how fast: speed on a
shared CI machine says nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SECTIONS = {"throughput", "latency", "backlog", "http"}
SYSTEMS = {"spoold", "floor", "floor-fsync", "floor-group", "floor-syncfs", "huey", "huey-fsync",
           "dirq"}  # fmt: skip


@pytest.mark.slow
def test_quick_benchmark_writes_every_section(tmp_path: Path) -> None:
    pytest.importorskip("huey")
    pytest.importorskip("dirq")
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "bench", "--quick", "--scale", "0.2", "--out", str(out),
               "--tmp", str(tmp_path)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_bytes())
    rows = data["rows"]
    assert {r["section"] for r in rows} == SECTIONS
    assert {r["system"] for r in rows if r["section"] == "throughput"} == SYSTEMS
    assert [r for r in rows if "failed" in r] == []
    assert {g["goal"] for g in data["goals"]} and data["machine"]["cpus"]
    assert "| section |" in done.stdout
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("spoold-bench-")] == []
