"""One run of the whole benchmark: every section, every system, one table, one JSON file.

    python -m bench                 the full run (several minutes)
    python -m bench --quick         a small run for CI's smoke test (under a minute)
    python -m bench --only latency --systems spoold,floor

Every system runs in its own process on its own fresh folder under --tmp.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench import http_load, report, sections
from bench.common import FULL, QUICK, Scratch, Sizes, compile_spoold, job_ids, quiesce
from bench.sections import Row
from bench.spoold_proc import Spoold
from bench.systems import Dirq, Floor, Huey, System

SECTIONS = ("throughput", "latency", "backlog", "http")
RESULTS = Path(__file__).resolve().parent / "results"

Maker = Callable[[Path], System]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every job count")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/<time>.json)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    parser.add_argument("--systems", default="", help="only systems whose name starts so")
    parser.add_argument("--tmp", default=None, help="folder for the scratch spools (same fs!)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    parser.add_argument("--profile", type=Path, help="py-spy every spoold daemon into this folder")
    return parser.parse_args(argv)


class Runner:
    """Runs measurements one by one, each on a fresh scratch folder, collecting rows.

    A measurement that fails becomes a row saying so: one broken peer does not
    cost the rest of a long run.
    """

    def __init__(self, args: argparse.Namespace, sizes: Sizes) -> None:
        self.args = args
        self.sizes = sizes
        self.prefixes = [p for p in args.systems.split(",") if p]
        self.rows: list[Row] = []
        self.scratch = Scratch(args.tmp, args.keep)

    def wanted(self, name: str) -> bool:
        return not self.prefixes or any(name.startswith(p) for p in self.prefixes)

    def measure(
        self, label: str, maker: Maker, how: Callable[[System], Row], repeat: int = 1
    ) -> None:
        """Run `how` on `repeat` fresh systems; keep the median row (by its rate, if any)."""
        tries = []
        for _ in range(repeat):
            row = self._once(label, maker, how)
            if row is None:
                return
            tries.append(row)
        self._keep(tries)

    def measure_rounds(
        self, label: str, makers: list[Maker], how: Callable[[System], Row], rounds: int
    ) -> None:
        """Each maker once per round, in turn, for `rounds` rounds; keep each one's median
        row. This machine's speed drifts by tens of percent over minutes: run one system
        three times and then the next, and their ratio measures the drift as much as
        the systems; in turns, every system meets the same drift."""
        tries: list[list[Row]] = [[] for _ in makers]
        for _ in range(rounds):
            for mine, maker in zip(tries, makers, strict=True):
                row = self._once(label, maker, how)
                if row is not None:
                    mine.append(row)
        for mine in tries:
            if mine:
                self._keep(mine)

    def _keep(self, tries: list[Row]) -> None:
        tries.sort(key=lambda r: r.get("rate", 0.0))
        runs = {"runs": len(tries)} if len(tries) > 1 else {}
        self.rows.append(tries[len(tries) // 2] | runs)

    def _once(self, label: str, maker: Maker, how: Callable[[System], Row]) -> Row | None:
        quiesce(self.sizes.settle)  # the last run's writes are not this run's
        system = maker(self.scratch.make(label.split()[0]))
        if not self.wanted(system.name):
            return None
        began = time.monotonic()
        try:
            row = how(system)
        except Exception as e:
            traceback.print_exc()
            row = {
                "section": label.split()[0],
                "scenario": label,
                "system": system.name,
                "failed": f"failed: {type(e).__name__}: {e}",
            }
        finally:
            getattr(system, "stop", lambda: None)()
        _progress(label, system.name, row, time.monotonic() - began)
        return row


def peer_makers() -> Iterator[Maker]:
    """The floor's four modes and the peers, each as a maker of a fresh system."""
    yield lambda root: Floor(root, "none")
    yield lambda root: Floor(root, "fsync")
    yield lambda root: Floor(root, "group")
    yield lambda root: Floor(root, "syncfs")
    yield lambda root: Huey(root, fsync=False)
    yield lambda root: Huey(root, fsync=True)
    yield lambda root: Dirq(root)


def spoold_maker(workers: int, durability: str, profile: Path | None = None) -> Maker:
    return lambda root: Spoold(root, workers, durability, profile=profile)


