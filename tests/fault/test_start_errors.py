"""A file system's surprise at start is a one-line reason, not a traceback."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import base_config, spoold_cli

from .mounts import fill, small_disk


def test_an_unusable_node_lock_ends_the_start_with_one_line(tmp_path: Path) -> None:
    lock = tmp_path / "spool" / "running" / ".node-local.lock"
    lock.mkdir(parents=True)  # a folder where the lock file goes: open() answers EISDIR
    (tmp_path / "spoold.yaml").write_text(yaml.safe_dump(base_config()))
    result = spoold_cli("run", "--config", "spoold.yaml", cwd=tmp_path)
    print(f"injected: a folder at {lock}; found: exit {result.returncode}, {result.stderr!r}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [reason] = [line for line in result.stderr.splitlines() if line.startswith("spoold: ")]
    assert str(lock) in reason and "EISDIR" in reason
    assert "put the spool on a local disk" in reason


def test_a_start_on_a_full_disk_ends_with_one_line_saying_what_to_do(tmp_path: Path) -> None:
    with small_disk(tmp_path / "spool") as spool:
        for folder in ("incoming", "pending", "running", "completed", "failed", "tmp"):
            (spool / folder).mkdir()
        filled = fill(spool / "ballast")
        (tmp_path / "spoold.yaml").write_text(yaml.safe_dump(base_config()))
        result = spoold_cli("run", "--config", "spoold.yaml", cwd=tmp_path)
        print(f"injected: a {filled}-byte ballast; found: exit {result.returncode},"
              f" {result.stderr!r}")  # fmt: skip
        assert result.returncode == 1 and "Traceback" not in result.stderr
        [reason] = [line for line in result.stderr.splitlines() if line.startswith("spoold: ")]
        assert str(spool / "tmp") in reason and "ENOSPC" in reason
        assert "free space on that file system, then start again" in reason
