"""Sampling the daemon with py-spy while the benchmark loads it, and reading the samples.

    python -m bench --only throughput --systems spoold --profile /tmp/prof
    python -m bench.profile /tmp/prof/*.txt          # top functions by own and total time

py-spy (`pip install py-spy`) attaches to the running daemon, so the daemon runs
exactly as in the benchmark; the samples are kept in py-spy's "raw" (collapsed
stack) format, one line per distinct stack with its count.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

FRAME_RE = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]+?)(?::\d+)?\)$")


def attach(pid: int, out: Path, rate: int = 200) -> subprocess.Popen[bytes] | None:
    """Start py-spy on pid (it stops by itself when the process exits); None if absent."""
    spy = shutil.which("py-spy")
    if spy is None:
        print("--profile: no py-spy (pip install py-spy): no samples", file=sys.stderr)
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
               "--threads", "--nonblocking", "--output", str(out)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def load(path: Path) -> list[tuple[list[str], int]]:
    """(frames from the thread down to the leaf, sample count) per line of a raw file."""
    stacks = []
    for line in path.read_text().splitlines():
        text, _, count = line.rpartition(" ")
        if text and count.isdigit():
            stacks.append((text.split(";"), int(count)))
    return stacks


def short(frame: str) -> str:
    """'claim (spoold/spool.py:301)' → 'spool.py:claim'."""
    match = FRAME_RE.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{Path(match.group('file')).name}:{match.group('func')}"


def thread_of(frames: list[str]) -> str:
    """py-spy --threads puts the thread first: 'thread (0x7f..)' → our name for it."""
    return frames[0].split(" ")[0] if frames else "?"


def summarize(path: Path, top: int = 25) -> str:
    """Own time (the leaf) and total time (anywhere on the stack) per function, in %."""
    stacks = load(path)
    total = sum(n for _, n in stacks) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for frames, n in stacks:
        names = [short(f) for f in frames[1:]]
        if names:
            own[names[-1]] += n
        for name in set(names):
            inclusive[name] += n
        threads[thread_of(frames)] += n
    share = ", ".join(f"{t} {n / total:.0%}" for t, n in threads.most_common(8))
    lines = [f"{path.name}: {total} samples", f"  by thread: {share}", "  own time:"]
    lines += [f"    {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines += ["  total time:"]
    lines += [f"    {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="summarize py-spy raw profiles")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.files:
        print(summarize(path, args.top))


if __name__ == "__main__":
    main()