def run_throughput(runner: Runner, sizes: Sizes) -> None:
    ids = job_ids("t", sizes.throughput)
    spy = runner.args.profile
    for scenario in ("preloaded", "live"):
        makers = list(peer_makers())
        makers += [spoold_maker(w, d, spy) for d in ("relaxed", "fsync") for w in (1, 4)]
        how = partial(sections.throughput, ids=ids, scenario=scenario, settle=sizes.settle)
        runner.measure_rounds(f"throughput {scenario}", makers, how, sizes.rounds)


def run_latency(runner: Runner, sizes: Sizes) -> None:
    ids = job_ids("l", sizes.latency)
    makers = [m for m in peer_makers()]
    spy = runner.args.profile
    makers += [spoold_maker(4, "relaxed", spy), spoold_maker(4, "fsync", spy)]
    for maker in makers:
        runner.measure("latency", maker, lambda s: sections.latency(s, ids, sizes.latency_gap))


def run_backlog(runner: Runner, sizes: Sizes) -> None:
    """1,000 and 100,000 waiting; the small one is the median of 3, since its window
    (a tenth of a second) is as long as one stall of the file system's journal."""
    for size, count in (("small", sizes.backlog_small), ("large", sizes.backlog_large)):
        ids = job_ids("b", count)
        spoold = spoold_maker(4, "relaxed", runner.args.profile)
        for maker in (lambda root: Floor(root, "none"), spoold):
            how = partial(_backlog_row, ids=ids, size=size, settle=sizes.settle)
            runner.measure("backlog", maker, how, repeat=3 if size == "small" else 1)


def _backlog_row(system: System, ids: list[str], size: str, settle: float) -> Row:
    row = sections.throughput(system, ids, "preloaded", "backlog", settle)
    return row | {"scenario": f"{len(ids):,} waiting", "size": size}


def run_http(runner: Runner, sizes: Sizes) -> None:
    if not runner.wanted("spoold"):
        return
    why = http_load.api_missing()
    if why:
        runner.rows.append(
            {"section": "http", "scenario": "POST /jobs", "system": "spoold", "skipped": why}
        )
        print(f"http: {why}", file=sys.stderr)
        return
    quiesce(sizes.settle)  # as before every other run
    root = runner.scratch.make("http")
    try:
        row = http_load.post_rate(root, sizes.http, profile=runner.args.profile)
    except Exception as e:
        traceback.print_exc()
        row = {
            "section": "http",
            "scenario": "POST /jobs",
            "system": "spoold",
            "failed": f"failed: {type(e).__name__}: {e}",
        }
    runner.rows.append(row)
    _progress("http", "spoold", row, 0.0)


def _progress(label: str, name: str, row: Row, seconds: float) -> None:
    what = row.get("failed") or row.get("skipped") or report._result(row)
    extra = f" w{row['workers']} {row['durability']}" if "durability" in row else ""
    print(f"{label:22} {name:12}{extra:12} {what}  ({seconds:.1f} s)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = (QUICK if args.quick else FULL).scaled(args.scale)
    only = set(args.only.split(","))
    compile_spoold()
    runner = Runner(args, sizes)
    began, wall = datetime.now(UTC), time.monotonic()
    steps = {
        "throughput": run_throughput,
        "latency": run_latency,
        "backlog": run_backlog,
        "http": run_http,
    }
    try:
        for name in SECTIONS:
            if name in only:
                steps[name](runner, sizes)
    finally:
        runner.scratch.remove_all()
    report.add_ratios(runner.rows)
    goal_rows = report.goals(runner.rows)
    out = args.out or RESULTS / f"bench-{began:%Y%m%dT%H%M%S}.json"
    data: dict[str, Any] = {
        "started": began.isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - wall, 1),
        "argv": sys.argv[1:] if argv is None else argv,
        "sizes": vars(sizes),
        "machine": report.machine(args.tmp or "/tmp"),
        "rows": runner.rows,
        "goals": goal_rows,
    }
    report.write_json(out, data)
    print(report.table(runner.rows, goal_rows))
    print(f"\nwritten to {out} in {data['seconds']} s", file=sys.stderr)
    return 0
